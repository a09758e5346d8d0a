//! What the scheduler tells the operator, and how often: the overrun WARN at most once a
//! minute while profiles are overdue, discovery problems when they change, and a profile's
//! describes starting or stopping to fail.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::slots::Slot;
use crate::config::Target;
use crate::discovery::{Problem, TargetProblem};
use crate::logging::Repeats;
use crate::model::{ErrorKind, ResourceKey};

/// How often the overrun WARN repeats at most while it persists.
const OVERRUN_LOG_EVERY: Duration = Duration::from_secs(60);
/// The least time between two lines about one profile's describes failing.
const DESCRIBE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The WARN about overdue profiles, once a minute at most while it persists.
#[derive(Debug, Default)]
pub(super) struct OverrunLog {
    repeats: Repeats,
}

impl OverrunLog {
    /// Says how a cycle of `interval` ended: `overdue` resources of `resources`, and `late`
    /// describes not sent in time. `why` (per account and region, with the rate in force) is
    /// worked out only when the WARN is written.
    pub(super) fn cycle_ended(
        &mut self,
        (overdue, late, resources): (usize, usize, usize),
        interval: Duration,
        why: impl FnOnce() -> String,
    ) {
        if overdue == 0 {
            if let Some(suppressed) = self.repeats.ended() {
                tracing::info!(suppressed, "every resource is polled in time again");
            } else if late > 0 {
                tracing::debug!(late, "poll cycle ended with describes late, none overdue");
            }
            return;
        }
        let Some(suppressed) = self.repeats.occurred(Instant::now(), OVERRUN_LOG_EVERY) else {
            return;
        };
        tracing::warn!(
            overdue,
            resources,
            interval = %humantime::format_duration(interval),
            why = %why(),
            late,
            suppressed,
            "poll cycle overran; resources not polled for two intervals show up 0"
        );
    }
}

/// The problems each target's last discovery reported, so that only changes are logged.
#[derive(Debug)]
pub(super) struct ProblemLog {
    reported: Vec<BTreeSet<String>>,
}

impl ProblemLog {
    pub(super) fn new(targets: usize) -> Self {
        Self {
            reported: vec![BTreeSet::new(); targets],
        }
    }

    /// Logs the problems of target `index` when they change: ERROR when a person must act
    /// (access denied, a named cluster or profile that does not exist, a target that matches
    /// nothing), WARN for the rest; INFO when they clear. Returns every target's problems.
    pub(super) fn report(
        &mut self,
        index: usize,
        target: &Target,
        account_id: Option<&str>,
        problems: &[Problem],
    ) -> Vec<String> {
        let mut now = BTreeSet::new();
        for problem in problems {
            let must_act = problem.needs_person();
            let text = TargetProblem::new(index, target, account_id, problem.clone()).describe();
            // Once per text: credentials fail every list of a target alike.
            if !self.reported[index].contains(&text) && !now.contains(&text) {
                if must_act {
                    tracing::error!(problem = %text, "target needs attention");
                } else {
                    tracing::warn!(problem = %text, "discovery failed; retrying");
                }
            }
            now.insert(text);
        }
        for cleared in self.reported[index].difference(&now) {
            tracing::info!(problem = %cleared, "problem cleared");
        }
        self.reported[index] = now;
        self.reported.iter().flatten().cloned().collect()
    }
}

/// Logs a resource's describe starting or stopping to fail (ERROR when a person must act), or
/// failing in another way: once a minute at most while it comes and goes, with the failures
/// not logged since the last line.
pub(super) fn log_describe(key: &ResourceKey, slot: &mut Slot, error: Option<ErrorKind>) {
    match error {
        Some(kind) if slot.logged_error != Some(kind) => {
            let now = Instant::now();
            let Some(suppressed) = slot.describe_log.occurred(now, DESCRIBE_LOG_EVERY) else {
                return;
            };
            slot.logged_error = Some(kind);
            let operation = key.kind.spec().describe.as_str();
            if kind == ErrorKind::AccessDenied {
                tracing::error!(
                    profile = %key,
                    action = %format_args!("eks:{operation}"),
                    suppressed,
                    "describe is denied; grant the IAM action in `action`, or fix the target's credentials when its own ERROR says they fail"
                );
            } else {
                tracing::warn!(profile = %key, operation, error = %kind, suppressed, "describe failed");
            }
        }
        Some(_) => {}
        None => {
            if let Some(was) = slot.logged_error.take() {
                let suppressed = slot.describe_log.ended().unwrap_or_default();
                tracing::info!(
                    profile = %key,
                    operation = key.kind.spec().describe.as_str(),
                    was = %was,
                    suppressed,
                    "describe works again"
                );
            }
        }
    }
}
