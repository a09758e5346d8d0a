//! The daemon end to end for every kind of resource at once: the built binary (`run`) against a
//! simulated cluster with a Fargate profile, a node group, an add-on and a capability, posting
//! to a webhook and a Slack receiver on loopback (and to a real Alertmanager when installed),
//! scraped over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fargate_health_monitor::model::{Kind, ResourceKey};
use fargate_health_monitor::simulator::{
    Command as SimCommand, DEFAULT_ACCOUNT, Health, IssueSpec, Simulator,
};
use serde_json::Value;

use crate::receiver::{Received, Receiver};
use crate::support::{Alertmanager, aws_env, binary, eventually, free_port, http};

const REGION: &str = "us-east-1";

fn key(kind: Kind, cluster: &str, name: &str) -> ResourceKey {
    ResourceKey::new(kind, DEFAULT_ACCOUNT, REGION, cluster, name)
}

/// `prod`'s resources, one of each kind, as `(kind, name, the family's name label)`.
const RESOURCES: [(Kind, &str, Option<&str>); 5] = [
    (Kind::CLUSTER, "prod", None),
    (Kind::FARGATE_PROFILE, "web", Some("fargate_profile")),
    (Kind::NODEGROUP, "ng-general", Some("eks_nodegroup")),
    (Kind::ADDON, "vpc-cni", Some("eks_addon")),
    (Kind::CAPABILITY, "argocd", Some("eks_capability")),
];

/// A code of each kind, with what EKS would say.
fn code_of(kind: Kind) -> &'static str {
    match kind.name() {
        "cluster" => "Ec2SubnetNotFound",
        "fargate_profile" => "PodExecutionRoleAlreadyInUse",
        "nodegroup" => "AsgInstanceLaunchFailures",
        "addon" => "InsufficientNumberOfReplicas",
        _ => "ClusterUnreachable",
    }
}

/// The resource ids the monitor sees in [`one_issue`]: a capability's issues carry none
/// (the SDK's `CapabilityIssue` has only a code and a message).
fn ids_of(kind: Kind) -> &'static [&'static str] {
    if kind == Kind::CAPABILITY {
        &[]
    } else {
        &["i-0123456789abcdef0"]
    }
}

fn one_issue(code: &str) -> Health {
    Health::Issues(vec![IssueSpec::new(
        code,
        &format!("{code} happened"),
        &["i-0123456789abcdef0"],
    )])
}

/// The daemon under test, with its log in a file and its admin server's address.
struct Daemon {
    dir: tempfile::TempDir,
    admin: SocketAddr,
    child: Child,
}

impl Daemon {
    fn start(simulator: &Simulator, sinks: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = simulator.endpoint_url();
        let admin = free_port();
        let config = format!(
            "[server]\nlisten = \"{admin}\"\nexternal_url = \"http://fhm.example.test/\"\n\
             [state]\npath = \"{state}\"\n\
             [poll]\ninterval = \"2s\"\ndiscovery_interval = \"2s\"\ntimeout = \"1s\"\nmax_requests_per_second = 100\n\n\
             [[targets]]\nregion = \"{REGION}\"\ncluster = \"*\"\nlabels = {{ env = \"test\" }}\n\
             endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n\n{sinks}",
            state = dir.path().join("state.json").display(),
        );
        let path: PathBuf = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
        let child = aws_env(binary().args(["run", "--config"]).arg(&path))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { dir, admin, child }
    }

    async fn get(&self, path: &str) -> Option<String> {
        tokio::net::TcpStream::connect(self.admin).await.ok()?;
        let (status, body) = http(self.admin, "GET", path, "").await;
        (status == 200).then_some(body)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default()
    }

    async fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = tokio::task::spawn_blocking(move || {
            let code = self.child.wait().unwrap().code();
            (code, self)
        })
        .await
        .unwrap();
        let log = code.1.log();
        assert_eq!(code.0, Some(0), "{log}");
        log
    }
}

/// The sample lines of `family` whose labels contain every one of `having`.
fn samples<'a>(metrics: &'a str, family: &str, having: &[&str]) -> Vec<&'a str> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter(|l| having.iter().all(|h| l.contains(h)))
        .collect()
}

fn value(metrics: &str, family: &str, having: &[&str]) -> Option<f64> {
    let found = samples(metrics, family, having);
    assert!(
        found.len() <= 1,
        "several samples of {family} {having:?}: {found:?}"
    );
    found.first()?.rsplit(' ').next()?.parse().ok()
}

/// The label that selects a resource in its family: `eks_nodegroup="ng-general"`, or the
/// cluster's own label for a cluster.
fn selector(kind: Kind, name: &str) -> String {
    let label = kind.spec().name_label.unwrap_or("eks_cluster");
    format!("{label}=\"{name}\"")
}

/// The webhook events (payload version 2) of `event` for the resource of `kind` called `name`.
fn events(receiver: &Receiver, event: &str, kind: Kind, name: &str) -> Vec<Received> {
    receiver
        .got()
        .into_iter()
        .filter(|r| r.body["version"] == "2" && r.answered < 300 && r.kind() == event)
        .filter(|r| r.body["resource"]["kind"] == kind.name() && r.body["resource"]["name"] == name)
        .collect()
}

async fn until_event(receiver: &Receiver, event: &str, kind: Kind, name: &str) -> Received {
    eventually(30, &format!("{event} of {kind} {name}"), || async {
        events(receiver, event, kind, name).into_iter().next()
    })
    .await
}

fn slack_texts(receiver: &Receiver) -> String {
    receiver
        .got()
        .into_iter()
        .filter(|r| r.body["blocks"].is_array())
        .map(|r| r.body.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn set_health(simulator: &Simulator, kind: Kind, name: &str, health: Health) {
    let key = key(kind, "prod", name);
    simulator
        .apply(SimCommand::SetResourceHealth { key, health })
        .unwrap();
}

fn set_status(simulator: &Simulator, kind: Kind, name: &str, status: &str) {
    let key = key(kind, "prod", name);
    let status = status.to_owned();
    simulator
        .apply(SimCommand::SetResourceStatus { key, status })
        .unwrap();
}

fn populate(simulator: &Simulator) {
    for (kind, name, _) in RESOURCES {
        simulator.add_resource(&key(kind, "prod", name), "ACTIVE", Health::Absent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_opens_resolves_and_ends_in_metrics_webhooks_slack_and_the_api() {
    let simulator = Simulator::start().await.unwrap();
    populate(&simulator);
    let receiver = Receiver::start().await;
    let sinks = format!(
        "[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\n\
         events = [\"issue_opened\", \"issue_resolved\", \"status_changed\", \"resource_deleted\"]\n\
         retry_initial = \"100ms\"\n\n\
         [[sinks]]\nname = \"oncall\"\ntype = \"slack\"\nurl = \"http://{addr}/slack\"\ngroup_wait = \"1s\"\nretry_initial = \"100ms\"\n",
        addr = receiver.addr
    );
    let daemon = Daemon::start(&simulator, &sinks);

    // Every resource is described and exported, healthy: a 0 series per known code.
    let metrics = eventually(30, "every kind up", || async {
        let metrics = daemon.get("/metrics").await?;
        let all_up = RESOURCES.iter().all(|(kind, name, _)| {
            let up = format!("{}_up", kind.spec().metric_prefix);
            value(&metrics, &up, &[&selector(*kind, name)]) == Some(1.0)
        });
        all_up.then_some(metrics)
    })
    .await;
    for (kind, name, _) in RESOURCES {
        let family = format!("{}_health_issues", kind.spec().metric_prefix);
        let zeros = samples(&metrics, &family, &[&selector(kind, name)]);
        assert_eq!(zeros.len(), kind.spec().codes.len(), "{family}: {zeros:?}");
        assert!(zeros.iter().all(|l| l.ends_with(" 0")), "{zeros:?}");
        let status = format!("{}_status", kind.spec().metric_prefix);
        assert_eq!(
            value(
                &metrics,
                &status,
                &[&selector(kind, name), "status=\"ACTIVE\""]
            ),
            Some(1.0),
            "{status}"
        );
    }
    let ng = selector(Kind::NODEGROUP, "ng-general");
    assert_eq!(
        value(&metrics, "eks_nodegroup_desired_size", &[&ng]),
        Some(2.0)
    );
    let info = samples(&metrics, "eks_nodegroup_info", &[&ng]);
    assert!(
        info[0].contains("capacity_type=\"ON_DEMAND\"") && info[0].contains("node_role_arn=\"arn:"),
        "{info:?}"
    );
    let info = samples(&metrics, "eks_cluster_info", &["eks_cluster=\"prod\""]);
    assert!(info[0].contains("version=\"1.33\""), "{info:?}");
    // A first start: nothing was wrong, nothing is alerted.
    assert!(receiver.got().is_empty(), "{:?}", receiver.got());

    // Each kind gets an issue; the node group also goes DEGRADED.
    for (kind, name, _) in RESOURCES {
        set_health(&simulator, kind, name, one_issue(code_of(kind)));
    }
    set_status(&simulator, Kind::NODEGROUP, "ng-general", "DEGRADED");
    for (kind, name, _) in RESOURCES {
        let opened = until_event(&receiver, "issue_opened", kind, name).await;
        let resource = &opened.body["resource"];
        assert_eq!(resource["account_id"], DEFAULT_ACCOUNT);
        assert_eq!(resource["cluster"], "prod");
        assert_eq!(resource["labels"]["env"], "test");
        assert_eq!(opened.body["issue"]["code"], code_of(kind));
        assert_eq!(
            opened.body["issue"]["resource_ids"],
            serde_json::json!(ids_of(kind)),
            "{kind}"
        );
    }
    let degraded = until_event(&receiver, "status_changed", Kind::NODEGROUP, "ng-general").await;
    assert_eq!(degraded.body["status"]["from"], "ACTIVE");
    assert_eq!(degraded.body["status"]["to"], "DEGRADED");
    assert_eq!(degraded.body["resource"]["status"], "DEGRADED");
    let metrics = eventually(30, "every issue in /metrics", || async {
        let metrics = daemon.get("/metrics").await?;
        let all_open = RESOURCES.iter().all(|(kind, name, _)| {
            let family = format!("{}_health_issues", kind.spec().metric_prefix);
            let code = format!("code=\"{}\"", code_of(*kind));
            value(&metrics, &family, &[&selector(*kind, name), &code]) == Some(1.0)
        });
        all_open.then_some(metrics)
    })
    .await;
    for (kind, name, _) in RESOURCES {
        let family = format!("{}_health_issue_resources", kind.spec().metric_prefix);
        assert_eq!(
            value(&metrics, &family, &[&selector(kind, name)]),
            Some(ids_of(kind).len() as f64),
            "{family}"
        );
    }
    assert_eq!(
        value(
            &metrics,
            "eks_nodegroup_status",
            &[&ng, "status=\"DEGRADED\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "eks_nodegroup_status",
            &[&ng, "status=\"ACTIVE\""]
        ),
        Some(0.0)
    );
    // Slack names each kind's code with its hint.
    let slack = eventually(30, "Slack messages for every kind", || async {
        let texts = slack_texts(&receiver);
        let all = RESOURCES
            .iter()
            .all(|(kind, _, _)| texts.contains(code_of(*kind)));
        all.then_some(texts)
    })
    .await;
    for (kind, name, _) in RESOURCES {
        let hint = kind.hint(code_of(kind));
        assert!(
            hint != kind.spec().fallback_hint,
            "{kind}: a hint of its own"
        );
        let escaped = serde_json::to_string(hint).unwrap();
        assert!(
            slack.contains(escaped.trim_matches('"')),
            "{kind}: no hint {hint:?} in {slack}"
        );
        assert!(slack.contains(name), "{name} in {slack}");
    }
    // The API, and its filter by kind.
    let api: Value = serde_json::from_str(
        &daemon
            .get("/api/v1/resources?kind=nodegroup")
            .await
            .unwrap(),
    )
    .unwrap();
    let listed = api["resources"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{api:#}");
    assert_eq!(listed[0]["name"], "ng-general");
    assert_eq!(listed[0]["status"], "DEGRADED");
    assert_eq!(listed[0]["issues"][0]["code"], "AsgInstanceLaunchFailures");
    let all: Value = serde_json::from_str(&daemon.get("/api/v1/resources").await.unwrap()).unwrap();
    assert_eq!(all["resources"].as_array().unwrap().len(), RESOURCES.len());
    // The status page lists each of them.
    let page = daemon.get("/").await.unwrap();
    for (kind, name, _) in RESOURCES {
        assert!(
            page.contains(&format!("<td class=\"name\">{name}")),
            "{name}"
        );
        assert!(page.contains(code_of(kind)), "{kind}");
    }

    // All resolve, and the node group comes back ACTIVE.
    for (kind, name, _) in RESOURCES {
        set_health(&simulator, kind, name, Health::Issues(Vec::new()));
    }
    set_status(&simulator, Kind::NODEGROUP, "ng-general", "ACTIVE");
    for (kind, name, _) in RESOURCES {
        let resolved = until_event(&receiver, "issue_resolved", kind, name).await;
        assert_eq!(resolved.body["issue"]["reason"], "cleared");
        let opened = &events(&receiver, "issue_opened", kind, name)[0];
        assert_eq!(
            resolved.body["issue"]["episode_id"],
            opened.body["issue"]["episode_id"]
        );
    }
    eventually(30, "every issue 0 again", || async {
        let metrics = daemon.get("/metrics").await?;
        let all_closed = RESOURCES.iter().all(|(kind, name, _)| {
            let family = format!("{}_health_issues", kind.spec().metric_prefix);
            let code = format!("code=\"{}\"", code_of(*kind));
            let resources = format!("{}_health_issue_resources", kind.spec().metric_prefix);
            value(&metrics, &family, &[&selector(*kind, name), &code]) == Some(0.0)
                && samples(&metrics, &resources, &[&selector(*kind, name)]).is_empty()
        });
        all_closed.then_some(())
    })
    .await;

    // A deleted node group: deleted once, and none of its series are left.
    simulator
        .apply(SimCommand::DeleteResource {
            key: key(Kind::NODEGROUP, "prod", "ng-general"),
        })
        .unwrap();
    until_event(&receiver, "resource_deleted", Kind::NODEGROUP, "ng-general").await;
    eventually(30, "no node group series", || async {
        let metrics = daemon.get("/metrics").await?;
        (!metrics.contains(&ng)).then_some(())
    })
    .await;

    // The cluster goes: what it holds ends first, then the cluster, and nothing is left.
    simulator
        .apply(SimCommand::DeleteResource {
            key: key(Kind::CLUSTER, "prod", "prod"),
        })
        .unwrap();
    for (kind, name, _) in RESOURCES
        .into_iter()
        .filter(|(k, _, _)| *k != Kind::NODEGROUP)
    {
        until_event(&receiver, "resource_deleted", kind, name).await;
    }
    let deleted: Vec<(String, u64)> = receiver
        .got()
        .into_iter()
        .filter(|r| r.kind() == "resource_deleted" && r.answered < 300)
        .map(|r| {
            let kind = r.body["resource"]["kind"].as_str().unwrap().to_owned();
            (kind, r.body["sequence"].as_u64().unwrap())
        })
        .collect();
    let cluster_sequence = deleted.iter().find(|(k, _)| k == "cluster").unwrap().1;
    assert!(
        deleted
            .iter()
            .filter(|(k, _)| k != "cluster")
            .all(|(_, sequence)| *sequence < cluster_sequence),
        "children end before their cluster: {deleted:?}"
    );
    eventually(30, "no series of prod", || async {
        let metrics = daemon.get("/metrics").await?;
        let domain = metrics
            .lines()
            .filter(|l| l.starts_with("eks_") && l.contains("eks_cluster=\"prod\""))
            .count();
        (domain == 0).then_some(())
    })
    .await;
    // Every event went out exactly once.
    for event in ["issue_opened", "issue_resolved", "resource_deleted"] {
        for (kind, name, _) in RESOURCES {
            assert_eq!(
                events(&receiver, event, kind, name).len(),
                1,
                "{event} of {kind} {name}"
            );
        }
    }
    let log = daemon.stop().await;
    assert!(!log.contains(" level=error "), "{log}");
}

/// Alertmanager's active alerts.
async fn active(am: SocketAddr) -> Vec<Value> {
    let (status, body) = http(am, "GET", "/api/v2/alerts?active=true", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_gets_the_alerts_of_every_kind_and_their_end() {
    let receiver = Receiver::start().await;
    let webhook = format!("http://{}/am", receiver.addr);
    let Some(alertmanager) = Alertmanager::start("[alertname]", &webhook).await else {
        return;
    };
    let am_addr = alertmanager.addr;
    let simulator = Simulator::start().await.unwrap();
    populate(&simulator);
    let sink = format!(
        "[[sinks]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = [\"http://{am_addr}\"]\nresend_interval = \"2s\"\n"
    );
    let daemon = Daemon::start(&simulator, &sink);
    eventually(30, "ready", || async { daemon.get("/readyz").await }).await;

    for (kind, name, _) in RESOURCES {
        set_health(&simulator, kind, name, one_issue(code_of(kind)));
    }
    for (kind, status) in [
        (Kind::NODEGROUP, "DEGRADED"),
        (Kind::ADDON, "UPDATE_FAILED"),
    ] {
        let name = RESOURCES.iter().find(|r| r.0 == kind).unwrap().1;
        set_status(&simulator, kind, name, status);
    }
    // One issue alert per kind, and a failed alert for the node group and the add-on.
    let alerts = eventually(30, "every kind's alerts in Alertmanager", || async {
        let alerts = active(am_addr).await;
        (alerts.len() == RESOURCES.len() + 2).then_some(alerts)
    })
    .await;
    for (kind, name, label) in RESOURCES {
        let alertname = format!("EKS{}HealthIssue", kind.spec().alert_name);
        let alert = alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == alertname.as_str())
            .unwrap_or_else(|| panic!("no {alertname} in {alerts:#?}"));
        let labels = &alert["labels"];
        assert_eq!(labels["code"], code_of(kind));
        assert_eq!(labels["severity"], "warning");
        assert_eq!(labels["eks_cluster"], "prod");
        assert_eq!(labels["env"], "test");
        if let Some(label) = label {
            assert_eq!(labels[label], name, "{alertname}");
        }
        // account, region, cluster, env, alertname, code, severity, and the name label.
        let expected = 7 + usize::from(label.is_some());
        assert_eq!(labels.as_object().unwrap().len(), expected, "{labels}");
        let generator = alert["generatorURL"].as_str().unwrap();
        assert!(
            generator.contains(&format!("kind={}&", kind.name()))
                && generator.ends_with(&format!("&name={name}")),
            "{generator}"
        );
    }
    let failed = |alertname: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == alertname)
            .unwrap_or_else(|| panic!("no {alertname} in {alerts:#?}"))
            .clone()
    };
    let degraded = failed("EKSNodegroupFailed");
    assert_eq!(degraded["labels"]["status"], "DEGRADED");
    assert_eq!(degraded["labels"]["severity"], "warning");
    assert_eq!(degraded["labels"]["eks_nodegroup"], "ng-general");
    let update_failed = failed("EKSAddonFailed");
    assert_eq!(update_failed["labels"]["status"], "UPDATE_FAILED");
    assert_eq!(update_failed["labels"]["severity"], "critical");

    // Everything clears: no alert stays active.
    for (kind, name, _) in RESOURCES {
        set_health(&simulator, kind, name, Health::Issues(Vec::new()));
        set_status(&simulator, kind, name, "ACTIVE");
    }
    eventually(30, "no alert active", || async {
        active(am_addr).await.is_empty().then_some(())
    })
    .await;
    daemon.stop().await;
}
