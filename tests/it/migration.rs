//! An upgrade from 0.1.0: the daemon starts on the version-1 state file that 0.1.0 wrote
//! (`tests/fixtures/state-v1.json`), against a world that is what the file says, and delivers
//! each pending event once with its id, re-alerts nothing, keeps every episode's id and `since`
//! and continues the sequence; the file it writes is version 2.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fargate_health_monitor::clock::Clock;
use fargate_health_monitor::config::{self, ProcessEnvironment};
use fargate_health_monitor::daemon::Daemon;
use fargate_health_monitor::model::{ResourceKey, Timestamp};
use fargate_health_monitor::simulator::{Command as SimCommand, Health, IssueSpec, Simulator};
use serde_json::Value;

use crate::receiver::Receiver;
use crate::support::{eventually, sim_settings};

const FIXTURE: &str = include_str!("../fixtures/state-v1.json");

/// The world the fixture describes: each saved profile with its ARN, `createdAt`, status and
/// open issues.
fn rebuild(simulator: &Simulator, fixture: &Value) {
    for saved in fixture["profiles"].as_array().unwrap() {
        let k = &saved["key"];
        let key = ResourceKey::fargate_profile(
            k["account_id"].as_str().unwrap(),
            k["region"].as_str().unwrap(),
            k["cluster"].as_str().unwrap(),
            k["profile"].as_str().unwrap(),
        );
        let known = &saved["known"];
        let issues: Vec<IssueSpec> = known["episodes"]
            .as_object()
            .unwrap()
            .values()
            .map(|episode| {
                let issue = &episode["issue"];
                let ids: Vec<&str> = issue["resource_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|id| id.as_str().unwrap())
                    .collect();
                IssueSpec::new(
                    issue["code"].as_str().unwrap(),
                    issue["message"].as_str().unwrap(),
                    &ids,
                )
            })
            .collect();
        let health = if issues.is_empty() {
            Health::Absent
        } else {
            Health::Issues(issues)
        };
        simulator.add_profile(&key, known["status"].as_str().unwrap(), health);
        let incarnation = &known["incarnation"];
        simulator
            .apply(SimCommand::SetArn {
                key: key.clone(),
                arn: incarnation["arn"].as_str().unwrap().to_owned(),
            })
            .unwrap();
        let millis = incarnation["created_at"].as_i64().unwrap();
        simulator
            .apply(SimCommand::SetCreatedAt {
                key,
                created_at: millis as f64 / 1000.0,
            })
            .unwrap();
    }
}

/// A clock that starts a minute after the fixture's last event and runs at real speed, so the
/// pending events are as young as they were (their `max_age` never passes, whatever today's
/// date).
fn clock_after(fixture: &Value) -> Clock {
    let last = fixture["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["enqueued_at"].as_i64())
        .max()
        .unwrap();
    let start = Instant::now();
    Clock::from_fn(move || {
        let elapsed = start.elapsed().as_millis() as i64;
        Timestamp::from_millis(last + 60_000 + elapsed)
    })
}

#[tokio::test]
async fn a_version_1_state_file_of_0_1_0_is_migrated_and_nothing_is_delivered_twice() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let simulator = Simulator::start().await.unwrap();
    rebuild(&simulator, &fixture);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, FIXTURE).unwrap();
    let url = simulator.endpoint_url();
    // The config the fixture was written with, its webhook pointed at the receiver.
    let text = format!(
        r#"[state]
path = "{state}"
[poll]
interval = "2s"
discovery_interval = "2s"
timeout = "1s"
max_requests_per_second = 100
[[targets]]
region = "us-east-1"
cluster = "*"
labels = {{ env = "fixture" }}
endpoint_url = "{url}"
sts_endpoint_url = "{url}"
[[sinks]]
name = "hooks"
type = "webhook"
url = "http://{receiver}/hook"
[[sinks]]
type = "log"
"#,
        state = state.display(),
        receiver = receiver.addr,
    );
    let config = config::parse(&text, Path::new("migration.toml"), &ProcessEnvironment)
        .unwrap()
        .config;
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let settings = sim_settings(config.poll.timeout);
    let daemon = Daemon::start(&config, settings, Some(listen), clock_after(&fixture))
        .await
        .unwrap();

    let pending: Vec<&Value> = fixture["outbox"].as_array().unwrap().iter().collect();
    eventually(30, "every pending event delivered", || async {
        (receiver.got().len() >= pending.len()).then_some(())
    })
    .await;
    // Three more cycles: nothing the file already told is told again.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let got = receiver.got();
    let ids: Vec<&str> = got.iter().map(|r| r.id()).collect();
    let expected: Vec<&str> = pending.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids, expected,
        "each pending event once, in order, with its id"
    );
    for (received, saved) in got.iter().zip(&pending) {
        let event = &saved["event"];
        assert_eq!(received.body["sequence"], event["sequence"]);
        let kind = event["detail"]["kind"].as_str().unwrap();
        let kind = if kind == "profile_deleted" {
            "resource_deleted"
        } else {
            kind
        };
        assert_eq!(received.kind(), kind);
        assert_eq!(received.body["version"], "2");
        assert_eq!(received.body["resource"]["kind"], "fargate_profile");
        assert_eq!(received.body["resource"]["name"], event["key"]["profile"]);
        if let Some(issue) = event["detail"].get("issue") {
            assert_eq!(received.body["issue"]["episode_id"], issue["episode_id"]);
        }
        if event["detail"]["reason"] == "profile_deleted" {
            assert_eq!(received.body["issue"]["reason"], "resource_deleted");
        }
    }

    // An episode opened before the upgrade resolves with its id and `since`, and a sequence
    // above the file's.
    let open = &fixture["profiles"][0];
    let (code, episode) = open["known"]["episodes"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let k = &open["key"];
    let key = ResourceKey::fargate_profile(
        k["account_id"].as_str().unwrap(),
        k["region"].as_str().unwrap(),
        k["cluster"].as_str().unwrap(),
        k["profile"].as_str().unwrap(),
    );
    simulator
        .apply(SimCommand::SetHealth {
            key: key.clone(),
            health: Health::Absent,
        })
        .unwrap();
    let resolved = eventually(30, "the old episode resolved", || async {
        receiver
            .got()
            .into_iter()
            .find(|r| r.kind() == "issue_resolved" && r.body["issue"]["code"] == code.as_str())
    })
    .await;
    assert_eq!(resolved.body["issue"]["episode_id"], episode["id"]);
    let since = Timestamp::from_millis(episode["since"].as_i64().unwrap());
    assert_eq!(resolved.body["issue"]["since"], since.to_rfc3339());
    assert!(resolved.body["sequence"].as_u64() > fixture["sequence"].as_u64());
    daemon.stop().await;

    let written: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(written["version"], 2);
    // The version-1 file is kept, byte for byte, for a downgrade to 0.1.0.
    let kept = fargate_health_monitor::store::v1_path(&state);
    assert_eq!(std::fs::read(&kept).unwrap(), FIXTURE.as_bytes());
    assert!(written.get("profiles").is_none());
    // Every profile of the file is still there; beside them only the clusters that hold them,
    // watched now as resources of their own.
    let resources = written["resources"].as_array().unwrap();
    let of = |kind: &str| -> Vec<&Value> {
        resources
            .iter()
            .filter(|r| r["key"]["kind"] == kind)
            .collect()
    };
    assert_eq!(
        of("fargate_profile").len(),
        fixture["profiles"].as_array().unwrap().len()
    );
    let clusters: std::collections::BTreeSet<[&str; 3]> = fixture["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ["account_id", "region", "cluster"].map(|k| p["key"][k].as_str().unwrap()))
        .collect();
    assert_eq!(of("cluster").len(), clusters.len());
    assert_eq!(
        of("fargate_profile").len() + of("cluster").len(),
        resources.len()
    );
    assert!(written["sequence"].as_u64() > fixture["sequence"].as_u64());
}
