//! The AWS adapter against the simulated EKS and STS: the real SDK over loopback.

use std::time::Duration;

use fargate_health_monitor::eks::{Connector, Eks, StaticCredentials};
use fargate_health_monitor::model::{ErrorKind, IssueCode, Kind, Operation, ResourceKey, Status};
use fargate_health_monitor::simulator::{
    Command, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCOUNT, FaultKind, Health, IssueSpec, Scope, Simulator,
};

use crate::support::{all_pages, eventually, sim_client, sim_settings, sim_target};

const REGION: &str = "us-east-1";

fn key(cluster: &str, profile: &str) -> ResourceKey {
    ResourceKey::fargate_profile(DEFAULT_ACCOUNT, REGION, cluster, profile)
}

#[tokio::test]
async fn lists_page_through_every_cluster_and_profile() {
    let sim = Simulator::start().await.unwrap();
    sim.apply(Command::SetPageLimit { limit: 3 }).unwrap();
    for c in 0..7 {
        sim.add_profile(&key(&format!("c{c}"), "default"), "ACTIVE", Health::Absent);
    }
    for p in 0..8 {
        sim.add_profile(&key("c3", &format!("p{p}")), "ACTIVE", Health::Absent);
    }
    // Another region and another account are not listed.
    sim.add_profile(
        &ResourceKey::fargate_profile(DEFAULT_ACCOUNT, "eu-west-1", "eu", "x"),
        "ACTIVE",
        Health::Absent,
    );
    sim.add_profile(
        &ResourceKey::fargate_profile("999988887777", REGION, "other", "x"),
        "ACTIVE",
        Health::Absent,
    );
    let client = sim_client(&sim_target(&sim, REGION, "*", &["*"])).await;

    let (clusters, pages) = all_pages(|token| client.list_clusters(token)).await;
    assert_eq!(clusters, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    assert_eq!(pages, 3);
    let (profiles, pages) =
        all_pages(|token| client.list_resources(Kind::FARGATE_PROFILE, "c3", token)).await;
    let expected: Vec<String> = ["default", "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"]
        .map(String::from)
        .to_vec();
    assert_eq!(profiles, expected);
    assert_eq!(pages, 3);
    assert_eq!(sim.count(Operation::ListClusters), 3);
    assert_eq!(sim.count(Operation::ListFargateProfiles), 3);
}

#[tokio::test]
async fn describe_converts_status_issues_and_creation_time() {
    let sim = Simulator::start().await.unwrap();
    let issues = vec![
        IssueSpec::new("AccessDenied", "role b", &["r2"]),
        IssueSpec::new("SomeFutureCode", "new", &[]),
        IssueSpec::new("AccessDenied", "role a", &["r1", "r2"]),
    ];
    sim.add_profile(
        &key("prod", "sick"),
        "SOME_FUTURE_STATUS",
        Health::Issues(issues),
    );
    sim.add_profile(&key("prod", "empty"), "ACTIVE", Health::Issues(vec![]));
    sim.add_profile(&key("prod", "absent"), "CREATE_FAILED", Health::Absent);
    let client = sim_client(&sim_target(&sim, REGION, "prod", &["*"])).await;

    let sick = client
        .describe(Kind::FARGATE_PROFILE, "prod", "sick")
        .await
        .unwrap();
    let served = sim.with_world(|w| w.profile(&key("prod", "sick")).unwrap().clone());
    assert_eq!(sick.arn, served.arn);
    assert_eq!(
        sick.created_at.as_millis(),
        (served.created_at * 1000.0).round() as i64
    );
    assert_eq!(sick.status, Status::from_wire("SOME_FUTURE_STATUS"));
    assert_eq!(sick.status.as_str(), "SOME_FUTURE_STATUS");
    let codes: Vec<&str> = sick.issues.iter().map(|i| i.code.as_str()).collect();
    assert_eq!(codes, ["AccessDenied", "SomeFutureCode", "AccessDenied"]);
    assert_eq!(sick.issues[1].code, IssueCode::from_wire("SomeFutureCode"));
    assert_eq!(sick.issues[2].resource_ids, ["r1", "r2"]);
    assert_eq!(
        sick.info.get("pod_execution_role_arn").map(String::as_str),
        Some(served.pod_execution_role_arn.as_str())
    );

    let empty = client
        .describe(Kind::FARGATE_PROFILE, "prod", "empty")
        .await
        .unwrap();
    assert!(empty.issues.is_empty());
    let absent = client
        .describe(Kind::FARGATE_PROFILE, "prod", "absent")
        .await
        .unwrap();
    assert!(absent.issues.is_empty());
    assert_eq!(absent.status, Status::from_wire("CREATE_FAILED"));
}

#[tokio::test]
async fn every_failure_is_classified() {
    let sim = Simulator::start().await.unwrap();
    let sick = key("prod", "default");
    sim.add_profile(&sick, "ACTIVE", Health::Absent);
    let target = sim_target(&sim, REGION, "prod", &["*"]);
    let client = Connector::new(sim_settings(Duration::from_millis(400)))
        .connect(&target)
        .await;
    let describe = || client.describe(Kind::FARGATE_PROFILE, "prod", "default");

    let faults = [
        (FaultKind::Throttle, ErrorKind::Throttled),
        (FaultKind::ServerError, ErrorKind::Server),
        (FaultKind::AccessDenied, ErrorKind::AccessDenied),
        (FaultKind::Malformed, ErrorKind::Malformed),
        (FaultKind::Delay { millis: 3_000 }, ErrorKind::Timeout),
    ];
    for (fault, kind) in faults {
        sim.add_fault(Scope::profile(&sick), fault.clone(), Some(1));
        let error = describe().await.unwrap_err();
        assert_eq!(error.kind, kind, "{fault:?}: {error}");
        assert_eq!(error.operation, Operation::DescribeFargateProfile);
    }
    // The faults were used up: the next describe succeeds.
    describe().await.unwrap();

    let missing = client
        .describe(Kind::FARGATE_PROFILE, "prod", "nope")
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
    let no_cluster = client
        .list_resources(Kind::FARGATE_PROFILE, "nope", None)
        .await
        .unwrap_err();
    assert_eq!(no_cluster.kind, ErrorKind::NotFound);

    sim.add_fault(
        Scope::all().operations(&[Operation::ListClusters]),
        FaultKind::Throttle,
        Some(1),
    );
    assert_eq!(
        client.list_clusters(None).await.unwrap_err().kind,
        ErrorKind::Throttled
    );
    sim.add_fault(Scope::all(), FaultKind::Malformed, Some(1));
    assert_eq!(
        client.caller_identity().await.unwrap_err().kind,
        ErrorKind::Malformed
    );
    sim.add_fault(Scope::all(), FaultKind::ServerError, Some(1));
    assert_eq!(
        client.caller_identity().await.unwrap_err().kind,
        ErrorKind::Server
    );
    assert_eq!(client.caller_identity().await.unwrap(), DEFAULT_ACCOUNT);
}

#[tokio::test]
async fn a_closed_port_is_a_network_error_and_an_unknown_key_is_access_denied() {
    let sim = Simulator::start().await.unwrap();
    let mut target = sim_target(&sim, REGION, "prod", &["*"]);
    // A port that was just bound and released has nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let closed_url = url::Url::parse(&format!("http://{closed}")).unwrap();
    target.endpoint_url = Some(closed_url.clone());
    target.sts_endpoint_url = Some(closed_url);
    let client = sim_client(&target).await;
    let error = client.list_clusters(None).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Network, "{error}");
    assert_eq!(
        client.caller_identity().await.unwrap_err().kind,
        ErrorKind::Network
    );

    let target = sim_target(&sim, REGION, "prod", &["*"]);
    let mut settings = sim_settings(Duration::from_secs(5));
    settings.static_credentials = Some(StaticCredentials::new("AKIAUNKNOWNKEY000000", "secret"));
    let stranger = Connector::new(settings).connect(&target).await;
    assert_eq!(
        stranger.list_clusters(None).await.unwrap_err().kind,
        ErrorKind::AccessDenied
    );
    assert_eq!(
        stranger.caller_identity().await.unwrap_err().kind,
        ErrorKind::AccessDenied
    );
}

#[tokio::test]
async fn a_role_target_is_polled_under_the_assumed_account_beside_a_default_target() {
    let sim = Simulator::start().await.unwrap();
    let other_account = "222233334444";
    let role_arn = format!("arn:aws:iam::{other_account}:role/fargate-health-reader");
    sim.apply(Command::AddRole {
        role_arn: role_arn.clone(),
        external_id: Some("ext-123".into()),
    })
    .unwrap();
    sim.add_profile(&key("prod", "home"), "ACTIVE", Health::Absent);
    let away = ResourceKey::fargate_profile(other_account, REGION, "prod", "away");
    sim.add_profile(&away, "ACTIVE", Health::Absent);

    let mut connector = Connector::new(sim_settings(Duration::from_secs(5)));
    let home_target = sim_target(&sim, REGION, "prod", &["*"]);
    let mut role_target = sim_target(&sim, REGION, "prod", &["*"]);
    role_target.role_arn = Some(role_arn.clone());
    role_target.external_id = Some("ext-123".into());
    let home = connector.connect(&home_target).await;
    let role = connector.connect(&role_target).await;

    assert_eq!(home.caller_identity().await.unwrap(), DEFAULT_ACCOUNT);
    assert_eq!(role.caller_identity().await.unwrap(), other_account);
    let home_profiles = home
        .list_resources(Kind::FARGATE_PROFILE, "prod", None)
        .await
        .unwrap();
    let role_profiles = role
        .list_resources(Kind::FARGATE_PROFILE, "prod", None)
        .await
        .unwrap();
    assert_eq!(home_profiles.names, ["home"]);
    assert_eq!(role_profiles.names, ["away"]);
    role.describe(Kind::FARGATE_PROFILE, "prod", "away")
        .await
        .unwrap();

    let log = sim.requests();
    let assumes: Vec<_> = log
        .iter()
        .filter(|r| r.operation == Operation::AssumeRole)
        .collect();
    assert_eq!(
        assumes.len(),
        1,
        "the assumed credentials are cached: {assumes:?}"
    );
    assert_eq!(
        assumes[0].access_key_id.as_deref(),
        Some(DEFAULT_ACCESS_KEY_ID)
    );
    let describe = log
        .iter()
        .find(|r| r.operation == Operation::DescribeFargateProfile)
        .unwrap();
    assert_eq!(describe.account_id.as_deref(), Some(other_account));
    let role_key = describe.access_key_id.as_deref().unwrap();
    assert!(role_key.starts_with("ASIA"), "{role_key}");
    for request in log
        .iter()
        .filter(|r| r.profile.is_none() && r.cluster.is_some())
    {
        let expected = if request.account_id.as_deref() == Some(other_account) {
            role_key
        } else {
            DEFAULT_ACCESS_KEY_ID
        };
        assert_eq!(
            request.access_key_id.as_deref(),
            Some(expected),
            "{request:?}"
        );
    }

    // A wrong external id: the role is refused, and the EKS call says access denied.
    let mut wrong = role_target.clone();
    wrong.external_id = Some("wrong".into());
    let refused = Connector::new(sim_settings(Duration::from_secs(5)))
        .connect(&wrong)
        .await;
    let error = refused.list_clusters(None).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::AccessDenied, "{error}");
}

/// A server written from AWS's published formats, not from our simulator: it answers in ways
/// other EKS-compatible endpoints may (error codes in the body's `__type`, an empty final
/// `nextToken`, integer `createdAt`, an issue without a code, a namespaced error type).
async fn foreign_server() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let request = String::from_utf8_lossy(&request);
                let target = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, headers, body) = match target.as_str() {
                    "/clusters?maxResults=100" => {
                        (200, "", r#"{"clusters":["a"],"nextToken":"t1"}"#)
                    }
                    "/clusters?maxResults=100&nextToken=t1" => {
                        (200, "", r#"{"clusters":["b"],"nextToken":""}"#)
                    }
                    "/clusters/a/fargate-profiles/p" => (
                        400,
                        "",
                        r#"{"__type":"com.amazonaws.eks#ThrottlingException","message":"slow"}"#,
                    ),
                    "/clusters/a/fargate-profiles/q" => (503, "", ""),
                    "/clusters/a/fargate-profiles/r" => (
                        200,
                        "",
                        r#"{"fargateProfile":{"fargateProfileName":"r","fargateProfileArn":"arn:aws:eks:us-east-1:111122223333:fargateprofile/a/r/1","clusterName":"a","createdAt":1700000000,"status":"ACTIVE","health":{"issues":[{"message":"no code here","resourceIds":["x"]}]}}}"#,
                    ),
                    "/clusters/a/fargate-profiles/s" => (
                        404,
                        "x-amzn-ErrorType: ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.eks/\r\n",
                        r#"{"message":"gone"}"#,
                    ),
                    _ => (500, "", ""),
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn answers_from_other_servers_are_read_and_classified_too() {
    let sim = Simulator::start().await.unwrap();
    let mut target = sim_target(&sim, REGION, "*", &["*"]);
    let addr = foreign_server().await;
    target.endpoint_url = Some(url::Url::parse(&format!("http://{addr}")).unwrap());
    let client = sim_client(&target).await;

    let (clusters, pages) = all_pages(|token| client.list_clusters(token)).await;
    assert_eq!((clusters, pages), (vec!["a".to_owned(), "b".to_owned()], 2));
    let error = client
        .describe(Kind::FARGATE_PROFILE, "a", "p")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled, "{error}");
    let error = client
        .describe(Kind::FARGATE_PROFILE, "a", "q")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Server, "{error}");
    let error = client
        .describe(Kind::FARGATE_PROFILE, "a", "s")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    let profile = client
        .describe(Kind::FARGATE_PROFILE, "a", "r")
        .await
        .unwrap();
    assert_eq!(profile.created_at.as_millis(), 1_700_000_000_000);
    assert_eq!(profile.issues[0].code, IssueCode::from_wire("Unknown"));
    assert_eq!(profile.issues[0].message, "no code here");
}

/// `run` of the real binary on a config with these `[[targets]]`, serving on a free loopback
/// port; stderr is collected by [`Running::stop`].
struct Running {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(targets: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = crate::support::free_port();
        let state = dir.path().join("state.json");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"{addr}\"\n[state]\npath = \"{}\"\n[poll]\n\
                 interval = \"2s\"\ndiscovery_interval = \"1s\"\ntimeout = \"1s\"\n\
                 max_requests_per_second = 200\n\n{targets}",
                state.display()
            ),
        )
        .unwrap();
        let child = crate::support::aws_env(
            crate::support::binary()
                .args(["run", "--config"])
                .arg(&path),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `GET path` once the server listens; `None` while it does not yet.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        tokio::net::TcpStream::connect(self.addr).await.ok()?;
        Some(crate::support::http(self.addr, "GET", path, "").await)
    }

    /// SIGTERM, then the exit code and everything logged.
    async fn stop(mut self) -> (Option<i32>, String) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let status = self.child.wait().unwrap();
            let mut stderr = String::new();
            let _ = self
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr);
            (status.code(), stderr)
        })
        .await
        .unwrap()
    }
}

/// A `[[targets]]` table on the simulator (or another URL) with extra lines.
fn run_target(url: &str, cluster: &str, extra: &str) -> String {
    format!(
        "[[targets]]\nregion = \"{REGION}\"\ncluster = \"{cluster}\"\nprofiles = [\"*\"]\n\
         endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n{extra}\n"
    )
}

/// The value of the sample of `name` whose line contains every one of `having`.
fn sample(metrics: &str, name: &str, having: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| having.iter().all(|h| l.contains(h)))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keeps_running_when_a_role_cannot_be_assumed_and_says_what_to_fix() {
    let sim = Simulator::start().await.unwrap();
    let other = "222233334444";
    let role = format!("arn:aws:iam::{other}:role/reader");
    sim.apply(Command::AddRole {
        role_arn: role.clone(),
        external_id: None,
    })
    .unwrap();
    // Credentials that expire at once: every call assumes the role again.
    sim.apply(Command::SetCredentialLifetime { seconds: 1 })
        .unwrap();
    sim.add_profile(&key("prod", "home"), "ACTIVE", Health::Absent);
    sim.add_profile(
        &ResourceKey::fargate_profile(other, REGION, "prod", "away"),
        "ACTIVE",
        Health::Absent,
    );
    let url = sim.endpoint_url();
    let closed = format!("http://{}", crate::support::free_port());
    let targets = [
        run_target(&url, "prod", ""),
        run_target(&url, "prod", &format!("role_arn = \"{role}\"")),
        // STS unreachable for this one from the start.
        run_target(&closed, "prod", &format!("role_arn = \"{role}\"")),
    ]
    .concat();
    let running = Running::start(&targets);
    let up = |metrics: &str, profile: &str| {
        sample(
            metrics,
            "eks_fargate_profile_up",
            &[&format!("fargate_profile=\"{profile}\"")],
        )
    };
    eventually(30, "both profiles up 1", || async {
        let (_, metrics) = running.get("/metrics").await?;
        (up(&metrics, "home") == Some(1.0) && up(&metrics, "away") == Some(1.0)).then_some(())
    })
    .await;

    // STS now refuses the role: the profile already known goes `up 0`, the other stays up.
    sim.add_fault(
        Scope::all().operations(&[Operation::AssumeRole]),
        FaultKind::AccessDenied,
        None,
    );
    eventually(30, "away up 0", || async {
        let (_, metrics) = running.get("/metrics").await?;
        (up(&metrics, "away") == Some(0.0)).then_some(())
    })
    .await;
    // Several discovery rounds later the daemon still serves, and the other target polls on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, metrics) = running.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(up(&metrics, "home"), Some(1.0), "{metrics}");
    assert_eq!(up(&metrics, "away"), Some(0.0), "{metrics}");
    assert_eq!(running.get("/healthz").await.unwrap().0, 200);

    let (code, log) = running.stop().await;
    assert_eq!(code, Some(0), "{log}");
    // Not one line per failed AssumeRole attempt from the SDK either.
    assert!(!log.contains("STS refused to grant assume role"), "{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" level=error "))
        .collect();
    // What a person must fix, once per problem, not once per retry.
    let denied: Vec<&&str> = errors
        .iter()
        .filter(|l| l.contains("target needs attention") && l.contains("target 2"))
        .collect();
    assert_eq!(denied.len(), 1, "{errors:#?}");
    assert!(
        denied[0].contains("STS denied AssumeRole") && denied[0].contains("trust policy"),
        "{denied:?}"
    );
    let unreachable: Vec<&&str> = errors
        .iter()
        .filter(|l| l.contains("target needs attention") && l.contains("target 3"))
        .collect();
    assert_eq!(unreachable.len(), 1, "{errors:#?}");
    assert!(
        unreachable[0].contains("STS is unreachable")
            && unreachable[0].contains("check sts_endpoint_url"),
        "{unreachable:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_out_of_range_values_from_eks_clamped_and_escaped() {
    let sim = Simulator::start().await.unwrap();
    crate::once::add_hostile_profiles(&sim);
    let running = Running::start(&run_target(&sim.endpoint_url(), "prod", ""));
    let profiles: serde_json::Value = eventually(30, "four profiles described", || async {
        let (status, body) = running.get("/api/v1/profiles").await?;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let described = json["profiles"]
            .as_array()?
            .iter()
            .filter(|p| p["up"] == true)
            .count();
        (described == 4).then_some(json)
    })
    .await;
    let find = |name: &str| {
        profiles["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["profile"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(find("future")["created_at"], "9999-12-31T23:59:59Z");
    assert_eq!(find("past")["created_at"], "1970-01-01T00:00:00Z");
    assert!(find("long")["status"].as_str().unwrap().len() <= 256);
    assert_eq!(find("odd")["status"], "ACT\nIVE\u{1b}[2J<b>");

    let (status, metrics) = running.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    let created = "eks_fargate_profile_created_timestamp_seconds";
    assert_eq!(
        sample(&metrics, created, &["fargate_profile=\"future\""]),
        Some(253_402_300_799.999)
    );
    assert_eq!(
        sample(&metrics, created, &["fargate_profile=\"past\""]),
        Some(0.0)
    );
    // Every sample is one line: the newline in the status label is escaped.
    assert!(
        metrics.contains("status=\"ACT\\nIVE\u{1b}[2J<b>\""),
        "escaped status"
    );
    for line in metrics.lines() {
        assert!(
            line.len() < 2048,
            "a sample too long: {}",
            line.chars().take(200).collect::<String>()
        );
        assert!(
            line.is_empty() || line.starts_with('#') || line.contains(' '),
            "{line}"
        );
    }
    let (code, log) = running.stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
