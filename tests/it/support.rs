//! Helpers shared by the integration tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fargate_health_monitor::config::{Pattern, Target};
use fargate_health_monitor::eks::{AwsSettings, Connector, SdkEks};
use fargate_health_monitor::simulator::{self, Simulator};
use url::Url;

/// The built `fargate-health-monitor` binary.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fargate-health-monitor"));
    command.env_remove("RUST_LOG");
    command
}

/// A file of the repository.
pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs a command and returns its exit code, stdout and stderr.
pub fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the binary runs");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// A config file written to a temporary directory and the result of `check` on it.
pub struct Checked {
    /// Kept so the directory lives as long as the result.
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Writes `text` as `config.toml` in a new temporary directory, with the extra `files` beside
/// it, and runs `check --config` on it.
pub fn check_config(text: &str, files: &[(&str, &str)]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let (code, stdout, stderr) = run(binary().args(["check", "--config"]).arg(&path));
    Checked {
        _dir: dir,
        path,
        code,
        stdout,
        stderr,
    }
}

/// A target of the simulator: `cluster` and `profiles` are names or globs.
pub fn sim_target(simulator: &Simulator, region: &str, cluster: &str, profiles: &[&str]) -> Target {
    let url = Url::parse(&simulator.endpoint_url()).unwrap();
    Target {
        profiles: profiles
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect(),
        endpoint_url: Some(url.clone()),
        sts_endpoint_url: Some(url),
        ..Target::new(region, Pattern::parse(cluster).unwrap())
    }
}

/// AWS settings that sign with the simulator's default key, with this call timeout.
pub fn sim_settings(timeout: Duration) -> AwsSettings {
    AwsSettings {
        static_credentials: Some(simulator::credentials()),
        ..AwsSettings::new(timeout)
    }
}

/// The SDK clients for a target, signing with the simulator's default key.
pub async fn sim_client(target: &Target) -> SdkEks {
    Connector::new(sim_settings(Duration::from_secs(10)))
        .connect(target)
        .await
}

/// One HTTP/1.1 request over a fresh loopback connection: the status and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_with_headers(addr, method, path, &[], body).await;
    (status, body)
}

/// One HTTP/1.1 request with extra headers: the status, the response head and the body.
pub async fn http_with_headers(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let (status, head, body) = http_bytes(addr, method, path, headers, body).await;
    (status, head, String::from_utf8(body).unwrap())
}

/// One HTTP/1.1 request with extra headers: the status, the response head (lowercase) and
/// the body as bytes.
pub async fn http_bytes(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(response[..split].to_vec())
        .unwrap()
        .to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = &response[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") && method != "HEAD" {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, head, body)
}

/// The body of a `Transfer-Encoding: chunked` response (RFC 9112 section 7.1).
fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_line = std::str::from_utf8(&chunked[..line_end]).unwrap();
        let size_hex = size_line.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_hex, 16).expect("a hex chunk size");
        chunked = &chunked[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunked[..size]);
        assert_eq!(&chunked[size..size + 2], b"\r\n", "a chunk ends with CRLF");
        chunked = &chunked[size + 2..];
    }
}

/// Polls `check` every 50 ms until it gives `Some`, or panics after `secs` seconds saying
/// what was awaited.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs with the simulator's default key and keeps the SDK away from files and IMDS.
pub fn aws_env(command: &mut std::process::Command) -> &mut std::process::Command {
    command
        .env("AWS_ACCESS_KEY_ID", simulator::DEFAULT_ACCESS_KEY_ID)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            simulator::DEFAULT_SECRET_ACCESS_KEY,
        )
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// A real tool: on `PATH`, or a skip with a notice; under `CI` a missing tool fails the test.
pub fn real_tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        let package = match name {
            "promtool" | "prometheus" => "the Debian package prometheus",
            "prometheus-alertmanager" => "the Debian package prometheus-alertmanager",
            "systemd-analyze" => "the Debian package systemd",
            "kubernetes-validate" => "the PyPI package kubernetes-validate",
            "openssl" => "the Debian package openssl",
            "curl" => "the Debian package curl",
            "chromium" => "the Debian package chromium",
            _ => "it",
        };
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing; CI installs it (.ci/run)"
        );
        // Straight to stderr, past the test harness's capture, so the skip shows in `cargo test`.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {} needs {name}; install {package}",
            std::thread::current().name().unwrap_or("a test")
        );
    }
    found
}

/// A loopback address with a port the OS picked and released, for a server started later.
pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sends SIGTERM to a child process (one that already ended is fine).
pub fn sigterm(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// A real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port, notifying a
/// webhook; stopped when dropped.
pub struct Alertmanager {
    pub addr: std::net::SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one whose route groups by `group_by` (e.g. `[alertname, fargate_profile]`) and
    /// sends, resolutions too, to `webhook`, and waits until it is ready; `None` (with the skip
    /// said) when it is not installed.
    pub async fn start(group_by: &str, webhook: &str) -> Option<Self> {
        let binary = real_tool("prometheus-alertmanager")?;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: {group_by}\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: hook\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n"
            ),
        )
        .unwrap();
        let addr = free_port();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let alertmanager = Alertmanager {
            addr,
            child,
            _dir: dir,
        };
        eventually(30, "Alertmanager ready", || async {
            tokio::net::TcpStream::connect(addr).await.ok()?;
            (http(addr, "GET", "/-/ready", "").await.0 == 200).then_some(())
        })
        .await;
        Some(alertmanager)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads every page of a list operation: the names and how many pages it took.
pub async fn all_pages<F, Fut>(mut call: F) -> (Vec<String>, usize)
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<
        Output = Result<fargate_health_monitor::eks::Page, fargate_health_monitor::eks::CallError>,
    >,
{
    let (mut names, mut pages, mut token) = (Vec::new(), 0, None);
    loop {
        let page = call(token).await.unwrap();
        pages += 1;
        names.extend(page.names);
        token = page.next_token;
        if token.is_none() {
            return (names, pages);
        }
    }
}
