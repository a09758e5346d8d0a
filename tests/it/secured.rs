//! The admin server over TLS with basic auth, and a real Prometheus scraping it that way with
//! the shipped rules loaded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fargate_health_monitor::model::ResourceKey;
use fargate_health_monitor::simulator::{self, Health, IssueSpec, Simulator};
use serde_json::Value;

use crate::support::{aws_env, binary, eventually, free_port, real_tool, repo_file, run};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-s3cret";

/// A self-signed certificate for 127.0.0.1, made with openssl: (cert, key) paths.
fn certificate(dir: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let openssl = real_tool("openssl")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (code, out, err) = run(Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert_eq!(code, 0, "{out}{err}");
    Some((cert, key))
}

/// The daemon with TLS and basic auth against the simulator; returns it and its address.
fn start(dir: &Path, simulator: &Simulator, cert: &Path, key: &Path) -> (Child, SocketAddr) {
    let addr = free_port();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let url = simulator.endpoint_url();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [server.basic_auth]\nusers = {{ {USER} = \"{hash}\" }}\n[state]\npath = \"{}\"\n\
             [poll]\ninterval = \"2s\"\ntimeout = \"1s\"\n\n[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\n\
             labels = {{ env = \"test\" }}\nendpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n",
            cert.display(),
            key.display(),
            dir.join("state.json").display()
        ),
    )
    .unwrap();
    let child = aws_env(binary().args(["run", "--config"]).arg(&config))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, addr)
}

fn curl(args: &[&str]) -> (i32, String) {
    let (code, out, _) = run(Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args));
    (code, out)
}

fn status_of(output: &str) -> &str {
    output.rsplit('\n').next().unwrap_or_default()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

fn key(profile: &str) -> ResourceKey {
    ResourceKey::fargate_profile(simulator::DEFAULT_ACCOUNT, "us-east-1", "prod", profile)
}

#[tokio::test]
async fn the_admin_server_speaks_tls_and_asks_for_credentials_except_on_healthz() {
    if real_tool("curl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key_file)) = certificate(dir.path()) else {
        return;
    };
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(&key("web"), "ACTIVE", Health::Absent);
    let (daemon, addr) = start(dir.path(), &simulator, &cert, &key_file);
    let base = format!("https://{addr}");
    let cacert = cert.display().to_string();
    eventually(30, "the TLS server", || async {
        let (_, out) = curl(&["--cacert", &cacert, &format!("{base}/healthz")]);
        (status_of(&out) == "200").then_some(())
    })
    .await;
    let credentials = format!("{USER}:{PASSWORD}");
    let (_, out) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        &credentials,
        &format!("{base}/metrics"),
    ]);
    assert_eq!(status_of(&out), "200");
    assert!(out.contains("fargate_health_monitor_build_info"));
    let (_, out) = curl(&["--cacert", &cacert, &format!("{base}/metrics")]);
    assert_eq!(status_of(&out), "401");
    let (_, out) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        &format!("{USER}:wrong"),
        &format!("{base}/api/v1/profiles"),
    ]);
    assert_eq!(status_of(&out), "401");
    let (_, out) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        &format!("intruder:{PASSWORD}"),
        &format!("{base}/readyz"),
    ]);
    assert_eq!(status_of(&out), "401");
    // Plain HTTP to a TLS port gets nothing useful.
    let (_, out) = curl(&[&format!("http://{addr}/healthz")]);
    assert_ne!(status_of(&out), "200");
    stop(daemon);
}

/// Runs a Prometheus query through the HTTP API; the `data.result` array.
async fn query(prometheus: SocketAddr, expr: &str) -> Result<Vec<Value>, String> {
    let path = format!(
        "/api/v1/query?query={}",
        url::form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
    );
    let (status, body) = crate::support::http(prometheus, "GET", &path, "").await;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 || json["status"] != "success" {
        return Err(format!("{expr}: {body}"));
    }
    Ok(json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[tokio::test]
async fn a_real_prometheus_scrapes_over_tls_with_basic_auth_and_the_rules_fire() {
    let (Some(prometheus), Some(_)) = (real_tool("prometheus"), real_tool("curl")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key_file)) = certificate(dir.path()) else {
        return;
    };
    let simulator = Simulator::start().await.unwrap();
    simulator.add_profile(
        &key("web"),
        "ACTIVE",
        Health::Issues(vec![IssueSpec::new("AccessDenied", "denied", &["role"])]),
    );
    simulator.add_profile(&key("jobs"), "CREATE_FAILED", Health::Absent);
    let (daemon, addr) = start(dir.path(), &simulator, &cert, &key_file);

    // The shipped rules, with the issue rule's five minutes shortened to fire within the test.
    let rules = std::fs::read_to_string(repo_file("dashboards/alerts.yml"))
        .unwrap()
        .replace(
            "eks_fargate_profile_health_issue_start_timestamp_seconds > 300",
            "eks_fargate_profile_health_issue_start_timestamp_seconds > 1",
        );
    std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
    let web = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: fargate-health-monitor\n    scheme: https\n    tls_config:\n      ca_file: {}\n\
             \x20   basic_auth:\n      username: {USER}\n      password: {PASSWORD}\n    static_configs:\n      - targets: [\"{addr}\"]\n",
            cert.display()
        ),
    )
    .unwrap();
    let mut prom = Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let issues = eventually(60, "the issue series in Prometheus", || async {
        tokio::net::TcpStream::connect(web).await.ok()?;
        let result = query(web, "eks_fargate_profile_health_issues == 1")
            .await
            .ok()?;
        (!result.is_empty()).then_some(result)
    })
    .await;
    assert_eq!(issues[0]["metric"]["code"], "AccessDenied");
    assert_eq!(issues[0]["metric"]["env"], "test");
    assert_eq!(issues[0]["metric"]["job"], "fargate-health-monitor");
    let up = query(web, "up").await.unwrap();
    assert_eq!(
        up[0]["value"][1], "1",
        "Prometheus scrapes over TLS with basic auth"
    );

    // Every query of the dashboard runs, and the core panels have data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("dashboards/fargate-health-monitor.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m");
            let expr = [
                "kind",
                "aws_account_id",
                "aws_region",
                "eks_cluster",
                "fargate_profile",
            ]
            .iter()
            .fold(expr, |e, v| e.replace(&format!("=~\"${v}\""), "=~\".*\""));
            exprs.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    assert!(exprs.len() >= 8);
    for (title, expr) in &exprs {
        query(web, expr)
            .await
            .unwrap_or_else(|e| panic!("panel {title}: {e}"));
    }
    for core in [
        "Open issues by code",
        "Unhealthy profiles",
        "Profile status",
    ] {
        let (_, expr) = exprs
            .iter()
            .find(|(t, _)| t == core)
            .unwrap_or_else(|| panic!("no panel {core}"));
        let result = query(web, expr).await.unwrap();
        assert!(!result.is_empty(), "panel {core} has no data: {expr}");
    }

    // The issue rule and the failed-status rule reach pending or firing.
    eventually(60, "ALERTS for the rules", || async {
        let alerts = query(web, "ALERTS").await.ok()?;
        let names: Vec<&str> = alerts
            .iter()
            .filter_map(|a| a["metric"]["alertname"].as_str())
            .collect();
        (names.contains(&"EKSFargateProfileIssueOpen")
            && names.contains(&"EKSFargateProfileFailed"))
        .then_some(())
    })
    .await;
    let _ = prom.kill();
    let _ = prom.wait();
    stop(daemon);
}

/// `Authorization: Basic` for `user:password`.
/// `[server.basic_auth]` with [`USER`] and his bcrypt `hash`, for `server::start_run`.
fn basic_auth_users(hash: &str) -> String {
    format!("[server.basic_auth]\nusers = {{ {USER} = \"{hash}\" }}\n")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_does_not_slow_a_verified_scraper() {
    let simulator = crate::server::populated(4, 25).await;
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash(PASSWORD, 8).unwrap();
    let (daemon, addr) = crate::server::start_run(dir.path(), &simulator, &basic_auth_users(&hash));
    let good = basic(USER, PASSWORD);
    let verified = [("Authorization", good.as_str())];
    // The first scrape verifies the password; later ones are recognised.
    crate::server::until_ready(addr, &verified).await;

    // 200 clients at once, each trying wrong passwords for the known user, a bounded number
    // of times.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..200 {
        let done = done.clone();
        flood.spawn(async move {
            let wrong = basic(USER, &format!("guess-{i}"));
            let mut statuses = Vec::new();
            for _ in 0..20 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                // From 50 addresses, each within its share of connections.
                let source = [127, 0, 2, u8::try_from(i % 50).unwrap() + 1];
                let headers = [("Authorization", wrong.as_str())];
                let (status, _) = crate::server::get_from(source, addr, "/metrics", &headers).await;
                statuses.push(status);
            }
            statuses
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile the verified scraper's scrapes stay fast.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let scrape = crate::support::http_with_headers(addr, "GET", "/metrics", &verified, "");
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), scrape)
            .await
            .expect("a verified scrape within 5 s under the flood");
        assert_eq!(status, 200);
        assert!(body.contains("eks_fargate_profile_up{"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "a verified scrape took {took:?} under the flood"
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    while let Some(joined) = flood.join_next().await {
        statuses.extend(joined.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "attempts beyond the queue are refused unchecked"
    );
    stop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_from_one_client_does_not_lock_out_a_new_one() {
    let simulator = crate::server::populated(1, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash(PASSWORD, 8).unwrap();
    let (daemon, addr) = crate::server::start_run(dir.path(), &simulator, &basic_auth_users(&hash));
    crate::server::until_ready(addr, &[("Authorization", &basic(USER, PASSWORD))]).await;
    // A restart forgets verified passwords: this one is new to the daemon.
    stop(daemon);
    let (daemon, addr) = crate::server::start_run(dir.path(), &simulator, &basic_auth_users(&hash));
    eventually(60, "/healthz", || async {
        let (status, _) = crate::server::get_from([127, 0, 0, 1], addr, "/healthz", &[]).await;
        (status == 200).then_some(())
    })
    .await;

    // One client floods wrong passwords for the known user from 100 connections at once.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..100 {
        let done = done.clone();
        flood.spawn(async move {
            let wrong = basic(USER, &format!("guess-{i}"));
            for _ in 0..50 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let headers = [("Authorization", wrong.as_str())];
                crate::server::get_from([127, 0, 0, 20], addr, "/metrics", &headers).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A scraper elsewhere with the right password gets its turn, first time, within seconds.
    let good = basic(USER, PASSWORD);
    let headers = [("Authorization", good.as_str())];
    let scrape = crate::server::get_from([127, 0, 0, 21], addr, "/metrics", &headers);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), scrape)
        .await
        .expect("a new client's scrape within 10 s under the flood");
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    while flood.join_next().await.is_some() {}
    stop(daemon);
}
