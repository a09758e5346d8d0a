//! When to poll what: discovery every `discovery_interval`, one describe per profile every
//! `interval` spread evenly over it, at most `concurrency` calls in flight, every HTTP attempt
//! through the rate limiter of its (account, region), which backs off when throttled.
//!
//! One task (the core) owns the schedule and is the only writer of the [`State`]: discovery
//! loops (one per target) and describe tasks (one per describe) report to it over a channel,
//! so no lock is held across a call and one slow or failing call delays nothing else.
//!
//! - A profile that discovery selects for the first time is described at once.
//! - A `not_found` on describe is confirmed at once by listing the cluster's profiles (and
//!   the clusters, when the cluster itself is not found); only then is the profile gone
//!   (DESIGN.md invariant 2).
//! - Each cycle orders the profiles by the start of their last describe, oldest first, and
//!   starts them `interval / n` apart, so each is described once per `interval` however long
//!   its calls take. A cycle that ends with describes not sent (still queued, or waiting for
//!   the rate limiter or a place in flight) counts an overrun; the next starts
//!   with the stalest, so none starves. A describe sent in time and still awaiting its answer
//!   when the cycle ends is not late.
//! - A profile is overdue when no describe answered for more than `interval` past its due
//!   time (one `interval` after its last answer, or after it was discovered): held back by
//!   its lane's backoff or rate, or still waiting. Each cycle's end marks the overdue ones
//!   [`Input::Overdue`], so they show `up 0` (nothing else changes); the next answer brings
//!   `up` back. The WARN counts them, says why per lane with the rate in force, and repeats
//!   at most once a minute.
//! - Every sum of times saturates: whatever durations and rates reach the scheduler, nothing
//!   panics.
//!
//! The core is the loop and what it does to the state and the logs; the pure parts it calls
//! are `cycle` (a cycle's order and pace, the overdue profiles, the overrun report's text),
//! `slots` (each profile's schedule) and [`crate::selection`] (what the targets select);
//! `report` holds how often it tells the operator what (overruns, problems, failing describes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Poll, Target};
use crate::discovery::{self, Discovery, Problem};
use crate::eks::{CallError, Eks};
use crate::limits::{Backoff, Limiters, RetryPolicy, later, paced};
use crate::model::{
    ErrorKind, Gone, Input, Kind, Operation, Overdue, PollFailure, ResourceKey, Shard, Timestamp,
};
use crate::selection::{Change, Selection, restored_end};
use crate::state::{Labels, State};

mod cycle;
mod report;
mod slots;

use cycle::{Cycle, Lane};
use report::{OverrunLog, ProblemLog, log_describe};
use slots::Slots;

/// How long in-flight describes may take to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The shortest `interval` and `discovery_interval` the scheduler runs with, whatever the
/// config says: shorter would spin.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How a target whose discovery failed retries before its next regular round.
const DISCOVERY_RETRY: Backoff = Backoff {
    base: Duration::from_secs(5),
    max: Duration::from_secs(300),
};

/// The knobs of the schedule, from `[poll]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub interval: Duration,
    pub discovery_interval: Duration,
    pub concurrency: usize,
    pub max_requests_per_second: f64,
    pub policy: RetryPolicy,
    /// The clusters this instance polls.
    pub shard: Shard,
}

impl Settings {
    pub fn new(poll: &Poll) -> Self {
        Self {
            interval: poll.interval.max(MIN_INTERVAL),
            discovery_interval: poll.discovery_interval.max(MIN_INTERVAL),
            concurrency: poll.concurrency.max(1),
            max_requests_per_second: poll.max_requests_per_second,
            policy: RetryPolicy::DAEMON,
            shard: poll.shard,
        }
    }
}

/// One target: its config and its AWS clients.
#[derive(Debug)]
pub struct Watched<E> {
    pub target: Target,
    pub client: E,
}

/// What the scheduler shares with its tasks.
struct Shared<E> {
    watched: Vec<Watched<E>>,
    labels: Vec<Arc<Labels>>,
    settings: Settings,
    limiters: Limiters,
    clock: Clock,
    /// Cancelled when shutdown starts: no new call is sent after it.
    stopping: CancellationToken,
}

/// What the tasks report to the core.
enum Message {
    Discovered {
        target: usize,
        /// `None` when the account id could not be told.
        account_id: Option<String>,
        discovery: Discovery,
    },
    Described {
        key: ResourceKey,
        outcome: Box<Outcome>,
    },
}

/// The result of one describe, after confirmation of a `not_found`.
// Short-lived, one per describe and moved at once: boxing would add an allocation per call.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Input(Input),
    /// The resource's cluster is gone: so is everything in it, and the cluster itself.
    ClusterGone {
        observed_at: Timestamp,
    },
}

/// Runs the schedule until `shutdown` is cancelled, then lets in-flight describes finish for
/// up to [`SHUTDOWN_GRACE`] and returns.
pub async fn run<E: Eks + 'static>(
    watched: Vec<Watched<E>>,
    settings: Settings,
    state: Arc<State>,
    clock: Clock,
    shutdown: CancellationToken,
) {
    let labels = watched
        .iter()
        .map(|w| Arc::new(w.target.labels.clone()))
        .collect();
    let limiters =
        Limiters::new(settings.max_requests_per_second).with_max_in_flight(settings.concurrency);
    let shared = Arc::new(Shared {
        watched,
        labels,
        settings,
        limiters,
        clock,
        stopping: shutdown.clone(),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let mut discoveries = JoinSet::new();
    {
        let shared = shared.clone();
        let tx = tx.clone();
        discoveries.spawn(async move { start_discovery(shared, tx).await });
    }
    {
        let shared = shared.clone();
        let state = state.clone();
        discoveries.spawn(async move { report_lanes(shared, state).await });
    }
    let targets = shared.watched.len();
    let mut core = Core {
        shared,
        state,
        tx,
        slots: Slots::default(),
        selection: Selection::new(targets),
        problem_log: ProblemLog::new(targets),
        cycle: Cycle::empty(Instant::now(), settings.interval),
        describes: JoinSet::new(),
        started: false,
        overrun_log: OverrunLog::default(),
    };
    core.run(rx, &mut discoveries, &shutdown).await;
    discoveries.shutdown().await;
}

/// How often the lanes' status reaches the state (for the status page).
const LANES_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Hands what every rate limiter lane does to the state every [`LANES_REPORT_EVERY`], until
/// shutdown.
async fn report_lanes<E: Eks>(shared: Arc<Shared<E>>, state: Arc<State>) {
    loop {
        state.set_lanes(shared.limiters.statuses());
        tokio::select! {
            () = shared.stopping.cancelled() => return,
            () = tokio::time::sleep(LANES_REPORT_EVERY) => {}
        }
    }
}

/// Tells every target's account (once per credential source), then runs a discovery loop
/// per target.
async fn start_discovery<E: Eks + 'static>(shared: Arc<Shared<E>>, tx: Tx) {
    let sts = shared.limiters.standalone();
    let mut targets = Vec::new();
    for watched in &shared.watched {
        targets.push((&watched.target, &watched.client));
    }
    let accounts = discovery::account_ids(targets, &sts, &shared.settings.policy).await;
    let mut loops = JoinSet::new();
    for (index, account) in accounts.into_iter().enumerate() {
        let shared = shared.clone();
        let tx = tx.clone();
        loops.spawn(async move { discovery_loop(shared, index, account, tx).await });
    }
    // A loop that panicked panics here; the rest end only when shutdown starts.
    loops.join_all().await;
    shared.stopping.cancelled().await;
}

type Tx = mpsc::UnboundedSender<Message>;

/// Discovers one target every `discovery_interval`, sooner after a failure.
async fn discovery_loop<E: Eks>(
    shared: Arc<Shared<E>>,
    index: usize,
    mut account: Result<String, CallError>,
    tx: Tx,
) {
    let Watched { target, client } = &shared.watched[index];
    let settings = &shared.settings;
    let sts = shared.limiters.standalone();
    let mut failures = 0;
    loop {
        if account.is_err() {
            account = paced(&sts, &settings.policy, || client.caller_identity()).await;
        }
        let (account_id, discovery) = match &account {
            Ok(account_id) => {
                let limiter = shared.limiters.get(account_id, &target.region);
                let shard = settings.shard;
                let found = discovery::discover(
                    client,
                    target,
                    &limiter,
                    &settings.policy,
                    settings.concurrency,
                    |cluster| shard.owns(account_id, &target.region, cluster),
                )
                .await;
                (Some(account_id.clone()), found)
            }
            Err(error) => {
                let problem = Problem::Failed {
                    cluster: None,
                    error: error.clone(),
                };
                (
                    None,
                    Discovery {
                        resources: Vec::new(),
                        problems: vec![problem],
                    },
                )
            }
        };
        let failed = discovery.failed();
        let message = Message::Discovered {
            target: index,
            account_id,
            discovery,
        };
        if tx.send(message).is_err() {
            return;
        }
        let wait = if failed {
            failures += 1;
            DISCOVERY_RETRY
                .delay(failures - 1)
                .min(settings.discovery_interval)
        } else {
            failures = 0;
            settings.discovery_interval
        };
        tokio::select! {
            () = shared.stopping.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

struct Core<E> {
    shared: Arc<Shared<E>>,
    state: Arc<State>,
    tx: Tx,
    slots: Slots,
    /// What each target selects, and the target each profile is polled under.
    selection: Selection,
    /// The problems each target's last discovery reported, to log changes only.
    problem_log: ProblemLog,
    cycle: Cycle,
    describes: JoinSet<()>,
    /// Whether every target was discovered and every profile attempted once.
    started: bool,
    /// The WARN about overdue profiles, once a minute while they are.
    overrun_log: OverrunLog,
}

impl<E: Eks + 'static> Core<E> {
    /// Runs until `shutdown`. Discovery ending before that is a bug: the scheduler panics with
    /// it, so the daemon's supervisor sees it.
    async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        discoveries: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let wake = self.cycle.wake();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // Before the messages, so a steady flow of answers cannot hold up what is due.
                () = tokio::time::sleep_until(wake) => self.tick(),
                Some(message) = rx.recv() => {
                    self.handle(message);
                    // Reap finished describes as they come, not only when the loop is idle.
                    while let Some(joined) = self.describes.try_join_next() {
                        describe_ended(joined);
                    }
                }
                Some(joined) = self.describes.join_next(), if !self.describes.is_empty() => {
                    describe_ended(joined);
                }
                Some(joined) = discoveries.join_next(), if !discoveries.is_empty() => {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    discovery_ended(joined);
                }
            }
        }
        self.drain(&mut rx).await;
    }

    /// Applies what in-flight describes report until they are done or the grace period ends.
    /// Readiness is left to the caller: a reload keeps it.
    async fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<Message>) {
        let deadline = later(Instant::now(), SHUTDOWN_GRACE);
        while !self.describes.is_empty() {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        describes = self.describes.len(),
                        "shutdown grace period over; cancelling the describes still running"
                    );
                    break;
                }
                Some(message) = rx.recv() => {
                    if let Message::Described { .. } = message {
                        self.handle(message);
                    }
                }
                Some(_) = self.describes.join_next() => {}
            }
        }
        self.describes.shutdown().await;
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Discovered {
                target,
                account_id,
                discovery,
            } => self.discovered(target, account_id, discovery),
            Message::Described { key, outcome } => self.described(key, *outcome),
        }
        self.check_ready();
    }

    /// Starts what is due: the next profiles of the cycle, or the next cycle.
    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.cycle.end() {
            self.end_cycle();
            let last_starts = self.slots.last_starts();
            self.cycle = Cycle::start(now, self.shared.settings.interval, last_starts);
        }
        while let Some(key) = self.cycle.next_due(now) {
            self.dispatch(&key);
        }
    }

    /// Counts an overrun when describes of the ending cycle were not sent; marks the profiles
    /// that are overdue (`up 0`) and says, at most once a minute, how many and why.
    fn end_cycle(&mut self) {
        let unfinished = self.cycle.queued(|key| self.slots.contains(key)) + self.slots.waiting();
        if unfinished > 0 {
            self.state.record_overrun();
        }
        let interval = self.shared.settings.interval;
        let overdue = cycle::overdue(Instant::now(), interval, self.slots.last_answers());
        for key in self.slots.mark_overdue(&overdue) {
            let observed_at = self.shared.clock.now();
            self.state
                .apply(&Input::Overdue(Overdue { key, observed_at }));
        }
        let lanes = |account: &str, region: &str| lane(&self.shared.limiters, account, region);
        let why = || cycle::why_overdue(self.slots.keys(), &overdue, &self.shared.settings, lanes);
        let counts = (overdue.len(), unfinished, self.slots.len());
        self.overrun_log.cycle_ended(counts, interval, why);
    }

    /// Starts one describe, unless one is running for the profile.
    fn dispatch(&mut self, key: &ResourceKey) {
        let Some(target) = self.selection.owner(key) else {
            return;
        };
        let Some(sent) = self.slots.start(key, Instant::now()) else {
            return;
        };
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let key = key.clone();
        self.describes.spawn(async move {
            if let Some(outcome) = describe(&shared, target, &key, &sent).await {
                let outcome = Box::new(outcome);
                let _ = tx.send(Message::Described { key, outcome });
            }
        });
    }

    fn described(&mut self, key: ResourceKey, outcome: Outcome) {
        let Some(slot) = self.slots.answered(&key, Instant::now()) else {
            return;
        };
        match outcome {
            Outcome::Input(input) => {
                let error = match &input {
                    Input::Failed(failure) => Some(failure.kind),
                    _ => None,
                };
                log_describe(&key, slot, error);
                if let Input::Gone(_) = input {
                    self.forget(&key);
                }
                self.state.apply(&input);
            }
            Outcome::ClusterGone { observed_at } => {
                let mut gone = self.selection.in_cluster(&key);
                // What the cluster holds ends first, then the cluster itself.
                gone.sort_by_key(|key| key.kind == Kind::CLUSTER);
                tracing::info!(
                    account_id = %key.account_id,
                    region = %key.region,
                    cluster = %key.cluster,
                    resources = gone.len(),
                    "cluster is gone; so is everything in it"
                );
                for key in gone {
                    self.forget(&key);
                    self.state.apply(&Input::Gone(Gone { key, observed_at }));
                }
            }
        }
    }

    /// Stops scheduling a profile and drops it from every selection.
    fn forget(&mut self, key: &ResourceKey) {
        self.slots.remove(key);
        self.selection.remove(key);
    }

    fn discovered(&mut self, index: usize, account_id: Option<String>, discovery: Discovery) {
        let target = &self.shared.watched[index].target;
        let account = account_id.as_deref();
        let problems = self
            .problem_log
            .report(index, target, account, &discovery.problems);
        self.state.set_target_problems(problems);
        let region = &self.shared.watched[index].target.region;
        let account = account_id.as_deref();
        let changes = self
            .selection
            .discovered(index, account, region, &discovery);
        for change in changes {
            self.changed(change);
        }
        if let Some(account_id) = account
            && !discovery.failed()
        {
            self.end_restored(Some((account_id, index)));
        }
    }

    /// Ends profiles the state file knew that discovery did not select again: gone when the
    /// listing of `listed` (an account and the target that listed everything it selects in
    /// it) covers them (deleted while the daemon was down), unmonitored when no target selects
    /// them any more.
    fn end_restored(&self, listed: Option<(&str, usize)>) {
        let watched = &self.shared.watched;
        let listed = listed.map(|(account_id, index)| (account_id, &watched[index].target));
        for key in self.state.restored_keys() {
            let targets = watched.iter().map(|w| &w.target);
            if let Some(ended) = restored_end(&key, listed, targets, self.shared.settings.shard) {
                self.state.apply(&ended.input(key, self.shared.clock.now()));
            }
        }
    }

    /// Schedules what a discovery changed: a profile no target selected before is described
    /// at once; one polled under another target takes that target's labels; one no target
    /// selects any more is gone (the API says so), unless another target still selects it.
    fn changed(&mut self, change: Change) {
        let now = self.shared.clock.now();
        change.warn_if_duplicate();
        match change {
            Change::Added { key, target } => {
                self.slots.add(key.clone(), Instant::now());
                let labels = self.shared.labels[target].clone();
                self.state.discovered(&key, labels, now);
                self.dispatch(&key);
            }
            Change::Duplicate {
                key, first, moved, ..
            } => {
                if moved {
                    let labels = self.shared.labels[first].clone();
                    self.state.discovered(&key, labels, now);
                }
            }
            Change::Retargeted { key, target } => {
                let labels = self.shared.labels[target].clone();
                self.state.discovered(&key, labels, now);
            }
            Change::Removed { key } => {
                self.forget(&key);
                let observed_at = now;
                self.state.apply(&Input::Gone(Gone { key, observed_at }));
            }
        }
    }

    /// Ready once every target was discovered and every profile attempted; it stays ready.
    /// Then what was known before (from the state file or a reload) and is not selected any
    /// more ends.
    fn check_ready(&mut self) {
        if self.started || !self.selection.complete() || !self.slots.attempted() {
            return;
        }
        self.started = true;
        self.end_restored(None);
        if !self.state.is_ready() {
            let resources = self.slots.len();
            tracing::info!(
                resources,
                "ready: every target discovered and every resource attempted"
            );
            self.state.set_ready(true);
        }
    }
}

/// What the rate limiter of a lane does now, for the overrun WARN.
fn lane(limiters: &Limiters, account_id: &str, region: &str) -> Lane {
    let limiter = limiters.get(account_id, region);
    Lane {
        rate: limiter.rate(),
        throttled: limiter.throttled_streak() > 0,
    }
}

/// A discovery loop ends only by panicking (its panic goes on) or by a bug: the scheduler
/// panics, so the daemon's supervisor sees it.
fn discovery_ended(joined: Result<(), tokio::task::JoinError>) -> ! {
    match joined {
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        _ => panic!("discovery ended while the scheduler runs"),
    }
}

/// A describe task that panicked panics the scheduler, which the supervisor reports and stops
/// the daemon on: its profile would otherwise stay in flight, never described again.
fn describe_ended(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Describes one profile; a `not_found` is confirmed by a list before the profile counts as
/// gone. `None` when shutdown started before the call was sent.
async fn describe<E: Eks>(
    shared: &Shared<E>,
    target: usize,
    key: &ResourceKey,
    sent: &AtomicBool,
) -> Option<Outcome> {
    let client = &shared.watched[target].client;
    let limiter = shared.limiters.get(&key.account_id, &key.region);
    let policy = &shared.settings.policy;
    let stopping = &shared.stopping;
    // The call's future is boxed when the call starts: a describe waiting for its slot stays
    // small, however many wait (all of them, right after a large discovery).
    let answer = paced(&limiter, policy, || {
        Box::pin(async {
            if stopping.is_cancelled() {
                return Err(stopped(key.kind.spec().describe));
            }
            sent.store(true, Ordering::Relaxed);
            client.describe(key.kind, &key.cluster, &key.name).await
        })
    })
    .await;
    if stopping.is_cancelled() && answer.is_err() {
        return None;
    }
    let observed_at = shared.clock.now();
    let failed = |kind| {
        Outcome::Input(Input::Failed(PollFailure {
            key: key.clone(),
            kind,
            observed_at,
        }))
    };
    let error = match answer {
        Ok(profile) => {
            let observation = profile.into_observation(key.clone(), observed_at);
            return Some(Outcome::Input(Input::Observed(observation)));
        }
        Err(error) if error.kind == ErrorKind::NotFound => error,
        Err(error) => return Some(failed(error.kind)),
    };
    tracing::debug!(profile = %key, %error, "describe says not found; listing to confirm");
    let listed = Box::pin(discovery::list_all(&limiter, policy, |token| {
        client.list_resources(key.kind, &key.cluster, token)
    }))
    .await;
    let gone = Outcome::Input(Input::Gone(Gone {
        key: key.clone(),
        observed_at,
    }));
    Some(match listed {
        // A cluster that is gone ends what it holds, then itself.
        Ok(names) if !names.contains(&key.name) && key.kind == Kind::CLUSTER => {
            Outcome::ClusterGone { observed_at }
        }
        Ok(names) if !names.contains(&key.name) => gone,
        Err(error) if error.kind == ErrorKind::NotFound => {
            let clusters = Box::pin(discovery::list_all(&limiter, policy, |token| {
                client.list_clusters(token)
            }))
            .await;
            match clusters {
                Ok(names) if !names.contains(&key.cluster) => Outcome::ClusterGone { observed_at },
                _ => failed(ErrorKind::NotFound),
            }
        }
        // Listed but not described (eventual consistency), or the list failed: not proven.
        _ => failed(ErrorKind::NotFound),
    })
}

fn stopped(operation: Operation) -> CallError {
    CallError::new(operation, ErrorKind::Other, "not sent: shutting down")
}

#[cfg(test)]
mod tests;
