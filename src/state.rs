//! The last-known snapshot of every monitored profile, as the diff left it, shared by the
//! metrics, the JSON API and (later) the sinks.
//!
//! One writer (the scheduler) feeds it inputs; readers take a [`Snapshot`], which copies only
//! pointers, so a scrape holds the lock for microseconds and never waits on a poll. Every
//! event is logged as one structured line and counted by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::diff::{self, Event, EventDetail, ProfileState, Rules, Sequence};
use crate::model::{EventKind, Input, ProfileKey, Status, Timestamp};

/// The static labels of a target, attached to every series and event of its profiles.
pub type Labels = BTreeMap<String, String>;

/// One monitored profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: ProfileState,
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
}

/// The shared state of the daemon.
#[derive(Debug)]
pub struct State {
    rules: Rules,
    inner: Mutex<Inner>,
    ready: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    profiles: BTreeMap<ProfileKey, Arc<Entry>>,
    sequence: Sequence,
    events_total: [u64; EventKind::ALL.len()],
    overruns: u64,
}

impl State {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            inner: Mutex::new(Inner::default()),
            ready: AtomicBool::new(false),
        }
    }

    /// Adds a profile that discovery selected; it exports `up 0` until described. A profile
    /// already known only takes the new labels.
    pub fn discovered(&self, key: &ProfileKey, labels: Arc<Labels>, at: Timestamp) {
        let mut inner = self.lock();
        match inner.profiles.get_mut(key) {
            Some(entry) if entry.labels != labels => Arc::make_mut(entry).labels = labels,
            Some(_) => {}
            None => {
                let entry = Entry {
                    state: ProfileState::discovered(key.clone()),
                    labels,
                    discovered_at: at,
                };
                inner.profiles.insert(key.clone(), Arc::new(entry));
            }
        }
    }

    /// Runs one input through the diff. Inputs for profiles that are not monitored (not
    /// discovered, or already gone) are ignored. Returns the events, which are also logged
    /// and counted.
    pub fn apply(&self, input: &Input) -> Vec<Event> {
        let mut inner = self.lock();
        let Inner {
            profiles,
            sequence,
            events_total,
            ..
        } = &mut *inner;
        let Some(entry) = profiles.get_mut(input.key()) else {
            return Vec::new();
        };
        let transition = diff::diff(Some(&entry.state), input, &self.rules, sequence);
        let labels = entry.labels.clone();
        match transition.next {
            Some(next) => Arc::make_mut(entry).state = next,
            None => {
                profiles.remove(input.key());
            }
        }
        for event in &transition.events {
            events_total[kind_index(event.kind())] += 1;
        }
        drop(inner);
        for event in &transition.events {
            log_event(event, &labels);
        }
        transition.events
    }

    /// Counts a poll cycle that could not describe every profile within the interval.
    pub fn record_overrun(&self) {
        self.lock().overruns += 1;
    }

    /// A consistent copy of what is known, cheap to take.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            profiles: inner.profiles.values().cloned().collect(),
            events_total: inner.events_total,
            overruns: inner.overruns,
        }
    }

    /// The entry of one profile.
    pub fn get(&self, key: &ProfileKey) -> Option<Arc<Entry>> {
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

fn kind_index(kind: EventKind) -> usize {
    EventKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// Logs one event as one structured line: what happened, to which profile, and its data.
fn log_event(event: &Event, labels: &Labels) {
    let key = &event.key;
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let labels = labels.join(",");
    let kind = event.kind().as_str();
    match &event.detail {
        EventDetail::IssueOpened { issue } | EventDetail::IssueUpdated { issue } => {
            tracing::info!(
                event = kind,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.profile,
                labels,
                code = issue.issue.code.as_str(),
                resource_count = issue.issue.resource_ids.len(),
                episode_id = %issue.episode_id,
                since = %issue.since.to_rfc3339(),
                message = %issue.issue.message,
                "{}",
                if kind == "issue_opened" { "issue opened" } else { "issue updated" }
            );
        }
        EventDetail::IssueResolved {
            issue,
            resolved_at,
            reason,
        } => {
            tracing::info!(
                event = kind,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.profile,
                labels,
                code = issue.issue.code.as_str(),
                episode_id = %issue.episode_id,
                since = %issue.since.to_rfc3339(),
                duration_seconds = resolved_at.since(issue.since).as_secs(),
                reason = reason.as_str(),
                "issue resolved"
            );
        }
        EventDetail::StatusChanged { from, to } => {
            tracing::info!(
                event = kind,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.profile,
                labels,
                from = from.as_ref().map_or("none", Status::as_str),
                to = to.as_str(),
                "status changed"
            );
        }
        EventDetail::ProfileDeleted => {
            tracing::info!(
                event = kind,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.profile,
                labels,
                arn = %event.incarnation.arn,
                "profile deleted"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ErrorKind, Gone, Incarnation, IssueCode, Observation, PollFailure, RawIssue,
    };

    fn key() -> ProfileKey {
        ProfileKey::new("111122223333", "us-east-1", "prod", "default")
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
        let state = State::new(Rules::default());
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
        assert_eq!(kinds, [EventKind::IssueResolved, EventKind::ProfileDeleted]);
        assert!(state.get(&key()).is_none());

        let snapshot = state.snapshot();
        assert!(snapshot.profiles.is_empty());
        let count = |kind| snapshot.events_total[kind_index(kind)];
        assert_eq!(count(EventKind::IssueOpened), 1);
        assert_eq!(count(EventKind::IssueResolved), 1);
        assert_eq!(count(EventKind::StatusChanged), 1);
        assert_eq!(count(EventKind::ProfileDeleted), 1);
        assert_eq!(count(EventKind::IssueUpdated), 0);
    }

    #[test]
    fn a_snapshot_does_not_change_when_the_state_does() {
        let state = State::new(Rules::default());
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
}
