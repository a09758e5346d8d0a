//! The outbox's rules, one by one and against a reference model.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::fake::WIDGET;
use crate::model::{Incarnation, Kind};

const DAY: Duration = Duration::from_secs(86_400);

/// Resource `n`: even ones are Fargate profiles, odd ones of the fake kind.
fn key(n: usize) -> ResourceKey {
    let kind = if n.is_multiple_of(2) {
        Kind::FARGATE_PROFILE
    } else {
        WIDGET
    };
    ResourceKey::new(kind, "111122223333", "us-east-1", "prod", format!("r{n}"))
}

/// A status change of resource `n` into `to`, with its own sequence number (and so its id).
pub(super) fn event(n: usize, sequence: u64, to: &str, at: Timestamp) -> Event {
    Event {
        sequence,
        key: key(n),
        incarnation: Incarnation {
            arn: format!("arn:aws:eks:us-east-1:111122223333:thing/prod/r{n}/1"),
            created_at: Timestamp::from_secs(1),
        },
        status: Status::from_wire(to),
        observed_at: at,
        detail: EventDetail::StatusChanged {
            from: None,
            to: Status::from_wire(to),
        },
    }
}

pub(super) fn subscription(sink: &str, statuses: &[&str], max_queue: usize) -> Subscription {
    Subscription {
        sink: sink.into(),
        events: EventKind::ALL.into_iter().collect(),
        statuses: statuses.iter().map(|s| Status::from_wire(s)).collect(),
        max_queue,
    }
}

#[test]
fn a_sink_gets_only_saved_events_in_order_per_resource() {
    let outbox = Outbox::new(vec![subscription("hook", &["FAILED"], 100)]);
    let at = Timestamp::from_secs(10);
    let (a, b) = (event(0, 1, "FAILED", at), event(1, 2, "FAILED", at));
    let unwanted = event(0, 3, "ACTIVE", at);
    for event in [&a, &b, &unwanted] {
        outbox.record(true, std::slice::from_ref(event), &Labels::new(), at);
    }
    let now = Timestamp::from_secs(11);
    assert_eq!(outbox.stats()["hook"].queued, 2);
    assert_eq!(outbox.next_for("hook", now, DAY), Next::default());
    let (generation, contents) = outbox.contents();
    assert_eq!(contents.len(), 2);
    outbox.mark_saved(generation);
    let first = outbox.next_for("hook", now, DAY).pending.unwrap();
    assert_eq!(first.event.key, key(0));
    // A retry of the first event holds back that resource only.
    let later = Timestamp::from_secs(60);
    outbox.attempted("hook", &first.id, Attempt::Retry { not_before: later });
    let second = outbox.next_for("hook", now, DAY).pending.unwrap();
    assert_eq!(second.event.key, key(1));
    outbox.attempted("hook", &second.id, Attempt::Delivered);
    let next = outbox.next_for("hook", now, DAY);
    assert_eq!((next.pending, next.wake), (None, Some(later)));
    let again = outbox.next_for("hook", later, DAY).pending.unwrap();
    assert_eq!((again.id, again.attempts), (first.id.clone(), 1));
    outbox.attempted("hook", &first.id, Attempt::Rejected);
    let stats = &outbox.stats()["hook"];
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.outcomes[&Outcome::Retry], 1);
    assert_eq!(stats.outcomes[&Outcome::Success], 1);
    assert_eq!(stats.outcomes[&Outcome::Rejected], 1);
}

#[test]
fn max_queue_and_max_age_drop_and_count() {
    let outbox = Outbox::new(vec![subscription("hook", &["FAILED"], 1)]);
    for (sequence, at) in [(1, 10), (2, 20)] {
        let at = Timestamp::from_secs(at);
        outbox.record(
            true,
            &[event(0, sequence, "FAILED", at)],
            &Labels::new(),
            at,
        );
    }
    let stats = &outbox.stats()["hook"];
    assert_eq!((stats.queued, stats.outcomes[&Outcome::Dropped]), (1, 1));
    outbox.mark_saved(outbox.generation());
    let hour = Duration::from_secs(3600);
    let kept = outbox.next_for("hook", Timestamp::from_secs(30), hour);
    assert_eq!(kept.pending.unwrap().event.sequence, 2);
    let before = outbox.generation();
    let expired = outbox.next_for("hook", Timestamp::from_secs(20 + 3601), hour);
    assert_eq!(expired, Next::default());
    // The drop changes what the file should hold.
    assert!(outbox.generation() > before);
    let stats = &outbox.stats()["hook"];
    assert_eq!((stats.queued, stats.outcomes[&Outcome::Dropped]), (0, 2));
}

#[test]
fn a_group_is_the_due_saved_heads_queued_in_time_that_are_alike() {
    let outbox = Outbox::new(vec![subscription("slack", &["FAILED", "ACTIVE"], 100)]);
    let at = |s| Timestamp::from_secs(s);
    let events = [
        event(0, 1, "FAILED", at(10)),
        event(0, 2, "FAILED", at(10)),
        event(1, 3, "FAILED", at(11)),
        event(2, 4, "ACTIVE", at(11)),
        event(3, 5, "FAILED", at(30)),
    ];
    for event in &events {
        outbox.record(
            true,
            std::slice::from_ref(event),
            &Labels::new(),
            event.observed_at,
        );
    }
    outbox.mark_saved(outbox.generation());
    let unsaved = event(4, 6, "FAILED", at(12));
    outbox.record(true, std::slice::from_ref(&unsaved), &Labels::new(), at(12));
    let first = outbox.next_for("slack", at(40), DAY).pending.unwrap();
    let failed = |p: &Pending| p.event.status.as_str() == "FAILED";
    let group = outbox.group_for("slack", &first, at(20), at(40), failed);
    let sequences: Vec<u64> = group.iter().map(|p| p.event.sequence).collect();
    // Not 2 (behind 1 on its resource), 4 (not alike), 5 (too late) or 6 (not saved).
    assert_eq!(sequences, [1, 3]);
}

#[test]
fn a_restored_event_is_due_at_once_and_one_for_a_removed_sink_is_dropped() {
    let at = Timestamp::from_secs(10);
    let first = Outbox::new(vec![
        subscription("kept", &["FAILED"], 100),
        subscription("gone", &["FAILED"], 100),
    ]);
    first.record(true, &[event(1, 1, "FAILED", at)], &Labels::new(), at);
    let (_, contents) = first.contents();
    assert_eq!(contents.len(), 2);
    let second = Outbox::new(vec![subscription("kept", &["FAILED"], 100)]);
    second.restore(contents, at);
    let restored = second.next_for("kept", at, DAY).pending.unwrap();
    assert_eq!(restored.event.key, key(1));
    assert_eq!(second.contents().1.len(), 1);

    // A reload that removes the sink drops its queue and counts it.
    second.resubscribe(vec![subscription("new", &["FAILED"], 100)]);
    let stats = second.stats();
    assert_eq!(stats["kept"].outcomes[&Outcome::Dropped], 1);
    assert_eq!((stats["kept"].queued, stats["new"].queued), (0, 0));
    assert!(second.contents().1.is_empty());
}

// The model-based test: random sequences of operations against the outbox and a simple
// reference model of what it promises.

/// The sinks of the model: one that wants everything, one that wants only failures and keeps
/// at most three events.
const SINKS: [(&str, &[&str], usize); 2] = [
    ("all", &["ACTIVE", "FAILED"], 1_000),
    ("failed", &["FAILED"], 3),
];
const RESOURCES: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    /// A change of the state with an event of a resource (`None`: a change with no event).
    Change(Option<(usize, bool)>),
    /// The writer copies what the file should hold.
    BeginSave,
    /// The writer's copy reaches the disk.
    EndSave,
    /// A sink attempts what is next, with its group when `group`, and this outcome.
    Attempt {
        sink: usize,
        group: bool,
        outcome: Reply,
    },
    /// Time passes.
    Tick(u16),
    /// The process dies; the next one restores the file.
    Crash,
}

#[derive(Clone, Copy, Debug)]
enum Reply {
    Delivered,
    Retry(u16),
    Rejected,
}

fn op() -> impl Strategy<Value = Op> {
    let reply = prop_oneof![
        3 => Just(Reply::Delivered),
        2 => (1u16..5_000).prop_map(Reply::Retry),
        1 => Just(Reply::Rejected),
    ];
    prop_oneof![
        6 => proptest::option::weighted(0.9, (0..RESOURCES, any::<bool>())).prop_map(Op::Change),
        2 => Just(Op::BeginSave),
        2 => Just(Op::EndSave),
        6 => (0..SINKS.len(), any::<bool>(), reply)
            .prop_map(|(sink, group, outcome)| Op::Attempt { sink, group, outcome }),
        2 => (0u16..3_000).prop_map(Op::Tick),
        1 => Just(Op::Crash),
    ]
}

/// One queued event as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Queued {
    id: String,
    resource: ResourceKey,
    sequence: u64,
    enqueued_at: Timestamp,
    attempts: u32,
    not_before: Option<Timestamp>,
}

/// What the outbox promises, in the plainest terms: per sink a list in arrival order.
#[derive(Clone, Debug, Default)]
struct Model {
    /// Per sink, what is queued, in order.
    queues: Vec<Vec<Queued>>,
    /// Per sink, what the state file holds (delivery is allowed for these only).
    file: Vec<Vec<Queued>>,
    /// The writer's copy on its way to the disk.
    copy: Option<Vec<Vec<Queued>>>,
    /// Per sink, the ids dropped by `max_queue`.
    dropped: Vec<BTreeSet<String>>,
    /// Per sink, every id the file ever held, and every id delivered or rejected.
    ever_saved: Vec<BTreeSet<String>>,
    done: Vec<BTreeSet<String>>,
}

impl Model {
    fn new() -> Self {
        let lists = || vec![Vec::new(); SINKS.len()];
        let sets = || vec![BTreeSet::new(); SINKS.len()];
        Self {
            queues: lists(),
            file: lists(),
            copy: None,
            dropped: sets(),
            ever_saved: sets(),
            done: sets(),
        }
    }

    fn saved(&self, sink: usize, id: &str) -> bool {
        self.file[sink].iter().any(|q| q.id == id)
    }

    /// The events `sink` may attempt at `now`: the first queued of each resource, saved and
    /// due, in queue order.
    fn eligible(&self, sink: usize, now: Timestamp) -> Vec<&Queued> {
        let mut seen = BTreeSet::new();
        self.queues[sink]
            .iter()
            .filter(|q| seen.insert(q.resource.clone()))
            .filter(|q| self.saved(sink, &q.id) && q.not_before.is_none_or(|at| at <= now))
            .collect()
    }

    /// The earliest retry among the first queued event of each resource that is saved.
    fn wake(&self, sink: usize, now: Timestamp) -> Option<Timestamp> {
        let mut seen = BTreeSet::new();
        self.queues[sink]
            .iter()
            .filter(|q| seen.insert(q.resource.clone()))
            .filter(|q| self.saved(sink, &q.id))
            .filter_map(|q| q.not_before.filter(|at| *at > now))
            .min()
    }
}

fn as_model(pending: &Pending) -> Queued {
    Queued {
        id: pending.id.clone(),
        resource: pending.event.key.clone(),
        sequence: pending.event.sequence,
        enqueued_at: pending.enqueued_at,
        attempts: pending.attempts,
        not_before: pending.not_before,
    }
}

/// What the outbox holds per sink, in order, as the model writes it.
fn per_sink(contents: &[Pending]) -> Vec<Vec<Queued>> {
    SINKS
        .iter()
        .map(|(sink, ..)| {
            let mine = contents.iter().filter(|p| p.sink == *sink);
            mine.map(as_model).collect()
        })
        .collect()
}

fn new_outbox() -> Outbox {
    let subscriptions = SINKS
        .iter()
        .map(|(sink, statuses, max_queue)| subscription(sink, statuses, *max_queue))
        .collect();
    Outbox::new(subscriptions)
}

fn run(ops: Vec<Op>) {
    let mut outbox = new_outbox();
    let mut model = Model::new();
    let mut file_contents: Vec<Pending> = Vec::new();
    let mut copy_contents: Option<(u64, Vec<Pending>)> = None;
    let mut now = Timestamp::from_secs(1_000);
    let mut sequence = 0;
    let finish = [Op::BeginSave, Op::EndSave, Op::Tick(u16::MAX)];
    let drain = (0..200).flat_map(|_| {
        (0..SINKS.len()).map(|sink| Op::Attempt {
            sink,
            group: false,
            outcome: Reply::Delivered,
        })
    });
    for op in ops.into_iter().chain(finish).chain(drain) {
        match op {
            Op::Change(change) => {
                let events: Vec<Event> = change
                    .map(|(n, failed)| {
                        sequence += 1;
                        event(n, sequence, if failed { "FAILED" } else { "ACTIVE" }, now)
                    })
                    .into_iter()
                    .collect();
                outbox.record(true, &events, &Labels::new(), now);
                for event in &events {
                    for (sink, (_, statuses, max_queue)) in SINKS.iter().enumerate() {
                        if !statuses.contains(&event.status.as_str()) {
                            continue;
                        }
                        let queue = &mut model.queues[sink];
                        queue.push(Queued {
                            id: event.id(),
                            resource: event.key.clone(),
                            sequence: event.sequence,
                            enqueued_at: now,
                            attempts: 0,
                            not_before: None,
                        });
                        while queue.len() > *max_queue {
                            model.dropped[sink].insert(queue.remove(0).id);
                        }
                    }
                }
            }
            Op::BeginSave => {
                let (generation, contents) = outbox.contents();
                // The writer's copy is exactly what the model has queued.
                assert_eq!(per_sink(&contents), model.queues);
                model.copy = Some(model.queues.clone());
                copy_contents = Some((generation, contents));
            }
            Op::EndSave => {
                if let (Some(copy), Some((generation, contents))) =
                    (model.copy.take(), copy_contents.take())
                {
                    for (sink, queued) in copy.iter().enumerate() {
                        model.ever_saved[sink].extend(queued.iter().map(|q| q.id.clone()));
                    }
                    model.file = copy;
                    file_contents = contents;
                    outbox.mark_saved(generation);
                }
            }
            Op::Attempt {
                sink,
                group,
                outcome,
            } => {
                let name = SINKS[sink].0;
                let next = outbox.next_for(name, now, DAY);
                let eligible = model.eligible(sink, now);
                let Some(first) = next.pending else {
                    // Nothing is held back that the rules allow.
                    assert!(eligible.is_empty(), "{name} withheld {eligible:?}");
                    assert_eq!(next.wake, model.wake(sink, now));
                    continue;
                };
                // No delivery before save, and in order per resource.
                assert_eq!(Some(&as_model(&first)), eligible.first().copied());
                let until = later_by(first.enqueued_at, 2_000);
                let batch = if group {
                    let odd = |p: &Pending| p.event.key.kind == first.event.key.kind;
                    outbox.group_for(name, &first, until, now, odd)
                } else {
                    vec![first.clone()]
                };
                let batch: Vec<Queued> = batch.iter().map(as_model).collect();
                if group {
                    let expected: Vec<Queued> = eligible
                        .iter()
                        .filter(|q| q.resource.kind == first.event.key.kind)
                        .filter(|q| q.enqueued_at <= until)
                        .map(|q| (*q).clone())
                        .collect();
                    assert_eq!(batch, expected);
                }
                let attempt = match outcome {
                    Reply::Delivered => Attempt::Delivered,
                    Reply::Retry(ms) => Attempt::Retry {
                        not_before: later_by(now, ms.into()),
                    },
                    Reply::Rejected => Attempt::Rejected,
                };
                for queued in &batch {
                    outbox.attempted(name, &queued.id, attempt);
                    let queue = &mut model.queues[sink];
                    let index = queue.iter().position(|q| q.id == queued.id).unwrap();
                    match attempt {
                        Attempt::Retry { not_before } => {
                            queue[index].attempts += 1;
                            queue[index].not_before = Some(not_before);
                        }
                        _ => {
                            queue.remove(index);
                            model.done[sink].insert(queued.id.clone());
                        }
                    }
                }
            }
            Op::Tick(ms) => now = later_by(now, ms.into()),
            Op::Crash => {
                outbox = new_outbox();
                outbox.restore(file_contents.clone(), now);
                model.queues = model.file.clone();
                model.copy = None;
                copy_contents = None;
            }
        }
    }
    // Nothing lost: every event the file ever held was delivered, refused or dropped by
    // max_queue (counted), and nothing is left.
    let stats = outbox.stats();
    for (sink, (name, ..)) in SINKS.iter().enumerate() {
        assert!(
            model.queues[sink].is_empty(),
            "{name}: {:?}",
            model.queues[sink]
        );
        assert_eq!(stats[*name].queued, 0);
        let lost: Vec<&String> = model.ever_saved[sink]
            .difference(&model.done[sink])
            .filter(|id| !model.dropped[sink].contains(*id))
            .collect();
        assert!(lost.is_empty(), "{name} lost {lost:?}");
        let dropped = stats[*name].outcomes.get(&Outcome::Dropped).copied();
        assert!(dropped.unwrap_or(0) <= model.dropped[sink].len() as u64);
    }
}

fn later_by(at: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_millis(at.as_millis().saturating_add(ms))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_lost_in_order_per_resource_and_never_before_it_is_saved(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        run(ops);
    }
}

#[test]
fn times_a_file_puts_ahead_of_the_clock_hold_nothing_back_after_a_restore() {
    let now = Timestamp::from_secs(1_000_000);
    let ahead = Timestamp::from_secs(1_000_000 + 10 * 86_400);
    let first = Outbox::new(vec![subscription("hook", &["FAILED"], 100)]);
    first.record(true, &[event(0, 1, "FAILED", ahead)], &Labels::new(), ahead);
    first.record(true, &[event(1, 2, "FAILED", now)], &Labels::new(), now);
    let (_, mut contents) = first.contents();
    contents[0].not_before = Some(ahead);
    // A retry due within the hour stays as it was.
    let soon = Timestamp::from_secs(1_000_000 + 600);
    contents[1].not_before = Some(soon);
    let second = Outbox::new(vec![subscription("hook", &["FAILED"], 100)]);
    second.restore(contents, now);
    let next = second.next_for("hook", now, Duration::from_secs(3600));
    let pending = next.pending.unwrap();
    assert_eq!(pending.event.sequence, 1);
    assert_eq!((pending.enqueued_at, pending.not_before), (now, Some(now)));
    assert_eq!(next.wake, None);
    let (_, restored) = second.contents();
    assert_eq!(restored[1].not_before, Some(soon));
}
