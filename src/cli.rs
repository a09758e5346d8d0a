//! The command line: arguments, subcommands and their exit codes (DESIGN.md "Command line").

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Environment, SinkKind};

/// Exit codes shared by every subcommand.
pub mod exit {
    /// Everything is fine (for `once`: all healthy).
    pub const OK: u8 = 0;
    /// Bad usage or an invalid configuration (`EX_USAGE`).
    pub const USAGE: u8 = 64;
}

/// Watches the health of Amazon EKS Fargate profiles.
#[derive(Debug, Parser)]
#[command(name = "fargate-health-monitor", version, about, max_term_width = 100)]
pub struct Cli {
    /// Log line format on stderr; the level comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and list every problem in it (exit 0, or 64 with problems).
    Check {
        /// The TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
    },
}

/// `check`: validates the config, prints every problem and warning, returns the exit code.
pub fn check(
    path: &std::path::Path,
    env: &dyn Environment,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match config::load(path, env) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = writeln!(err, "warning: {warning}");
            }
            let config = &loaded.config;
            tracing::debug!(
                path = %path.display(),
                targets = config.targets.len(),
                sinks = config.sinks.len(),
                warnings = loaded.warnings.len(),
                "config is valid"
            );
            let sinks: Vec<String> = config
                .sinks
                .iter()
                .map(|sink| format!("{} ({})", sink.name, sink.kind.type_name()))
                .collect();
            let _ = writeln!(
                out,
                "{}: valid: {} target{}, {} sink{}{}{}",
                path.display(),
                config.targets.len(),
                plural(config.targets.len()),
                config.sinks.len(),
                plural(config.sinks.len()),
                if sinks.is_empty() { "" } else { ": " },
                sinks.join(", ")
            );
            if config
                .sinks
                .iter()
                .any(|s| matches!(s.kind, SinkKind::Alertmanager { .. }))
            {
                let _ = writeln!(
                    out,
                    "note: use either the alertmanager sink or the shipped Prometheus alert rules on one Alertmanager, not both"
                );
            }
            exit::OK
        }
        Err(error) => {
            let mut lines: Vec<(&config::Problem, &str)> = error
                .problems
                .iter()
                .map(|p| (p, "error"))
                .chain(error.warnings.iter().map(|w| (w, "warning")))
                .collect();
            lines.sort();
            for (problem, severity) in lines {
                let _ = writeln!(err, "{severity}: {problem}");
            }
            let count = error.problems.len();
            let _ = writeln!(
                err,
                "{}: {count} problem{} found",
                path.display(),
                plural(count)
            );
            exit::USAGE
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
