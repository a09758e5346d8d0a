//! fargate-health-monitor: watches the health of Amazon EKS Fargate profiles.
//!
//! # Layout
//!
//! - [`model`]: the project's own types: resource kinds ([`model::KindSpec`]), resource
//!   identity, incarnations, statuses, issue codes, poll results, error and event kinds. SDK
//!   types stop before they reach it.
//! - [`clock`]: the one source of wall-clock time, injected where "now" is needed.
//! - [`diff`]: pure logic: the last-known state of a resource plus one input gives the next state
//!   and the events; no I/O, no clock.
//! - [`config`]: the TOML configuration, validated as a whole so that every problem is reported
//!   at once with its file, line and column.
//! - [`eks`]: the AWS adapter: the [`eks::Eks`] trait for the calls we make, its implementation
//!   with the official SDK per target (credentials, region, endpoints, timeouts), and the
//!   classification of every failure. The only module that names SDK types.
//! - [`limits`]: the rate limiter per (account, region), adaptive under throttling, the bound on
//!   calls in flight, and the retries of throttled calls.
//! - [`discovery`]: account ids per credential source, the clusters and profiles each target
//!   selects, and what it could not tell.
//! - [`selection`]: pure: which resources the targets select together, the target each is
//!   polled under, and what a discovery changes; shared by the scheduler and `once`.
//! - [`scheduler`]: when to poll what: discovery, describes spread over the interval, not-found
//!   confirmation, overruns, shards; the loop, with its pure parts (the cycle, each resource's
//!   slot) in submodules.
//! - [`state`]: the snapshot of every resource, shared by every reader; it hands each change's
//!   events to the outbox under its lock.
//! - [`outbox`]: the events each sink still has to receive: saved before delivered, in order
//!   per sink and resource, bounded and counted; the generation handshake with the state
//!   file's writer, and the delivery worker that feeds each sink.
//! - [`store`]: the state file: atomic writes, `.prev`, damaged files set aside, and the
//!   migration of a version-1 file.
//! - [`metrics`]: every Prometheus series; the domain ones encoded from the snapshot.
//! - [`status`]: each resource's health (open issues, failed, not described, stale) and the
//!   summary counts, for the page and the API.
//! - [`page`]: the status page at `/`, server-rendered HTML with every value escaped.
//! - [`api`]: the JSON API `/api/v1/resources` and `/api/v1/profiles`: filters, summary,
//!   compact or pretty.
//! - [`server`]: the admin HTTP server, with optional TLS and basic auth.
//! - [`sinks`]: the receivers of events (log, webhook, Slack, Alertmanager), built from the
//!   config and started together, and their one HTTP client.
//! - [`daemon`]: the wiring of `run` and `demo`, and the reload on SIGHUP.
//! - [`shutdown`]: signals: the first stops cleanly, a second exits, SIGHUP reloads.
//! - [`supervisor`]: the daemon's long-lived tasks, named; one that panics or ends early is
//!   reported, and the daemon exits.
//! - [`demo`]: the `demo` command: the daemon against the simulator with a scripted story.
//! - [`once`]: the `once` command: one pass over every target, through the diff, as a report.
//! - [`simulator`]: a simulated EKS and STS on loopback that speaks the AWS wire formats, for
//!   the tests, `simulate`, `demo` and the benchmark.
//! - [`secret`]: a string type for credentials and webhook URLs that never prints its value.
//! - [`cli`]: the command line and its subcommands, each mapped to an exit code.
//! - [`exit`]: the exit codes of every subcommand.
//! - [`logging`]: `tracing` to stderr as logfmt text or JSON lines, filtered by `RUST_LOG`;
//!   repeated lines held to one per interval.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diff;
pub mod discovery;
pub mod eks;
pub mod exit;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod once;
pub mod outbox;
pub mod page;
pub mod scheduler;
pub mod secret;
pub mod selection;
pub mod server;
pub mod shutdown;
pub mod simulator;
pub mod sinks;
pub mod state;
pub mod status;
pub mod store;
pub mod supervisor;
