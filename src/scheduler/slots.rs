//! Pure: the schedule of each profile: whether a describe is in flight and on the wire, when
//! the last one started and answered, whether the profile is marked overdue, and how many were
//! never answered (for readiness). Every time is an input.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use crate::logging::Repeats;
use crate::model::{ErrorKind, ResourceKey};

/// The schedule of one profile.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    in_flight: bool,
    /// Set by the describe task once its request has passed the limiter and is on the wire.
    sent: Arc<AtomicBool>,
    /// When its last describe was started; `None` before the first.
    last_start: Option<Instant>,
    /// When its last describe finished; `None` before the first.
    last_done: Option<Instant>,
    /// When discovery selected it.
    since: Instant,
    /// Marked overdue since its last answer.
    overdue: bool,
    /// How describes fail as the last log line about them said; `None` when it said they
    /// work (or nothing was said).
    pub logged_error: Option<ErrorKind>,
    /// Those lines: once a minute at most while describes come and go.
    pub describe_log: Repeats,
}

/// The schedule of every profile polled.
#[derive(Debug, Default)]
pub(super) struct Slots {
    slots: BTreeMap<ResourceKey, Slot>,
    /// Profiles with no describe finished yet, for readiness.
    never_done: usize,
}

impl Slots {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn contains(&self, key: &ResourceKey) -> bool {
        self.slots.contains_key(key)
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &ResourceKey> {
        self.slots.keys()
    }

    /// Whether every profile had a describe finish.
    pub(super) fn attempted(&self) -> bool {
        self.never_done == 0
    }

    /// Discovery selected a profile at `now`.
    pub(super) fn add(&mut self, key: ResourceKey, now: Instant) {
        let slot = Slot {
            in_flight: false,
            sent: Arc::default(),
            last_start: None,
            last_done: None,
            since: now,
            overdue: false,
            logged_error: None,
            describe_log: Repeats::default(),
        };
        self.slots.insert(key, slot);
        self.never_done += 1;
    }

    /// Stops scheduling a profile.
    pub(super) fn remove(&mut self, key: &ResourceKey) {
        if self
            .slots
            .remove(key)
            .is_some_and(|slot| slot.last_done.is_none())
        {
            self.never_done -= 1;
        }
    }

    /// Starts a describe at `now`, unless one is in flight: the flag it sets once its request
    /// is on the wire.
    pub(super) fn start(&mut self, key: &ResourceKey, now: Instant) -> Option<Arc<AtomicBool>> {
        let slot = self.slots.get_mut(key).filter(|slot| !slot.in_flight)?;
        slot.in_flight = true;
        slot.last_start = Some(now);
        slot.sent.store(false, Ordering::Relaxed);
        Some(slot.sent.clone())
    }

    /// A describe finished at `now`: the profile is neither in flight nor overdue.
    pub(super) fn answered(&mut self, key: &ResourceKey, now: Instant) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(key)?;
        slot.in_flight = false;
        slot.overdue = false;
        if slot.last_done.replace(now).is_none() {
            self.never_done -= 1;
        }
        Some(slot)
    }

    /// How many describes are in flight and not sent: waiting for the rate limiter or a place
    /// in flight.
    pub(super) fn waiting(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| slot.in_flight && !slot.sent.load(Ordering::Relaxed))
            .count()
    }

    /// Each profile with the start of its last describe.
    pub(super) fn last_starts(&self) -> impl Iterator<Item = (&ResourceKey, Option<Instant>)> {
        self.slots.iter().map(|(key, slot)| (key, slot.last_start))
    }

    /// Each profile with its last answer, or when it was selected before the first.
    pub(super) fn last_answers(&self) -> impl Iterator<Item = (&ResourceKey, Instant)> {
        (self.slots.iter()).map(|(key, slot)| (key, slot.last_done.unwrap_or(slot.since)))
    }

    /// Marks the `overdue` profiles; returns those not marked since their last answer.
    pub(super) fn mark_overdue(&mut self, overdue: &[ResourceKey]) -> Vec<ResourceKey> {
        let mut marked = Vec::new();
        for key in overdue {
            if let Some(slot) = self.slots.get_mut(key)
                && !std::mem::replace(&mut slot.overdue, true)
            {
                marked.push(key.clone());
            }
        }
        marked
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(name: &str) -> ResourceKey {
        ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", name)
    }

    #[test]
    fn one_describe_at_a_time_and_waiting_until_sent() {
        let t0 = Instant::now();
        let (a, b) = (key("a"), key("b"));
        let mut slots = Slots::default();
        slots.add(a.clone(), t0);
        slots.add(b.clone(), t0);
        assert!(slots.start(&key("unknown"), t0).is_none());
        let sent = slots.start(&a, t0).unwrap();
        assert!(slots.start(&a, t0).is_none(), "one in flight at a time");
        slots.start(&b, t0).unwrap();
        assert_eq!(slots.waiting(), 2);
        sent.store(true, Ordering::Relaxed);
        assert_eq!(slots.waiting(), 1, "sent is no longer waiting");

        let t1 = t0 + Duration::from_secs(3);
        assert!(slots.answered(&a, t1).is_some());
        assert_eq!(slots.waiting(), 1);
        assert!(
            slots.start(&a, t1).is_some(),
            "answered: it can start again"
        );
        let starts: Vec<_> = slots.last_starts().collect();
        assert_eq!(starts, [(&a, Some(t1)), (&b, Some(t0))]);
    }

    #[test]
    fn attempted_once_every_profile_answered_or_left() {
        let t0 = Instant::now();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let mut slots = Slots::default();
        assert!(slots.attempted());
        for key in [&a, &b, &c] {
            slots.add(key.clone(), t0);
        }
        assert!(!slots.attempted());
        slots.answered(&a, t0);
        slots.answered(&a, t0);
        slots.remove(&b);
        assert!(!slots.attempted(), "c never answered");
        slots.answered(&c, t0);
        assert!(slots.attempted());
        slots.remove(&c);
        assert!(
            slots.attempted(),
            "an answered profile that leaves counts for nothing"
        );
        assert_eq!(
            (slots.len(), slots.contains(&a), slots.contains(&c)),
            (1, true, false)
        );
    }

    #[test]
    fn a_profile_is_marked_overdue_once_until_it_answers() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let (a, b) = (key("a"), key("b"));
        let mut slots = Slots::default();
        slots.add(a.clone(), t0);
        slots.add(b.clone(), t0);
        slots.answered(&b, t1);
        let answers: Vec<_> = slots.last_answers().collect();
        assert_eq!(answers, [(&a, t0), (&b, t1)]);

        let both = [a.clone(), b.clone(), key("unknown")];
        assert_eq!(slots.mark_overdue(&both), [a.clone(), b.clone()]);
        assert_eq!(slots.mark_overdue(&both), []);
        slots.answered(&b, t1);
        assert_eq!(slots.mark_overdue(&both), [b]);
    }
}
