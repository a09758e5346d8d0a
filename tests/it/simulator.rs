//! The simulator's JSON control API, driven over HTTP while the real SDK reads the world.

use fargate_health_monitor::eks::Eks;
use fargate_health_monitor::model::{ErrorKind, IssueCode, Kind, Status};
use fargate_health_monitor::simulator::Simulator;
use serde_json::{Value, json};

use crate::support::{http, http_with_headers, sim_client, sim_target};

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
        .describe(Kind::FARGATE_PROFILE, "prod", "default")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    let described = client
        .describe(Kind::FARGATE_PROFILE, "prod", "default")
        .await
        .unwrap();
    assert_eq!(
        described.issues[0].code,
        IssueCode::from_wire("ClusterUnreachable")
    );
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
        .describe(Kind::FARGATE_PROFILE, "prod", "default")
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
        .describe(Kind::FARGATE_PROFILE, "prod", "default")
        .await
        .unwrap();
    assert_eq!(deleting.status, Status::from_wire("DELETING"));
    let mut delete = profile.clone();
    delete["op"] = json!("delete_profile");
    assert_eq!(
        http(control, "POST", "/v1/commands", &delete.to_string())
            .await
            .0,
        200
    );
    let gone = client
        .describe(Kind::FARGATE_PROFILE, "prod", "default")
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
    let (status, body) = http(control, "GET", "/v1/stats", "").await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["profiles"], 0);
    assert_eq!(stats["requests"]["DescribeFargateProfile"], 5);
    assert_eq!(stats["max_in_flight"], 1);
}

/// A SigV4 `Authorization` header for a key and region (the simulator reads, not checks, it).
fn signed(key: &str, region: &str, service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={key}/20261124/{region}/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=0000"
    )
}

#[tokio::test]
async fn the_wire_formats_follow_aws() {
    let sim = Simulator::start().await.unwrap();
    let key = fargate_health_monitor::model::ResourceKey::fargate_profile(
        "111122223333",
        "us-east-1",
        "prod",
        "default",
    );
    sim.add_profile(
        &key,
        "ACTIVE",
        fargate_health_monitor::simulator::Health::Absent,
    );
    let aws = sim.aws_addr();
    let eks = signed("AKIASIMULATEDEXAMPLE", "us-east-1", "eks");
    let auth = [("Authorization", eks.as_str())];

    // Describe: createdAt in epoch seconds, no health member when there never was an issue.
    let (status, head, body) = http_with_headers(
        aws,
        "GET",
        "/clusters/prod/fargate-profiles/default",
        &auth,
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let profile = &body["fargateProfile"];
    assert!(profile["createdAt"].is_f64(), "{profile}");
    assert_eq!(profile["fargateProfileName"], "default");
    assert_eq!(profile["clusterName"], "prod");
    assert!(profile.get("health").is_none());

    // Errors: the status, x-amzn-ErrorType and a JSON message.
    let (status, head, body) = http_with_headers(
        aws,
        "GET",
        "/clusters/prod/fargate-profiles/nope",
        &auth,
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        head.contains("x-amzn-errortype: resourcenotfoundexception"),
        "{head}"
    );
    assert!(serde_json::from_str::<Value>(&body).unwrap()["message"].is_string());
    let (status, _, _) = http_with_headers(aws, "GET", "/clusters?maxResults=500", &auth, "").await;
    assert_eq!(status, 400);

    // An unknown key and a missing signature are refused.
    let stranger = signed("AKIAUNKNOWN", "us-east-1", "eks");
    let (status, head, _) = http_with_headers(
        aws,
        "GET",
        "/clusters",
        &[("Authorization", stranger.as_str())],
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        head.contains("x-amzn-errortype: unrecognizedclientexception"),
        "{head}"
    );
    let (status, head, _) = http_with_headers(aws, "GET", "/clusters", &[], "").await;
    assert_eq!(status, 403);
    assert!(
        head.contains("missingauthenticationtokenexception"),
        "{head}"
    );

    // STS Query: a form POST, or the same parameters in a GET query string.
    let sts = signed("AKIASIMULATEDEXAMPLE", "us-east-1", "sts");
    let sts_auth = [
        ("Authorization", sts.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let form = "Action=GetCallerIdentity&Version=2011-06-15";
    let (status, _, body) = http_with_headers(aws, "POST", "/", &sts_auth, form).await;
    assert_eq!(status, 200);
    assert!(body.contains("<Account>111122223333</Account>"), "{body}");
    let (status, _, body) =
        http_with_headers(aws, "GET", &format!("/?{form}"), &sts_auth, "").await;
    assert_eq!(status, 200);
    assert!(body.contains("<GetCallerIdentityResult>"), "{body}");
    let assume = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A222233334444%3Arole%2Fnone&RoleSessionName=s";
    let (status, _, body) = http_with_headers(aws, "POST", "/", &sts_auth, assume).await;
    assert_eq!(status, 403);
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
}
