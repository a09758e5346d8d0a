//! The admin server under hostile clients, driving the real binary: hundreds of scrapers that
//! never read, a client that never finishes its headers.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fargate_health_monitor::simulator::{Population, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use fargate_health_monitor::server::CONNECTIONS_PER_CLIENT;

use crate::support::{aws_env, binary, eventually, free_port, http};

/// The memory limit the shipped Kubernetes manifest sets.
const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

/// `run` against the simulator with a config of `[server]` `extra` lines; returns it and its
/// admin address.
pub fn start_run(dir: &Path, simulator: &Simulator, server_extra: &str) -> (Child, SocketAddr) {
    let addr = free_port();
    let url = simulator.endpoint_url();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n{server_extra}\n[state]\npath = \"{}\"\n\
             [poll]\ninterval = \"30s\"\ntimeout = \"5s\"\nmax_requests_per_second = 500\n\n\
             [[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\n\
             endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n",
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

/// A simulator holding `clusters` × `profiles` profiles, a fifth of them with an issue.
pub async fn populated(clusters: usize, profiles: usize) -> Simulator {
    let simulator = Simulator::start().await.unwrap();
    simulator
        .populate(&Population {
            clusters_per_region: clusters,
            profiles_per_cluster: profiles,
            unhealthy_share: 0.2,
            ..Population::default()
        })
        .unwrap();
    simulator
}

/// The resident memory of a process, from `/proc/<pid>/status`.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

/// Waits until `/readyz` says 200 (every profile described once).
pub async fn until_ready(addr: SocketAddr, headers: &[(&str, &str)]) {
    eventually(120, "/readyz 200", || async {
        TcpStream::connect(addr).await.ok()?;
        let (status, _, _) =
            crate::support::http_with_headers(addr, "GET", "/readyz", headers, "").await;
        (status == 200).then_some(())
    })
    .await;
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A connection from `source` (an address of the loopback range) to `addr`.
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    try_connect_from(source, addr).await.expect("connected")
}

async fn try_connect_from(source: [u8; 4], addr: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("an address of the loopback range");
    socket.connect(addr).await.ok()
}

/// A GET from `source` with `headers`: its status and body (0 when the server hung up).
pub async fn get_from(
    source: [u8; 4],
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let Some(mut stream) = try_connect_from(source, addr).await else {
        return (0, String::new());
    };
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got).await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A connection from `source` that asks for `path` and then reads nothing: a small receive
/// window, so the server's writes stall soon, as they do for a stuck scraper across a network.
async fn never_reads(source: [u8; 4], addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = connect_from(source, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapers_that_never_read_cost_little_and_a_normal_scrape_still_answers() {
    let simulator = populated(10, 30).await;
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_run(dir.path(), &simulator, "");
    until_ready(addr, &[]).await;
    let (status, page) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(page.len() > 500_000, "a page of {} bytes", page.len());

    // 500 scrapes of /metrics and 100 of /api/v1/profiles, none of them read, from 20
    // addresses (each within its share of connections).
    let mut stuck = Vec::new();
    for i in 0..600usize {
        let source = [127, 0, 1, u8::try_from(i % 20).unwrap() + 1];
        let path = if i % 6 == 5 {
            "/api/v1/profiles"
        } else {
            "/metrics"
        };
        stuck.push(never_reads(source, addr, path).await);
    }

    // A normal scrape meanwhile answers, whole, within a generous deadline.
    let scrape = tokio::time::timeout(Duration::from_secs(10), http(addr, "GET", "/metrics", ""));
    let (status, text) = scrape.await.expect("a scrape within 10 s");
    assert_eq!(status, 200);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("eks_fargate_profile_up{"))
            .count(),
        300
    );
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(10),
        http(addr, "GET", "/api/v1/profiles", ""),
    )
    .await
    .expect("the API within 10 s");
    assert_eq!(status, 200);

    // Memory stays under the manifest's limit while they hang on.
    let mut peak = 0;
    for _ in 0..10 {
        peak = peak.max(rss(daemon.id()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(peak < MEMORY_LIMIT, "peak RSS {} MiB", peak >> 20);
    drop(stuck);
    stop(daemon);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let simulator = populated(1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_run(dir.path(), &simulator, "");
    until_ready(addr, &[]).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    for stream in [&mut slow, &mut idle] {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut got));
        read.await.expect("the server hung up within 30 s").ok();
        assert!(!got.starts_with(b"HTTP/1.1 200"));
    }
    stop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holding_idle_connections_cannot_keep_others_out() {
    let simulator = populated(1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_run(dir.path(), &simulator, "");
    until_ready(addr, &[]).await;
    // One client opens far more connections than its share and sends nothing on them.
    let mut idle = Vec::new();
    for _ in 0..(CONNECTIONS_PER_CLIENT + 100) {
        idle.push(connect_from([127, 0, 0, 9], addr).await);
    }
    // Those beyond its share are closed at once, not held until the header timeout.
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 100,
        "{closed} connections beyond the share closed"
    );
    // Another client (a liveness probe, a scraper) gets in at once.
    let probe = tokio::time::timeout(
        Duration::from_secs(5),
        get_from([127, 0, 0, 10], addr, "/healthz", &[]),
    );
    let (status, _) = probe.await.expect("/healthz within 5 s");
    assert_eq!(status, 200);
    drop(idle);
    stop(daemon);
}
