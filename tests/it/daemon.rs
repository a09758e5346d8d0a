//! The daemon against the simulator over loopback: `/metrics` scraped over HTTP, the JSON API,
//! readiness, and the `run` and `demo` commands of the real binary.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fargate_health_monitor::clock::Clock;
use fargate_health_monitor::config::{self, Config, ProcessEnvironment};
use fargate_health_monitor::daemon::Daemon;
use fargate_health_monitor::model::{Kind, Operation, ResourceKey};
use fargate_health_monitor::simulator::{
    self, Command as SimCommand, FaultKind, Health, IssueSpec, Scope, Simulator,
};
use serde_json::Value;

use crate::support::{
    aws_env, binary, eventually, free_port, http, http_bytes, http_with_headers, real_tool,
    sigterm, sim_settings,
};

const ACCOUNT: &str = simulator::DEFAULT_ACCOUNT;

fn key(cluster: &str, profile: &str) -> ResourceKey {
    ResourceKey::fargate_profile(ACCOUNT, "us-east-1", cluster, profile)
}

fn issue(code: &str, resources: &[&str]) -> Health {
    Health::Issues(vec![IssueSpec::new(
        code,
        &format!("{code} happened"),
        resources,
    )])
}

/// A config for the simulator: short intervals, one target over every cluster.
fn config(simulator: &Simulator, poll: &str) -> Config {
    let url = simulator.endpoint_url();
    let dir = tempfile::tempdir().unwrap().keep();
    let state = dir.join("state.json");
    let text = format!(
        "[state]\npath = \"{}\"\n[poll]\n{poll}\n\n[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\nprofiles = [\"*\"]\n\
         labels = {{ env = \"test\", team = \"platform\" }}\nendpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n",
        state.display()
    );
    config::parse(&text, Path::new("test.toml"), &ProcessEnvironment)
        .unwrap()
        .config
}

const FAST: &str = "interval = \"2s\"\ndiscovery_interval = \"1s\"\ntimeout = \"1s\"\nmax_requests_per_second = 200";

async fn start(simulator: &Simulator, poll: &str) -> Daemon {
    let config = config(simulator, poll);
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let settings = sim_settings(config.poll.timeout);
    Daemon::start(&config, settings, Some(listen), Clock::wall())
        .await
        .unwrap()
}

async fn scrape(daemon: &Daemon) -> String {
    let (status, body) = http(daemon.addr(), "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    body
}

/// The value of the one sample of `name` whose labels contain all of `having`.
fn value(text: &str, name: &str, having: &[&str]) -> Option<f64> {
    let mut found = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| having.iter().all(|h| l.contains(h)));
    let line = found.next()?;
    assert!(
        found.next().is_none(),
        "several samples of {name} with {having:?}"
    );
    line.rsplit(' ').next()?.parse().ok()
}

/// Waits until the sample of `name` with `having` equals `expected`.
async fn until_value(
    daemon: &Daemon,
    name: &str,
    having: &[&str],
    expected: Option<f64>,
) -> String {
    eventually(20, &format!("{name}{having:?} == {expected:?}"), || async {
        let text = scrape(daemon).await;
        (value(&text, name, having) == expected).then_some(text)
    })
    .await
}

const ISSUES: &str = "eks_fargate_profile_health_issues";
const UP: &str = "eks_fargate_profile_up";

#[tokio::test]
async fn an_access_denied_profile_shows_1_for_that_code_and_0_for_the_others() {
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(
        &key("prod", "denied"),
        "ACTIVE",
        issue("AccessDenied", &["r1", "r2"]),
    );
    simulator.add_profile(&key("prod", "fine"), "ACTIVE", Health::Absent);
    let daemon = start(&simulator, FAST).await;
    let denied = "fargate_profile=\"denied\"";
    let text = until_value(&daemon, ISSUES, &[denied, "AccessDenied"], Some(1.0)).await;
    for code in Kind::FARGATE_PROFILE.known_codes() {
        let expected = if code.as_str() == "AccessDenied" {
            1.0
        } else {
            0.0
        };
        let code = format!("code=\"{}\"", code.as_str());
        assert_eq!(
            value(&text, ISSUES, &[denied, &code]),
            Some(expected),
            "{code}"
        );
        assert_eq!(value(&text, ISSUES, &["\"fine\"", &code]), Some(0.0));
    }
    let line = text
        .lines()
        .find(|l| l.starts_with(ISSUES) && l.contains(denied))
        .unwrap();
    assert!(
        line.contains(&format!("aws_account_id=\"{ACCOUNT}\"")),
        "{line}"
    );
    assert!(line.contains("aws_region=\"us-east-1\",eks_cluster=\"prod\""));
    assert!(line.contains("env=\"test\",team=\"platform\""));
    let resources = "eks_fargate_profile_health_issue_resources";
    assert_eq!(
        value(&text, resources, &[denied, "AccessDenied"]),
        Some(2.0)
    );
    assert_eq!(value(&text, UP, &[denied]), Some(1.0));
    assert_eq!(
        value(&text, "eks_fargate_profile_status", &[denied, "\"ACTIVE\""]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "eks_fargate_profile_status",
            &[denied, "\"CREATING\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "fargate_health_monitor_resources",
            &["kind=\"fargate_profile\""]
        ),
        Some(2.0)
    );
    assert!(
        value(
            &text,
            "fargate_health_monitor_api_requests_total",
            &["DescribeFargateProfile", "success"]
        )
        .unwrap()
            >= 2.0
    );
    daemon.stop().await;
}

#[tokio::test]
async fn issues_open_then_resolve_after_two_clean_polls() {
    let simulator = Simulator::start().await.unwrap();
    let profile = key("prod", "web");
    simulator.add_profile(&profile, "ACTIVE", Health::Absent);
    let daemon = start(&simulator, FAST).await;
    let web = "fargate_profile=\"web\"";
    until_value(&daemon, ISSUES, &[web, "ClusterUnreachable"], Some(0.0)).await;

    simulator
        .apply(SimCommand::SetHealth {
            key: profile.clone(),
            health: issue("ClusterUnreachable", &["subnet-1"]),
        })
        .unwrap();
    let text = until_value(&daemon, ISSUES, &[web, "ClusterUnreachable"], Some(1.0)).await;
    let start = value(
        &text,
        "eks_fargate_profile_health_issue_start_timestamp_seconds",
        &[web],
    )
    .unwrap();
    assert!(start > 1.7e9);
    assert_eq!(
        value(
            &text,
            "fargate_health_monitor_events_total",
            &["issue_opened"]
        ),
        Some(1.0)
    );

    simulator.apply(SimCommand::ClearRequestLog).unwrap();
    simulator
        .apply(SimCommand::SetHealth {
            key: profile.clone(),
            health: Health::Issues(Vec::new()),
        })
        .unwrap();
    let text = until_value(&daemon, ISSUES, &[web, "ClusterUnreachable"], Some(0.0)).await;
    // Two describes without the code were needed before the episode ended.
    let clean = simulator.count(Operation::DescribeFargateProfile);
    assert!(clean >= 2, "resolved after {clean} clean describe(s)");
    assert_eq!(
        value(
            &text,
            "eks_fargate_profile_health_issue_start_timestamp_seconds",
            &[web]
        ),
        None
    );
    assert_eq!(
        value(&text, "eks_fargate_profile_health_issue_resources", &[web]),
        None
    );
    assert_eq!(
        value(
            &text,
            "fargate_health_monitor_events_total",
            &["issue_resolved"]
        ),
        Some(1.0)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn failed_polls_set_up_to_0_and_keep_the_last_known_issues() {
    let simulator = Simulator::start().await.unwrap();
    let profile = key("prod", "web");
    simulator.add_profile(&profile, "ACTIVE", issue("AccessDenied", &["role"]));
    let daemon = start(&simulator, FAST).await;
    let web = "fargate_profile=\"web\"";
    until_value(&daemon, UP, &[web], Some(1.0)).await;
    for (fault, outcome) in [
        (FaultKind::ServerError, "server"),
        (FaultKind::Throttle, "throttled"),
        (FaultKind::Delay { millis: 1500 }, "timeout"),
        (FaultKind::Malformed, "malformed"),
    ] {
        simulator.add_fault(Scope::profile(&profile), fault, None);
        let text = until_value(&daemon, UP, &[web], Some(0.0)).await;
        assert_eq!(
            value(&text, ISSUES, &[web, "AccessDenied"]),
            Some(1.0),
            "{outcome}"
        );
        assert_eq!(
            value(&text, "eks_fargate_profile_status", &[web, "ACTIVE"]),
            Some(1.0)
        );
        let requests = "fargate_health_monitor_api_requests_total";
        let failed = value(
            &text,
            requests,
            &["DescribeFargateProfile", &format!("outcome=\"{outcome}\"")],
        );
        assert!(failed.unwrap_or_default() >= 1.0, "{outcome} not counted");
        let (_, api) = http(daemon.addr(), "GET", "/api/v1/profiles", "").await;
        let api: Value = serde_json::from_str(&api).unwrap();
        assert_eq!(api["profiles"][0]["error"], outcome);
        assert_eq!(api["profiles"][0]["issues"][0]["code"], "AccessDenied");
        simulator.apply(SimCommand::ClearFaults).unwrap();
        until_value(&daemon, UP, &[web], Some(1.0)).await;
    }
    let text = scrape(&daemon).await;
    assert_eq!(
        value(
            &text,
            "fargate_health_monitor_events_total",
            &["issue_resolved"]
        ),
        Some(0.0)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_codes_and_statuses_get_their_own_label_values() {
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(
        &key("prod", "odd"),
        "RESIZING",
        issue("QuantumFlux", &["q1"]),
    );
    let daemon = start(&simulator, FAST).await;
    let odd = "fargate_profile=\"odd\"";
    let text = until_value(&daemon, ISSUES, &[odd, "code=\"QuantumFlux\""], Some(1.0)).await;
    assert_eq!(
        value(
            &text,
            "eks_fargate_profile_status",
            &[odd, "status=\"RESIZING\""]
        ),
        Some(1.0)
    );
    for status in Kind::FARGATE_PROFILE.known_statuses() {
        let status = format!("status=\"{}\"", status.as_str());
        assert_eq!(
            value(&text, "eks_fargate_profile_status", &[odd, &status]),
            Some(0.0)
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_deleted_profile_vanishes_and_a_recreated_one_starts_a_new_episode() {
    let simulator = Simulator::start().await.unwrap();
    let (gone, again) = (key("prod", "gone"), key("prod", "again"));
    simulator.add_profile(&gone, "ACTIVE", issue("AccessDenied", &["r"]));
    simulator.add_profile(&again, "ACTIVE", issue("AccessDenied", &["r"]));
    // Discovery rarely, so the describe's not-found and its confirming list do the work.
    let daemon = start(
        &simulator,
        "interval = \"2s\"\ndiscovery_interval = \"1h\"\ntimeout = \"1s\"",
    )
    .await;
    let starts = "eks_fargate_profile_health_issue_start_timestamp_seconds";
    let text = until_value(&daemon, ISSUES, &["\"again\"", "AccessDenied"], Some(1.0)).await;
    let text = match value(&text, ISSUES, &["\"gone\"", "AccessDenied"]) {
        Some(_) => text,
        None => until_value(&daemon, ISSUES, &["\"gone\"", "AccessDenied"], Some(1.0)).await,
    };
    let first_start = value(&text, starts, &["\"again\""]).unwrap();
    let created = "eks_fargate_profile_created_timestamp_seconds";
    let first_created = value(&text, created, &["\"again\""]).unwrap();
    let episode = |api: &Value| {
        api["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["profile"] == "again")
            .map(|p| p["issues"][0]["episode_id"].clone())
            .unwrap()
    };
    let (_, api) = http(daemon.addr(), "GET", "/api/v1/profiles", "").await;
    let first_episode = episode(&serde_json::from_str(&api).unwrap());

    simulator
        .apply(SimCommand::DeleteProfile { key: gone })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    simulator
        .apply(SimCommand::RecreateProfile { key: again.clone() })
        .unwrap();
    let text = until_value(&daemon, UP, &["\"gone\""], None).await;
    assert!(
        !text.contains("fargate_profile=\"gone\""),
        "every series of the deleted profile goes"
    );
    let events: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("events_total{"))
        .collect();
    let deleted = value(
        &text,
        "fargate_health_monitor_events_total",
        &["resource_deleted"],
    );
    assert!(deleted >= Some(1.0), "{events:?}");
    let text = eventually(20, "the new incarnation", || async {
        let text = scrape(&daemon).await;
        (value(&text, created, &["\"again\""]).is_some_and(|c| c != first_created)).then_some(text)
    })
    .await;
    // The new incarnation starts with no history: the old episode ended with the old one.
    assert_eq!(
        value(&text, ISSUES, &["\"again\"", "AccessDenied"]),
        Some(0.0)
    );
    assert_eq!(value(&text, starts, &["\"again\""]), None);
    let health = issue("AccessDenied", &["r"]);
    simulator
        .apply(SimCommand::SetHealth { key: again, health })
        .unwrap();
    let text = until_value(&daemon, ISSUES, &["\"again\"", "AccessDenied"], Some(1.0)).await;
    assert!(value(&text, starts, &["\"again\""]).unwrap() > first_start);
    assert_eq!(
        value(
            &text,
            "fargate_health_monitor_events_total",
            &["issue_resolved"]
        ),
        Some(2.0)
    );
    let (_, api) = http(daemon.addr(), "GET", "/api/v1/profiles", "").await;
    assert_ne!(episode(&serde_json::from_str(&api).unwrap()), first_episode);
    // The describe's not-found was confirmed by listing the cluster.
    let requests = simulator.requests();
    let not_found = requests
        .iter()
        .position(|r| r.status == 404 && r.profile.as_deref() == Some("gone"))
        .unwrap();
    assert!(
        requests[not_found..]
            .iter()
            .any(|r| r.operation == Operation::ListFargateProfiles)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_profile_created_later_is_described_without_waiting_an_interval() {
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(&key("prod", "first"), "ACTIVE", Health::Absent);
    let daemon = start(
        &simulator,
        "interval = \"1h\"\ndiscovery_interval = \"1s\"\ntimeout = \"1s\"",
    )
    .await;
    until_value(&daemon, UP, &["\"first\""], Some(1.0)).await;
    simulator.add_profile(
        &key("prod", "later"),
        "ACTIVE",
        issue("InternalFailure", &[]),
    );
    let text = until_value(
        &daemon,
        ISSUES,
        &["\"later\"", "InternalFailure"],
        Some(1.0),
    )
    .await;
    assert_eq!(value(&text, UP, &["\"later\""]), Some(1.0));
    daemon.stop().await;
}

#[tokio::test]
async fn readyz_is_503_until_every_profile_was_attempted_then_200() {
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(&key("prod", "a"), "ACTIVE", issue("AccessDenied", &["r"]));
    for name in ["b", "c"] {
        simulator.add_profile(&key("prod", name), "ACTIVE", Health::Absent);
    }
    let slow = Scope {
        operations: vec![Operation::DescribeFargateProfile],
        ..Scope::all()
    };
    simulator.add_fault(slow, FaultKind::Delay { millis: 1500 }, Some(3));
    let daemon = start(&simulator, "interval = \"10s\"\ntimeout = \"5s\"").await;
    let (status, body) = http(daemon.addr(), "GET", "/readyz", "").await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = http(daemon.addr(), "GET", "/healthz", "").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Discovered but not described yet (describes take 1.5 s): a profile exports only up 0,
    // and the daemon is not ready.
    let lines = eventually(20, "profile a discovered", || async {
        let text = scrape(&daemon).await;
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("fargate_profile=\"a\""))
            .map(str::to_owned)
            .collect();
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("eks_fargate_profile_up{") && lines[0].ends_with("} 0"));
    assert_eq!(http(daemon.addr(), "GET", "/readyz", "").await.0, 503);
    eventually(20, "/readyz 200", || async {
        (http(daemon.addr(), "GET", "/readyz", "").await.0 == 200).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn gzip_and_plain_scrapes_agree_and_only_get_and_head_are_allowed() {
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(&key("prod", "a"), "ACTIVE", issue("AccessDenied", &["r"]));
    let daemon = start(
        &simulator,
        "interval = \"1h\"\ndiscovery_interval = \"1h\"\ntimeout = \"1s\"",
    )
    .await;
    until_value(&daemon, UP, &["\"a\""], Some(1.0)).await;
    let addr = daemon.addr();
    let (status, head, plain) = http_bytes(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!head.contains("content-encoding"));
    let (status, head, zipped) = http_bytes(
        addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip, deflate")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(zipped.len() < plain.len());
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    let domain = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("eks_") || l.starts_with("# HELP eks_"))
            .map(str::to_owned)
            .collect()
    };
    let plain = String::from_utf8(plain).unwrap();
    assert!(domain(&plain).len() > 10);
    assert_eq!(domain(&plain), domain(&unzipped));
    let (_, head, _) = http_bytes(
        addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip;q=0")],
        "",
    )
    .await;
    assert!(!head.contains("content-encoding"));

    for method in ["POST", "PUT", "DELETE"] {
        let (status, head, _) = http_with_headers(addr, method, "/metrics", &[], "{}").await;
        assert_eq!(status, 405, "{method}");
        assert!(head.contains("allow: get, head"), "{head}");
    }
    let (status, head, body) = http_bytes(addr, "HEAD", "/api/v1/profiles", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert!(head.contains("content-type: application/json"));
    let (status, body) = http(addr, "GET", "/api/v1/profiles", "").await;
    assert_eq!(status, 200);
    let api: Value = serde_json::from_str(&body).unwrap();
    let profile = &api["profiles"][0];
    assert_eq!(profile["account_id"], ACCOUNT);
    assert_eq!(profile["labels"]["env"], "test");
    assert_eq!(profile["up"], true);
    assert_eq!(profile["status"], "ACTIVE");
    assert!(profile["last_success"].as_str().unwrap().ends_with('Z'));
    assert_eq!(profile["issues"][0]["resource_ids"][0], "r");
    assert!(profile["issues"][0]["episode_id"].as_str().unwrap().len() > 8);
    let (status, body) = http(addr, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("/metrics") && body.contains("api/v1/resources"));
    assert_eq!(http(addr, "GET", "/nope", "").await.0, 404);
    daemon.stop().await;
}

/// Writes a config for the simulator and returns its path.
fn config_file(dir: &Path, simulator: &Simulator, listen: &str) -> std::path::PathBuf {
    let url = simulator.endpoint_url();
    let state = dir.join("state.json").display().to_string();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{listen}\"\n[state]\npath = \"{state}\"\n[poll]\ninterval = \"2s\"\ntimeout = \"1s\"\n\n[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\n\
             endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n\n\
             [[targets]]\nregion = \"us-east-1\"\ncluster = \"decommissioned\"\n\
             endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn run_serves_metrics_and_exits_0_on_sigterm() {
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(&key("prod", "web"), "ACTIVE", issue("AccessDenied", &["r"]));
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let path = config_file(dir.path(), &simulator, &addr.to_string());
    let mut child = aws_env(binary().args(["run", "--config"]).arg(&path))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = eventually(30, "AccessDenied in /metrics and delivered", || async {
        tokio::net::TcpStream::connect(addr).await.ok()?;
        let (_, body) = http(addr, "GET", "/metrics", "").await;
        let open = value(&body, ISSUES, &["\"web\"", "AccessDenied"]) == Some(1.0);
        let delivered = value(
            &body,
            "fargate_health_monitor_notifications_total",
            &["outcome=\"success\""],
        )
        .is_some_and(|n| n >= 1.0);
        (open && delivered).then_some(body)
    })
    .await;
    assert!(text.contains("fargate_health_monitor_build_info"));
    assert!(text.contains("process_resident_memory_bytes"));

    // The same address again: a second daemon says so and exits 69.
    let (code, _, stderr) =
        crate::support::run(aws_env(binary().args(["run", "--config"]).arg(&path)));
    assert_eq!(code, 69, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );

    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0), "{}", status.1);
    assert!(status.1.contains("issue opened"), "{}", status.1);
    assert!(status.1.contains("shutting down"), "{}", status.1);
    // A named cluster that does not exist needs a person: one ERROR line, not one per poll.
    let errors: Vec<&str> = status
        .1
        .lines()
        .filter(|l| l.contains(" level=error "))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("cluster decommissioned does not exist"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn demo_needs_no_aws_account_and_no_config() {
    let mut child = binary()
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The banner names the metrics URL.
    let (url, stdout) = tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        let mut buffer = [0u8; 256];
        while !seen.contains("/metrics ") {
            let n = stdout.read(&mut buffer).unwrap();
            assert!(n > 0, "the demo ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        let url = seen
            .split_whitespace()
            .find(|w| w.ends_with("/metrics"))
            .unwrap()
            .to_owned();
        (url, stdout)
    })
    .await
    .unwrap();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let text = eventually(30, "24 profiles described", || async {
        let (_, body) = http(addr, "GET", "/metrics", "").await;
        let up = body
            .lines()
            .filter(|l| l.starts_with("eks_fargate_profile_up{") && l.ends_with(" 1"))
            .count();
        (up == 24).then_some(body)
    })
    .await;
    assert!(
        text.contains("operation=\"AssumeRole\",outcome=\"success\""),
        "the role's STS calls are counted too"
    );
    assert!(
        text.contains("aws_account_id=\"222233330001\""),
        "the second account is polled through its role"
    );
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || {
        drop(stdout);
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    let Some(promtool) = real_tool("promtool") else {
        return;
    };
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(
        &key("prod", "denied"),
        "ACTIVE",
        issue("AccessDenied", &["r1", "r2"]),
    );
    simulator.add_profile(
        &key("prod", "odd"),
        "RESIZING",
        issue("QuantumFlux", &["q\"1"]),
    );
    simulator.add_profile(&key("prod", "failed"), "CREATE_FAILED", Health::Absent);
    simulator.add_profile(&key("stage", "fine"), "ACTIVE", Health::Issues(Vec::new()));
    simulator.add_profile(&key("stage", "broken"), "ACTIVE", Health::Absent);
    simulator.add_fault(
        Scope::profile(&key("stage", "broken")),
        FaultKind::ServerError,
        None,
    );
    let daemon = start(&simulator, FAST).await;
    let text = until_value(&daemon, ISSUES, &["\"odd\"", "QuantumFlux"], Some(1.0)).await;
    let text = match value(&text, UP, &["\"fine\""]) {
        Some(1.0) => text,
        _ => until_value(&daemon, UP, &["\"fine\""], Some(1.0)).await,
    };
    assert_eq!(value(&text, UP, &["\"broken\""]), Some(0.0));
    daemon.stop().await;

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool check metrics: {said}");
    assert!(said.trim().is_empty(), "promtool complained: {said}");
}

/// The `up` values of every profile in a scrape.
fn ups(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with("eks_fargate_profile_up{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn run_shows_up_0_for_profiles_held_back_by_sustained_throttling_and_1_after() {
    let simulator = Simulator::start().await.unwrap();
    for i in 0..8 {
        simulator.add_profile(&key("prod", &format!("p{i}")), "ACTIVE", Health::Absent);
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let url = simulator.endpoint_url();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{addr}\"\n[state]\npath = \"{}\"\n\
             [poll]\ninterval = \"2s\"\ndiscovery_interval = \"60s\"\ntimeout = \"1s\"\nmax_requests_per_second = 50\n\n\
             [[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\n\
             endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n",
            dir.path().join("state.json").display()
        ),
    )
    .unwrap();
    let mut child = aws_env(binary().args(["run", "--config"]).arg(&path))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scrape_ups = || async {
        tokio::net::TcpStream::connect(addr).await.ok()?;
        let (status, body) = http(addr, "GET", "/metrics", "").await;
        (status == 200).then(|| ups(&body))
    };
    eventually(30, "8 profiles up 1", || async {
        scrape_ups().await.filter(|u| *u == [1.0; 8])
    })
    .await;

    // The whole account throttled: describes wait in the backed-off lane, and once overdue
    // every profile shows up 0, not only those whose retries ran out.
    let account = Scope {
        account_id: Some(ACCOUNT.to_owned()),
        ..Scope::all()
    };
    simulator.add_fault(account, FaultKind::Throttle, None);
    eventually(60, "8 profiles up 0", || async {
        scrape_ups().await.filter(|u| *u == [0.0; 8])
    })
    .await;
    let (_, body) = http(addr, "GET", "/metrics", "").await;
    let overruns = value(
        &body,
        "fargate_health_monitor_poll_cycle_overruns_total",
        &[],
    );
    assert!(overruns.is_some_and(|n| n > 0.0), "{body}");

    simulator.apply(SimCommand::ClearFaults).unwrap();
    eventually(120, "8 profiles up 1 again", || async {
        scrape_ups().await.filter(|u| *u == [1.0; 8])
    })
    .await;
    // Long enough for two cycle ends to see every profile polled in time.
    tokio::time::sleep(Duration::from_secs(5)).await;

    sigterm(&child);
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // Said once a minute at most, with how many, why and the rate in force.
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("poll cycle overran"))
        .collect();
    assert!(!warned.is_empty() && warned.len() <= 3, "{warned:?}");
    // The 8 profiles and their cluster.
    assert!(warned[0].contains(" resources=9 "), "{warned:?}");
    assert!(warned[0].contains("throttled by AWS"), "{warned:?}");
    assert!(
        stderr.contains("every resource is polled in time again"),
        "{stderr}"
    );
}
