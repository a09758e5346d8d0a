//! The schedule on tokio's paused clock, against hand-written fakes of [`Eks`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::cycle::{lane_reason, rounded};
use super::*;
use crate::config::Pattern;
use crate::diff::Rules;
use crate::eks::{Described, Page};
use crate::model::Kind;
use crate::model::Status;

/// One call as the fake saw it.
#[derive(Clone, Debug)]
struct Call {
    at: Duration,
    account: String,
    operation: Operation,
    profile: String,
    throttled: bool,
}

/// What the fake accounts hold and how they behave; shared by every client.
#[derive(Debug)]
struct World {
    start: Instant,
    /// account -> cluster -> profiles.
    clusters: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// account -> throttled until this time.
    throttled_until: BTreeMap<String, Instant>,
    /// Throttle every call beyond this many in any one second (all accounts together).
    throttle_above: Option<usize>,
    /// When calls were accepted, for `throttle_above`.
    accepted: std::collections::VecDeque<Instant>,
    /// Profiles that describe as not found yet are still listed.
    listed_but_not_found: Vec<String>,
    /// A describe of this profile panics (a bug anywhere on the describe path).
    panics_on_describe: Option<String>,
    /// Every other describe of this profile fails with a server error, the first one too.
    flapping: Option<String>,
    latency: Duration,
    calls: Vec<Call>,
}

#[derive(Clone, Debug)]
struct Fake {
    account: String,
    world: Arc<Mutex<World>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Fake {
    /// Records the call; `Err` when the account is throttled now.
    async fn call(&self, operation: Operation, profile: &str) -> Result<Duration, CallError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let (latency, throttled) = {
            let mut world = self.world.lock().unwrap();
            let now = Instant::now();
            let mut throttled = world
                .throttled_until
                .get(&self.account)
                .is_some_and(|until| now < *until);
            if let Some(limit) = world.throttle_above {
                while world
                    .accepted
                    .front()
                    .is_some_and(|at| now - *at >= Duration::from_secs(1))
                {
                    world.accepted.pop_front();
                }
                if world.accepted.len() >= limit {
                    throttled = true;
                } else if !throttled {
                    world.accepted.push_back(now);
                }
            }
            let at = Instant::now() - world.start;
            world.calls.push(Call {
                at,
                account: self.account.clone(),
                operation,
                profile: profile.to_owned(),
                throttled,
            });
            (world.latency, throttled)
        };
        tokio::time::sleep(latency).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if throttled {
            return Err(CallError::new(
                operation,
                ErrorKind::Throttled,
                "Rate exceeded",
            ));
        }
        Ok(latency)
    }

    fn clusters(&self) -> BTreeMap<String, Vec<String>> {
        let world = self.world.lock().unwrap();
        world
            .clusters
            .get(&self.account)
            .cloned()
            .unwrap_or_default()
    }
}

impl Eks for Fake {
    async fn caller_identity(&self) -> Result<String, CallError> {
        self.call(Operation::GetCallerIdentity, "").await?;
        Ok(self.account.clone())
    }

    async fn list_clusters(&self, _: Option<String>) -> Result<Page, CallError> {
        self.call(Operation::ListClusters, "").await?;
        Ok(Page {
            names: self.clusters().into_keys().collect(),
            next_token: None,
        })
    }

    async fn list_resources(
        &self,
        _: Kind,
        cluster: &str,
        _: Option<String>,
    ) -> Result<Page, CallError> {
        let operation = Operation::ListFargateProfiles;
        self.call(operation, "").await?;
        let mut names = self
            .clusters()
            .get(cluster)
            .cloned()
            .ok_or_else(|| CallError::new(operation, ErrorKind::NotFound, "no such cluster"))?;
        let world = self.world.lock().unwrap();
        names.extend(world.listed_but_not_found.iter().cloned());
        Ok(Page {
            names,
            next_token: None,
        })
    }

    async fn describe(
        &self,
        _: Kind,
        cluster: &str,
        profile: &str,
    ) -> Result<Described, CallError> {
        let operation = Operation::DescribeFargateProfile;
        self.call(operation, profile).await?;
        let (panics, fails) = {
            let world = self.world.lock().unwrap();
            let describes = || {
                let calls = world.calls.iter();
                calls.filter(|c| c.operation == operation && c.profile == profile)
            };
            let flapping = world.flapping.as_deref() == Some(profile);
            (
                world.panics_on_describe.as_deref() == Some(profile),
                flapping && describes().count() % 2 == 1,
            )
        };
        assert!(!panics, "describe of {profile} panicked");
        if fails {
            return Err(CallError::new(
                operation,
                ErrorKind::Server,
                "InternalFailure",
            ));
        }
        let exists = self
            .clusters()
            .get(cluster)
            .is_some_and(|names| names.iter().any(|n| n == profile));
        if !exists {
            return Err(CallError::new(operation, ErrorKind::NotFound, "not found"));
        }
        Ok(Described {
            arn: format!(
                "arn:aws:eks:us-east-1:{}:fargateprofile/{cluster}/{profile}/1",
                self.account
            ),
            created_at: Timestamp::from_secs(1_700_000_000),
            status: Status::from_wire("ACTIVE"),
            info: BTreeMap::new(),
            values: BTreeMap::new(),
            issues: Vec::new(),
        })
    }
}

/// A running scheduler over fake accounts, each with clusters of numbered profiles.
struct Harness {
    world: Arc<Mutex<World>>,
    state: Arc<State>,
    most_in_flight: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn settings(interval: u64, discovery: u64, rate: f64, concurrency: usize) -> Settings {
    Settings {
        interval: Duration::from_secs(interval),
        discovery_interval: Duration::from_secs(discovery),
        concurrency,
        max_requests_per_second: rate,
        policy: RetryPolicy::DAEMON,
        shard: Shard::ALL,
    }
}

fn profiles(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

impl Harness {
    /// `accounts`: (account id, cluster, profiles); one target per account.
    fn start(
        accounts: &[(&str, &str, Vec<String>)],
        settings: Settings,
        latency: Duration,
    ) -> Self {
        let world = Arc::new(Mutex::new(World {
            start: Instant::now(),
            clusters: BTreeMap::new(),
            throttled_until: BTreeMap::new(),
            throttle_above: None,
            accepted: std::collections::VecDeque::new(),
            listed_but_not_found: Vec::new(),
            panics_on_describe: None,
            flapping: None,
            latency,
            calls: Vec::new(),
        }));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most_in_flight = Arc::new(AtomicUsize::new(0));
        let mut watched = Vec::new();
        for (account, cluster, names) in accounts {
            world
                .lock()
                .unwrap()
                .clusters
                .entry(account.to_string())
                .or_default()
                .insert(cluster.to_string(), names.clone());
            let target = Target {
                region: "us-east-1".into(),
                cluster: Pattern::parse(cluster).unwrap(),
                profiles: vec![Pattern::parse("*").unwrap()],
                kinds: vec![Kind::FARGATE_PROFILE],
                nodegroups: vec![Pattern::parse("*").unwrap()],
                addons: vec![Pattern::parse("*").unwrap()],
                labels: BTreeMap::new(),
                account_id: Some(account.to_string()),
                aws_profile: None,
                role_arn: None,
                external_id: None,
                endpoint_url: None,
                sts_endpoint_url: None,
            };
            let client = Fake {
                account: account.to_string(),
                world: world.clone(),
                in_flight: in_flight.clone(),
                most_in_flight: most_in_flight.clone(),
            };
            watched.push(Watched { target, client });
        }
        let state = Arc::new(State::new(Rules::default(), Vec::new()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            watched,
            settings,
            state.clone(),
            crate::clock::Clock::tokio(),
            shutdown.clone(),
        ));
        Self {
            world,
            state,
            most_in_flight,
            shutdown,
            task,
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.world.lock().unwrap().calls.clone()
    }

    fn describes(&self, account: &str, from: u64, to: u64) -> Vec<Call> {
        let (from, to) = (Duration::from_secs(from), Duration::from_secs(to));
        self.calls()
            .into_iter()
            .filter(|c| c.operation == Operation::DescribeFargateProfile)
            .filter(|c| c.account == account && c.at >= from && c.at < to)
            .collect()
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    async fn stop(self) -> Arc<State> {
        self.shutdown.cancel();
        self.task.await.unwrap();
        self.state
    }
}

async fn sleep(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

/// The most calls of `account` in any one-second window.
fn busiest_second(calls: &[Call], account: &str) -> usize {
    let times: Vec<Duration> = calls
        .iter()
        .filter(|c| c.account == account)
        .map(|c| c.at)
        .collect();
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t - *start < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn every_one_second_window_holds_at_most_rate_plus_one_and_concurrency_holds() {
    let harness = Harness::start(
        &[
            ("111111111111", "prod", profiles("a", 40)),
            ("222222222222", "prod", profiles("b", 40)),
        ],
        settings(5, 30, 5.0, 3),
        Duration::from_millis(100),
    );
    sleep(120).await;
    let calls = harness.calls();
    // 40 profiles at 5/s cannot be described every 5 s: the limiter, not the schedule, sets
    // the pace, and it runs at the full rate.
    for account in ["111111111111", "222222222222"] {
        let n = calls.iter().filter(|c| c.account == account).count();
        assert!(n > 570, "{account}: {n} calls");
        let busiest = busiest_second(&calls, account);
        assert!(
            (5..=6).contains(&busiest),
            "{account}: {busiest} calls in one second"
        );
    }
    assert!(harness.most_in_flight.load(Ordering::SeqCst) <= 3);
    let state = harness.stop().await;
    assert!(state.snapshot().overruns > 0);

    // Slow calls: the bound on calls in flight is what holds them back.
    let harness = Harness::start(
        &[
            ("111111111111", "prod", profiles("a", 40)),
            ("222222222222", "prod", profiles("b", 40)),
        ],
        settings(5, 30, 5.0, 3),
        Duration::from_secs(2),
    );
    sleep(60).await;
    assert_eq!(harness.most_in_flight.load(Ordering::SeqCst), 3);
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn describes_are_spread_over_the_interval_and_lists_wait_for_discovery() {
    let account = "111111111111";
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 30))],
        settings(60, 600, 100.0, 16),
        Duration::from_millis(50),
    );
    sleep(599).await;
    // The first discovery describes every profile at once, then each cycle once each.
    assert_eq!(harness.describes(account, 0, 1).len(), 30);
    for cycle in 1..9 {
        let from = cycle * 60;
        assert_eq!(
            harness.describes(account, from, from + 60).len(),
            30,
            "cycle {cycle}"
        );
        // 30 profiles over 60 s: one every 2 s, never more than 6 in any 10 s.
        for window in (from..from + 60).step_by(5) {
            let n = harness.describes(account, window, window + 10).len();
            assert!(
                (4..=6).contains(&n),
                "{n} describes in [{window}, {window}+10)"
            );
        }
    }
    let lists = |harness: &Harness| {
        harness
            .calls()
            .iter()
            .filter(|c| c.operation == Operation::ListFargateProfiles)
            .count()
    };
    assert_eq!(lists(&harness), 1);
    sleep(2).await;
    assert_eq!(lists(&harness), 2);
    let state = harness.stop().await;
    assert_eq!(state.snapshot().overruns, 0);
    assert!(state.snapshot().resources.iter().all(|p| p.state.up));
}

#[tokio::test(start_paused = true)]
async fn a_throttled_account_backs_off_and_recovers_while_the_other_keeps_its_pace() {
    let (throttled, other) = ("111111111111", "222222222222");
    let harness = Harness::start(
        &[
            (throttled, "prod", profiles("a", 20)),
            (other, "prod", profiles("b", 20)),
        ],
        settings(20, 600, 10.0, 4),
        Duration::from_millis(20),
    );
    sleep(30).await;
    let until = Instant::now() + Duration::from_secs(60);
    harness
        .world()
        .throttled_until
        .insert(throttled.to_owned(), until);
    sleep(60).await;
    // While throttled the lane backs off exponentially: far fewer than its 60 describes.
    let during = harness.describes(throttled, 30, 90);
    assert!(during.iter().all(|c| c.throttled));
    assert!(
        during.len() <= 20,
        "{} attempts while throttled",
        during.len()
    );
    // The other account is not held up: 20 describes per 20 s cycle.
    for from in [40, 60] {
        assert_eq!(harness.describes(other, from, from + 20).len(), 20);
    }
    let state = harness.state.clone();
    let down = state
        .snapshot()
        .resources
        .iter()
        .filter(|p| !p.state.up)
        .count();
    assert!(down > 0 && down <= 20, "{down}");
    // After the throttling ends, the lane recovers to its configured pace.
    sleep(90).await;
    for from in [140, 160] {
        let calls = harness.describes(throttled, from, from + 20);
        assert_eq!(calls.len(), 20, "cycle from {from}");
        assert!(calls.iter().all(|c| !c.throttled));
    }
    let state = harness.stop().await;
    assert!(state.snapshot().resources.iter().all(|p| p.state.up));
}

#[tokio::test(start_paused = true)]
async fn an_overrun_is_counted_and_the_stalest_profiles_go_first() {
    let account = "111111111111";
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 50))],
        settings(10, 600, 2.0, 4),
        Duration::from_millis(10),
    );
    sleep(200).await;
    let describes = harness.describes(account, 0, 200);
    let state = harness.stop().await;
    // 50 profiles at 2/s need 25 s, more than the 10 s interval: every cycle overruns.
    assert!(
        state.snapshot().overruns >= 15,
        "{}",
        state.snapshot().overruns
    );
    // Yet no profile starves: each is described in turn, about every 25 s.
    let mut last: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut longest_gap = Duration::ZERO;
    for call in &describes {
        if let Some(before) = last.insert(&call.profile, call.at) {
            longest_gap = longest_gap.max(call.at - before);
        }
    }
    assert_eq!(last.len(), 50);
    assert!(longest_gap <= Duration::from_secs(30), "{longest_gap:?}");
    assert!(describes.len() >= 390, "{}", describes.len());
}

#[tokio::test(start_paused = true)]
async fn a_new_profile_is_described_at_once_and_one_missing_from_a_listing_is_gone() {
    let account = "111111111111";
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 3))],
        settings(300, 60, 10.0, 4),
        Duration::from_millis(10),
    );
    sleep(10).await;
    assert!(harness.state.is_ready());
    let key = |name: &str| ResourceKey::fargate_profile(account, "us-east-1", "prod", name);
    harness
        .world()
        .clusters
        .get_mut(account)
        .unwrap()
        .get_mut("prod")
        .unwrap()
        .push("late".into());
    sleep(55).await;
    // Found by the discovery at 60 s and described then, not at the next cycle (300 s).
    let late: Vec<Call> = harness
        .describes(account, 0, 65)
        .into_iter()
        .filter(|c| c.profile == "late")
        .collect();
    assert_eq!(late.len(), 1);
    assert!(late[0].at < Duration::from_secs(61));
    assert!(harness.state.get(&key("late")).unwrap().state.up);

    // p000 is deleted: the next discovery's listing no longer shows it.
    harness
        .world()
        .clusters
        .get_mut(account)
        .unwrap()
        .get_mut("prod")
        .unwrap()
        .retain(|p| p != "p000");
    sleep(60).await;
    assert!(harness.state.get(&key("p000")).is_none());
    // The whole cluster goes; the next discovery finds it missing.
    harness.world().clusters.get_mut(account).unwrap().clear();
    sleep(60).await;
    let state = harness.stop().await;
    assert!(state.is_empty(), "{:?}", state.snapshot().resources);
}

#[tokio::test(start_paused = true)]
async fn a_not_found_describe_is_confirmed_by_a_list_before_the_profile_is_gone() {
    let account = "111111111111";
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 3))],
        settings(30, 3600, 10.0, 4),
        Duration::from_millis(10),
    );
    sleep(10).await;
    let key = |name: &str| ResourceKey::fargate_profile(account, "us-east-1", "prod", name);
    // p000 is deleted, p001 describes as not found but is still listed.
    {
        let mut world = harness.world();
        let prod = world
            .clusters
            .get_mut(account)
            .unwrap()
            .get_mut("prod")
            .unwrap();
        prod.retain(|p| p != "p000" && p != "p001");
        world.listed_but_not_found.push("p001".into());
    }
    sleep(45).await;
    let calls = harness.calls();
    let describe_p000 = calls
        .iter()
        .find(|c| c.profile == "p000" && c.at > Duration::from_secs(10))
        .unwrap();
    // The not-found describe is followed at once by a list of the cluster.
    assert!(
        calls
            .iter()
            .any(|c| c.operation == Operation::ListFargateProfiles
                && c.at >= describe_p000.at
                && c.at - describe_p000.at < Duration::from_secs(1))
    );
    assert!(harness.state.get(&key("p000")).is_none());
    let p001 = harness.state.get(&key("p001")).unwrap();
    assert!(!p001.state.up);
    assert_eq!(p001.state.last_error, Some(ErrorKind::NotFound));

    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cluster_gone_between_discoveries_is_confirmed_by_a_list_of_clusters() {
    let account = "111111111111";
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 4))],
        settings(30, 3600, 10.0, 4),
        Duration::from_millis(10),
    );
    sleep(10).await;
    assert_eq!(harness.state.len(), 4);
    harness.world().clusters.get_mut(account).unwrap().clear();
    sleep(30).await;
    let calls = harness.calls();
    let operations: Vec<Operation> = calls.iter().map(|c| c.operation).collect();
    assert!(
        operations.contains(&Operation::ListClusters),
        "{operations:?}"
    );
    let state = harness.stop().await;
    assert!(state.is_empty(), "{:?}", state.snapshot().resources);
    // The first not-found describe confirmed the cluster gone; no other profile was asked.
    let late_describes = calls
        .iter()
        .filter(|c| {
            c.operation == Operation::DescribeFargateProfile && c.at > Duration::from_secs(10)
        })
        .count();
    assert_eq!(late_describes, 1);
}

#[tokio::test(start_paused = true)]
async fn ready_once_every_target_is_discovered_and_every_profile_attempted() {
    let harness = Harness::start(
        &[("111111111111", "prod", profiles("p", 5))],
        settings(60, 600, 1.0, 4),
        Duration::from_millis(100),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!harness.state.is_ready());
    assert_eq!(harness.state.len(), 0);
    sleep(2).await;
    // Discovered, described in part (one request per second): not ready yet.
    assert_eq!(harness.state.len(), 5);
    assert!(!harness.state.is_ready());
    sleep(6).await;
    assert!(harness.state.is_ready());
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn two_shards_split_the_clusters_with_no_overlap_and_no_gap() {
    let account = "111111111111";
    let clusters: Vec<(String, Vec<String>)> = (0..12)
        .map(|c| {
            (
                format!("cluster-{c:02}"),
                profiles(&format!("c{c:02}-p"), 3),
            )
        })
        .collect();
    let mut described: Vec<std::collections::BTreeSet<String>> = Vec::new();
    for index in 0..2 {
        let accounts: Vec<(&str, &str, Vec<String>)> = clusters
            .iter()
            .map(|(cluster, names)| (account, cluster.as_str(), names.clone()))
            .collect();
        let mut settings = settings(30, 600, 100.0, 8);
        settings.shard = Shard { index, count: 2 };
        let harness = Harness::start(&accounts, settings, Duration::from_millis(10));
        sleep(40).await;
        let calls = harness.calls();
        // Only this shard's clusters are even listed.
        let listed = calls
            .iter()
            .filter(|c| c.operation == Operation::ListFargateProfiles)
            .count();
        let state = harness.stop().await;
        let keys: std::collections::BTreeSet<String> = state
            .snapshot()
            .resources
            .iter()
            .map(|p| p.state.key.to_string())
            .collect();
        assert!(listed < 12 && listed > 0, "{listed} clusters listed");
        assert!(state.snapshot().resources.iter().all(|p| p.state.up));
        described.push(keys);
    }
    assert!(described[0].is_disjoint(&described[1]));
    assert_eq!(described[0].len() + described[1].len(), 36);
}

#[tokio::test(start_paused = true)]
async fn a_lane_throttled_above_a_rate_settles_just_under_it_with_few_throttled_calls() {
    let account = "111111111111";
    // 100 profiles every 5 s want 20 requests/s, which the config allows; EKS takes only 5.
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 100))],
        settings(5, 600, 20.0, 8),
        Duration::from_millis(20),
    );
    harness.world().throttle_above = Some(5);
    sleep(240).await;
    let calls: Vec<Call> = harness
        .calls()
        .into_iter()
        .filter(|c| c.at >= Duration::from_secs(120) && c.at < Duration::from_secs(240))
        .collect();
    let accepted = calls.iter().filter(|c| !c.throttled).count() as f64 / 120.0;
    let throttled = calls.iter().filter(|c| c.throttled).count() as f64 / calls.len() as f64;
    harness.stop().await;
    let summary = format!(
        "{accepted:.2} accepted per second, {:.1}% throttled",
        throttled * 100.0
    );
    // Measured here: about 4.1 accepted per second (82% of what EKS takes), 5% throttled.
    assert!(accepted > 3.8 && accepted <= 5.0, "{summary}");
    assert!(throttled < 0.1, "{summary}");
}

#[tokio::test(start_paused = true)]
async fn slow_answers_are_not_overruns_and_each_profile_is_described_once_per_cycle() {
    let account = "111111111111";
    // 200 profiles over 10 s start 50 ms apart, and each answer takes 300 ms: six calls are
    // always awaiting their answer, also when a cycle ends.
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 200))],
        settings(10, 600, 100.0, 16),
        Duration::from_millis(300),
    );
    sleep(101).await;
    for cycle in 1..10 {
        let from = cycle * 10;
        let calls = harness.describes(account, from, from + 10);
        let distinct: BTreeSet<&str> = calls.iter().map(|c| c.profile.as_str()).collect();
        assert_eq!(calls.len(), 200, "cycle {cycle}");
        assert_eq!(distinct.len(), 200, "cycle {cycle}");
    }
    // Each profile's describes start one interval apart.
    let mut starts: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for call in harness.describes(account, 10, 100) {
        starts.entry(call.profile).or_default().push(call.at);
    }
    for (profile, at) in &starts {
        for pair in at.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap > Duration::from_millis(9_500) && gap < Duration::from_millis(10_500),
                "{profile}: {gap:?}"
            );
        }
    }
    let state = harness.stop().await;
    assert_eq!(state.snapshot().overruns, 0);
}

#[tokio::test(start_paused = true)]
async fn a_profile_held_back_by_throttling_shows_up_0_once_overdue_and_1_after_a_success() {
    let account = "111111111111";
    let harness = Harness::start(
        &[(account, "prod", profiles("p", 8))],
        settings(10, 600, 10.0, 4),
        Duration::from_millis(20),
    );
    sleep(15).await;
    let up = |state: &State| {
        let snapshot = state.snapshot();
        snapshot.resources.iter().filter(|p| p.state.up).count()
    };
    assert_eq!(up(&harness.state), 8);
    let known: Vec<_> = harness
        .state
        .snapshot()
        .resources
        .iter()
        .map(|p| p.state.known.clone())
        .collect();
    let until = Instant::now() + Duration::from_secs(120);
    harness
        .world()
        .throttled_until
        .insert(account.to_owned(), until);
    // Most describes wait in the backed-off lane instead of failing: once none answered for
    // two intervals (and a cycle ended), every profile shows up 0.
    sleep(35).await;
    assert_eq!(up(&harness.state), 0);
    // A missing poll is not a poll: what was known stays, and no event came.
    let snapshot = harness.state.snapshot();
    let still: Vec<_> = snapshot
        .resources
        .iter()
        .map(|p| p.state.known.clone())
        .collect();
    assert_eq!(still, known);
    assert!(snapshot.overruns > 0);
    // The throttling ends: each profile's next success brings up 1 back.
    sleep(150).await;
    assert_eq!(up(&harness.state), 8);
    let state = harness.stop().await;
    assert!(state.snapshot().resources.iter().all(|p| p.state.up));
}

#[tokio::test(start_paused = true)]
async fn a_profile_whose_describes_fail_every_other_poll_is_logged_once_a_minute() {
    let captured = crate::logging::Captured::start();
    let harness = Harness::start(
        &[("111122223333", "prod", profiles("p", 2))],
        settings(10, 600, 10.0, 4),
        Duration::from_millis(20),
    );
    harness.world().flapping = Some("p001".to_owned());
    // 30 polls in 5 minutes, half of them failed: without the limit, 30 lines.
    sleep(300).await;
    harness.stop().await;
    let lines = captured.lines_with("profile=111122223333/us-east-1/prod/p001");
    let failed: Vec<&String> = lines.iter().filter(|l| l.contains("failed")).collect();
    let again: Vec<&String> = lines.iter().filter(|l| l.contains("works again")).collect();
    assert!((5..=6).contains(&failed.len()), "{lines:#?}");
    assert!(again.len() == failed.len(), "{lines:#?}");
    assert!(
        failed[0].contains(" level=warn ") && failed[0].contains(" error=server "),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains(" suppressed=0"), "{}", failed[0]);
    // Each later WARN counts the failures that were not logged: 2 or 3 a minute.
    for line in &failed[1..] {
        assert!(
            line.contains(" suppressed=2") || line.contains(" suppressed=3"),
            "{line}"
        );
    }
    let other = captured.lines_with("prod/p000 ");
    assert!(other.iter().all(|l| !l.contains("describe")), "{other:#?}");
}

#[test]
fn the_overrun_warning_says_why_with_the_rate_rounded() {
    let settings = settings(10, 600, 10.0, 4);
    assert_eq!(
        lane_reason(1.234, true, 8, &settings),
        "throttled by AWS, backing off at 1.2 requests/s"
    );
    assert_eq!(
        lane_reason(0.2, false, 50, &settings),
        "held back by the rate: 50 resources but 0.2 requests/s x 10s allows 2.0; raise max_requests_per_second or interval, or split the targets"
    );
    assert_eq!(
        lane_reason(10.0, false, 50, &settings),
        "calls are slow or failing, or concurrency 4 is too low"
    );
    for (rate, text) in [
        (1234.5, "1200"),
        (47.3, "47"),
        (9.96, "10.0"),
        (0.26, "0.3"),
        (0.0234, "0.023"),
        (0.002, "0.0020"),
        (0.0, "no limit"),
        (f64::NAN, "no limit"),
    ] {
        assert_eq!(rounded(rate), text, "{rate}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_describe_that_panics_ends_the_scheduler_with_that_panic_for_the_supervisor() {
    let harness = Harness::start(
        &[("111122223333", "prod", profiles("p", 4))],
        settings(10, 600, 100.0, 4),
        Duration::from_millis(50),
    );
    sleep(15).await;
    assert!(!harness.task.is_finished(), "runs while describes succeed");
    harness.world().panics_on_describe = Some("p002".to_owned());
    sleep(15).await;
    assert!(
        harness.task.is_finished(),
        "a panicked describe stops the scheduler"
    );
    let error = harness.task.await.unwrap_err();
    assert!(error.is_panic(), "{error}");
}
