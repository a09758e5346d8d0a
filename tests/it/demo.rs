//! `demo` tells the truth: every step of its story (played with `--fast`) shows in `/metrics`
//! and on the status page, checked here over HTTP with expectations of the test's own; the
//! status page in a real headless Chromium, with a screenshot.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{binary, http, real_tool, run, sigterm};

/// A running `demo --fast`, its stdout lines arriving on a channel.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Demo {
    fn start() -> Self {
        let mut child = binary()
            .args(["demo", "--fast", "--listen", "127.0.0.1:0"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = Self {
            child,
            lines,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let banner = demo.next_line(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.len() == 3
                && words[0].ends_with("/metrics")
                && words[1..] == ["Prometheus", "metrics"]
        });
        let url = banner.split_whitespace().next().unwrap();
        demo.addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap();
        demo
    }

    /// The next stdout line that `wanted` accepts, within a generous deadline.
    fn next_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the demo printed nothing more in time"));
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Waits for the next step's line and the verdict line after it.
    fn next_step(&self) -> (String, String) {
        let step = self.next_line(|l| l.starts_with("demo +"));
        let verdict = self.next_line(|_| true);
        (step, verdict)
    }

    async fn metrics_and_page(&self) -> (String, String) {
        let (_, metrics) = http(self.addr, "GET", "/metrics", "").await;
        let (_, page) = http(self.addr, "GET", "/", "").await;
        (metrics, page)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        sigterm(&self.child);
        let _ = self.child.wait();
    }
}

/// The series of `name` whose labels include every one of `labels`, with their values.
fn series<'a>(metrics: &'a str, name: &str, labels: &[&str]) -> Vec<&'a str> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next())
        .collect()
}

/// One `<section id="…">` of the page.
fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let rest = &page[start..];
    &rest[..rest.find("</section>").unwrap()]
}

/// The `arn` label of every profile's info series, by account/cluster/profile.
fn arns(metrics: &str) -> BTreeMap<String, String> {
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    metrics
        .lines()
        .filter(|l| l.starts_with("eks_fargate_profile_info{"))
        .map(|l| {
            let key = format!(
                "{}/{}/{}",
                label(l, "aws_account_id"),
                label(l, "eks_cluster"),
                label(l, "fargate_profile")
            );
            (key, label(l, "arn"))
        })
        .collect()
}

#[tokio::test]
async fn every_step_of_the_demo_shows_in_the_metrics_and_on_the_page() {
    let demo = Demo::start();
    let first = demo.next_line(|l| l.starts_with("demo +"));
    assert!(first.contains("AccessDenied opens on 111122223333/us-east-1/cluster-0000/profile-01"));
    let verdict = demo.next_line(|_| true);
    assert!(
        verdict.trim_start().starts_with("seen in /metrics"),
        "{verdict}"
    );
    let (metrics, page) = demo.metrics_and_page().await;
    let denied = [
        "aws_account_id=\"111122223333\"",
        "eks_cluster=\"cluster-0000\"",
        "fargate_profile=\"profile-01\"",
        "code=\"AccessDenied\"",
    ];
    assert_eq!(
        series(&metrics, "eks_fargate_profile_health_issues", &denied),
        ["1"]
    );
    let open = section(&page, "unhealthy");
    assert!(
        open.contains(">profile-01<") && open.contains("AccessDenied"),
        "{open}"
    );
    let arns_before = arns(&metrics);

    let mut steps = 1;
    loop {
        let (step, verdict) = demo.next_step();
        assert!(
            verdict.trim_start().starts_with("seen in /metrics"),
            "{step}\n{verdict}"
        );
        let (metrics, page) = demo.metrics_and_page().await;
        match steps {
            1 => {
                assert!(step.contains("ClusterUnreachable opens on every profile of 222233330001/us-east-1/cluster-0001"));
                let open = series(
                    &metrics,
                    "eks_fargate_profile_health_issues",
                    &[
                        "aws_account_id=\"222233330001\"",
                        "eks_cluster=\"cluster-0001\"",
                        "code=\"ClusterUnreachable\"",
                    ],
                );
                assert_eq!(open, ["1"; 4]);
                assert_eq!(
                    section(&page, "unhealthy")
                        .matches("ClusterUnreachable")
                        .count(),
                    4
                );
            }
            3 => {
                assert!(
                    step.contains(
                        "111122223333/us-east-1/cluster-0002/profile-02 goes CREATE_FAILED"
                    )
                );
                let failed = series(
                    &metrics,
                    "eks_fargate_profile_status",
                    &[
                        "aws_account_id=\"111122223333\"",
                        "eks_cluster=\"cluster-0002\"",
                        "fargate_profile=\"profile-02\"",
                        "status=\"CREATE_FAILED\"",
                    ],
                );
                assert_eq!(failed, ["1"]);
                let section = section(&page, "failed");
                assert!(
                    section.contains(">profile-02<") && section.contains("CREATE_FAILED"),
                    "{section}"
                );
            }
            5 => {
                assert!(step.contains(
                    "AccessDenied is fixed on 111122223333/us-east-1/cluster-0000/profile-01"
                ));
                assert!(
                    !series(&metrics, "eks_fargate_profile_health_issues", &denied).contains(&"1")
                );
                assert!(!section(&page, "unhealthy").contains("AccessDenied"));
            }
            6 => {
                assert!(step.contains(
                    "222233330001/us-east-1/cluster-0000/profile-00 is deleted and created again"
                ));
                assert!(step.contains("a new one appears"));
                let key = "222233330001/cluster-0000/profile-00";
                let after = arns(&metrics);
                assert_ne!(after[key], arns_before[key], "a new incarnation, a new ARN");
            }
            8 => {
                assert!(step.contains("EKS throttles account 111122223333"));
                let throttled: u64 = series(
                    &metrics,
                    "fargate_health_monitor_api_requests_total",
                    &[
                        "operation=\"DescribeFargateProfile\"",
                        "outcome=\"throttled\"",
                    ],
                )
                .iter()
                .map(|v| v.parse::<u64>().unwrap())
                .sum();
                assert!(throttled > 0, "{metrics}");
                let lanes = section(&page, "lanes");
                let row = lanes
                    .split("<tr>")
                    .find(|r| r.contains("<td>111122223333</td>"))
                    .unwrap();
                assert!(
                    row.contains("backing off") || !row.contains("<td>0% ("),
                    "{row}"
                );
            }
            9 => {
                assert!(step.contains("EKS stops throttling account 111122223333"));
                let up = series(
                    &metrics,
                    "eks_fargate_profile_up",
                    &["aws_account_id=\"111122223333\""],
                );
                assert_eq!(up, ["1"; 12]);
            }
            10 => {
                assert!(
                    step.contains(
                        "ClusterUnreachable clears on 222233330001/us-east-1/cluster-0001"
                    )
                );
                let open = series(
                    &metrics,
                    "eks_fargate_profile_health_issues",
                    &["code=\"ClusterUnreachable\""],
                );
                assert!(!open.contains(&"1"), "{open:?}");
                assert!(!section(&page, "unhealthy").contains("ClusterUnreachable"));
            }
            2 => {
                assert!(step.contains(
                    "nodegroup 111122223333/us-east-1/cluster-0001/ng-01 goes DEGRADED with AsgInstanceLaunchFailures"
                ));
                let ng = [
                    "aws_account_id=\"111122223333\"",
                    "eks_cluster=\"cluster-0001\"",
                    "eks_nodegroup=\"ng-01\"",
                ];
                let status = [&ng[..], &["status=\"DEGRADED\""]].concat();
                assert_eq!(series(&metrics, "eks_nodegroup_status", &status), ["1"]);
                let code = [&ng[..], &["code=\"AsgInstanceLaunchFailures\""]].concat();
                assert_eq!(
                    series(&metrics, "eks_nodegroup_health_issues", &code),
                    ["1"]
                );
                let failed = section(&page, "failed");
                assert!(
                    failed.contains(">ng-01<") && failed.contains("DEGRADED"),
                    "{failed}"
                );
                let open = section(&page, "unhealthy");
                assert!(open.contains("AsgInstanceLaunchFailures"), "{open}");
            }
            4 => {
                assert!(step.contains(
                    "addon 222233330001/us-east-1/cluster-0002/coredns reports InsufficientNumberOfReplicas"
                ));
                let code = [
                    "aws_account_id=\"222233330001\"",
                    "eks_cluster=\"cluster-0002\"",
                    "eks_addon=\"coredns\"",
                    "code=\"InsufficientNumberOfReplicas\"",
                ];
                assert_eq!(series(&metrics, "eks_addon_health_issues", &code), ["1"]);
                let open = section(&page, "unhealthy");
                assert!(open.contains("InsufficientNumberOfReplicas"), "{open}");
            }
            7 => {
                assert!(step.contains("InsufficientNumberOfReplicas resolves"));
                let open = series(
                    &metrics,
                    "eks_addon_health_issues",
                    &["code=\"InsufficientNumberOfReplicas\""],
                );
                assert!(!open.contains(&"1"), "{open:?}");
                assert!(!section(&page, "unhealthy").contains("InsufficientNumberOfReplicas"));
            }
            11 => {
                assert!(step.contains("ng-01 launches its instances again"));
                let active = series(
                    &metrics,
                    "eks_nodegroup_status",
                    &[
                        "eks_nodegroup=\"ng-01\"",
                        "eks_cluster=\"cluster-0001\"",
                        "aws_account_id=\"111122223333\"",
                        "status=\"ACTIVE\"",
                    ],
                );
                assert_eq!(active, ["1"]);
                let open = series(
                    &metrics,
                    "eks_nodegroup_health_issues",
                    &["code=\"AsgInstanceLaunchFailures\""],
                );
                assert!(!open.contains(&"1"), "{open:?}");
                assert!(!section(&page, "failed").contains(">ng-01<"));
                break;
            }
            _ => unreachable!(),
        }
        steps += 1;
    }
    let over = demo.next_line(|_| true);
    assert!(over.starts_with("demo: the story is over"), "{over}");
}

/// Debian's Chromium, headless, with no network but loopback and a fresh profile.
fn chromium(args: &[&str], home: &std::path::Path) -> (i32, String, String) {
    let Some(chromium) = real_tool("chromium") else {
        return (-1, String::new(), String::new());
    };
    run(std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.join("profile").display()
        ))
        .args(args)
        .env("HOME", home))
}

#[tokio::test]
async fn the_status_page_in_headless_chromium_lists_the_unhealthy_first() {
    if real_tool("chromium").is_none() {
        return;
    }
    let demo = Demo::start();
    // Three steps in: open issues on five profiles and a node group, and a DEGRADED status.
    for _ in 0..3 {
        let (step, verdict) = demo.next_step();
        assert!(
            verdict.trim_start().starts_with("seen"),
            "{step}\n{verdict}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", demo.addr);
    let (code, dom, stderr) = chromium(&["--dump-dom", &url], dir.path());
    assert_eq!(code, 0, "{stderr}");
    // The DOM as the browser built it: the first row of the profiles table is unhealthy.
    let profiles = section(&dom, "profiles");
    let first_row = profiles
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(first_row.contains("class=\"unhealthy\""), "{first_row}");
    assert!(
        first_row.contains("AccessDenied")
            || first_row.contains("ClusterUnreachable")
            || first_row.contains("AsgInstanceLaunchFailures")
            || first_row.contains("DEGRADED"),
        "{first_row}"
    );
    assert!(
        dom.contains("id=\"readiness\" class=\"ok\""),
        "ready by now"
    );
    assert!(!dom.contains("<script"), "no script on the page");

    let shot = dir.path().join("status-page.png");
    let (code, _, stderr) = chromium(
        &[
            "--window-size=1280,1500",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a page with content, not a blank: {} bytes",
        png.len()
    );
    // To refresh the README's picture: FHM_SCREENSHOT_OUT=docs/status-page.png cargo test …
    if let Some(out) = std::env::var_os("FHM_SCREENSHOT_OUT") {
        std::fs::copy(&shot, out).unwrap();
    }
}
