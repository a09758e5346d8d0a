//! The pure diff: what is known about one resource, plus one input, gives what is known next and
//! the events that describe the change.
//!
//! No I/O and no clock: every input carries its own time, so the same history always yields the
//! same events. The rules are DESIGN.md's: a failed poll changes nothing but `up` (invariant 1);
//! a resource ends only when the API confirms it is gone or the config stops selecting it
//! (invariant 2); a new ARN or `createdAt` is a new incarnation (invariant 3); unknown codes and
//! statuses are kept verbatim (invariant 6); an episode ends only after the code was absent from
//! two consecutive successful polls and for at least `resolve_after`.
//!
//! Nothing here is specific to Fargate beyond the model's types: another EKS resource with the
//! same `health.issues[]` shape feeds the same diff.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{
    ErrorKind, EventKind, Incarnation, Input, Issue, IssueCode, Observation, PollFailure,
    ResolveReason, ResourceKey, Status, Timestamp, merge_issues,
};

/// The knobs of the diff, from `[alerts]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// How long a code must have been absent before its episode ends (besides the two polls).
    pub resolve_after: Duration,
}

/// The number of consecutive successful polls without a code that end its episode.
pub const ABSENT_POLLS_TO_RESOLVE: u32 = 2;

/// Everything known about one monitored resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceState {
    pub key: ResourceKey,
    /// What the last successful describe said; `None` until one succeeded.
    pub known: Option<Known>,
    /// Whether the last describe succeeded.
    pub up: bool,
    pub last_success: Option<Timestamp>,
    /// The time of the last describe, successful or not.
    pub last_attempt: Option<Timestamp>,
    /// How the last describe failed, while `up` is false.
    pub last_error: Option<ErrorKind>,
}

impl ResourceState {
    /// A resource that discovery found and nobody has described yet: it exports only `up 0`.
    pub fn discovered(key: ResourceKey) -> Self {
        Self {
            key,
            known: None,
            up: false,
            last_success: None,
            last_attempt: None,
            last_error: None,
        }
    }
}

/// The state of one incarnation as the last successful describe showed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    pub incarnation: Incarnation,
    pub status: Status,
    /// Extra labels of the info series, as the last successful describe gave them.
    pub info: BTreeMap<String, String>,
    /// The kind's own numbers (a node group's sizes), as the last successful describe gave
    /// them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, i64>,
    /// The open episodes, one per code.
    pub episodes: BTreeMap<IssueCode, Episode>,
}

/// An open episode of one issue code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// Stable from opening to resolution and across restarts.
    pub id: String,
    /// The issue as last seen.
    pub issue: Issue,
    /// When a successful poll first showed the code.
    pub since: Timestamp,
    /// Set while successful polls no longer show the code.
    pub absent: Option<Absence>,
}

/// How long a code of an open episode has been missing from successful polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absence {
    /// Consecutive successful polls without the code.
    pub polls: u32,
    /// The time of the first of them.
    pub since: Timestamp,
}

/// Hands out event sequence numbers. One counter serves every resource, so numbers keep
/// increasing per resource even across a delete and a re-create with the same name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    last: u64,
}

impl Sequence {
    /// A counter whose next number is `last + 1`.
    pub const fn starting_after(last: u64) -> Self {
        Self { last }
    }

    /// The last number handed out (0 when none was).
    pub const fn last(self) -> u64 {
        self.last
    }

    /// The next number; at `u64::MAX` it stays there (never wraps to 0, which receivers
    /// would take for an old event).
    fn next(&mut self) -> u64 {
        self.last = self.last.saturating_add(1);
        self.last
    }
}

/// Something that happened to a resource, for the sinks and the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub sequence: u64,
    pub key: ResourceKey,
    pub incarnation: Incarnation,
    /// The resource's status when the event happened.
    pub status: Status,
    pub observed_at: Timestamp,
    pub detail: EventDetail,
}

/// What kind of thing happened, with its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventDetail {
    IssueOpened {
        issue: EpisodeIssue,
    },
    /// The message or the resource ids changed within an episode.
    IssueUpdated {
        issue: EpisodeIssue,
    },
    IssueResolved {
        issue: EpisodeIssue,
        resolved_at: Timestamp,
        reason: ResolveReason,
    },
    StatusChanged {
        /// `None` when the resource (or a new incarnation of it) is first seen.
        from: Option<Status>,
        to: Status,
    },
    ResourceDeleted,
}

/// An issue as an event reports it: the issue and its episode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeIssue {
    pub issue: Issue,
    pub episode_id: String,
    pub since: Timestamp,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self.detail {
            EventDetail::IssueOpened { .. } => EventKind::IssueOpened,
            EventDetail::IssueUpdated { .. } => EventKind::IssueUpdated,
            EventDetail::IssueResolved { .. } => EventKind::IssueResolved,
            EventDetail::StatusChanged { .. } => EventKind::StatusChanged,
            EventDetail::ResourceDeleted => EventKind::ResourceDeleted,
        }
    }

    /// The issue and episode of an `issue_*` event.
    pub fn episode_issue(&self) -> Option<&EpisodeIssue> {
        match &self.detail {
            EventDetail::IssueOpened { issue }
            | EventDetail::IssueUpdated { issue }
            | EventDetail::IssueResolved { issue, .. } => Some(issue),
            EventDetail::StatusChanged { .. } | EventDetail::ResourceDeleted => None,
        }
    }

    /// A stable id derived from what the event is: the kind, the resource and its incarnation,
    /// and for issues the code and the episode. One episode opens and resolves once, and an
    /// incarnation is deleted once, so those ids need nothing more; updates and status changes
    /// can repeat, so theirs also carry the sequence number (which the state file keeps).
    /// The same event derived again after a restart has the same id.
    pub fn id(&self) -> String {
        let mut parts = vec![self.kind().as_str().to_owned()];
        parts.extend(identity_parts(&self.key, &self.incarnation));
        match &self.detail {
            EventDetail::IssueOpened { issue } | EventDetail::IssueResolved { issue, .. } => {
                parts.push(issue.issue.code.as_str().to_owned());
                parts.push(issue.episode_id.clone());
            }
            EventDetail::IssueUpdated { issue } => {
                parts.push(issue.issue.code.as_str().to_owned());
                parts.push(issue.episode_id.clone());
                parts.push(self.sequence.to_string());
            }
            EventDetail::StatusChanged { from, to } => {
                parts.push(from.as_ref().map_or("", Status::as_str).to_owned());
                parts.push(to.as_str().to_owned());
                parts.push(self.sequence.to_string());
            }
            EventDetail::ResourceDeleted => {}
        }
        digest("event", &parts, 32)
    }
}

/// The next state of a resource and the events of the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// `None` when the resource is no longer monitored (gone or unselected).
    pub next: Option<ResourceState>,
    pub events: Vec<Event>,
}

/// Applies one input to what is known of its resource.
///
/// `prev` must be the state of `input.key()` (or `None` when nothing is known). Inputs older
/// than the last attempt, and a repeat of the last successful observation, change nothing.
///
/// Events come in a fixed order: the end of an old incarnation (its resolutions, then
/// `resource_deleted`), then `status_changed`, then the issues in code order.
pub fn diff(
    prev: Option<&ResourceState>,
    input: &Input,
    rules: &Rules,
    sequence: &mut Sequence,
) -> Transition {
    if let Some(prev) = prev
        && is_stale(prev, input)
    {
        return Transition {
            next: Some(prev.clone()),
            events: Vec::new(),
        };
    }
    let mut out = Emitter {
        sequence,
        events: Vec::new(),
    };
    let next = match input {
        Input::Observed(observation) => Some(observe(prev, observation, rules, &mut out)),
        Input::Failed(failure) => Some(fail(prev, failure)),
        Input::Overdue(overdue) => Some(not_polled(prev, &overdue.key)),
        Input::Gone(_) | Input::Unmonitored(_) => {
            let reason = match input {
                Input::Gone(_) => ResolveReason::ResourceDeleted,
                _ => ResolveReason::Unmonitored,
            };
            if let Some(prev) = prev
                && let Some(known) = &prev.known
            {
                end_incarnation(&prev.key, known, input.observed_at(), reason, &mut out);
            }
            None
        }
    };
    Transition {
        next,
        events: out.events,
    }
}

fn is_stale(prev: &ResourceState, input: &Input) -> bool {
    match input {
        Input::Observed(o) => {
            prev.last_attempt.is_some_and(|t| o.observed_at < t)
                || prev.last_success == Some(o.observed_at)
        }
        Input::Failed(f) => prev.last_attempt.is_some_and(|t| f.observed_at < t),
        Input::Overdue(o) => prev.last_attempt.is_some_and(|t| o.observed_at < t),
        Input::Gone(_) | Input::Unmonitored(_) => false,
    }
}

/// Collects events, numbering them as they are emitted.
struct Emitter<'a> {
    sequence: &'a mut Sequence,
    events: Vec<Event>,
}

impl Emitter<'_> {
    fn emit(
        &mut self,
        key: &ResourceKey,
        known: &Known,
        observed_at: Timestamp,
        detail: EventDetail,
    ) {
        self.events.push(Event {
            sequence: self.sequence.next(),
            key: key.clone(),
            incarnation: known.incarnation.clone(),
            status: known.status.clone(),
            observed_at,
            detail,
        });
    }
}

fn observe(
    prev: Option<&ResourceState>,
    observation: &Observation,
    rules: &Rules,
    out: &mut Emitter<'_>,
) -> ResourceState {
    let key = &observation.key;
    let at = observation.observed_at;
    let issues = merge_issues(&observation.issues);
    let previous = prev.and_then(|p| p.known.as_ref());

    let known = match previous {
        Some(old) if old.incarnation == observation.incarnation => {
            let mut known = old.clone();
            known.info.clone_from(&observation.info);
            known.values.clone_from(&observation.values);
            if known.status != observation.status {
                let from = std::mem::replace(&mut known.status, observation.status.clone());
                let to = known.status.clone();
                out.emit(
                    key,
                    &known,
                    at,
                    EventDetail::StatusChanged {
                        from: Some(from),
                        to,
                    },
                );
            }
            update_episodes(key, &mut known, issues, at, rules, out);
            known
        }
        other => {
            if let Some(old) = other {
                end_incarnation(key, old, at, ResolveReason::ResourceDeleted, out);
            }
            let mut known = Known {
                incarnation: observation.incarnation.clone(),
                status: observation.status.clone(),
                info: observation.info.clone(),
                values: observation.values.clone(),
                episodes: BTreeMap::new(),
            };
            let to = known.status.clone();
            out.emit(
                key,
                &known,
                at,
                EventDetail::StatusChanged { from: None, to },
            );
            update_episodes(key, &mut known, issues, at, rules, out);
            known
        }
    };

    ResourceState {
        key: key.clone(),
        known: Some(known),
        up: true,
        last_success: Some(at),
        last_attempt: Some(at),
        last_error: None,
    }
}

/// Opens, updates and closes the episodes of one incarnation after a successful poll.
fn update_episodes(
    key: &ResourceKey,
    known: &mut Known,
    mut issues: BTreeMap<IssueCode, Issue>,
    at: Timestamp,
    rules: &Rules,
    out: &mut Emitter<'_>,
) {
    let codes: BTreeSet<IssueCode> = known
        .episodes
        .keys()
        .chain(issues.keys())
        .cloned()
        .collect();
    for code in codes {
        match (known.episodes.remove(&code), issues.remove(&code)) {
            (Some(mut episode), Some(issue)) => {
                episode.absent = None;
                let changed = episode.issue != issue;
                episode.issue = issue;
                if changed {
                    let detail = EventDetail::IssueUpdated {
                        issue: episode_issue(&episode),
                    };
                    out.emit(key, known, at, detail);
                }
                known.episodes.insert(code, episode);
            }
            (Some(mut episode), None) => {
                let absence = episode.absent.get_or_insert(Absence {
                    polls: 0,
                    since: at,
                });
                absence.polls = absence.polls.saturating_add(1);
                let over = absence.polls >= ABSENT_POLLS_TO_RESOLVE
                    && at.since(absence.since) >= rules.resolve_after;
                if over {
                    let detail = EventDetail::IssueResolved {
                        issue: episode_issue(&episode),
                        resolved_at: at,
                        reason: ResolveReason::Cleared,
                    };
                    out.emit(key, known, at, detail);
                } else {
                    known.episodes.insert(code, episode);
                }
            }
            (None, Some(issue)) => {
                let episode = Episode {
                    id: episode_id(key, &known.incarnation, &code, at),
                    issue,
                    since: at,
                    absent: None,
                };
                let detail = EventDetail::IssueOpened {
                    issue: episode_issue(&episode),
                };
                out.emit(key, known, at, detail);
                known.episodes.insert(code, episode);
            }
            (None, None) => {}
        }
    }
}

/// Ends every open episode of an incarnation, then (unless it is only unmonitored) the
/// incarnation itself.
fn end_incarnation(
    key: &ResourceKey,
    known: &Known,
    at: Timestamp,
    reason: ResolveReason,
    out: &mut Emitter<'_>,
) {
    for episode in known.episodes.values() {
        let detail = EventDetail::IssueResolved {
            issue: episode_issue(episode),
            resolved_at: at,
            reason,
        };
        out.emit(key, known, at, detail);
    }
    if reason == ResolveReason::ResourceDeleted {
        out.emit(key, known, at, EventDetail::ResourceDeleted);
    }
}

fn fail(prev: Option<&ResourceState>, failure: &PollFailure) -> ResourceState {
    let mut next = prev
        .cloned()
        .unwrap_or_else(|| ResourceState::discovered(failure.key.clone()));
    next.up = false;
    next.last_attempt = Some(failure.observed_at);
    next.last_error = Some(failure.kind);
    next
}

/// An overdue resource: `up` goes 0; what was known, the last attempt and its error stay.
fn not_polled(prev: Option<&ResourceState>, key: &ResourceKey) -> ResourceState {
    let mut next = prev
        .cloned()
        .unwrap_or_else(|| ResourceState::discovered(key.clone()));
    next.up = false;
    next
}

fn episode_issue(episode: &Episode) -> EpisodeIssue {
    EpisodeIssue {
        issue: episode.issue.clone(),
        episode_id: episode.id.clone(),
        since: episode.since,
    }
}

/// The id of the episode of `code` on an incarnation that began at `since`: a pure function of
/// what the episode is, so it survives restarts with the persisted start.
pub fn episode_id(
    key: &ResourceKey,
    incarnation: &Incarnation,
    code: &IssueCode,
    since: Timestamp,
) -> String {
    let mut parts = identity_parts(key, incarnation);
    parts.push(code.as_str().to_owned());
    parts.push(since.as_millis().to_string());
    digest("episode", &parts, 16)
}

fn identity_parts(key: &ResourceKey, incarnation: &Incarnation) -> Vec<String> {
    vec![
        key.kind.name().to_owned(),
        key.account_id.clone(),
        key.region.clone(),
        key.cluster.clone(),
        key.name.clone(),
        incarnation.arn.clone(),
        incarnation.created_at.as_millis().to_string(),
    ]
}

/// Hex of the SHA-256 of the length-prefixed parts, cut to `hex_len` characters.
fn digest(domain: &str, parts: &[String], hex_len: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(domain.as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    hex[..hex_len].to_owned()
}

#[cfg(test)]
mod tests;
