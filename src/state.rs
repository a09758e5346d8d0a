//! The last-known snapshot of every monitored profile, as the diff left it, and the outbox:
//! the events each sink still has to receive. Shared by the metrics, the JSON API, the state
//! file and the sinks.
//!
//! One writer (the scheduler) feeds it inputs; readers take a [`Snapshot`], which copies only
//! pointers, so a scrape holds the lock for microseconds and never waits on a poll. Every
//! event is logged as one structured line, counted by kind, and queued for each sink that wants
//! it in the same step, so the state file always holds both or neither. Each change to what the
//! file holds bumps a generation; an event may be delivered once the file holds its generation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::diff::{self, Event, EventDetail, Known, ResourceState, Rules, Sequence};
use crate::limits::LaneStatus;
use crate::model::{EventKind, Input, ResourceKey, Status, Timestamp};

/// The static labels of a target, attached to every series and event of its profiles.
pub type Labels = BTreeMap<String, String>;

/// What one sink wants from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub sink: String,
    pub events: BTreeSet<EventKind>,
    /// For `status_changed`: only transitions into one of these.
    pub statuses: BTreeSet<Status>,
    /// Undelivered events kept at most; the oldest are dropped beyond it.
    pub max_queue: usize,
}

impl Subscription {
    pub fn wants(&self, event: &Event) -> bool {
        self.events.contains(&event.kind())
            && match &event.detail {
                EventDetail::StatusChanged { to, .. } => self.statuses.contains(to),
                _ => true,
            }
    }
}

/// An event waiting for one sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The event's id: the same on every attempt and after a restart.
    pub id: String,
    pub sink: String,
    pub event: Event,
    /// The target's static labels when the event happened.
    pub labels: Labels,
    pub enqueued_at: Timestamp,
    pub attempts: u32,
    /// No attempt before this time (a retry's backoff or `Retry-After`).
    pub not_before: Option<Timestamp>,
    /// The state generation that holds it; 0 for what was loaded from the file.
    #[serde(skip)]
    pub generation: u64,
}

/// How one delivery attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Try again, not before this time.
    Retry {
        not_before: Timestamp,
    },
    /// The receiver refused it for good (a 4xx other than 408 and 429): dropped.
    Rejected,
}

/// A notification outcome, the `outcome` label of `notifications_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Success,
    Retry,
    Rejected,
    Dropped,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Retry,
        Outcome::Rejected,
        Outcome::Dropped,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Retry => "retry",
            Outcome::Rejected => "rejected",
            Outcome::Dropped => "dropped",
        }
    }
}

/// What the state file holds: what the alert promises need, not what changes every poll.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The last event sequence number handed out.
    pub sequence: u64,
    pub resources: Vec<SavedResource>,
    pub outbox: Vec<Pending>,
}

/// What the state file should hold, taken cheaply under the lock: the profiles as the shared
/// pointers the snapshot holds (no deep copy of 10,000 profiles per write), encoded exactly as
/// [`Saved`].
#[derive(Debug)]
pub struct Saving {
    sequence: u64,
    entries: Vec<Arc<Entry>>,
    restored: Vec<SavedResource>,
    outbox: Vec<Pending>,
}

impl Serialize for Saving {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;

        /// A [`SavedResource`] by reference.
        #[derive(Serialize)]
        struct Profile<'a> {
            key: &'a ResourceKey,
            labels: &'a Labels,
            known: &'a Known,
        }
        struct Profiles<'a>(&'a Saving);
        impl Serialize for Profiles<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let saving = self.0;
                let live = saving.entries.iter().filter_map(|entry| {
                    Some(Profile {
                        key: &entry.state.key,
                        labels: &entry.labels,
                        known: entry.state.known.as_ref()?,
                    })
                });
                let restored = saving.restored.iter().map(|saved| Profile {
                    key: &saved.key,
                    labels: &saved.labels,
                    known: &saved.known,
                });
                serializer.collect_seq(live.chain(restored))
            }
        }

        let mut saved = serializer.serialize_struct("Saved", 3)?;
        saved.serialize_field("sequence", &self.sequence)?;
        saved.serialize_field("resources", &Profiles(self))?;
        saved.serialize_field("outbox", &self.outbox)?;
        saved.end()
    }
}

/// One profile as the state file keeps it: its incarnation, status and open episodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedResource {
    pub key: ResourceKey,
    pub labels: Labels,
    pub known: Known,
}

/// Per sink: queue depth, counts by outcome and the last failure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub queued: usize,
    pub outcomes: BTreeMap<Outcome, u64>,
    pub last_error: Option<SinkError>,
}

/// A failed delivery attempt: when, and what went wrong (no secret: what the sink logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkError {
    pub at: Timestamp,
    pub error: String,
}

/// One monitored profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: ResourceState,
    pub labels: Arc<Labels>,
    /// When discovery first selected it.
    pub discovered_at: Timestamp,
}

impl Entry {
    /// When the profile was last attempted, or discovered if never: the age of what is known.
    pub fn freshness(&self) -> Timestamp {
        self.state.last_attempt.unwrap_or(self.discovered_at)
    }
}

/// What the readers see: every profile sorted by key, and the counters.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub profiles: Vec<Arc<Entry>>,
    /// Events so far, in [`EventKind::ALL`] order.
    pub events_total: [u64; EventKind::ALL.len()],
    /// Poll cycles that could not describe every profile within the interval.
    pub overruns: u64,
    /// Per sink, by name.
    pub sinks: BTreeMap<String, SinkStats>,
    /// Per rate limiter lane, by account and region.
    pub lanes: Vec<LaneStatus>,
    /// What the targets' last discoveries could not do (a denied list call, a named cluster
    /// that does not exist, a target that matches nothing).
    pub target_problems: Vec<String>,
    /// A profile not attempted for longer than this is stale.
    pub stale_after: Duration,
}

/// The shared state of the daemon.
#[derive(Debug)]
pub struct State {
    inner: Mutex<Inner>,
    ready: AtomicBool,
    /// The generation of what the state file should hold.
    generation: watch::Sender<u64>,
    /// The generation the state file holds.
    saved: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Rules,
    subscriptions: Vec<Subscription>,
    profiles: BTreeMap<ResourceKey, Arc<Entry>>,
    /// Profiles from the state file, or from before a reload, that discovery has not selected
    /// again yet.
    restored: BTreeMap<ResourceKey, Restored>,
    /// Monitored profiles that the targets of a reloaded config have not selected again yet.
    reselect: BTreeSet<ResourceKey>,
    sequence: Sequence,
    events_total: [u64; EventKind::ALL.len()],
    overruns: u64,
    outbox: BTreeMap<String, VecDeque<Pending>>,
    outcomes: BTreeMap<(String, Outcome), u64>,
    /// Per sink, the last failed delivery: when and why (not saved).
    sink_errors: BTreeMap<String, SinkError>,
    /// What each rate limiter lane does, as the scheduler last reported it.
    lanes: Vec<LaneStatus>,
    /// What the targets' last discoveries could not do, as the scheduler logged it.
    target_problems: Vec<String>,
    /// A profile not attempted for longer than this is stale (for the page and the API).
    stale_after: Duration,
    generation: u64,
}

/// A profile waiting to be selected again, with what was known of it.
#[derive(Clone, Debug)]
struct Restored {
    state: ResourceState,
    labels: Labels,
}

impl State {
    /// An empty state; `subscriptions` are the sinks the outbox feeds.
    pub fn new(rules: Rules, subscriptions: Vec<Subscription>) -> Self {
        let mut inner = Inner {
            rules,
            ..Inner::default()
        };
        for subscription in &subscriptions {
            inner
                .outbox
                .insert(subscription.sink.clone(), VecDeque::new());
        }
        inner.subscriptions = subscriptions;
        Self {
            inner: Mutex::new(inner),
            ready: AtomicBool::new(false),
            generation: watch::Sender::new(0),
            saved: watch::Sender::new(0),
        }
    }

    /// Takes back what the state file held: the sequence counter, the profiles (which wait for
    /// discovery to select them again) and the events not delivered yet (to sinks that still
    /// exist; the others are dropped with a WARN).
    pub fn restore(&self, saved: Saved) {
        let mut inner = self.lock();
        inner.sequence = Sequence::starting_after(saved.sequence);
        inner.restored = saved
            .resources
            .into_iter()
            .map(|profile| {
                let mut state = ResourceState::discovered(profile.key.clone());
                state.known = Some(profile.known);
                let restored = Restored {
                    state,
                    labels: profile.labels,
                };
                (profile.key, restored)
            })
            .collect();
        let mut orphans: BTreeMap<String, usize> = BTreeMap::new();
        for mut pending in saved.outbox {
            pending.generation = 0;
            match inner.outbox.get_mut(&pending.sink) {
                Some(queue) => queue.push_back(pending),
                None => *orphans.entry(pending.sink).or_default() += 1,
            }
        }
        drop(inner);
        for (sink, events) in orphans {
            tracing::warn!(sink = %sink, events, "the state file holds events for a sink that is no longer configured; dropped");
        }
    }

    /// Raises the sequence counter so that the next number is above `at_least` (see
    /// [`sequence_floor`]); never lowers it.
    pub fn raise_sequence(&self, at_least: u64) {
        let mut inner = self.lock();
        let last = inner.sequence.last().max(at_least);
        inner.sequence = Sequence::starting_after(last);
    }

    /// Adds a profile that discovery selected; it exports `up 0` until described, with what
    /// the state file knew of it, if anything. A profile already known only takes the new
    /// labels.
    pub fn discovered(&self, key: &ResourceKey, labels: Arc<Labels>, at: Timestamp) {
        let mut inner = self.lock();
        let restored = inner.restored.remove(key);
        inner.reselect.remove(key);
        match inner.profiles.get_mut(key) {
            Some(entry) if entry.labels != labels => Arc::make_mut(entry).labels = labels,
            Some(_) => {}
            None => {
                let state = restored.map_or_else(
                    || ResourceState::discovered(key.clone()),
                    |restored| restored.state,
                );
                let entry = Entry {
                    state,
                    labels,
                    discovered_at: at,
                };
                inner.profiles.insert(key.clone(), Arc::new(entry));
            }
        }
    }

    /// Applies a reloaded config: new rules and sinks. Every profile stays as it is (its series
    /// too) and waits to be selected again, so nothing is alerted again; what the new targets do
    /// not select ends as unmonitored. The queue of a removed sink
    /// is dropped, counted and logged.
    pub fn reconfigure(&self, rules: Rules, subscriptions: Vec<Subscription>) {
        let mut inner = self.lock();
        inner.rules = rules;
        inner.reselect = inner.profiles.keys().cloned().collect();
        let wanted: BTreeSet<&str> = subscriptions.iter().map(|s| s.sink.as_str()).collect();
        let removed: Vec<String> = inner
            .outbox
            .keys()
            .filter(|sink| !wanted.contains(sink.as_str()))
            .cloned()
            .collect();
        for sink in removed {
            let dropped = inner.outbox.remove(&sink).map_or(0, |q| q.len() as u64);
            if dropped > 0 {
                tracing::warn!(sink = %sink, events = dropped, "sink removed by the reload; its undelivered events are dropped");
                *inner.outcomes.entry((sink, Outcome::Dropped)).or_default() += dropped;
            }
        }
        for subscription in &subscriptions {
            inner.outbox.entry(subscription.sink.clone()).or_default();
        }
        inner.subscriptions = subscriptions;
        self.changed(inner);
    }

    /// Profiles known from the state file, or monitored before a reload, that discovery has
    /// not selected again.
    pub fn restored_keys(&self) -> Vec<ResourceKey> {
        let inner = self.lock();
        inner
            .restored
            .keys()
            .chain(&inner.reselect)
            .cloned()
            .collect()
    }

    /// Runs one input through the diff. Inputs for profiles that are not monitored (not
    /// discovered, or already gone) are ignored, except that a restored profile not selected
    /// again can end (gone or unmonitored). Returns the events, which are also logged,
    /// counted and queued for every sink that wants them.
    pub fn apply(&self, input: &Input) -> Vec<Event> {
        let mut inner = self.lock();
        let key = input.key();
        let Inner {
            rules,
            subscriptions,
            profiles,
            restored,
            reselect,
            sequence,
            events_total,
            outbox,
            outcomes,
            generation,
            ..
        } = &mut *inner;
        // The diff reads the state in place: no copy of it per describe.
        let (transition, labels, mut changed) = {
            let (prev, labels) = match profiles.get(key) {
                Some(entry) => (&entry.state, entry.labels.clone()),
                None => match (restored.get(key), input) {
                    (Some(restored), Input::Gone(_) | Input::Unmonitored(_)) => {
                        (&restored.state, Arc::new(restored.labels.clone()))
                    }
                    _ => return Vec::new(),
                },
            };
            let transition = diff::diff(Some(prev), input, rules, sequence);
            let changed = match &transition.next {
                Some(next) => next.known != prev.known,
                None => prev.known.is_some(),
            };
            (transition, labels, changed)
        };
        changed |= !transition.events.is_empty();
        match transition.next {
            Some(next) => {
                if let Some(entry) = profiles.get_mut(key) {
                    Arc::make_mut(entry).state = next;
                }
            }
            None => {
                profiles.remove(key);
                restored.remove(key);
                reselect.remove(key);
            }
        }
        for event in &transition.events {
            events_total[kind_index(event.kind())] += 1;
        }
        if changed {
            *generation += 1;
        }
        let generation = *generation;
        let now = transition
            .events
            .first()
            .map_or(input.observed_at(), |e| e.observed_at);
        for event in &transition.events {
            for subscription in subscriptions.iter().filter(|s| s.wants(event)) {
                let pending = Pending {
                    id: event.id(),
                    sink: subscription.sink.clone(),
                    event: event.clone(),
                    labels: (*labels).clone(),
                    enqueued_at: now,
                    attempts: 0,
                    not_before: None,
                    generation,
                };
                enqueue(outbox, outcomes, subscription, pending);
            }
        }
        drop(inner);
        if changed {
            self.generation.send_replace(generation);
        }
        for event in &transition.events {
            log_event(event, &labels);
        }
        transition.events
    }

    /// What the state file should hold and the generation it is, for the writer: pointers to
    /// the profiles, taken in one short hold of the lock.
    pub fn to_write(&self) -> (u64, Saving) {
        let inner = self.lock();
        let saving = Saving {
            sequence: inner.sequence.last(),
            entries: inner.profiles.values().cloned().collect(),
            restored: inner
                .restored
                .iter()
                .filter_map(|(key, restored)| {
                    Some(SavedResource {
                        key: key.clone(),
                        labels: restored.labels.clone(),
                        known: restored.state.known.clone()?,
                    })
                })
                .collect(),
            outbox: inner.outbox.values().flatten().cloned().collect(),
        };
        (inner.generation, saving)
    }

    /// What the state file should hold, copied (for tests and the last log line).
    pub fn to_save(&self) -> (u64, Saved) {
        let inner = self.lock();
        let mut profiles: Vec<SavedResource> = inner
            .profiles
            .values()
            .filter_map(|entry| {
                Some(SavedResource {
                    key: entry.state.key.clone(),
                    labels: (*entry.labels).clone(),
                    known: entry.state.known.clone()?,
                })
            })
            .collect();
        profiles.extend(inner.restored.iter().filter_map(|(key, restored)| {
            Some(SavedResource {
                key: key.clone(),
                labels: restored.labels.clone(),
                known: restored.state.known.clone()?,
            })
        }));
        let saved = Saved {
            sequence: inner.sequence.last(),
            resources: profiles,
            outbox: inner.outbox.values().flatten().cloned().collect(),
        };
        (inner.generation, saved)
    }

    /// Records that the state file holds `generation`: its events may be delivered.
    pub fn mark_saved(&self, generation: u64) {
        self.saved.send_if_modified(|saved| {
            let newer = generation > *saved;
            *saved = (*saved).max(generation);
            newer
        });
    }

    /// Changes whenever what the state file should hold changes.
    pub fn watch_generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Changes whenever the state file was written.
    pub fn watch_saved(&self) -> watch::Receiver<u64> {
        self.saved.subscribe()
    }

    /// The next event `sink` may attempt now: saved, due, and with no earlier event of the
    /// same profile still queued (so events of a profile arrive in order). Events older than
    /// `max_age` are dropped and counted first. Also returns the earliest time a queued event
    /// becomes due, for the caller to sleep until.
    pub fn next_for(
        &self,
        sink: &str,
        now: Timestamp,
        max_age: std::time::Duration,
    ) -> (Option<Pending>, Option<Timestamp>) {
        let saved = *self.saved.borrow();
        let mut inner = self.lock();
        let Some(queue) = inner.outbox.get_mut(sink) else {
            return (None, None);
        };
        let before = queue.len();
        queue.retain(|p| now.since(p.enqueued_at) <= max_age);
        let expired = (before - queue.len()) as u64;
        let mut blocked: BTreeSet<&ResourceKey> = BTreeSet::new();
        let mut next = None;
        let mut wake: Option<Timestamp> = None;
        for pending in queue.iter() {
            if blocked.contains(&pending.event.key) {
                continue;
            }
            blocked.insert(&pending.event.key);
            if pending.generation > saved {
                continue;
            }
            match pending.not_before {
                Some(at) if at > now => wake = Some(wake.map_or(at, |w| w.min(at))),
                _ => {
                    next = Some(pending.clone());
                    break;
                }
            }
        }
        if expired > 0 {
            *inner
                .outcomes
                .entry((sink.to_owned(), Outcome::Dropped))
                .or_default() += expired;
            self.changed(inner);
            tracing::warn!(
                sink,
                events = expired,
                "undelivered events older than max_age dropped"
            );
        }
        (next, wake)
    }

    /// Counts a notification outcome of a sink the outbox does not feed (Alertmanager).
    pub fn record_notification(&self, sink: &str, outcome: Outcome) {
        *self
            .lock()
            .outcomes
            .entry((sink.to_owned(), outcome))
            .or_default() += 1;
    }

    /// The events of `sink` that may travel with `first` as one message: each the first queued
    /// event of its profile, saved, due, queued no later than `until`, and `alike`.
    pub fn group_for(
        &self,
        sink: &str,
        first: &Pending,
        until: Timestamp,
        alike: impl Fn(&Pending) -> bool,
    ) -> Vec<Pending> {
        let saved = *self.saved.borrow();
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        let inner = self.lock();
        let Some(queue) = inner.outbox.get(sink) else {
            return vec![first.clone()];
        };
        let mut seen: BTreeSet<&ResourceKey> = BTreeSet::new();
        let mut group = Vec::new();
        for pending in queue {
            if !seen.insert(&pending.event.key) {
                continue;
            }
            let due = pending.not_before.is_none_or(|at| at <= now);
            if pending.id == first.id
                || (pending.generation <= saved
                    && due
                    && pending.enqueued_at <= until
                    && alike(pending))
            {
                group.push(pending.clone());
            }
        }
        group
    }

    /// Records how an attempt to deliver `id` to `sink` ended.
    pub fn attempted(&self, sink: &str, id: &str, attempt: Attempt) {
        let mut inner = self.lock();
        let outcome = match attempt {
            Attempt::Delivered => Outcome::Success,
            Attempt::Retry { .. } => Outcome::Retry,
            Attempt::Rejected => Outcome::Rejected,
        };
        *inner
            .outcomes
            .entry((sink.to_owned(), outcome))
            .or_default() += 1;
        let Some(queue) = inner.outbox.get_mut(sink) else {
            return;
        };
        let Some(index) = queue.iter().position(|p| p.id == id) else {
            return;
        };
        match attempt {
            Attempt::Delivered | Attempt::Rejected => {
                queue.remove(index);
            }
            Attempt::Retry { not_before } => {
                let pending = &mut queue[index];
                pending.attempts += 1;
                pending.not_before = Some(not_before);
            }
        }
        self.changed(inner);
    }

    /// Records a change to what the state file holds, and releases the lock.
    fn changed(&self, mut inner: MutexGuard<'_, Inner>) {
        inner.generation += 1;
        let generation = inner.generation;
        drop(inner);
        self.generation.send_replace(generation);
    }

    /// Counts a poll cycle that could not describe every profile within the interval.
    pub fn record_overrun(&self) {
        self.lock().overruns += 1;
    }

    /// A consistent copy of what is known, cheap to take.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let mut sinks: BTreeMap<String, SinkStats> = inner
            .outbox
            .iter()
            .map(|(sink, queue)| {
                let stats = SinkStats {
                    queued: queue.len(),
                    outcomes: BTreeMap::new(),
                    last_error: inner.sink_errors.get(sink).cloned(),
                };
                (sink.clone(), stats)
            })
            .collect();
        for ((sink, outcome), count) in &inner.outcomes {
            let stats = sinks.entry(sink.clone()).or_default();
            stats.outcomes.insert(*outcome, *count);
        }
        // Sinks without a queue (Alertmanager) are known from their outcomes and errors.
        for (sink, error) in &inner.sink_errors {
            sinks.entry(sink.clone()).or_default().last_error = Some(error.clone());
        }
        Snapshot {
            profiles: inner.profiles.values().cloned().collect(),
            events_total: inner.events_total,
            overruns: inner.overruns,
            sinks,
            lanes: inner.lanes.clone(),
            target_problems: inner.target_problems.clone(),
            stale_after: inner.stale_after,
        }
    }

    /// Records a failed delivery attempt of a sink, for the status page. `error` must not hold
    /// a secret (the sinks pass what they log); it is cut to [`SINK_ERROR_BYTES`] bytes.
    pub fn sink_failed(&self, sink: &str, at: Timestamp, error: &str) {
        let error = crate::model::bounded(error, SINK_ERROR_BYTES);
        self.lock()
            .sink_errors
            .insert(sink.to_owned(), SinkError { at, error });
    }

    /// Records what the targets' last discoveries could not do.
    pub fn set_target_problems(&self, problems: Vec<String>) {
        self.lock().target_problems = problems;
    }

    /// Records what the rate limiter lanes do now (the scheduler reports it every second).
    pub fn set_lanes(&self, lanes: Vec<LaneStatus>) {
        self.lock().lanes = lanes;
    }

    /// Sets when a profile counts as stale: not attempted for longer than `after`.
    pub fn set_stale_after(&self, after: Duration) {
        self.lock().stale_after = after;
    }

    /// The entry of one profile.
    pub fn get(&self, key: &ResourceKey) -> Option<Arc<Entry>> {
        self.lock().profiles.get(key).cloned()
    }

    /// The number of monitored profiles.
    pub fn len(&self) -> usize {
        self.lock().profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether startup is done (`/readyz`): set by the scheduler, cleared on shutdown.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The longest sink error the state keeps, in bytes.
pub const SINK_ERROR_BYTES: usize = 300;

/// How many sequence numbers [`sequence_floor`] allows per millisecond.
pub const SEQUENCES_PER_MILLISECOND: u64 = 100;

/// The least last sequence number of a daemon started at `now`: the unix time in milliseconds
/// × [`SEQUENCES_PER_MILLISECOND`]. A daemon starts above both this and what its state file
/// held, so the sequence never goes backwards, even when the file is lost or replaced by
/// `.prev`, as long as the clock does not go back and a daemon hands out fewer than 100,000
/// numbers per second of running (10,000 profiles polled every 10 s with every one changing
/// on every poll make 1,000). The numbers stay below 2^53 (exact as JSON numbers in
/// JavaScript) until the year 4824, and far from `u64::MAX`. A clock before 1970 counts as 1970.
pub fn sequence_floor(now: std::time::SystemTime) -> u64 {
    let millis = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    millis.saturating_mul(SEQUENCES_PER_MILLISECOND)
}

/// Queues one event for one sink, dropping the oldest beyond `max_queue`.
fn enqueue(
    outbox: &mut BTreeMap<String, VecDeque<Pending>>,
    outcomes: &mut BTreeMap<(String, Outcome), u64>,
    subscription: &Subscription,
    pending: Pending,
) {
    let Some(queue) = outbox.get_mut(&subscription.sink) else {
        return;
    };
    queue.push_back(pending);
    let mut dropped = 0;
    while queue.len() > subscription.max_queue {
        queue.pop_front();
        dropped += 1;
    }
    if dropped > 0 {
        *outcomes
            .entry((subscription.sink.clone(), Outcome::Dropped))
            .or_default() += dropped;
        tracing::warn!(sink = %subscription.sink, events = dropped, "outbox full (max_queue); the oldest events dropped");
    }
}

fn kind_index(kind: EventKind) -> usize {
    EventKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// Logs one event at DEBUG: the `log` sink writes the INFO line, through the outbox.
fn log_event(event: &Event, labels: &Labels) {
    tracing::debug!(
        event = event.kind().as_str(),
        sequence = event.sequence,
        profile = %event.key,
        labels = ?labels,
        "event {}",
        event.kind().as_str()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ErrorKind, Gone, Incarnation, IssueCode, Observation, PollFailure, RawIssue,
    };

    fn key() -> ResourceKey {
        ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "default")
    }

    fn observed(at: i64, codes: &[&str]) -> Input {
        Input::Observed(Observation {
            key: key(),
            incarnation: Incarnation {
                arn: "arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/default/1".into(),
                created_at: Timestamp::from_secs(1),
            },
            status: Status::from_wire("ACTIVE"),
            info: BTreeMap::new(),
            issues: codes
                .iter()
                .map(|code| RawIssue {
                    code: IssueCode::from_wire(code),
                    message: "broken".into(),
                    resource_ids: vec!["subnet-1".into()],
                })
                .collect(),
            observed_at: Timestamp::from_secs(at),
        })
    }

    #[test]
    fn inputs_reach_only_discovered_profiles_and_events_are_counted() {
        let state = State::new(Rules::default(), Vec::new());
        assert!(state.apply(&observed(10, &["AccessDenied"])).is_empty());
        assert!(state.is_empty());

        let labels = Arc::new(Labels::from([("env".into(), "prod".into())]));
        state.discovered(&key(), labels.clone(), Timestamp::from_secs(5));
        let entry = state.get(&key()).unwrap();
        assert!(!entry.state.up && entry.state.known.is_none());
        assert_eq!(entry.freshness(), Timestamp::from_secs(5));

        let events = state.apply(&observed(10, &["AccessDenied"]));
        let kinds: Vec<EventKind> = events.iter().map(Event::kind).collect();
        assert_eq!(kinds, [EventKind::StatusChanged, EventKind::IssueOpened]);
        let failure = Input::Failed(PollFailure {
            key: key(),
            kind: ErrorKind::Throttled,
            observed_at: Timestamp::from_secs(20),
        });
        assert!(state.apply(&failure).is_empty());
        let entry = state.get(&key()).unwrap();
        assert!(!entry.state.up);
        assert_eq!(entry.state.known.as_ref().unwrap().episodes.len(), 1);
        assert_eq!(entry.freshness(), Timestamp::from_secs(20));

        let gone = Input::Gone(Gone {
            key: key(),
            observed_at: Timestamp::from_secs(30),
        });
        let kinds: Vec<EventKind> = state.apply(&gone).iter().map(Event::kind).collect();
        assert_eq!(
            kinds,
            [EventKind::IssueResolved, EventKind::ResourceDeleted]
        );
        assert!(state.get(&key()).is_none());

        let snapshot = state.snapshot();
        assert!(snapshot.profiles.is_empty());
        let count = |kind| snapshot.events_total[kind_index(kind)];
        assert_eq!(count(EventKind::IssueOpened), 1);
        assert_eq!(count(EventKind::IssueResolved), 1);
        assert_eq!(count(EventKind::StatusChanged), 1);
        assert_eq!(count(EventKind::ResourceDeleted), 1);
        assert_eq!(count(EventKind::IssueUpdated), 0);
    }

    #[test]
    fn a_snapshot_does_not_change_when_the_state_does() {
        let state = State::new(Rules::default(), Vec::new());
        state.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        let before = state.snapshot();
        state.apply(&observed(10, &[]));
        state.record_overrun();
        assert!(before.profiles[0].state.known.is_none());
        assert_eq!(before.overruns, 0);
        let after = state.snapshot();
        assert!(after.profiles[0].state.up);
        assert_eq!(after.overruns, 1);
    }

    fn subscription(max_queue: usize) -> Subscription {
        Subscription {
            sink: "hook".into(),
            events: EventKind::ALL.into_iter().collect(),
            statuses: [Status::from_wire("CREATE_FAILED")].into_iter().collect(),
            max_queue,
        }
    }

    fn other_key() -> ResourceKey {
        ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "other")
    }

    fn observed_key(key: ResourceKey, at: i64, codes: &[&str]) -> Input {
        let Input::Observed(mut observation) = observed(at, codes) else {
            unreachable!()
        };
        observation.key = key;
        Input::Observed(observation)
    }

    #[test]
    fn the_outbox_delivers_in_order_per_profile_only_what_was_saved() {
        let state = State::new(Rules::default(), vec![subscription(100)]);
        state.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        state.discovered(&other_key(), Arc::default(), Timestamp::from_secs(1));
        state.apply(&observed(10, &["AccessDenied"]));
        state.apply(&observed_key(other_key(), 10, &["InternalFailure"]));
        let now = Timestamp::from_secs(11);
        let day = std::time::Duration::from_secs(86_400);
        // Status changes into ACTIVE are not wanted; the openings are, once saved.
        assert_eq!(state.snapshot().sinks["hook"].queued, 2);
        assert_eq!(state.next_for("hook", now, day).0, None);
        let (generation, saved) = state.to_save();
        assert_eq!(saved.outbox.len(), 2);
        state.mark_saved(generation);
        let first = state.next_for("hook", now, day).0.unwrap();
        assert_eq!(first.event.key, key());
        // A retry of the first event holds back that profile only.
        let later = Timestamp::from_secs(60);
        state.attempted("hook", &first.id, Attempt::Retry { not_before: later });
        let second = state.next_for("hook", now, day).0.unwrap();
        assert_eq!(second.event.key, other_key());
        state.attempted("hook", &second.id, Attempt::Delivered);
        let (none, wake) = state.next_for("hook", now, day);
        assert_eq!((none, wake), (None, Some(later)));
        let again = state.next_for("hook", later, day).0.unwrap();
        assert_eq!((again.id, again.attempts), (first.id.clone(), 1));
        state.attempted("hook", &first.id, Attempt::Rejected);
        let stats = &state.snapshot().sinks["hook"];
        assert_eq!(stats.queued, 0);
        assert_eq!(stats.outcomes[&Outcome::Retry], 1);
        assert_eq!(stats.outcomes[&Outcome::Success], 1);
        assert_eq!(stats.outcomes[&Outcome::Rejected], 1);
    }

    #[test]
    fn max_queue_and_max_age_drop_and_count() {
        let state = State::new(Rules::default(), vec![subscription(1)]);
        state.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        state.apply(&observed(10, &["AccessDenied"]));
        state.apply(&observed(20, &["AccessDenied", "InternalFailure"]));
        let stats = &state.snapshot().sinks["hook"];
        assert_eq!(stats.queued, 1);
        assert_eq!(stats.outcomes[&Outcome::Dropped], 1);
        let (generation, _) = state.to_save();
        state.mark_saved(generation);
        let hour = std::time::Duration::from_secs(3600);
        assert!(
            state
                .next_for("hook", Timestamp::from_secs(30), hour)
                .0
                .is_some()
        );
        assert!(
            state
                .next_for("hook", Timestamp::from_secs(20 + 3601), hour)
                .0
                .is_none()
        );
        let stats = &state.snapshot().sinks["hook"];
        assert_eq!((stats.queued, stats.outcomes[&Outcome::Dropped]), (0, 2));
    }

    #[test]
    fn the_writer_s_pointers_encode_exactly_as_the_copied_state() {
        let first = State::new(Rules::default(), vec![subscription(100)]);
        let labels = Arc::new(Labels::from([("env".to_owned(), "prod".to_owned())]));
        first.discovered(&key(), labels.clone(), Timestamp::from_secs(1));
        first.discovered(&other_key(), labels, Timestamp::from_secs(1));
        first.apply(&observed(10, &["AccessDenied"]));
        first.apply(&observed_key(other_key(), 10, &["InternalFailure"]));
        let (_, saved) = first.to_save();
        // Restored: one rediscovered and described, one waiting for discovery, one never
        // described (not saved), and events waiting in the outbox.
        let second = State::new(Rules::default(), vec![subscription(100)]);
        second.restore(saved);
        second.discovered(&key(), Arc::default(), Timestamp::from_secs(20));
        second.apply(&observed(30, &["AccessDenied", "ClusterUnreachable"]));
        let never = ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "never");
        second.discovered(&never, Arc::default(), Timestamp::from_secs(20));
        let (generation, copied) = second.to_save();
        let (same_generation, saving) = second.to_write();
        assert_eq!(generation, same_generation);
        assert_eq!(copied.resources.len(), 2);
        assert!(!copied.outbox.is_empty());
        assert_eq!(
            serde_json::to_value(&saving).unwrap(),
            serde_json::to_value(&copied).unwrap()
        );
    }

    #[test]
    fn a_restored_state_alerts_nothing_again_and_keeps_the_sequence() {
        let first = State::new(Rules::default(), vec![subscription(100)]);
        first.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        let opened = first.apply(&observed(10, &["AccessDenied"]));
        let (_, saved) = first.to_save();

        let second = State::new(Rules::default(), vec![subscription(100)]);
        second.restore(saved);
        second.discovered(&key(), Arc::default(), Timestamp::from_secs(50));
        assert!(second.apply(&observed(60, &["AccessDenied"])).is_empty());
        let resolved: Vec<Event> = [70, 80]
            .iter()
            .flat_map(|at| second.apply(&observed(*at, &[])))
            .collect();
        assert_eq!(resolved.len(), 1);
        assert!(resolved[0].sequence > opened.last().unwrap().sequence);
        let (EventDetail::IssueOpened { issue: a }, EventDetail::IssueResolved { issue: b, .. }) =
            (&opened[1].detail, &resolved[0].detail)
        else {
            panic!("{opened:?} {resolved:?}");
        };
        assert_eq!((&a.episode_id, a.since), (&b.episode_id, b.since));
    }

    #[test]
    fn the_sequence_is_raised_to_the_clock_s_floor_never_lowered() {
        let day = std::time::Duration::from_secs(86_400);
        let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(sequence_floor(at(1)), 100_000);
        assert!(sequence_floor(at(2)) > sequence_floor(at(1)));
        assert_eq!(sequence_floor(std::time::UNIX_EPOCH - day), 0);
        // Below 2^53 for 28 centuries, and no overflow ever.
        assert!(sequence_floor(at(2_800 * 365 * 86_400)) < 1 << 53);
        assert_eq!(sequence_floor(at(200_000_000_000_000)), u64::MAX);

        let state = State::new(Rules::default(), vec![subscription(100)]);
        state.raise_sequence(1_000);
        state.raise_sequence(10);
        state.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        let events = state.apply(&observed(10, &["AccessDenied"]));
        assert_eq!(events[0].sequence, 1_001);
        let (_, saved) = state.to_save();
        let restarted = State::new(Rules::default(), vec![subscription(100)]);
        restarted.restore(saved);
        restarted.raise_sequence(5);
        assert_eq!(
            restarted.to_save().1.sequence,
            events.last().unwrap().sequence
        );
    }

    #[test]
    fn a_reconfigure_keeps_profiles_drops_a_removed_sinks_queue_and_waits_for_reselection() {
        let state = State::new(Rules::default(), vec![subscription(100)]);
        state.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        state.apply(&observed(10, &["AccessDenied"]));
        // The opening (a change into ACTIVE is not wanted).
        assert_eq!(state.snapshot().sinks["hook"].queued, 1);

        let kept = Subscription {
            sink: "other".into(),
            ..subscription(100)
        };
        state.reconfigure(Rules::default(), vec![kept]);
        let snapshot = state.snapshot();
        // The profile and its series stay; it waits for the new targets to select it again.
        assert_eq!(snapshot.profiles.len(), 1);
        assert!(snapshot.profiles[0].state.up);
        assert_eq!(state.restored_keys(), [key()]);
        // The removed sink's event is dropped and counted; the new sink has a queue.
        assert_eq!(snapshot.sinks["hook"].queued, 0);
        assert_eq!(snapshot.sinks["hook"].outcomes[&Outcome::Dropped], 1);
        assert_eq!(snapshot.sinks["other"].queued, 0);
        let (_, saved) = state.to_save();
        assert!(saved.outbox.is_empty());

        // Selected again: nothing is alerted again and it no longer waits.
        state.discovered(&key(), Arc::default(), Timestamp::from_secs(20));
        assert!(state.restored_keys().is_empty());
        assert!(state.apply(&observed(30, &["AccessDenied"])).is_empty());
    }
}
