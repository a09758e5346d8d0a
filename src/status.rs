//! What the status page and the JSON API tell about a snapshot: each profile's health (open
//! issues, a failed status, not described, stale) and the summary counts. Pure: the time comes
//! in as an argument.

use std::time::Duration;

use serde::Serialize;

use crate::model::Timestamp;
use crate::state::Entry;

/// How one profile stands, as of `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// Open issues, from the last successful describe.
    pub issues: usize,
    /// Its status is one of the failed ones (`CREATE_FAILED`, `DELETE_FAILED`).
    pub failed: bool,
    /// The last describe failed, or none has run yet.
    pub not_described: bool,
    /// Not attempted for longer than the snapshot's `stale_after`.
    pub stale: bool,
}

impl Health {
    pub fn of(entry: &Entry, now: Timestamp, stale_after: Duration) -> Self {
        let state = &entry.state;
        let known = state.known.as_ref();
        Self {
            issues: known.map_or(0, |k| k.episodes.len()),
            failed: known.is_some_and(|k| state.key.kind.is_alert_worthy(&k.status)),
            not_described: !state.up,
            stale: is_stale(entry, now, stale_after),
        }
    }

    /// An issue is open or the status failed: what `once` exits 1 for.
    pub fn is_unhealthy(&self) -> bool {
        self.issues > 0 || self.failed
    }
}

/// Whether `entry` was last attempted (or discovered, if never) longer than `stale_after`
/// ago; a zero `stale_after` means never.
pub fn is_stale(entry: &Entry, now: Timestamp, stale_after: Duration) -> bool {
    !stale_after.is_zero() && now.since(entry.freshness()) > stale_after
}

/// Counts over a set of profiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub monitored: usize,
    /// With an open issue or a failed status.
    pub unhealthy: usize,
    /// Open issues over all of them.
    pub open_issues: usize,
    /// In a failed status.
    pub failed: usize,
    pub not_described: usize,
    pub stale: usize,
}

impl Summary {
    pub fn add(&mut self, health: &Health) {
        self.monitored += 1;
        self.unhealthy += usize::from(health.is_unhealthy());
        self.open_issues = self.open_issues.saturating_add(health.issues);
        self.failed += usize::from(health.failed);
        self.not_described += usize::from(health.not_described);
        self.stale += usize::from(health.stale);
    }
}

/// A duration as people read it: whole seconds, the two largest units ("3m 12s", "2h 5m",
/// "4d 1h").
pub fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::diff::ResourceState;
    use crate::model::ResourceKey;
    use crate::state::Labels;

    fn entry(last_attempt: Option<i64>) -> Entry {
        let mut state =
            ResourceState::discovered(ResourceKey::fargate_profile("1", "us-east-1", "c", "p"));
        state.last_attempt = last_attempt.map(Timestamp::from_secs);
        Entry {
            state,
            labels: Arc::new(Labels::new()),
            discovered_at: Timestamp::from_secs(100),
        }
    }

    #[test]
    fn a_profile_is_stale_once_its_last_attempt_is_older_than_the_threshold() {
        let after = Duration::from_secs(60);
        let now = Timestamp::from_secs(1000);
        assert!(!is_stale(&entry(Some(950)), now, after));
        assert!(!is_stale(&entry(Some(940)), now, after));
        assert!(is_stale(&entry(Some(939)), now, after));
        // Never attempted: the age counts from discovery.
        assert!(is_stale(&entry(None), now, after));
        assert!(!is_stale(&entry(None), Timestamp::from_secs(150), after));
        // No threshold, never stale; a clock before the attempt is not stale either.
        assert!(!is_stale(&entry(Some(0)), now, Duration::ZERO));
        assert!(!is_stale(&entry(Some(2000)), now, after));
    }

    #[test]
    fn a_profile_never_described_counts_as_not_described_and_healthy() {
        let health = Health::of(&entry(None), Timestamp::from_secs(100), Duration::ZERO);
        assert_eq!(
            health,
            Health {
                issues: 0,
                failed: false,
                not_described: true,
                stale: false
            }
        );
        assert!(!health.is_unhealthy());
        let mut summary = Summary::default();
        summary.add(&health);
        assert_eq!(summary.monitored, 1);
        assert_eq!(summary.not_described, 1);
        assert_eq!(summary.unhealthy, 0);
    }

    #[test]
    fn durations_read_in_their_two_largest_units() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m 0s"),
            (192, "3m 12s"),
            (3600, "1h 0m"),
            (7505, "2h 5m"),
            (90_061, "1d 1h"),
            (u64::MAX, "213503982334601d 7h"),
        ];
        for (secs, text) in cases {
            assert_eq!(short_duration(Duration::from_secs(secs)), text, "{secs}");
        }
    }
}
