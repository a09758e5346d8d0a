//! Log output: `tracing` events to stderr, as logfmt text lines ([`logfmt`]) or JSON lines
//! with every field, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]). Colours only on a
//! terminal, and never with `NO_COLOR` set. [`Repeats`] keeps a condition that persists or
//! comes and goes to one line per interval.

pub mod logfmt;

use std::io::IsTerminal;
#[cfg(test)]
use std::sync::PoisonError;
use std::time::Duration;

use tokio::time::Instant;

use tracing_subscriber::EnvFilter;

/// The format of the log lines (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// logfmt lines for people: `ts=… level=… target=… msg="…" key=value …`
    Text,
    /// JSON lines with every field
    Json,
}

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
        LogFormat::Text => builder.event_format(logfmt::Logfmt).init(),
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
/// the occurrences not logged in between; and whose end is logged once, when its start was.
///
/// A condition that comes and goes is held to the same pace: an occurrence within the interval
/// of the last line is counted, not logged, even after the end was logged; if the condition
/// persists, its first occurrence after the interval is logged, so the last line never says
/// "ended" for long while it is on.
#[derive(Clone, Debug, Default)]
pub struct Repeats {
    /// When the last line about an occurrence was logged.
    logged: Option<Instant>,
    /// Whether the condition was logged and its end not yet.
    on: bool,
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
        self.on = true;
        Some(std::mem::take(&mut self.unlogged))
    }

    /// The condition ended. `Some` with the occurrences not logged when it had been logged and
    /// its end not yet.
    pub fn ended(&mut self) -> Option<u64> {
        if !std::mem::take(&mut self.on) {
            return None;
        }
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The text lines logged on this thread while it lives, for tests: with a current-thread
/// tokio runtime, also what its tasks log. One global subscriber serves every test thread and
/// writes only for the threads that capture: a subscriber per thread races with the interest
/// that `tracing` caches per call site across threads.
#[cfg(test)]
pub(crate) struct Captured {
    lines: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

#[cfg(test)]
thread_local! {
    static CAPTURING: std::cell::RefCell<Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
impl Captured {
    pub fn start() -> Self {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::{Layer as _, filter};

        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(logfmt::Logfmt)
                .with_writer(|| Buffer(CAPTURING.with(|c| c.borrow().clone())))
                // Asked on every event (a plain `filter_fn` caches its answer per call site).
                .with_filter(filter::dynamic_filter_fn(|meta, _| {
                    *meta.level() <= tracing::Level::DEBUG
                        && CAPTURING.with(|c| c.borrow().is_some())
                }));
            let subscriber = tracing_subscriber::registry().with(layer);
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        // A call site first reached on another thread while the subscriber was being set may
        // have cached "never" from the no-op subscriber; ask every call site again.
        tracing::callsite::rebuild_interest_cache();
        let lines = std::sync::Arc::default();
        CAPTURING.with(|c| *c.borrow_mut() = Some(std::sync::Arc::clone(&lines)));
        Self { lines }
    }

    pub fn text(&self) -> String {
        let bytes = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
impl Drop for Captured {
    fn drop(&mut self) {
        CAPTURING.with(|c| *c.borrow_mut() = None);
    }
}

/// A writer into a capture's buffer, or nowhere.
#[cfg(test)]
struct Buffer(Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>);

#[cfg(test)]
impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(lines) = &self.0 {
            let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
            lines.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
        // On again an interval after the last line: logged at once.
        assert_eq!(repeats.occurred(start + every * 2, every), Some(0));
    }

    #[test]
    fn a_condition_that_comes_and_goes_is_logged_once_per_interval() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let every = Duration::from_secs(60);
        let mut repeats = Repeats::default();
        assert_eq!(repeats.occurred(at(0), every), Some(0));
        assert_eq!(
            repeats.ended(),
            Some(0),
            "the end of a logged start is logged"
        );
        // Flapping within the interval: counted, and no end logged for a start not logged.
        for secs in [5, 10, 15] {
            assert_eq!(repeats.occurred(at(secs), every), None);
            assert_eq!(repeats.ended(), None);
        }
        // On again and staying on: logged at its first occurrence after the interval.
        assert_eq!(repeats.occurred(at(30), every), None);
        assert_eq!(repeats.occurred(at(61), every), Some(4));
        assert_eq!(repeats.ended(), Some(0));
    }
}
