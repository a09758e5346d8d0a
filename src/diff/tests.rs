//! Unit tests for each rule of the diff, a scripted history, and proptest properties.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::{Gone, Overdue, RawIssue, Unmonitored};

const ARN_1: &str = "arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/default/1111";
const ARN_2: &str = "arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/default/2222";

fn key() -> ResourceKey {
    ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "default")
}

fn incarnation(arn: &str, created: i64) -> Incarnation {
    Incarnation {
        arn: arn.to_owned(),
        created_at: Timestamp::from_secs(created),
    }
}

fn raw(code: &str, message: &str, ids: &[&str]) -> RawIssue {
    RawIssue {
        code: IssueCode::from_wire(code),
        message: message.to_owned(),
        resource_ids: ids.iter().map(|s| s.to_string()).collect(),
    }
}

fn observed_as(inc: &Incarnation, at: i64, status: &str, issues: Vec<RawIssue>) -> Input {
    Input::Observed(Observation {
        key: key(),
        incarnation: inc.clone(),
        status: Status::from_wire(status),
        info: BTreeMap::from([(
            "pod_execution_role_arn".to_owned(),
            "arn:aws:iam::111122223333:role/pod".to_owned(),
        )]),
        values: Default::default(),
        issues,
        observed_at: Timestamp::from_secs(at),
    })
}

fn observed(at: i64, status: &str, issues: Vec<RawIssue>) -> Input {
    observed_as(&incarnation(ARN_1, 1000), at, status, issues)
}

fn failed(at: i64, kind: ErrorKind) -> Input {
    Input::Failed(PollFailure {
        key: key(),
        kind,
        observed_at: Timestamp::from_secs(at),
    })
}

fn gone(at: i64) -> Input {
    Input::Gone(Gone {
        key: key(),
        observed_at: Timestamp::from_secs(at),
    })
}

fn unmonitored(at: i64) -> Input {
    Input::Unmonitored(Unmonitored {
        key: key(),
        observed_at: Timestamp::from_secs(at),
    })
}

/// Applies inputs one after another, keeping the state and the events.
#[derive(Debug, Default)]
struct Replay {
    state: Option<ResourceState>,
    sequence: Sequence,
    rules: Rules,
}

impl Replay {
    fn with_resolve_after(secs: u64) -> Self {
        Self {
            rules: Rules {
                resolve_after: Duration::from_secs(secs),
            },
            ..Self::default()
        }
    }

    fn apply(&mut self, input: Input) -> Vec<Event> {
        let t = diff(self.state.as_ref(), &input, &self.rules, &mut self.sequence);
        self.state = t.next;
        t.events
    }

    fn episodes(&self) -> &BTreeMap<IssueCode, Episode> {
        &self
            .state
            .as_ref()
            .unwrap()
            .known
            .as_ref()
            .unwrap()
            .episodes
    }
}

/// A compact, comparable description of an event.
fn describe(event: &Event) -> String {
    match &event.detail {
        EventDetail::IssueOpened { issue } => format!("opened {}", issue.issue.code),
        EventDetail::IssueUpdated { issue } => format!("updated {}", issue.issue.code),
        EventDetail::IssueResolved { issue, reason, .. } => {
            format!("resolved {} {}", issue.issue.code, reason)
        }
        EventDetail::StatusChanged { from, to } => format!(
            "status {}->{}",
            from.as_ref().map_or("null", Status::as_str),
            to
        ),
        EventDetail::ResourceDeleted => "deleted".to_owned(),
    }
}

fn described(events: &[Event]) -> Vec<String> {
    events.iter().map(describe).collect()
}

#[test]
fn first_sight_reports_status_from_null_and_opens_each_issue() {
    let mut r = Replay::default();
    let events = r.apply(observed(
        10,
        "ACTIVE",
        vec![
            raw("AccessDenied", "denied", &["r1"]),
            raw("ClusterUnreachable", "", &[]),
        ],
    ));
    assert_eq!(
        described(&events),
        [
            "status null->ACTIVE",
            "opened AccessDenied",
            "opened ClusterUnreachable"
        ]
    );
    let state = r.state.as_ref().unwrap();
    assert!(state.up);
    assert_eq!(state.last_success, Some(Timestamp::from_secs(10)));
    assert_eq!(r.episodes().len(), 2);
    assert_eq!(
        r.episodes()[&IssueCode::from_wire("AccessDenied")].since,
        Timestamp::from_secs(10)
    );
}

#[test]
fn a_healthy_profile_seen_again_emits_nothing() {
    let mut r = Replay::default();
    r.apply(observed(10, "ACTIVE", vec![]));
    assert!(r.apply(observed(70, "ACTIVE", vec![])).is_empty());
    assert!(r.apply(observed(130, "ACTIVE", vec![])).is_empty());
}

#[test]
fn an_open_issue_seen_again_emits_nothing() {
    let mut r = Replay::default();
    r.apply(observed(
        10,
        "ACTIVE",
        vec![raw("AccessDenied", "m", &["a"])],
    ));
    let id = r.episodes()[&IssueCode::from_wire("AccessDenied")]
        .id
        .clone();
    assert!(
        r.apply(observed(
            70,
            "ACTIVE",
            vec![raw("AccessDenied", "m", &["a"])]
        ))
        .is_empty()
    );
    assert_eq!(r.episodes()[&IssueCode::from_wire("AccessDenied")].id, id);
}

#[test]
fn the_same_observation_twice_is_a_no_op() {
    let mut r = Replay::default();
    r.apply(observed(10, "ACTIVE", vec![raw("AccessDenied", "m", &[])]));
    r.apply(observed(70, "ACTIVE", vec![]));
    let before = r.state.clone();
    assert!(r.apply(observed(70, "ACTIVE", vec![])).is_empty());
    assert_eq!(r.state, before);
}

#[test]
fn an_input_older_than_the_last_attempt_is_ignored() {
    let mut r = Replay::default();
    r.apply(observed(100, "ACTIVE", vec![]));
    let before = r.state.clone();
    assert!(
        r.apply(observed(
            50,
            "CREATE_FAILED",
            vec![raw("AccessDenied", "", &[])]
        ))
        .is_empty()
    );
    assert!(r.apply(failed(60, ErrorKind::Timeout)).is_empty());
    assert_eq!(r.state, before);
}

#[test]
fn a_changed_message_or_resource_list_updates_the_episode() {
    let mut r = Replay::default();
    r.apply(observed(
        10,
        "ACTIVE",
        vec![raw("AccessDenied", "m1", &["a"])],
    ));
    let id = r.episodes()[&IssueCode::from_wire("AccessDenied")]
        .id
        .clone();

    let events = r.apply(observed(
        70,
        "ACTIVE",
        vec![raw("AccessDenied", "m2", &["a"])],
    ));
    assert_eq!(described(&events), ["updated AccessDenied"]);
    let issue = events[0].episode_issue().unwrap();
    assert_eq!(issue.episode_id, id);
    assert_eq!(issue.issue.message, "m2");
    assert_eq!(issue.since, Timestamp::from_secs(10));

    let events = r.apply(observed(
        130,
        "ACTIVE",
        vec![raw("AccessDenied", "m2", &["b", "a"])],
    ));
    assert_eq!(described(&events), ["updated AccessDenied"]);
    assert_eq!(
        events[0].episode_issue().unwrap().issue.resource_ids,
        ["a", "b"]
    );
}

#[test]
fn an_episode_ends_after_two_consecutive_successful_polls_without_the_code() {
    let mut r = Replay::default();
    r.apply(observed(
        10,
        "ACTIVE",
        vec![raw("AccessDenied", "m", &["a"])],
    ));
    let id = r.episodes()[&IssueCode::from_wire("AccessDenied")]
        .id
        .clone();
    assert!(
        r.apply(observed(70, "ACTIVE", vec![])).is_empty(),
        "one absent poll is not enough"
    );
    assert_eq!(r.episodes().len(), 1, "the gauge still shows the episode");

    let events = r.apply(observed(130, "ACTIVE", vec![]));
    assert_eq!(described(&events), ["resolved AccessDenied cleared"]);
    let EventDetail::IssueResolved {
        issue, resolved_at, ..
    } = &events[0].detail
    else {
        unreachable!()
    };
    assert_eq!(issue.episode_id, id);
    assert_eq!(issue.since, Timestamp::from_secs(10));
    assert_eq!(*resolved_at, Timestamp::from_secs(130));
    assert!(r.episodes().is_empty());
}

#[test]
fn a_flap_inside_the_window_keeps_the_episode() {
    let mut r = Replay::default();
    r.apply(observed(10, "ACTIVE", vec![raw("AccessDenied", "m", &[])]));
    let id = r.episodes()[&IssueCode::from_wire("AccessDenied")]
        .id
        .clone();
    assert!(r.apply(observed(70, "ACTIVE", vec![])).is_empty());
    assert!(
        r.apply(observed(130, "ACTIVE", vec![raw("AccessDenied", "m", &[])]))
            .is_empty()
    );
    // The absence starts over: one more absent poll is again not enough.
    assert!(r.apply(observed(190, "ACTIVE", vec![])).is_empty());
    assert_eq!(r.episodes()[&IssueCode::from_wire("AccessDenied")].id, id);
    assert_eq!(
        described(&r.apply(observed(250, "ACTIVE", vec![]))),
        ["resolved AccessDenied cleared"]
    );
}

#[test]
fn failed_polls_neither_count_toward_nor_break_an_absence() {
    let mut r = Replay::default();
    r.apply(observed(10, "ACTIVE", vec![raw("AccessDenied", "m", &[])]));
    assert!(r.apply(observed(70, "ACTIVE", vec![])).is_empty());
    for at in [130, 190, 250] {
        assert!(r.apply(failed(at, ErrorKind::Throttled)).is_empty());
    }
    assert_eq!(r.episodes().len(), 1);
    assert_eq!(
        described(&r.apply(observed(310, "ACTIVE", vec![]))),
        ["resolved AccessDenied cleared"]
    );
}

#[test]
fn an_overdue_profile_shows_up_zero_and_nothing_else_changes() {
    let overdue = |at| {
        Input::Overdue(Overdue {
            key: key(),
            observed_at: Timestamp::from_secs(at),
        })
    };
    let mut r = Replay::default();
    r.apply(observed(
        10,
        "ACTIVE",
        vec![raw("AccessDenied", "m", &["a"])],
    ));
    assert!(r.apply(observed(70, "ACTIVE", vec![])).is_empty());
    let before = r.state.clone().unwrap();
    // Overdue again and again: no event, no resolution, the absence neither grows nor breaks.
    for at in [190, 250, 310] {
        assert!(r.apply(overdue(at)).is_empty());
        let state = r.state.as_ref().unwrap();
        assert!(!state.up);
        assert_eq!(
            (&state.known, state.last_success, state.last_attempt),
            (&before.known, before.last_success, before.last_attempt)
        );
    }
    assert_eq!(r.episodes().len(), 1);
    // The next success brings `up` back and counts as the second poll without the code.
    assert_eq!(
        described(&r.apply(observed(320, "ACTIVE", vec![]))),
        ["resolved AccessDenied cleared"]
    );
    assert!(r.state.as_ref().unwrap().up);
    // Older than the last attempt: ignored.
    assert!(r.apply(overdue(300)).is_empty());
    assert!(r.state.as_ref().unwrap().up);
}

#[test]
fn resolve_after_holds_an_episode_open_for_longer_than_two_polls() {
    let mut r = Replay::with_resolve_after(300);
    r.apply(observed(0, "ACTIVE", vec![raw("AccessDenied", "m", &[])]));
    // Absent from t=60 on: two polls pass at 120, but 300 s only at 360.
    for at in [60, 120, 180, 240, 300] {
        assert!(
            r.apply(observed(at, "ACTIVE", vec![])).is_empty(),
            "closed early at {at}"
        );
    }
    assert_eq!(
        described(&r.apply(observed(360, "ACTIVE", vec![]))),
        ["resolved AccessDenied cleared"]
    );
}

#[test]
fn resolve_after_alone_is_not_enough_without_two_polls() {
    let mut r = Replay::with_resolve_after(60);
    r.apply(observed(0, "ACTIVE", vec![raw("AccessDenied", "m", &[])]));
    assert!(r.apply(observed(600, "ACTIVE", vec![])).is_empty());
    assert_eq!(r.apply(observed(660, "ACTIVE", vec![])).len(), 1);
}

#[test]
fn a_failed_poll_keeps_the_last_known_state_and_sets_up_to_zero() {
    let mut r = Replay::default();
    r.apply(observed(
        10,
        "ACTIVE",
        vec![raw("AccessDenied", "m", &["a"])],
    ));
    let before = r.state.clone().unwrap();
    for (at, kind) in ErrorKind::ALL.into_iter().enumerate() {
        assert!(r.apply(failed(70 + at as i64, kind)).is_empty());
        let state = r.state.as_ref().unwrap();
        assert!(!state.up);
        assert_eq!(state.last_error, Some(kind));
        assert_eq!(state.known, before.known);
        assert_eq!(state.last_success, before.last_success);
    }
    let state = r.state.as_ref().unwrap();
    assert_eq!(state.last_attempt, Some(Timestamp::from_secs(77)));
    // The next success brings `up` back without any event.
    assert!(
        r.apply(observed(
            130,
            "ACTIVE",
            vec![raw("AccessDenied", "m", &["a"])]
        ))
        .is_empty()
    );
    assert!(r.state.as_ref().unwrap().up);
    assert_eq!(r.state.as_ref().unwrap().last_error, None);
}

#[test]
fn a_profile_never_described_successfully_knows_nothing() {
    let mut r = Replay::default();
    assert!(r.apply(failed(10, ErrorKind::AccessDenied)).is_empty());
    let state = r.state.as_ref().unwrap();
    assert_eq!(state.known, None);
    assert!(!state.up);
    assert_eq!(state.last_success, None);
    // Its first success is a first sight.
    let events = r.apply(observed(70, "CREATE_FAILED", vec![]));
    assert_eq!(described(&events), ["status null->CREATE_FAILED"]);
}

#[test]
fn every_status_transition_is_reported_with_its_origin() {
    let mut r = Replay::default();
    assert_eq!(
        described(&r.apply(observed(10, "CREATING", vec![]))),
        ["status null->CREATING"]
    );
    assert_eq!(
        described(&r.apply(observed(20, "ACTIVE", vec![]))),
        ["status CREATING->ACTIVE"]
    );
    assert_eq!(
        described(&r.apply(observed(30, "DELETING", vec![]))),
        ["status ACTIVE->DELETING"]
    );
    assert_eq!(
        described(&r.apply(observed(40, "DELETE_FAILED", vec![]))),
        ["status DELETING->DELETE_FAILED"]
    );
    let events = r.apply(observed(50, "ACTIVE", vec![]));
    assert_eq!(
        events[0].status,
        Status::from_wire("ACTIVE"),
        "the event carries the new status"
    );
}

#[test]
fn unknown_codes_and_statuses_are_reported_verbatim() {
    let mut r = Replay::default();
    let events = r.apply(observed(
        10,
        "PAUSED",
        vec![raw("SubnetExhausted", "no IPs", &["subnet-1"])],
    ));
    assert_eq!(
        described(&events),
        ["status null->PAUSED", "opened SubnetExhausted"]
    );
    assert_eq!(
        events[1].episode_issue().unwrap().issue.code,
        IssueCode::from_wire("SubnetExhausted")
    );
    r.apply(observed(70, "PAUSED", vec![]));
    assert_eq!(
        described(&r.apply(observed(130, "PAUSED", vec![]))),
        ["resolved SubnetExhausted cleared"]
    );
}

#[test]
fn a_new_incarnation_ends_the_old_one_and_starts_without_history() {
    let mut r = Replay::default();
    let old = incarnation(ARN_1, 1000);
    let new = incarnation(ARN_2, 2000);
    r.apply(observed_as(
        &old,
        10,
        "ACTIVE",
        vec![raw("AccessDenied", "m", &[])],
    ));
    let old_id = r.episodes()[&IssueCode::from_wire("AccessDenied")]
        .id
        .clone();

    let events = r.apply(observed_as(
        &new,
        70,
        "ACTIVE",
        vec![raw("AccessDenied", "m", &[])],
    ));
    assert_eq!(
        described(&events),
        [
            "resolved AccessDenied resource_deleted",
            "deleted",
            "status null->ACTIVE",
            "opened AccessDenied"
        ]
    );
    assert_eq!(events[0].incarnation, old);
    assert_eq!(events[1].incarnation, old);
    assert_eq!(events[2].incarnation, new);
    let new_id = &events[3].episode_issue().unwrap().episode_id;
    assert_ne!(*new_id, old_id);
    assert_eq!(
        events[3].episode_issue().unwrap().since,
        Timestamp::from_secs(70)
    );
}

#[test]
fn a_changed_created_at_alone_is_a_new_incarnation() {
    let mut r = Replay::default();
    r.apply(observed_as(&incarnation(ARN_1, 1000), 10, "ACTIVE", vec![]));
    let events = r.apply(observed_as(&incarnation(ARN_1, 1060), 70, "ACTIVE", vec![]));
    assert_eq!(described(&events), ["deleted", "status null->ACTIVE"]);
}

#[test]
fn a_gone_profile_resolves_its_episodes_then_is_deleted() {
    let mut r = Replay::default();
    r.apply(observed(
        10,
        "DELETING",
        vec![raw("B", "", &[]), raw("A", "", &[])],
    ));
    let t = diff(r.state.as_ref(), &gone(70), &r.rules, &mut r.sequence);
    assert_eq!(
        described(&t.events),
        [
            "resolved A resource_deleted",
            "resolved B resource_deleted",
            "deleted"
        ]
    );
    assert_eq!(t.next, None, "no state left, so no stale series");
    let EventDetail::IssueResolved { resolved_at, .. } = &t.events[0].detail else {
        unreachable!()
    };
    assert_eq!(*resolved_at, Timestamp::from_secs(70));
}

#[test]
fn a_gone_profile_that_was_never_described_just_disappears() {
    let mut r = Replay::default();
    r.apply(failed(10, ErrorKind::NotFound));
    assert!(r.apply(gone(11)).is_empty());
    assert_eq!(r.state, None);
    assert!(r.apply(gone(12)).is_empty(), "gone with no state at all");
}

#[test]
fn an_unmonitored_profile_resolves_its_episodes_without_a_deletion() {
    let mut r = Replay::default();
    r.apply(observed(10, "ACTIVE", vec![raw("AccessDenied", "", &[])]));
    let events = r.apply(unmonitored(20));
    assert_eq!(described(&events), ["resolved AccessDenied unmonitored"]);
    assert_eq!(r.state, None);
}

#[test]
fn sequence_numbers_keep_increasing_across_a_delete_and_re_create() {
    let mut r = Replay::default();
    let mut all = r.apply(observed(10, "ACTIVE", vec![raw("A", "", &[])]));
    all.extend(r.apply(gone(20)));
    all.extend(r.apply(observed_as(
        &incarnation(ARN_2, 30),
        30,
        "ACTIVE",
        vec![raw("A", "", &[])],
    )));
    let sequences: Vec<u64> = all.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    assert_eq!(r.sequence.last(), 6);
}

#[test]
fn episode_ids_depend_on_what_the_episode_is() {
    let inc = incarnation(ARN_1, 1000);
    let code = IssueCode::from_wire("AccessDenied");
    let a = episode_id(&key(), &inc, &code, Timestamp::from_secs(10));
    assert_eq!(a, episode_id(&key(), &inc, &code, Timestamp::from_secs(10)));
    assert_eq!(a.len(), 16);
    assert_ne!(a, episode_id(&key(), &inc, &code, Timestamp::from_secs(11)));
    assert_ne!(
        a,
        episode_id(
            &key(),
            &inc,
            &IssueCode::from_wire("ClusterUnreachable"),
            Timestamp::from_secs(10)
        )
    );
    assert_ne!(
        a,
        episode_id(
            &key(),
            &incarnation(ARN_2, 1000),
            &code,
            Timestamp::from_secs(10)
        )
    );
}

#[test]
fn event_ids_are_stable_and_distinct() {
    let history = || {
        let mut r = Replay::default();
        let mut all = r.apply(observed(10, "ACTIVE", vec![raw("A", "m", &[])]));
        all.extend(r.apply(observed(20, "ACTIVE", vec![raw("A", "n", &[])])));
        all.extend(r.apply(observed(30, "ACTIVE", vec![raw("A", "o", &[])])));
        all.extend(r.apply(gone(40)));
        all
    };
    let first: Vec<String> = history().iter().map(Event::id).collect();
    let second: Vec<String> = history().iter().map(Event::id).collect();
    assert_eq!(first, second);
    assert_eq!(first.iter().collect::<BTreeSet<_>>().len(), first.len());
}

#[test]
fn the_state_round_trips_through_json() {
    let mut r = Replay::default();
    r.apply(observed(
        10,
        "PAUSED",
        vec![raw("AccessDenied", "m", &["a"]), raw("NewCode", "", &[])],
    ));
    r.apply(observed(70, "PAUSED", vec![raw("NewCode", "", &[])]));
    let state = r.state.clone().unwrap();
    assert!(
        state.known.as_ref().unwrap().episodes[&IssueCode::from_wire("AccessDenied")]
            .absent
            .is_some()
    );
    let json = serde_json::to_string(&state).unwrap();
    let back: ResourceState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    // The restored state goes on exactly as the original would.
    let mut sequence = r.sequence;
    let next = observed(130, "PAUSED", vec![raw("NewCode", "", &[])]);
    let a = diff(Some(&back), &next, &r.rules, &mut sequence.clone());
    let b = diff(Some(&state), &next, &r.rules, &mut sequence);
    assert_eq!(a, b);
    assert_eq!(described(&a.events), ["resolved AccessDenied cleared"]);
}

#[test]
fn info_labels_follow_the_latest_describe() {
    let mut r = Replay::default();
    r.apply(observed(10, "ACTIVE", vec![]));
    let Input::Observed(mut o) = observed(70, "ACTIVE", vec![]) else {
        unreachable!()
    };
    o.info.insert(
        "pod_execution_role_arn".into(),
        "arn:aws:iam::111122223333:role/new".into(),
    );
    assert!(r.apply(Input::Observed(o)).is_empty());
    let known = r.state.as_ref().unwrap().known.as_ref().unwrap();
    assert_eq!(
        known.info["pod_execution_role_arn"],
        "arn:aws:iam::111122223333:role/new"
    );
}

#[test]
fn events_serialize_with_their_kind() {
    let mut r = Replay::default();
    let events = r.apply(observed(10, "ACTIVE", vec![raw("A", "m", &[])]));
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["detail"]["kind"], "status_changed");
    assert_eq!(json["detail"]["from"], serde_json::Value::Null);
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, events[0]);
}

/// One profile's life, step by step, with the exact events each step emits.
#[test]
fn scripted_history_of_one_profile() {
    let first = incarnation(ARN_1, 1000);
    let second = incarnation(ARN_2, 5000);
    let denied = || raw("AccessDenied", "role in use", &["role/a"]);
    #[rustfmt::skip]
    let script: Vec<(Input, &[&str])> = vec![
        (observed_as(&first, 0, "CREATING", vec![]), &["status null->CREATING"]),
        (observed_as(&first, 60, "ACTIVE", vec![]), &["status CREATING->ACTIVE"]),
        // open
        (observed_as(&first, 120, "ACTIVE", vec![denied()]), &["opened AccessDenied"]),
        (observed_as(&first, 180, "ACTIVE", vec![denied()]), &[]),
        // flap: one absent poll, then back
        (observed_as(&first, 240, "ACTIVE", vec![]), &[]),
        (observed_as(&first, 300, "ACTIVE", vec![denied()]), &[]),
        // the API fails for a while: nothing changes
        (failed(360, ErrorKind::Throttled), &[]),
        (failed(420, ErrorKind::Server), &[]),
        (failed(480, ErrorKind::Timeout), &[]),
        // a second code joins, the first one's message changes
        (observed_as(&first, 540, "ACTIVE", vec![
            raw("AccessDenied", "role in use by x", &["role/a"]),
            raw("ClusterUnreachable", "", &[]),
        ]), &["updated AccessDenied", "opened ClusterUnreachable"]),
        // resolve: two absent polls, with a failure between them
        (observed_as(&first, 600, "ACTIVE", vec![raw("ClusterUnreachable", "", &[])]), &[]),
        (failed(660, ErrorKind::Network), &[]),
        (observed_as(&first, 720, "ACTIVE", vec![raw("ClusterUnreachable", "", &[])]),
            &["resolved AccessDenied cleared"]),
        // re-create under the same name
        (observed_as(&second, 780, "CREATING", vec![]),
            &["resolved ClusterUnreachable resource_deleted", "deleted", "status null->CREATING"]),
        (observed_as(&second, 840, "CREATE_FAILED", vec![denied()]),
            &["status CREATING->CREATE_FAILED", "opened AccessDenied"]),
        // delete
        (failed(900, ErrorKind::NotFound), &[]),
        (gone(901), &["resolved AccessDenied resource_deleted", "deleted"]),
    ];
    let mut r = Replay::default();
    for (step, (input, expected)) in script.into_iter().enumerate() {
        let events = r.apply(input);
        assert_eq!(described(&events), expected.to_vec(), "step {step}");
    }
    assert_eq!(r.state, None);
}

// ---- properties ---------------------------------------------------------------------------

/// A random input for the one profile, at time `at`.
fn arb_input(at: i64) -> impl Strategy<Value = Input> {
    let codes = prop::sample::select(vec!["AccessDenied", "ClusterUnreachable", "NewCode"]);
    let issue = (
        codes,
        prop::sample::select(vec!["m1", "m2"]),
        prop::collection::vec(prop::sample::select(vec!["r1", "r2", "r3"]), 0..3),
    )
        .prop_map(|(code, message, ids)| raw(code, message, &ids));
    let status = prop::sample::select(vec!["ACTIVE", "CREATING", "CREATE_FAILED", "WEIRD"]);
    let arn = prop::sample::select(vec![ARN_1, ARN_2]);
    let kind = prop::sample::select(ErrorKind::ALL.to_vec());
    prop_oneof![
        6 => (arn, status, prop::collection::vec(issue, 0..4))
            .prop_map(move |(arn, status, issues)| {
                observed_as(&incarnation(arn, 1000), at, status, issues)
            }),
        3 => kind.prop_map(move |kind| failed(at, kind)),
        1 => Just(gone(at)),
        1 => Just(unmonitored(at)),
    ]
}

/// A history of inputs at increasing times.
fn arb_history() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec(any::<u8>(), 1..40).prop_flat_map(|gaps| {
        let mut at = 0i64;
        let times: Vec<i64> = gaps
            .iter()
            .map(|gap| {
                at += 1 + i64::from(*gap);
                at
            })
            .collect();
        times.into_iter().map(arb_input).collect::<Vec<_>>()
    })
}

fn run(history: &[Input], rules: Rules) -> (Replay, Vec<Event>) {
    let mut r = Replay {
        rules,
        ..Replay::default()
    };
    let mut all = Vec::new();
    for input in history {
        all.extend(r.apply(input.clone()));
    }
    (r, all)
}

fn arb_rules() -> impl Strategy<Value = Rules> {
    (0u64..600).prop_map(|secs| Rules {
        resolve_after: Duration::from_secs(secs),
    })
}

proptest! {
    #[test]
    fn the_same_observation_twice_emits_nothing_the_second_time(
        history in arb_history(), rules in arb_rules(), last in arb_input(100_000),
    ) {
        let (mut r, _) = run(&history, rules);
        r.apply(last.clone());
        let state = r.state.clone();
        if matches!(last, Input::Observed(_) | Input::Failed(_)) {
            prop_assert!(r.apply(last).is_empty());
            prop_assert_eq!(&r.state, &state);
        }
    }

    #[test]
    fn a_settled_state_emits_nothing_for_the_same_issues_later(
        history in arb_history(), last in arb_input(100_000),
    ) {
        let rules = Rules::default();
        let (mut r, _) = run(&history, rules);
        let Input::Observed(mut observation) = last else { return Ok(()) };
        // Three polls with the same content settle every absence (resolve_after is 0).
        for at in [100_000, 100_060, 100_120] {
            observation.observed_at = Timestamp::from_secs(at);
            r.apply(Input::Observed(observation.clone()));
        }
        observation.observed_at = Timestamp::from_secs(100_180);
        prop_assert!(r.apply(Input::Observed(observation)).is_empty());
    }

    #[test]
    fn no_sequence_of_failures_ever_emits_anything(
        history in arb_history(), rules in arb_rules(),
        failures in prop::collection::vec(prop::sample::select(ErrorKind::ALL.to_vec()), 1..20),
    ) {
        let (mut r, _) = run(&history, rules);
        let known = r.state.as_ref().and_then(|s| s.known.clone());
        for (i, kind) in failures.into_iter().enumerate() {
            prop_assert!(r.apply(failed(200_000 + i as i64, kind)).is_empty());
        }
        prop_assert_eq!(r.state.as_ref().and_then(|s| s.known.clone()), known);
        prop_assert!(!r.state.as_ref().unwrap().up);
    }

    #[test]
    fn a_reordered_issue_list_changes_nothing(
        history in arb_history(), rules in arb_rules(), last in arb_input(100_000),
        seed in any::<u64>(),
    ) {
        let (r, _) = run(&history, rules);
        let Input::Observed(observation) = last else { return Ok(()) };
        let mut shuffled = observation.clone();
        // A deterministic permutation from the seed.
        let n = shuffled.issues.len();
        for i in (1..n).rev() {
            shuffled.issues.swap(i, (seed as usize).wrapping_mul(i + 7) % (i + 1));
        }
        shuffled.issues.reverse();
        let mut s1 = r.sequence;
        let mut s2 = r.sequence;
        let a = diff(r.state.as_ref(), &Input::Observed(observation), &rules, &mut s1);
        let b = diff(r.state.as_ref(), &Input::Observed(shuffled), &rules, &mut s2);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn every_episode_opens_once_closes_at_most_once_and_can_close(
        history in arb_history(), rules in arb_rules(),
    ) {
        let (mut r, mut all) = run(&history, rules);
        // Two clean polls far enough apart close whatever is still open.
        if let Some(known) = r.state.as_ref().and_then(|s| s.known.clone()) {
            for at in [500_000, 500_000 + 600] {
                all.extend(r.apply(observed_as(&known.incarnation, at, known.status.as_str(), vec![])));
            }
            prop_assert!(r.episodes().is_empty(), "episodes left open: {:?}", r.episodes());
        }
        let mut open = BTreeSet::new();
        let mut closed = BTreeSet::new();
        for event in &all {
            let Some(issue) = event.episode_issue() else { continue };
            let id = issue.episode_id.clone();
            match event.kind() {
                EventKind::IssueOpened => {
                    prop_assert!(!closed.contains(&id) && open.insert(id), "opened twice");
                }
                EventKind::IssueUpdated => prop_assert!(open.contains(&id), "update outside episode"),
                EventKind::IssueResolved => {
                    prop_assert!(open.remove(&id), "resolved without being open");
                    prop_assert!(closed.insert(id), "resolved twice");
                }
                _ => unreachable!(),
            }
        }
        prop_assert!(open.is_empty(), "episodes never closed: {open:?}");
        let sequences: Vec<u64> = all.iter().map(|e| e.sequence).collect();
        prop_assert!(sequences.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_state_always_matches_the_events(history in arb_history(), rules in arb_rules()) {
        // Replaying the events onto a set of open episodes gives the state's open episodes.
        let (r, all) = run(&history, rules);
        let mut open: BTreeMap<String, Issue> = BTreeMap::new();
        for event in &all {
            let Some(issue) = event.episode_issue() else { continue };
            match event.kind() {
                EventKind::IssueResolved => { open.remove(&issue.episode_id); }
                _ => { open.insert(issue.episode_id.clone(), issue.issue.clone()); }
            }
        }
        let from_state: BTreeMap<String, Issue> = r
            .state
            .iter()
            .filter_map(|s| s.known.as_ref())
            .flat_map(|k| k.episodes.values())
            .map(|e| (e.id.clone(), e.issue.clone()))
            .collect();
        prop_assert_eq!(open, from_state);
    }
}

#[test]
fn event_ids_come_from_what_the_event_is() {
    // The same history replayed with another starting sequence (as after a restart that lost
    // nothing but the counter) gives the same ids for openings and resolutions.
    let history = [
        observed(10, "ACTIVE", vec![raw("AccessDenied", "denied", &["r1"])]),
        observed(
            20,
            "ACTIVE",
            vec![raw("AccessDenied", "denied", &["r1", "r2"])],
        ),
        observed(30, "ACTIVE", vec![]),
        observed(40, "ACTIVE", vec![]),
    ];
    let ids = |start: u64| {
        let mut sequence = Sequence::starting_after(start);
        let mut state = None;
        let mut out = Vec::new();
        for input in &history {
            let t = diff(state.as_ref(), input, &Rules::default(), &mut sequence);
            out.extend(t.events.iter().map(|e| (e.kind(), e.id())));
            state = t.next;
        }
        out
    };
    let (first, second) = (ids(0), ids(100));
    let kinds: Vec<EventKind> = first.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            EventKind::StatusChanged,
            EventKind::IssueOpened,
            EventKind::IssueUpdated,
            EventKind::IssueResolved
        ]
    );
    for ((kind, a), (_, b)) in first.iter().zip(&second) {
        match kind {
            EventKind::IssueOpened | EventKind::IssueResolved => assert_eq!(a, b, "{kind:?}"),
            _ => assert_ne!(a, b, "{kind:?} carries its sequence"),
        }
    }
    let distinct: BTreeSet<&String> = first.iter().map(|(_, id)| id).collect();
    assert_eq!(distinct.len(), first.len());
}

/// The diff for a kind it has never heard of (the tests' fake `widget`): the same rules, its
/// own statuses and codes, and events whose ids differ from a Fargate profile's of the same
/// name.
#[test]
fn a_second_kind_goes_through_the_same_diff_with_its_own_codes_and_statuses() {
    use crate::model::fake::WIDGET;
    let widget = ResourceKey::new(WIDGET, "111122223333", "us-east-1", "prod", "default");
    let inc = incarnation(
        "arn:aws:eks:us-east-1:111122223333:widget/prod/default/1",
        1000,
    );
    let observe = |at: i64, status: &str, issues: Vec<RawIssue>| {
        Input::Observed(Observation {
            key: widget.clone(),
            incarnation: inc.clone(),
            status: Status::from_wire(status),
            info: BTreeMap::new(),
            values: Default::default(),
            issues,
            observed_at: Timestamp::from_secs(at),
        })
    };
    let mut replay = Replay::default();
    let first = replay.apply(observe(10, "BUILDING", vec![raw("Wobbly", "w", &["x"])]));
    assert_eq!(
        described(&first),
        ["status null->BUILDING", "opened Wobbly"]
    );
    assert!(first.iter().all(|e| e.key.kind == WIDGET));
    let degraded = replay.apply(observe(
        20,
        "WOBBLING",
        vec![raw("Wobbly", "w", &["x"]), raw("Rattly", "new", &[])],
    ));
    assert_eq!(
        described(&degraded),
        ["status BUILDING->WOBBLING", "opened Rattly"]
    );
    assert!(WIDGET.is_alert_worthy(&degraded[0].status));
    assert!(!WIDGET.knows_code(&IssueCode::from_wire("Rattly")));
    replay.apply(observe(30, "OK", vec![]));
    let cleared = replay.apply(observe(40, "OK", vec![]));
    assert_eq!(
        described(&cleared),
        ["resolved Rattly cleared", "resolved Wobbly cleared"]
    );
    let gone = replay.apply(Input::Gone(Gone {
        key: widget.clone(),
        observed_at: Timestamp::from_secs(50),
    }));
    assert_eq!(described(&gone), ["deleted"]);
    assert!(replay.state.is_none());

    // The same names as a Fargate profile: other events, other ids.
    let mut profile = Replay::default();
    let opened = profile.apply(observed_as(
        &inc,
        10,
        "BUILDING",
        vec![raw("Wobbly", "w", &["x"])],
    ));
    assert_eq!(described(&opened), described(&first));
    for (a, b) in opened.iter().zip(&first) {
        assert_ne!(a.id(), b.id(), "the kind is part of an event's identity");
    }
}
