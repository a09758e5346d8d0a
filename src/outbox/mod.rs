//! The outbox: the events each sink still has to receive, and the [`worker`] that feeds a sink
//! from it.
//!
//! Every event the diff yields is queued, in the same step, for each sink whose
//! [`Subscription`] wants it. Delivery follows four rules:
//!
//! - **Saved before delivered.** Each change to what the state file holds bumps a generation
//!   (this module keeps the counter for the snapshot's changes too). An event carries the
//!   generation that holds it and may be attempted once the writer reports, through
//!   [`Outbox::mark_saved`], that the file holds that generation. A crash before that loses
//!   the event together with the change that made it, and the diff makes both again.
//! - **In order per sink and resource.** A sink attempts only the first queued event of each
//!   resource; a later one waits until the earlier is delivered or given up.
//! - **Bounded.** At most `max_queue` events per sink (the oldest dropped), none older than
//!   the sink's `max_age`; every drop is counted and logged.
//! - **Counted.** Every attempt's [`Outcome`] is counted per sink for the metrics.
//!
//! The lock order is the state's lock, then the outbox's: [`crate::state::State`] takes both
//! when it queues events or copies what the file should hold, so the file holds a change and
//! its events together or neither; the sinks take only the outbox's.

pub mod worker;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::diff::{Event, EventDetail};
use crate::model::{EventKind, Labels, ResourceKey, Status, Timestamp};

pub use self::worker::{Failure, Pacing, Sink};

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
    /// The generation that holds it; 0 for what was loaded from the file.
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

/// The longest sink error the outbox keeps, in bytes.
pub const SINK_ERROR_BYTES: usize = 300;

/// What a sink may attempt now, from [`Outbox::next_for`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Next {
    /// The event to attempt.
    pub pending: Option<Pending>,
    /// The earliest time a queued event that waits for its retry becomes due.
    pub wake: Option<Timestamp>,
}

/// The queues of every sink, the generation handshake with the state file's writer, and the
/// outcome counts.
#[derive(Debug)]
pub struct Outbox {
    queues: Mutex<Queues>,
    /// The generation of what the state file should hold.
    generation: watch::Sender<u64>,
    /// The generation the state file holds.
    saved: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Queues {
    subscriptions: Vec<Subscription>,
    by_sink: BTreeMap<String, VecDeque<Pending>>,
    outcomes: BTreeMap<(String, Outcome), u64>,
    /// Per sink, the last failed delivery: when and why (not saved).
    errors: BTreeMap<String, SinkError>,
    generation: u64,
}

impl Outbox {
    /// An empty outbox with a queue for each of `subscriptions`.
    pub fn new(subscriptions: Vec<Subscription>) -> Self {
        let mut queues = Queues::default();
        queues.subscribe(subscriptions);
        Self {
            queues: Mutex::new(queues),
            generation: watch::Sender::new(0),
            saved: watch::Sender::new(0),
        }
    }

    /// Takes back the events the state file held at `now`, to sinks that still exist; those
    /// of other sinks are dropped with a WARN. Times the file puts ahead of `now` (a clock
    /// that was ahead when they were written) are brought back: an event enqueued "later"
    /// counts as enqueued now, and a retry due more than [`worker::RETRY_AFTER_CEILING`] ahead
    /// is due now, so no event holds back its resource for longer than a retry can.
    pub fn restore(&self, saved: Vec<Pending>, now: Timestamp) {
        let mut queues = self.lock();
        let mut orphans: BTreeMap<String, usize> = BTreeMap::new();
        let latest_retry = worker::later(now, worker::RETRY_AFTER_CEILING);
        for mut pending in saved {
            pending.generation = 0;
            pending.enqueued_at = pending.enqueued_at.min(now);
            if pending.not_before.is_some_and(|at| at > latest_retry) {
                pending.not_before = Some(now);
            }
            match queues.by_sink.get_mut(&pending.sink) {
                Some(queue) => queue.push_back(pending),
                None => *orphans.entry(pending.sink).or_default() += 1,
            }
        }
        drop(queues);
        for (sink, events) in orphans {
            tracing::warn!(sink = %sink, events, "the state file holds events for a sink that is no longer configured; dropped");
        }
    }

    /// Records one change of the state: a new generation when `changed` (or when there are
    /// events), and `events` queued for every sink that wants them, held by that generation.
    /// The state calls it while it holds its own lock.
    pub fn record(&self, changed: bool, events: &[Event], labels: &Labels, at: Timestamp) {
        if !changed && events.is_empty() {
            return;
        }
        let mut queues = self.lock();
        queues.generation += 1;
        let generation = queues.generation;
        for event in events {
            queues.enqueue(event, labels, at, generation);
        }
        self.publish(queues);
    }

    /// Replaces the subscriptions (a reload): a removed sink's queue is dropped, counted and
    /// logged; a new sink gets an empty queue.
    pub fn resubscribe(&self, subscriptions: Vec<Subscription>) {
        let mut queues = self.lock();
        queues.subscribe(subscriptions);
        queues.generation += 1;
        self.publish(queues);
    }

    /// What the state file should hold of the outbox and the generation that is; the state
    /// calls it while it holds its own lock.
    pub fn contents(&self) -> (u64, Vec<Pending>) {
        let queues = self.lock();
        let pending = queues.by_sink.values().flatten().cloned().collect();
        (queues.generation, pending)
    }

    /// The generation of what the state file should hold now.
    pub fn generation(&self) -> u64 {
        self.lock().generation
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

    /// The next event `sink` may attempt at `now`: saved, due, and the first queued of its
    /// resource. Events older than `max_age` are dropped and counted first.
    pub fn next_for(&self, sink: &str, now: Timestamp, max_age: std::time::Duration) -> Next {
        let saved = *self.saved.borrow();
        let mut queues = self.lock();
        let Some(queue) = queues.by_sink.get_mut(sink) else {
            return Next::default();
        };
        let before = queue.len();
        queue.retain(|p| now.since(p.enqueued_at) <= max_age);
        let expired = (before - queue.len()) as u64;
        let mut next = Next::default();
        for pending in heads(queue) {
            if pending.generation > saved {
                continue;
            }
            match pending.not_before {
                Some(at) if at > now => next.wake = Some(next.wake.map_or(at, |w| w.min(at))),
                _ => {
                    next.pending = Some(pending.clone());
                    break;
                }
            }
        }
        if expired > 0 {
            queues.count(sink, Outcome::Dropped, expired);
            queues.generation += 1;
            self.publish(queues);
            tracing::warn!(
                sink,
                events = expired,
                "undelivered events older than max_age dropped"
            );
        }
        next
    }

    /// The events of `sink` that may travel with `first` as one message at `now`: each the
    /// first queued event of its resource, saved, due, queued no later than `until`, and
    /// `alike`; `first` itself always.
    pub fn group_for(
        &self,
        sink: &str,
        first: &Pending,
        until: Timestamp,
        now: Timestamp,
        alike: impl Fn(&Pending) -> bool,
    ) -> Vec<Pending> {
        let saved = *self.saved.borrow();
        let queues = self.lock();
        let Some(queue) = queues.by_sink.get(sink) else {
            return vec![first.clone()];
        };
        heads(queue)
            .filter(|pending| {
                pending.id == first.id
                    || (pending.generation <= saved
                        && pending.not_before.is_none_or(|at| at <= now)
                        && pending.enqueued_at <= until
                        && alike(pending))
            })
            .cloned()
            .collect()
    }

    /// Records how an attempt to deliver `id` to `sink` ended.
    pub fn attempted(&self, sink: &str, id: &str, attempt: Attempt) {
        let mut queues = self.lock();
        let outcome = match attempt {
            Attempt::Delivered => Outcome::Success,
            Attempt::Retry { .. } => Outcome::Retry,
            Attempt::Rejected => Outcome::Rejected,
        };
        queues.count(sink, outcome, 1);
        let Some(queue) = queues.by_sink.get_mut(sink) else {
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
                pending.attempts = pending.attempts.saturating_add(1);
                pending.not_before = Some(not_before);
            }
        }
        queues.generation += 1;
        self.publish(queues);
    }

    /// Counts a notification outcome of a sink the outbox does not feed (Alertmanager).
    pub fn record_notification(&self, sink: &str, outcome: Outcome) {
        self.lock().count(sink, outcome, 1);
    }

    /// Records a failed delivery attempt of a sink, for the status page. `error` must not hold
    /// a secret (the sinks pass what they log); it is cut to [`SINK_ERROR_BYTES`] bytes.
    pub fn sink_failed(&self, sink: &str, at: Timestamp, error: &str) {
        let error = crate::model::bounded(error, SINK_ERROR_BYTES);
        self.lock()
            .errors
            .insert(sink.to_owned(), SinkError { at, error });
    }

    /// Per sink, by name: every sink with a queue, an outcome or an error.
    pub fn stats(&self) -> BTreeMap<String, SinkStats> {
        let queues = self.lock();
        let mut sinks: BTreeMap<String, SinkStats> = queues
            .by_sink
            .iter()
            .map(|(sink, queue)| {
                let stats = SinkStats {
                    queued: queue.len(),
                    ..SinkStats::default()
                };
                (sink.clone(), stats)
            })
            .collect();
        for ((sink, outcome), count) in &queues.outcomes {
            let stats = sinks.entry(sink.clone()).or_default();
            stats.outcomes.insert(*outcome, *count);
        }
        for (sink, error) in &queues.errors {
            sinks.entry(sink.clone()).or_default().last_error = Some(error.clone());
        }
        sinks
    }

    /// Releases the lock and tells the writer what the file should hold now.
    fn publish(&self, queues: MutexGuard<'_, Queues>) {
        let generation = queues.generation;
        drop(queues);
        self.generation.send_replace(generation);
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Queues {
    fn subscribe(&mut self, subscriptions: Vec<Subscription>) {
        let wanted: BTreeSet<&str> = subscriptions.iter().map(|s| s.sink.as_str()).collect();
        let removed: Vec<String> = self
            .by_sink
            .keys()
            .filter(|sink| !wanted.contains(sink.as_str()))
            .cloned()
            .collect();
        for sink in removed {
            let dropped = self.by_sink.remove(&sink).map_or(0, |q| q.len() as u64);
            if dropped > 0 {
                tracing::warn!(sink = %sink, events = dropped, "sink removed by the reload; its undelivered events are dropped");
                self.count(&sink, Outcome::Dropped, dropped);
            }
        }
        for subscription in &subscriptions {
            self.by_sink.entry(subscription.sink.clone()).or_default();
        }
        self.subscriptions = subscriptions;
    }

    /// Queues `event` for every sink that wants it, dropping the oldest beyond `max_queue`.
    fn enqueue(&mut self, event: &Event, labels: &Labels, at: Timestamp, generation: u64) {
        let Queues {
            subscriptions,
            by_sink,
            outcomes,
            ..
        } = self;
        for subscription in subscriptions.iter().filter(|s| s.wants(event)) {
            let Some(queue) = by_sink.get_mut(&subscription.sink) else {
                continue;
            };
            queue.push_back(Pending {
                id: event.id(),
                sink: subscription.sink.clone(),
                event: event.clone(),
                labels: labels.clone(),
                enqueued_at: at,
                attempts: 0,
                not_before: None,
                generation,
            });
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
    }

    fn count(&mut self, sink: &str, outcome: Outcome, by: u64) {
        let count = self.outcomes.entry((sink.to_owned(), outcome)).or_default();
        *count = count.saturating_add(by);
    }
}

/// The first queued event of each resource, in queue order: the only ones a sink may attempt.
fn heads(queue: &VecDeque<Pending>) -> impl Iterator<Item = &Pending> {
    let mut seen: BTreeSet<&ResourceKey> = BTreeSet::new();
    queue.iter().filter(move |p| seen.insert(&p.event.key))
}
