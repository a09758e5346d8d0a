//! The simulator's JSON control API, driven over HTTP while the real SDK reads the world.

use fargate_health_monitor::eks::Eks;
use fargate_health_monitor::model::{ErrorKind, IssueCode, Status};
use fargate_health_monitor::simulator::Simulator;
use serde_json::{Value, json};

use crate::support::{http, sim_client, sim_target};

#[tokio::test]
async fn the_control_api_scripts_the_world_the_sdk_sees() {
    let sim = Simulator::start().await.unwrap();
    let control = sim.control_addr();
    let profile = json!({"account_id": "111122223333", "region": "us-east-1",
                         "cluster": "prod", "profile": "default"});
    let mut add = profile.clone();
    add["op"] = json!("add_profile");
    add["health"] = json!({"type": "issues", "issues": [
        {"code": "ClusterUnreachable", "message": "cannot reach", "resource_ids": ["eni-1"]}]});
    let throttle_once = json!({"op": "add_fault", "fault": {
        "scope": {"cluster": "prod", "profile": "default"},
        "kind": {"type": "throttle"}, "remaining": 1}});
    let commands = json!([add, throttle_once]).to_string();
    let (status, body) = http(control, "POST", "/v1/commands", &commands).await;
    assert_eq!((status, body.as_str()), (200, r#"{"applied":2}"#));

    let client = sim_client(&sim_target(&sim, "us-east-1", "prod", &["*"])).await;
    let error = client
        .describe_fargate_profile("prod", "default")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    let described = client
        .describe_fargate_profile("prod", "default")
        .await
        .unwrap();
    assert_eq!(described.issues[0].code, IssueCode::ClusterUnreachable);
    assert_eq!(described.issues[0].resource_ids, ["eni-1"]);

    // Re-create: a new ARN; then a status change; then deletion.
    let mut recreate = profile.clone();
    recreate["op"] = json!("recreate_profile");
    assert_eq!(
        http(control, "POST", "/v1/commands", &recreate.to_string())
            .await
            .0,
        200
    );
    let recreated = client
        .describe_fargate_profile("prod", "default")
        .await
        .unwrap();
    assert_ne!(recreated.arn, described.arn);
    assert!(recreated.created_at > described.created_at);
    assert!(recreated.issues.is_empty());
    let mut status_change = profile.clone();
    status_change["op"] = json!("set_status");
    status_change["status"] = json!("DELETING");
    assert_eq!(
        http(control, "POST", "/v1/commands", &status_change.to_string())
            .await
            .0,
        200
    );
    let deleting = client
        .describe_fargate_profile("prod", "default")
        .await
        .unwrap();
    assert_eq!(deleting.status, Status::Deleting);
    let mut delete = profile.clone();
    delete["op"] = json!("delete_profile");
    assert_eq!(
        http(control, "POST", "/v1/commands", &delete.to_string())
            .await
            .0,
        200
    );
    let gone = client
        .describe_fargate_profile("prod", "default")
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound);

    // The request log names each call's operation, account and key.
    let (status, body) = http(control, "GET", "/v1/requests", "").await;
    assert_eq!(status, 200);
    let log: Vec<Value> = serde_json::from_str(&body).unwrap();
    let statuses: Vec<(&str, u64)> = log
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("DescribeFargateProfile", 429),
            ("DescribeFargateProfile", 200),
            ("DescribeFargateProfile", 200),
            ("DescribeFargateProfile", 200),
            ("DescribeFargateProfile", 404),
        ]
    );
    assert_eq!(log[0]["account_id"], "111122223333");
    assert_eq!(log[0]["access_key_id"], "AKIASIMULATEDEXAMPLE");
    assert_eq!(log[0]["region"], "us-east-1");

    // Bad commands are refused with a reason, and change nothing.
    let (status, body) = http(control, "POST", "/v1/commands", r#"{"op": "explode"}"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(control, "POST", "/v1/commands", &delete.to_string()).await;
    assert_eq!(status, 422);
    assert!(body.contains("no such profile"), "{body}");
    let (status, body) = http(control, "GET", "/v1/profiles", "").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
}
