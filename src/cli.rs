//! The command line: arguments, subcommands and their exit codes (DESIGN.md "Command line").

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Environment, SinkKind};
use crate::eks::{AwsSettings, Connector};
use crate::limits::RetryPolicy;

/// Exit codes shared by every subcommand.
pub mod exit {
    /// Everything is fine (for `once`: all healthy).
    pub const OK: u8 = 0;
    /// The process could not run at all (no async runtime, say).
    pub const FAILURE: u8 = 70;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
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
    /// Describe every configured profile once and print what is wrong. Exit 0: all healthy;
    /// 1: an issue is open or a status failed; 2: nothing unhealthy seen, but something could
    /// not be told; 64: bad usage or config.
    Once {
        /// The TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// How to print the result.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

/// `check`: validates the config, prints every problem and warning, returns the exit code.
pub fn check(path: &Path, env: &dyn Environment, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
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
        Err(error) => report_invalid(path, &error, err),
    }
}

/// Prints every problem and warning of an invalid config in file order; returns 64.
fn report_invalid(path: &Path, error: &config::ConfigError, err: &mut dyn Write) -> u8 {
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `once`: one pass over every configured profile; prints the report and returns its exit
/// code (64 for an invalid config).
pub async fn once(
    path: &Path,
    env: &dyn Environment,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let loaded = match config::load(path, env) {
        Ok(loaded) => loaded,
        Err(error) => return report_invalid(path, &error, err),
    };
    for warning in &loaded.warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
    let config = loaded.config;
    let mut connector = Connector::new(AwsSettings {
        timeout: config.poll.timeout,
        static_credentials: None,
    });
    let mut clients = Vec::with_capacity(config.targets.len());
    for target in &config.targets {
        clients.push(connector.connect(target).await);
    }
    let report = crate::once::run(&config, &clients, &RetryPolicy::ONCE).await;
    let text = match format {
        OutputFormat::Table => report.to_table(),
        OutputFormat::Json => report.to_json(),
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    report.exit_code()
}
