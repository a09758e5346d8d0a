//! Alert delivery, end to end: the built binary (`run`) against the simulator, posting to a
//! webhook receiver on loopback; restarts, SIGKILL and damaged state files included.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use fargate_health_monitor::simulator::{
    self, Command as SimCommand, FaultKind, Health, IssueSpec, Scope, Simulator,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::receiver::{Received, Receiver, issue, key};
use crate::support::{Alertmanager, aws_env, binary, eventually, free_port, http};

const NEW_SECRET: &str = "whsec-new-key";
const OLD_SECRET: &str = "whsec-old-key";

/// A directory with a config for the simulator and the receiver; the daemon it runs.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The daemon's admin server.
    admin: SocketAddr,
}

impl Setup {
    fn new(simulator: &Simulator, receiver: &Receiver) -> Self {
        Self::with_sinks(simulator, receiver, "")
    }

    /// With more `[[sinks]]` after the receiver's.
    fn with_sinks(simulator: &Simulator, receiver: &Receiver, more: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = simulator.endpoint_url();
        let listen = free_port();
        let text = format!(
            r#"[server]
listen = "{listen}"
external_url = "http://fhm.example.test/"
[state]
path = "{state}"
[poll]
interval = "2s"
discovery_interval = "2s"
timeout = "1s"
max_requests_per_second = 100

[[targets]]
region = "us-east-1"
cluster = "*"
labels = {{ env = "test" }}
endpoint_url = "{url}"
sts_endpoint_url = "{url}"

[[sinks]]
name = "hook"
type = "webhook"
url = "http://{receiver}/hook"
secret = ["{NEW_SECRET}", "{OLD_SECRET}"]
headers = {{ X-Team = "platform" }}
events = ["issue_opened", "issue_resolved", "status_changed", "resource_deleted"]
retry_initial = "100ms"
retry_max = "300ms"
{more}
"#,
            state = dir.path().join("state.json").display(),
            receiver = receiver.addr,
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).unwrap();
        Setup {
            dir,
            config,
            admin: listen,
        }
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    fn start(&self, log_name: &str) -> Child {
        let log = std::fs::File::create(self.dir.path().join(log_name)).unwrap();
        aws_env(binary().args(["run", "--config"]).arg(&self.config))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log_name)).unwrap_or_default()
    }
}

async fn stop(mut child: Child, signal: &str) -> Option<i32> {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap()
}

fn hmac(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Checks both signatures of a request as a receiver would.
fn assert_signed(request: &Received) {
    let h = &request.headers;
    let hex: String = hmac(NEW_SECRET, &[&request.raw])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(h["x-fargate-health-signature"], format!("sha256={hex}"));
    assert_eq!(h["x-fargate-health-event-id"], request.id());
    assert_eq!(h["webhook-id"], request.id());
    let timestamp = &h["webhook-timestamp"];
    let signed: Vec<&[u8]> = vec![
        request.id().as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        &request.raw,
    ];
    let expected: Vec<String> = [NEW_SECRET, OLD_SECRET]
        .iter()
        .map(|secret| {
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(hmac(secret, &signed))
            )
        })
        .collect();
    assert_eq!(h["webhook-signature"], expected.join(" "));
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-team"], "platform");
}

#[tokio::test]
async fn an_issue_opens_once_survives_an_outage_and_resolves_with_the_same_episode() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("run.log");

    let opened = receiver.until_delivered("issue_opened", "web").await;
    assert_signed(&opened);
    let body = &opened.body;
    assert_eq!(body["version"], "2");
    assert!(
        body.get("profile").is_none(),
        "version 2 has `resource` instead"
    );
    assert_eq!(body["resource"]["kind"], "fargate_profile");
    assert_eq!(body["resource"]["name"], "web");
    assert!(body["observed_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["resource"]["account_id"], simulator::DEFAULT_ACCOUNT);
    assert_eq!(body["resource"]["region"], "us-east-1");
    assert_eq!(body["resource"]["cluster"], "prod");
    assert_eq!(body["resource"]["status"], "ACTIVE");
    assert!(
        body["resource"]["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:eks:")
    );
    assert_eq!(body["resource"]["labels"]["env"], "test");
    assert_eq!(body["issue"]["code"], "AccessDenied");
    assert_eq!(
        body["issue"]["resource_ids"],
        serde_json::json!(["r-1", "r-2"])
    );
    assert_eq!(body["issue"]["resource_count"], 2);
    assert!(body["issue"].get("reason").is_none());
    assert!(body.get("status").is_none());

    // An API outage of several cycles resolves nothing.
    simulator.add_fault(Scope::profile(&key("web")), FaultKind::ServerError, None);
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert!(receiver.delivered("issue_resolved", "web").is_empty());
    simulator.apply(SimCommand::ClearFaults).unwrap();

    simulator
        .apply(SimCommand::SetHealth {
            key: key("web"),
            health: Health::Issues(Vec::new()),
        })
        .unwrap();
    let resolved = receiver.until_delivered("issue_resolved", "web").await;
    assert_signed(&resolved);
    assert_eq!(
        resolved.body["issue"]["episode_id"],
        opened.body["issue"]["episode_id"]
    );
    assert_eq!(resolved.body["issue"]["reason"], "cleared");
    assert!(resolved.body["sequence"].as_u64() > opened.body["sequence"].as_u64());
    assert!(resolved.body["issue"]["duration_seconds"].as_u64().unwrap() >= 7);
    assert_ne!(resolved.id(), opened.id());
    assert_eq!(receiver.delivered("issue_opened", "web").len(), 1);
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_later_with_the_same_id_and_in_order() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 503, 502, 500]);
    simulator.add_profile(&key("web"), "ACTIVE", issue("ClusterUnreachable"));
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("run.log");
    let opened = receiver.until_delivered("issue_opened", "web").await;
    // The status goes bad while the opening is still being retried: it must come after.
    simulator
        .apply(SimCommand::SetStatus {
            key: key("web"),
            status: "CREATE_FAILED".into(),
        })
        .unwrap();
    let changed = receiver.until_delivered("status_changed", "web").await;
    let got = receiver.got();
    let tries: Vec<&Received> = got.iter().filter(|r| r.id() == opened.id()).collect();
    assert_eq!(tries.len(), 5, "four failures, then the delivery");
    assert!(
        tries.iter().all(|r| r.raw == opened.raw),
        "the same body every time"
    );
    let position = |id: &str| {
        got.iter()
            .position(|r| r.id() == id && r.answered < 300)
            .unwrap()
    };
    assert!(position(opened.id()) < position(changed.id()));
    assert_eq!(changed.body["status"]["to"], "CREATE_FAILED");
    assert_eq!(changed.body["status"]["from"], "ACTIVE");
    let (_, metrics) = crate::support::http(setup.admin, "GET", "/metrics", "").await;
    let count = |outcome: &str| -> f64 {
        let prefix = format!(
            "fargate_health_monitor_notifications_total{{sink=\"hook\",outcome=\"{outcome}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(count("retry"), 4.0);
    assert!(count("success") >= 2.0);
    assert!(metrics.contains("fargate_health_monitor_notification_queue_depth{sink=\"hook\"} "));
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let metrics_free = setup.log("run.log");
    assert!(metrics_free.contains("will retry"), "{metrics_free}");
}

/// A receiver that answers `status` to the first event: it is tried once, dropped with an
/// ERROR containing `logged`, and later events still flow.
async fn a_refusal_is_not_retried(status: u16, logged: &str) {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.answer(&[status]);
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("run.log");
    let first = eventually(30, "the first attempt", || async {
        receiver.got().into_iter().next()
    })
    .await;
    assert_eq!(first.answered, status);
    simulator
        .apply(SimCommand::SetStatus {
            key: key("web"),
            status: "CREATE_FAILED".into(),
        })
        .unwrap();
    receiver.until_delivered("status_changed", "web").await;
    let attempts = receiver
        .got()
        .iter()
        .filter(|r| r.id() == first.id())
        .count();
    assert_eq!(
        attempts, 1,
        "a rejected event is dropped: not retried, not followed"
    );
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let log = setup.log("run.log");
    assert!(
        log.contains("delivery rejected") && log.contains(logged),
        "{log}"
    );
}

#[tokio::test]
async fn a_receiver_answering_400_is_not_retried() {
    a_refusal_is_not_retried(400, "answered 400 Bad Request").await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    a_refusal_is_not_retried(302, "redirects are not followed").await;
}

#[tokio::test]
async fn a_restart_alerts_nothing_twice_and_what_happened_meanwhile_once() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    simulator.add_profile(&key("jobs"), "ACTIVE", Health::Absent);
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("first.log");
    let opened = receiver.until_delivered("issue_opened", "web").await;
    let start = opened.body["issue"]["since"].clone();
    assert_eq!(stop(daemon, "-TERM").await, Some(0));

    // While it is down, jobs gets an issue.
    simulator
        .apply(SimCommand::SetHealth {
            key: key("jobs"),
            health: issue("InternalFailure"),
        })
        .unwrap();
    let daemon = setup.start("second.log");
    let jobs = receiver.until_delivered("issue_opened", "jobs").await;
    assert_eq!(jobs.body["issue"]["code"], "InternalFailure");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        receiver.delivered("issue_opened", "web").len(),
        1,
        "no duplicate after the restart"
    );
    assert_eq!(receiver.delivered("issue_opened", "jobs").len(), 1);
    // The episode's start survives the restart.
    simulator
        .apply(SimCommand::SetHealth {
            key: key("web"),
            health: Health::Issues(Vec::new()),
        })
        .unwrap();
    let resolved = receiver.until_delivered("issue_resolved", "web").await;
    assert_eq!(resolved.body["issue"]["since"], start);
    assert_eq!(
        resolved.body["issue"]["episode_id"],
        opened.body["issue"]["episode_id"]
    );
    assert!(resolved.body["sequence"].as_u64() > jobs.body["sequence"].as_u64());
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

#[tokio::test]
async fn after_sigkill_a_pending_opening_is_delivered_then_its_resolution() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.answer(&[503; 1000]);
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("first.log");
    let first = eventually(30, "a failed attempt", || async {
        receiver.got().into_iter().next()
    })
    .await;
    assert_eq!(stop(daemon, "-KILL").await, None);

    // The issue clears while the daemon is dead; the receiver recovers.
    simulator
        .apply(SimCommand::SetHealth {
            key: key("web"),
            health: Health::Issues(Vec::new()),
        })
        .unwrap();
    receiver.answer_200();
    let daemon = setup.start("second.log");
    let resolved = receiver.until_delivered("issue_resolved", "web").await;
    let opened = receiver.delivered("issue_opened", "web");
    assert_eq!(opened.len(), 1);
    assert_eq!(
        opened[0].id(),
        first.id(),
        "the same event, persisted before its first attempt"
    );
    let got = receiver.got();
    let position = |id: &str| {
        got.iter()
            .position(|r| r.id() == id && r.answered < 300)
            .unwrap()
    };
    assert!(position(opened[0].id()) < position(resolved.id()));
    assert_eq!(
        resolved.body["issue"]["episode_id"],
        opened[0].body["issue"]["episode_id"]
    );
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

#[tokio::test]
async fn a_recreated_profile_ends_the_old_episode_and_opens_a_new_one() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("run.log");
    let opened = receiver.until_delivered("issue_opened", "web").await;
    simulator
        .apply(SimCommand::RecreateProfile { key: key("web") })
        .unwrap();
    simulator
        .apply(SimCommand::SetHealth {
            key: key("web"),
            health: issue("AccessDenied"),
        })
        .unwrap();
    let resolved = receiver.until_delivered("issue_resolved", "web").await;
    assert_eq!(resolved.body["issue"]["reason"], "resource_deleted");
    assert_eq!(
        resolved.body["issue"]["episode_id"],
        opened.body["issue"]["episode_id"]
    );
    let deleted = receiver.until_delivered("resource_deleted", "web").await;
    assert_eq!(
        deleted.body["resource"]["arn"],
        opened.body["resource"]["arn"]
    );
    let reopened = eventually(30, "a new episode", || async {
        receiver.delivered("issue_opened", "web").into_iter().nth(1)
    })
    .await;
    assert_ne!(
        reopened.body["issue"]["episode_id"],
        opened.body["issue"]["episode_id"]
    );
    assert_ne!(
        reopened.body["resource"]["arn"],
        opened.body["resource"]["arn"]
    );
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

#[tokio::test]
async fn a_corrupt_state_file_falls_back_to_prev_else_starts_fresh() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("first.log");
    receiver.until_delivered("issue_opened", "web").await;
    // A few more polls, so that `.prev` holds the opened issue too.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let state = setup.state_file();
    let prev = Path::new(&format!("{}.prev", state.display())).to_owned();
    assert!(prev.exists());

    std::fs::write(&state, b"{\"version\": 1, \"sequ").unwrap();
    let daemon = setup.start("second.log");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        receiver.delivered("issue_opened", "web").len(),
        1,
        ".prev knew it was alerted"
    );
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    assert!(
        setup
            .log("second.log")
            .contains("using the previous state file")
    );

    std::fs::write(&state, b"garbage").unwrap();
    std::fs::remove_file(&prev).unwrap();
    let daemon = setup.start("third.log");
    // Starting fresh, the open issue is alerted again: the documented cost of a lost file.
    eventually(30, "the issue alerted again", || async {
        (receiver.delivered("issue_opened", "web").len() == 2).then_some(())
    })
    .await;
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let log = setup.log("third.log");
    assert!(log.contains("moved the bad state file aside"), "{log}");
    let aside = std::fs::read_dir(setup.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
    assert!(aside);
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_dead_sink_delays_no_other() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.answer(&[429]);
    let closed = free_port();
    let dead = format!(
        "[[sinks]]\nname = \"dead\"\ntype = \"webhook\"\nurl = \"http://{closed}/\"\nretry_initial = \"100ms\"\nretry_max = \"200ms\"\n"
    );
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::with_sinks(&simulator, &receiver, &dead);
    let daemon = setup.start("run.log");
    let opened = receiver.until_delivered("issue_opened", "web").await;
    let got = receiver.got();
    assert_eq!((got[0].answered, got[0].id()), (429, opened.id()));
    // Retry-After: 2 wins over the 100-300 ms backoff.
    let waited = opened.at - got[0].at;
    assert!(
        waited >= std::time::Duration::from_millis(1900),
        "{waited:?}"
    );
    let (_, metrics) = crate::support::http(setup.admin, "GET", "/metrics", "").await;
    let retries = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "fargate_health_monitor_notifications_total{sink=\"dead\",outcome=\"retry\"} ",
            )
        })
        .unwrap();
    assert!(
        retries.parse::<f64>().unwrap() >= 3.0,
        "the dead sink kept retrying meanwhile: {retries}"
    );
    assert!(metrics.contains("fargate_health_monitor_notification_queue_depth{sink=\"dead\"} 1"));
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

/// Alertmanager's active alerts for one profile.
async fn active_alerts(addr: SocketAddr, profile: &str) -> Vec<Value> {
    let (status, body) = http(addr, "GET", "/api/v2/alerts?active=true", "").await;
    assert_eq!(status, 200, "{body}");
    let alerts: Value = serde_json::from_str(&body).unwrap();
    alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["fargate_profile"] == profile)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_real_alertmanager_shows_the_alert_then_resolves_it() {
    let receiver = Receiver::start().await;
    let webhook = format!("http://{}/am", receiver.addr);
    let Some(alertmanager) = Alertmanager::start("[alertname, fargate_profile]", &webhook).await
    else {
        return;
    };
    let am_addr = alertmanager.addr;
    let simulator = Simulator::start().await.unwrap();

    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    simulator.add_profile(&key("failed"), "CREATE_FAILED", Health::Absent);
    let sink = format!(
        "[[sinks]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = [\"http://{am_addr}\"]\nresend_interval = \"2s\"\n\
         runbook_url = \"https://runbooks.example.test/fargate\"\n"
    );
    let setup = Setup::with_sinks(&simulator, &receiver, &sink);
    let daemon = setup.start("run.log");

    let alert = eventually(30, "the alert in Alertmanager", || async {
        active_alerts(am_addr, "web").await.into_iter().next()
    })
    .await;
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "EKSFargateProfileHealthIssue");
    assert_eq!(labels["code"], "AccessDenied");
    assert_eq!(labels["severity"], "warning");
    assert_eq!(labels["aws_account_id"], simulator::DEFAULT_ACCOUNT);
    assert_eq!(labels["aws_region"], "us-east-1");
    assert_eq!(labels["eks_cluster"], "prod");
    assert_eq!(labels["env"], "test");
    assert_eq!(
        labels.as_object().unwrap().len(),
        8,
        "no per-instance label: {labels}"
    );
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example.test/fargate"
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("AccessDenied")
    );
    // The link back selects exactly this resource in the daemon's API.
    let generator = alert["generatorURL"].as_str().unwrap();
    let account = simulator::DEFAULT_ACCOUNT;
    assert_eq!(
        generator,
        format!(
            "http://fhm.example.test/api/v1/resources?kind=fargate_profile&account_id={account}&region=us-east-1&cluster=prod&name=web"
        )
    );
    let path = generator.strip_prefix("http://fhm.example.test").unwrap();
    let (status, body) = http(setup.admin, "GET", path, "").await;
    assert_eq!(status, 200, "{body}");
    let selected: Value = serde_json::from_str(&body).unwrap();
    let resources = selected["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1, "{body}");
    assert_eq!(resources[0]["name"], "web");
    let failed = eventually(30, "the failed status in Alertmanager", || async {
        active_alerts(am_addr, "failed").await.into_iter().next()
    })
    .await;
    assert_eq!(failed["labels"]["alertname"], "EKSFargateProfileFailed");
    assert_eq!(failed["labels"]["status"], "CREATE_FAILED");
    assert_eq!(failed["labels"]["severity"], "critical");
    let firing = |status: &str| {
        receiver
            .got()
            .into_iter()
            .filter(|r| r.body["receiver"] == "hook" && r.body["status"] == status)
            .filter(|r| {
                r.body["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["labels"]["fargate_profile"] == "web")
            })
            .count()
    };
    eventually(30, "Alertmanager notifying its receiver", || async {
        (firing("firing") > 0).then_some(())
    })
    .await;

    simulator
        .apply(SimCommand::SetHealth {
            key: key("web"),
            health: Health::Issues(Vec::new()),
        })
        .unwrap();
    eventually(30, "the alert no longer active", || async {
        active_alerts(am_addr, "web").await.is_empty().then_some(())
    })
    .await;
    eventually(30, "the resolution at Alertmanager's receiver", || async {
        (firing("resolved") > 0).then_some(())
    })
    .await;
    assert_eq!(active_alerts(am_addr, "failed").await.len(), 1);
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

#[tokio::test]
async fn forty_profiles_hit_in_one_cycle_make_one_slack_message_and_forty_webhook_events() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let names: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    for name in &names {
        simulator.add_profile(&key(name), "ACTIVE", Health::Absent);
    }
    let slack = format!(
        "[[sinks]]\nname = \"oncall\"\ntype = \"slack\"\nurl = \"http://{}/slack\"\ngroup_wait = \"4s\"\nretry_initial = \"100ms\"\n",
        receiver.addr
    );
    let setup = Setup::with_sinks(&simulator, &receiver, &slack);
    let daemon = setup.start("run.log");
    // Every profile described once, healthy.
    eventually(30, "readiness", || async {
        tokio::net::TcpStream::connect(setup.admin).await.ok()?;
        (http(setup.admin, "GET", "/readyz", "").await.0 == 200).then_some(())
    })
    .await;
    for name in &names {
        let health = Health::Issues(vec![IssueSpec::new(
            "ClusterUnreachable",
            "The cluster's API server cannot be reached",
            &["subnet-0a1b2c3d"],
        )]);
        simulator
            .apply(SimCommand::SetHealth {
                key: key(name),
                health,
            })
            .unwrap();
    }
    let slack_messages = |receiver: &Receiver| -> Vec<Received> {
        receiver
            .got()
            .into_iter()
            .filter(|r| r.body["blocks"].is_array())
            .collect()
    };
    eventually(30, "40 webhook events", || async {
        let opened = receiver
            .got()
            .into_iter()
            .filter(|r| r.body["version"] == "2" && r.kind() == "issue_opened")
            .count();
        (opened == 40).then_some(())
    })
    .await;
    let message = eventually(30, "the Slack message", || async {
        slack_messages(&receiver).into_iter().next()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let messages = slack_messages(&receiver);
    assert_eq!(
        messages.len(),
        1,
        "one grouped message: {:?}",
        messages
            .iter()
            .map(|m| m.body["text"].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        message.body["text"],
        format!(
            "ClusterUnreachable opened on 40 profiles of cluster prod (account {}, us-east-1)",
            simulator::DEFAULT_ACCOUNT
        )
    );
    if let Some(path) = std::env::var_os("SLACK_EXAMPLE_OUT") {
        std::fs::write(path, serde_json::to_string_pretty(&message.body).unwrap()).unwrap();
    }

    // The resolutions group the same way.
    for name in &names {
        simulator
            .apply(SimCommand::SetHealth {
                key: key(name),
                health: Health::Issues(Vec::new()),
            })
            .unwrap();
    }
    let resolved = eventually(60, "the grouped resolution", || async {
        slack_messages(&receiver).into_iter().nth(1)
    })
    .await;
    assert!(
        resolved.body["text"]
            .as_str()
            .unwrap()
            .starts_with("Resolved: ClusterUnreachable on 40 profiles"),
        "{}",
        resolved.body["text"]
    );
    assert_eq!(
        receiver
            .got()
            .iter()
            .filter(|r| r.kind() == "issue_resolved")
            .count(),
        40
    );
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

#[tokio::test]
async fn no_secret_appears_in_the_log_or_the_api() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 500, 500, 500, 500, 500]);
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let more = format!(
        "[[sinks]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"http://{addr}/services/T0000/B0000/SLACKSECRETTOKEN\"\n\
         group_wait = \"1s\"\nretry_initial = \"100ms\"\n\n\
         [[sinks]]\nname = \"second\"\ntype = \"webhook\"\nurl = \"http://user:URLPASSWORD@{addr}/hook2?token=QUERYSECRET\"\n\
         headers = {{ Authorization = \"Bearer AUTHSECRETTOKEN\" }}\nsecret = \"SIGNINGSECRET\"\nretry_initial = \"100ms\"\n",
        addr = receiver.addr
    );
    let setup = Setup::with_sinks(&simulator, &receiver, &more);
    let log = std::fs::File::create(setup.dir.path().join("debug.log")).unwrap();
    let mut command = binary();
    let daemon = aws_env(command.args(["run", "--config"]).arg(&setup.config))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Every sink delivers after a few failures, each logged with its URL.
    eventually(30, "deliveries to every sink", || async {
        let got = receiver.got();
        let ok =
            |pred: &dyn Fn(&Received) -> bool| got.iter().any(|r| r.answered == 200 && pred(r));
        (ok(&|r| r.body["blocks"].is_array()) && ok(&|r| r.headers.contains_key("authorization")))
            .then_some(())
    })
    .await;
    let (_, api) = http(setup.admin, "GET", "/api/v1/profiles", "").await;
    let (_, metrics) = http(setup.admin, "GET", "/metrics", "").await;
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let log = setup.log("debug.log");
    assert!(log.contains("will retry"), "the failures were logged");
    for secret in [
        "SLACKSECRETTOKEN",
        "URLPASSWORD",
        "QUERYSECRET",
        "AUTHSECRETTOKEN",
        "SIGNINGSECRET",
        NEW_SECRET,
        OLD_SECRET,
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} in the log: {lines:#?}");
        assert!(
            !api.contains(secret) && !metrics.contains(secret),
            "{secret} served"
        );
    }
    // The receiver did get them, so the test's secrets were in use.
    assert!(
        receiver
            .got()
            .iter()
            .any(|r| r.headers.get("authorization").map(String::as_str)
                == Some("Bearer AUTHSECRETTOKEN"))
    );
}

async fn hangup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_invalid() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    simulator.add_profile(&key("jobs"), "ACTIVE", issue("InternalFailure"));
    let setup = Setup::new(&simulator, &receiver);
    let daemon = setup.start("run.log");
    receiver.until_delivered("issue_opened", "web").await;
    receiver.until_delivered("issue_opened", "jobs").await;
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
    };
    let reload_ok = "fargate_health_monitor_config_last_reload_successful";

    // An invalid config: every problem logged, the old config kept, the gauge at 0.
    let good = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        good.replace("interval = \"2s\"", "interval = \"soon\""),
    )
    .unwrap();
    hangup(&daemon).await;
    eventually(30, "the failed reload", || async {
        let (_, text) = http(setup.admin, "GET", "/metrics", "").await;
        (metric(&text, reload_ok) == Some(0.0)).then_some(())
    })
    .await;
    assert!(
        setup
            .log("run.log")
            .contains("reload failed; the config in force stays")
    );

    // A valid config that selects only web, with another label.
    // It also moves `listen`, which takes a restart: the old address keeps serving.
    let elsewhere = free_port();
    let narrower = good
        .replace(
            "cluster = \"*\"\n",
            "cluster = \"*\"\nprofiles = [\"web\"]\n",
        )
        .replace(
            &format!("listen = \"{}\"", setup.admin),
            &format!("listen = \"{elsewhere}\""),
        )
        .replace("env = \"test\"", "env = \"staging\"");
    std::fs::write(&setup.config, narrower).unwrap();
    hangup(&daemon).await;
    let resolved = receiver.until_delivered("issue_resolved", "jobs").await;
    assert_eq!(resolved.body["issue"]["reason"], "unmonitored");
    let text = eventually(30, "the new label on web's series", || async {
        let (_, text) = http(setup.admin, "GET", "/metrics", "").await;
        text.contains("fargate_profile=\"web\",env=\"staging\"")
            .then_some(text)
    })
    .await;
    assert_eq!(metric(&text, reload_ok), Some(1.0));
    assert!(
        !text.contains("fargate_profile=\"jobs\""),
        "an unmonitored profile's series are gone"
    );
    assert_eq!(
        receiver.delivered("issue_opened", "web").len(),
        1,
        "nothing alerted again"
    );
    assert!(receiver.delivered("resource_deleted", "jobs").is_empty());
    assert!(
        setup
            .log("run.log")
            .contains("[server] listen changed: it takes a restart")
    );
    assert!(tokio::net::TcpStream::connect(elsewhere).await.is_err());
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

/// How the hostile receiver answers one path.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// 200 with a chunked body that never ends.
    Endless,
    /// This status with this `Retry-After` and no body.
    RetryAfter(u16, &'static str),
}

/// A receiver on raw TCP that answers as no good receiver would, counting the requests per
/// path.
#[derive(Clone)]
struct Hostile {
    addr: SocketAddr,
    posts: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Hostile {
    async fn start(answer: fn(&str) -> Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hostile = Hostile {
            addr: listener.local_addr().unwrap(),
            posts: Arc::default(),
        };
        let posts = hostile.posts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::serve(stream, posts.clone(), answer));
            }
        });
        hostile
    }

    async fn serve(
        mut stream: tokio::net::TcpStream,
        posts: Arc<Mutex<BTreeMap<String, usize>>>,
        answer: fn(&str) -> Answer,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            // One request: its head, then as many body bytes as it says.
            let (path, end) = loop {
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap_or(0));
                    if buffer.len() >= end + 4 + length {
                        break (path, end + 4 + length);
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                }
            };
            buffer.drain(..end);
            *posts.lock().unwrap().entry(path.clone()).or_default() += 1;
            match answer(&path) {
                Answer::RetryAfter(status, value) => {
                    let head = format!(
                        "HTTP/1.1 {status} Try Later\r\nretry-after: {value}\r\ncontent-length: 0\r\n\r\n"
                    );
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Answer::Endless => {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut piece = b"10000\r\n".to_vec();
                    piece.extend(std::iter::repeat_n(b'[', 0x10000));
                    piece.extend_from_slice(b"\r\n");
                    // Until the client hangs up.
                    while stream.write_all(&piece).await.is_ok() {}
                    return;
                }
            }
        }
    }

    fn posts(&self, path: &str) -> usize {
        self.posts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn an_endless_response_body_costs_no_memory_and_delays_no_other_sink() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let hostile = Hostile::start(|_| Answer::Endless).await;
    let more = format!(
        r#"
[[sinks]]
name = "endless"
type = "webhook"
url = "http://{addr}/endless"
timeout = "5s"

[[sinks]]
name = "endless-am"
type = "alertmanager"
url = "http://{addr}/am"
resend_interval = "1s"
timeout = "5s"
"#,
        addr = hostile.addr
    );
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::with_sinks(&simulator, &receiver, &more);
    let mut daemon = setup.start("run.log");
    receiver.until_delivered("issue_opened", "web").await;
    eventually(30, "both endless answers started", || async {
        (hostile.posts("/endless") >= 1 && hostile.posts("/am/api/v2/alerts") >= 1).then_some(())
    })
    .await;
    // While the receiver keeps streaming (Alertmanager resends every second), memory stays flat.
    const BOUND: u64 = 150 * 1024 * 1024;
    let mut highest = 0;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        highest = highest.max(rss(daemon.id()));
        if highest > BOUND {
            let _ = daemon.kill();
            panic!("the daemon's RSS reached {highest} bytes");
        }
    }
    assert!(highest > 0, "VmRSS was read");
    let resends = hostile.posts("/am/api/v2/alerts");
    assert!(
        resends >= 4,
        "the alertmanager sink went on posting: {resends}"
    );
    // The endless webhook answer was a 200: delivered once, not retried.
    assert_eq!(hostile.posts("/endless"), 1);
    // Polling and the other sink go on.
    simulator
        .apply(SimCommand::SetHealth {
            key: key("web"),
            health: Health::Issues(Vec::new()),
        })
        .unwrap();
    receiver.until_delivered("issue_resolved", "web").await;
    eventually(
        30,
        "the resolution reached the endless webhook too",
        || async { (hostile.posts("/endless") == 2).then_some(()) },
    )
    .await;
    assert!(rss(daemon.id()) < BOUND);
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
}

#[tokio::test]
async fn a_huge_retry_after_never_makes_a_busy_loop() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let hostile = Hostile::start(|path| match path {
        "/seconds" => Answer::RetryAfter(429, "18446744073709551615"),
        "/date" => Answer::RetryAfter(503, "Fri, 31 Dec 9999 23:59:59 GMT"),
        "/past" => Answer::RetryAfter(503, "Thu, 01 Jan 1970 00:00:00 GMT"),
        _ => Answer::RetryAfter(429, "0"),
    })
    .await;
    let sink = |name: &str, path: &str, retry: &str| {
        format!(
            "[[sinks]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"http://{}{path}\"\nretry_initial = \"{retry}\"\nretry_max = \"{retry}\"\n",
            hostile.addr
        )
    };
    let more = [
        sink("seconds", "/seconds", "100ms"),
        sink("date", "/date", "100ms"),
        // A date in the past or `0` cannot shorten the backoff.
        sink("past", "/past", "1s"),
        sink("zero", "/zero", "1s"),
    ]
    .join("\n");
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let setup = Setup::with_sinks(&simulator, &receiver, &more);
    let daemon = setup.start("run.log");
    receiver.until_delivered("issue_opened", "web").await;
    eventually(30, "every hostile sink tried once", || async {
        ["/seconds", "/date", "/past", "/zero"]
            .iter()
            .all(|p| hostile.posts(p) >= 1)
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let posts: Vec<usize> = ["/seconds", "/date", "/past", "/zero"]
        .iter()
        .map(|p| hostile.posts(p))
        .collect();
    // Stopped first, so a busy loop does not outlive a failed test.
    let code = stop(daemon, "-TERM").await;
    assert!(posts[0] <= 2 && posts[1] <= 2, "{posts:?}");
    // A 1 s backoff with jitter over some 5 s: a few, not thousands.
    assert!(posts[2] <= 20 && posts[3] <= 20, "{posts:?}");
    let log = setup.log("run.log");
    let warnings = log.matches("will retry").count();
    assert!(warnings <= 30, "{warnings} retry warnings");
    assert_eq!(code, Some(0));
}
