//! Log output: `tracing` events to stderr, as text or JSON lines, filtered by `RUST_LOG`
//! (default [`DEFAULT_FILTER`]). Colours only on a terminal, and never with `NO_COLOR` set.
//! [`Repeats`] keeps a condition that persists to one line per interval.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::time::Instant;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The filter without `RUST_LOG`: `info`, but aws-config's own WARN on every failed
/// `AssumeRole` attempt (a Debug dump, once per call) is left out: the scheduler logs the
/// failure once, with what to fix.
pub const DEFAULT_FILTER: &str = "info,aws_config::sts::assume_role=error";

/// Installs the global subscriber. An invalid `RUST_LOG` falls back to `info` with a warning.
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(err) => {
            let bad = std::env::var("RUST_LOG").ok().map(|value| (value, err));
            (EnvFilter::new(DEFAULT_FILTER), bad)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    if let Some((value, err)) = bad_filter {
        // RUST_LOG unset is the normal case; only a set but invalid value is worth a word.
        if !value.is_empty() {
            tracing::warn!(rust_log = %value, error = %err, "invalid RUST_LOG, logging at info");
        }
    }
}

/// A condition that is logged at most once per interval while it persists, with the count of
/// the occurrences not logged in between.
#[derive(Debug, Default)]
pub struct Repeats {
    /// When the last line was logged; `None` while the condition is not on.
    logged: Option<Instant>,
    /// Occurrences since that line that were not logged.
    unlogged: u64,
}

impl Repeats {
    /// The condition occurred at `now`. When a line is due (the first occurrence, or `every`
    /// after the last line), `Some` with the occurrences not logged since the last line.
    pub fn occurred(&mut self, now: Instant, every: Duration) -> Option<u64> {
        let due = self
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= every);
        if !due {
            self.unlogged = self.unlogged.saturating_add(1);
            return None;
        }
        self.logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// The condition ended. `Some` with the occurrences not logged when it had been logged.
    pub fn ended(&mut self) -> Option<u64> {
        let was = std::mem::take(self);
        was.logged.map(|_| was.unlogged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persisting_condition_is_logged_once_per_interval_with_the_repeats_counted() {
        let start = Instant::now();
        let every = Duration::from_secs(60);
        let mut repeats = Repeats::default();
        assert_eq!(repeats.ended(), None, "never on");
        assert_eq!(repeats.occurred(start, every), Some(0));
        for secs in [5, 10, 59] {
            assert_eq!(
                repeats.occurred(start + Duration::from_secs(secs), every),
                None
            );
        }
        assert_eq!(repeats.occurred(start + every, every), Some(3));
        assert_eq!(repeats.occurred(start + every + every / 2, every), None);
        assert_eq!(repeats.ended(), Some(1));
        assert_eq!(repeats.ended(), None, "ended once");
        // On again: logged at once.
        assert_eq!(repeats.occurred(start + every * 2, every), Some(0));
    }
}
