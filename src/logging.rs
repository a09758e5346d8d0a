//! Log output: `tracing` events to stderr, as text or JSON lines, filtered by `RUST_LOG`
//! (default [`DEFAULT_FILTER`]). Colours only on a terminal, and never with `NO_COLOR` set.

use std::io::IsTerminal;

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
