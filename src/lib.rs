//! fargate-health-monitor: watches the health of Amazon EKS Fargate profiles.
//!
//! # Layout
//!
//! - [`model`]: the project's own types: profile identity, incarnations, statuses, issue codes,
//!   poll results, error and event kinds. SDK types stop before they reach it.
//! - [`diff`]: pure logic: the last-known state of a profile plus one input gives the next state
//!   and the events; no I/O, no clock.
//! - [`config`]: the TOML configuration, validated as a whole so that every problem is reported
//!   at once with its file, line and column.
//! - [`secret`]: a string type for credentials and webhook URLs that never prints its value.
//! - [`cli`]: the command line, its subcommands and their exit codes.
//! - [`logging`]: `tracing` to stderr as text or JSON, filtered by `RUST_LOG`.

pub mod cli;
pub mod config;
pub mod diff;
pub mod discovery;
pub mod eks;
pub mod limits;
pub mod logging;
pub mod model;
pub mod once;
pub mod secret;
pub mod simulator;
