//! The benchmark's baseline: a bare `aws-sdk-eks` describe loop with the daemon's SDK set-up
//! (static credentials, endpoint, no retries, timeouts) and nothing else, against a running
//! `simulate`. Prints the CPU time per describe of this process.
//!
//!     cargo run --release --example bare_sdk -- http://127.0.0.1:9878 CLUSTERS PROFILES ROUNDS [RATE] [NODEGROUPS] [ADDONS]
//!
//! Per cluster and round it describes what the daemon does: the cluster, PROFILES Fargate
//! profiles, NODEGROUPS node groups and ADDONS add-ons (default 0 each: profiles only), named as
//! `simulate` names them. With RATE (describes per second) each describe starts at its own
//! slot, 1/RATE apart, as the daemon paces its own (RATE 0: unpaced); without it the loop runs as
//! fast as 32 calls in flight allow.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use futures_util::{StreamExt, stream};

/// User + system CPU seconds of this process, from /proc (Linux ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of this process in MB, from /proc.
fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// One describe, of a cluster or of something in it.
enum Call {
    Cluster(String),
    Profile(String, String),
    Nodegroup(String, String),
    Addon(String, String),
}

impl Call {
    /// Sends it; true when it failed.
    async fn send(&self, eks: &aws_sdk_eks::Client) -> bool {
        match self {
            Call::Cluster(cluster) => eks.describe_cluster().name(cluster).send().await.is_err(),
            Call::Profile(cluster, name) => eks
                .describe_fargate_profile()
                .cluster_name(cluster)
                .fargate_profile_name(name)
                .send()
                .await
                .is_err(),
            Call::Nodegroup(cluster, name) => eks
                .describe_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(name)
                .send()
                .await
                .is_err(),
            Call::Addon(cluster, name) => eks
                .describe_addon()
                .cluster_name(cluster)
                .addon_name(name)
                .send()
                .await
                .is_err(),
        }
    }
}

/// The name `simulate` gives a cluster's add-on number `n`.
fn addon(n: usize) -> String {
    const FIRST: [&str; 5] = [
        "coredns",
        "kube-proxy",
        "vpc-cni",
        "aws-ebs-csi-driver",
        "eks-pod-identity-agent",
    ];
    FIRST
        .get(n)
        .map_or_else(|| format!("addon-{n:02}"), |name| (*name).to_owned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:9878".into());
    let number =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (clusters, per_cluster, rounds) = (number(2, 1000), number(3, 10), number(4, 3));
    let rate = number(5, 0);
    let (nodegroups, addons) = (number(6, 0), number(7, 0));
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIASIMULATEDEXAMPLE",
            "simulated-secret-access-key",
            None,
            None,
            "static",
        ))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await;
    let eks = aws_sdk_eks::Client::from_conf(
        aws_sdk_eks::config::Builder::from(&config)
            .endpoint_url(&endpoint)
            .build(),
    );
    let mixed = nodegroups + addons > 0;
    let names: Vec<Call> = (0..clusters)
        .flat_map(|c| {
            let cluster = format!("cluster-{c:04}");
            let own = mixed.then(|| Call::Cluster(cluster.clone()));
            let profiles = (0..per_cluster)
                .map(move |p| Call::Profile(format!("cluster-{c:04}"), format!("profile-{p:02}")));
            let nodegroups = (0..nodegroups)
                .map(move |n| Call::Nodegroup(format!("cluster-{c:04}"), format!("ng-{n:02}")));
            let addons = (0..addons).map(move |n| Call::Addon(format!("cluster-{c:04}"), addon(n)));
            own.into_iter()
                .chain(profiles)
                .chain(nodegroups)
                .chain(addons)
        })
        .collect();
    let total = names.len() * rounds;
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let start = tokio::time::Instant::now();
    let failures = stream::iter(names.iter().cycle().take(total).enumerate())
        .map(|(i, call)| {
            let eks = eks.clone();
            async move {
                if rate > 0 {
                    let slot = Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(start + slot).await;
                }
                call.send(&eks).await
            }
        })
        .buffer_unordered(32)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let cpu = cpu_seconds() - cpu;
    println!(
        "describes={total} failures={failures} wall_s={:.2} cpu_s={cpu:.2} cpu_us_per_describe={:.0} peak_rss_mb={}",
        wall.elapsed().as_secs_f64(),
        cpu * 1e6 / total as f64,
        peak_rss_mb()
    );
}
