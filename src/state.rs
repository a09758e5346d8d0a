//! The last-known snapshot of every monitored resource, as the diff left it. Shared by the
//! metrics, the JSON API, the state file and the sinks.
//!
//! One writer (the scheduler) feeds it inputs; readers take a [`Snapshot`], which copies only
//! pointers, so a scrape holds the lock for microseconds and never waits on a poll. Every
//! event is logged, counted by kind, and handed to the [`Outbox`] in the same step, under
//! this state's lock, so the state file always holds a change and its events or neither.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diff::{self, Event, Known, ResourceState, Rules, Sequence};
use crate::limits::LaneStatus;
use crate::model::{EventKind, Input, ResourceKey, Timestamp};
use crate::outbox::{Outbox, Pending, SinkStats, Subscription};

pub use crate::model::Labels;

/// What the state file holds: what the alert promises need, not what changes every poll.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The last event sequence number handed out.
    pub sequence: u64,
    pub resources: Vec<SavedResource>,
    pub outbox: Vec<Pending>,
}

/// One resource as the state file keeps it: its incarnation, status and open episodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedResource {
    pub key: ResourceKey,
    pub labels: Labels,
    pub known: Known,
}

/// What the state file should hold, taken cheaply under the lock: the resources as the shared
/// pointers the snapshot holds (no deep copy of 10,000 resources per write), encoded exactly
/// as [`Saved`].
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
        struct Resource<'a> {
            key: &'a ResourceKey,
            labels: &'a Labels,
            known: &'a Known,
        }
        struct Resources<'a>(&'a Saving);
        impl Serialize for Resources<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let saving = self.0;
                let live = saving.entries.iter().filter_map(|entry| {
                    Some(Resource {
                        key: &entry.state.key,
                        labels: &entry.labels,
                        known: entry.state.known.as_ref()?,
                    })
                });
                let restored = saving.restored.iter().map(|saved| Resource {
                    key: &saved.key,
                    labels: &saved.labels,
                    known: &saved.known,
                });
                serializer.collect_seq(live.chain(restored))
            }
        }

        let mut saved = serializer.serialize_struct("Saved", 3)?;
        saved.serialize_field("sequence", &self.sequence)?;
        saved.serialize_field("resources", &Resources(self))?;
        saved.serialize_field("outbox", &self.outbox)?;
        saved.end()
    }
}

impl From<Saving> for Saved {
    fn from(saving: Saving) -> Self {
        let live = saving.entries.iter().filter_map(|entry| {
            Some(SavedResource {
                key: entry.state.key.clone(),
                labels: (*entry.labels).clone(),
                known: entry.state.known.clone()?,
            })
        });
        Saved {
            sequence: saving.sequence,
            resources: live.chain(saving.restored).collect(),
            outbox: saving.outbox,
        }
    }
}

/// One monitored resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: ResourceState,
    pub labels: Arc<Labels>,
    /// When discovery first selected it.
    pub discovered_at: Timestamp,
}

impl Entry {
    /// When the resource was last attempted, or discovered if never: the age of what is known.
    pub fn freshness(&self) -> Timestamp {
        self.state.last_attempt.unwrap_or(self.discovered_at)
    }
}

/// What the readers see: every resource sorted by key, and the counters.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub resources: Vec<Arc<Entry>>,
    /// Events so far, in [`EventKind::ALL`] order.
    pub events_total: [u64; EventKind::ALL.len()],
    /// Poll cycles that could not describe every resource within the interval.
    pub overruns: u64,
    /// Per sink, by name.
    pub sinks: BTreeMap<String, SinkStats>,
    /// Per rate limiter lane, by account and region.
    pub lanes: Vec<LaneStatus>,
    /// What the targets' last discoveries could not do (a denied list call, a named cluster
    /// that does not exist, a target that matches nothing).
    pub target_problems: Vec<String>,
    /// A resource not attempted for longer than this is stale.
    pub stale_after: Duration,
}

/// The shared state of the daemon.
#[derive(Debug)]
pub struct State {
    inner: Mutex<Inner>,
    outbox: Arc<Outbox>,
    ready: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Rules,
    resources: BTreeMap<ResourceKey, Arc<Entry>>,
    /// Resources from the state file, or from before a reload, that discovery has not selected
    /// again yet.
    restored: BTreeMap<ResourceKey, Restored>,
    /// Monitored resources that the targets of a reloaded config have not selected again yet.
    reselect: BTreeSet<ResourceKey>,
    sequence: Sequence,
    events_total: [u64; EventKind::ALL.len()],
    overruns: u64,
    /// What each rate limiter lane does, as the scheduler last reported it.
    lanes: Vec<LaneStatus>,
    /// What the targets' last discoveries could not do, as the scheduler logged it.
    target_problems: Vec<String>,
    /// A resource not attempted for longer than this is stale (for the page and the API).
    stale_after: Duration,
}

/// A resource waiting to be selected again, with what was known of it.
#[derive(Clone, Debug)]
struct Restored {
    state: ResourceState,
    labels: Labels,
}

impl State {
    /// An empty state; `subscriptions` are the sinks the outbox feeds.
    pub fn new(rules: Rules, subscriptions: Vec<Subscription>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rules,
                ..Inner::default()
            }),
            outbox: Arc::new(Outbox::new(subscriptions)),
            ready: AtomicBool::new(false),
        }
    }

    /// The events the sinks still have to receive.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Takes back what the state file held at `now`: the sequence counter, the resources
    /// (which wait for discovery to select them again) and the events not delivered yet.
    pub fn restore(&self, saved: Saved, now: Timestamp) {
        let mut inner = self.lock();
        inner.sequence = Sequence::starting_after(saved.sequence);
        inner.restored = saved
            .resources
            .into_iter()
            .map(|resource| {
                let mut state = ResourceState::discovered(resource.key.clone());
                state.known = Some(resource.known);
                let restored = Restored {
                    state,
                    labels: resource.labels,
                };
                (resource.key, restored)
            })
            .collect();
        self.outbox.restore(saved.outbox, now);
    }

    /// Raises the sequence counter so that the next number is above `at_least` (see
    /// [`sequence_floor`]); never lowers it.
    pub fn raise_sequence(&self, at_least: u64) {
        let mut inner = self.lock();
        let last = inner.sequence.last().max(at_least);
        inner.sequence = Sequence::starting_after(last);
    }

    /// Adds a resource that discovery selected; it exports `up 0` until described, with what
    /// the state file knew of it, if anything. A resource already known only takes the new
    /// labels.
    pub fn discovered(&self, key: &ResourceKey, labels: Arc<Labels>, at: Timestamp) {
        let mut inner = self.lock();
        let restored = inner.restored.remove(key);
        inner.reselect.remove(key);
        match inner.resources.get_mut(key) {
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
                inner.resources.insert(key.clone(), Arc::new(entry));
            }
        }
    }

    /// Applies a reloaded config: new rules and sinks. Every resource stays as it is (its
    /// series too) and waits to be selected again, so nothing is alerted again; what the new
    /// targets do not select ends as unmonitored.
    pub fn reconfigure(&self, rules: Rules, subscriptions: Vec<Subscription>) {
        let mut inner = self.lock();
        inner.rules = rules;
        inner.reselect = inner.resources.keys().cloned().collect();
        self.outbox.resubscribe(subscriptions);
    }

    /// Resources known from the state file, or monitored before a reload, that discovery has
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

    /// Runs one input through the diff. Inputs for resources that are not monitored (not
    /// discovered, or already gone) are ignored, except that a restored resource not selected
    /// again can end (gone or unmonitored). Returns the events, which are also logged,
    /// counted and queued in the outbox.
    pub fn apply(&self, input: &Input) -> Vec<Event> {
        let mut inner = self.lock();
        let key = input.key();
        let Inner {
            rules,
            resources,
            restored,
            reselect,
            sequence,
            events_total,
            ..
        } = &mut *inner;
        // The diff reads the state in place: no copy of it per describe.
        let (prev, labels) = match resources.get(key) {
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
        match transition.next {
            Some(next) => {
                if let Some(entry) = resources.get_mut(key) {
                    Arc::make_mut(entry).state = next;
                }
            }
            None => {
                resources.remove(key);
                restored.remove(key);
                reselect.remove(key);
            }
        }
        for event in &transition.events {
            events_total[kind_index(event.kind())] += 1;
        }
        let at = transition
            .events
            .first()
            .map_or(input.observed_at(), |e| e.observed_at);
        self.outbox.record(changed, &transition.events, &labels, at);
        drop(inner);
        for event in &transition.events {
            log_event(event, &labels);
        }
        transition.events
    }

    /// What the state file should hold and the generation it is, for the writer: pointers to
    /// the resources, taken in one short hold of the lock.
    pub fn to_write(&self) -> (u64, Saving) {
        let inner = self.lock();
        let (generation, outbox) = self.outbox.contents();
        let saving = Saving {
            sequence: inner.sequence.last(),
            entries: inner.resources.values().cloned().collect(),
            restored: inner.saved_restored().collect(),
            outbox,
        };
        (generation, saving)
    }

    /// What the state file should hold, copied (for tests and the last log line).
    pub fn to_save(&self) -> (u64, Saved) {
        let (generation, saving) = self.to_write();
        (generation, saving.into())
    }

    /// Counts a poll cycle that could not describe every resource within the interval.
    pub fn record_overrun(&self) {
        self.lock().overruns += 1;
    }

    /// A consistent copy of what is known, cheap to take.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            resources: inner.resources.values().cloned().collect(),
            events_total: inner.events_total,
            overruns: inner.overruns,
            sinks: self.outbox.stats(),
            lanes: inner.lanes.clone(),
            target_problems: inner.target_problems.clone(),
            stale_after: inner.stale_after,
        }
    }

    /// Records what the targets' last discoveries could not do.
    pub fn set_target_problems(&self, problems: Vec<String>) {
        self.lock().target_problems = problems;
    }

    /// Records what the rate limiter lanes do now (the scheduler reports it every second).
    pub fn set_lanes(&self, lanes: Vec<LaneStatus>) {
        self.lock().lanes = lanes;
    }

    /// Sets when a resource counts as stale: not attempted for longer than `after`.
    pub fn set_stale_after(&self, after: Duration) {
        self.lock().stale_after = after;
    }

    /// The entry of one resource.
    pub fn get(&self, key: &ResourceKey) -> Option<Arc<Entry>> {
        self.lock().resources.get(key).cloned()
    }

    /// The number of monitored resources.
    pub fn len(&self) -> usize {
        self.lock().resources.len()
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

impl Inner {
    /// The restored resources the state file keeps: those with something known.
    fn saved_restored(&self) -> impl Iterator<Item = SavedResource> + '_ {
        self.restored.iter().filter_map(|(key, restored)| {
            Some(SavedResource {
                key: key.clone(),
                labels: restored.labels.clone(),
                known: restored.state.known.clone()?,
            })
        })
    }
}

/// How many sequence numbers [`sequence_floor`] allows per millisecond.
pub const SEQUENCES_PER_MILLISECOND: u64 = 100;

/// The least last sequence number of a daemon started at `now`: the unix time in milliseconds
/// × [`SEQUENCES_PER_MILLISECOND`]. A daemon starts above both this and what its state file
/// held, so the sequence never goes backwards, even when the file is lost or replaced by
/// `.prev`, as long as the clock does not go back and a daemon hands out fewer than 100,000
/// numbers per second of running (10,000 resources polled every 10 s with every one changing
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
        resource = %event.key,
        labels = ?labels,
        "event {}",
        event.kind().as_str()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::EventDetail;
    use crate::model::{
        ErrorKind, Gone, Incarnation, IssueCode, Observation, PollFailure, RawIssue, Status,
    };
    use crate::outbox::Outcome;

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
            values: Default::default(),
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
    fn inputs_reach_only_discovered_resources_and_events_are_counted() {
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
        assert!(snapshot.resources.is_empty());
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
        assert!(before.resources[0].state.known.is_none());
        assert_eq!(before.overruns, 0);
        let after = state.snapshot();
        assert!(after.resources[0].state.up);
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
        second.restore(saved, Timestamp::from_secs(100));
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
        second.restore(saved, Timestamp::from_secs(100));
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

        let saturated = State::new(Rules::default(), Vec::new());
        saturated.raise_sequence(u64::MAX);
        saturated.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        let events = saturated.apply(&observed(10, &["AccessDenied"]));
        assert!(
            events.iter().all(|e| e.sequence == u64::MAX),
            "never wraps to 0"
        );

        let state = State::new(Rules::default(), vec![subscription(100)]);
        state.raise_sequence(1_000);
        state.raise_sequence(10);
        state.discovered(&key(), Arc::default(), Timestamp::from_secs(1));
        let events = state.apply(&observed(10, &["AccessDenied"]));
        assert_eq!(events[0].sequence, 1_001);
        let (_, saved) = state.to_save();
        let restarted = State::new(Rules::default(), vec![subscription(100)]);
        restarted.restore(saved, Timestamp::from_secs(100));
        restarted.raise_sequence(5);
        assert_eq!(
            restarted.to_save().1.sequence,
            events.last().unwrap().sequence
        );
    }

    #[test]
    fn a_reconfigure_keeps_resources_drops_a_removed_sinks_queue_and_waits_for_reselection() {
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
        // The resource and its series stay; it waits for the new targets to select it again.
        assert_eq!(snapshot.resources.len(), 1);
        assert!(snapshot.resources[0].state.up);
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
