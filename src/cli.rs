//! The command line: arguments, subcommands and their exit codes (DESIGN.md "Command line").

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::clock::Clock;
use crate::config::{self, Environment, SinkKind};
use crate::daemon::StartError;
use crate::demo::{self, DemoError};
use crate::eks::{AwsSettings, Connector};
use crate::exit;
use crate::limits::RetryPolicy;
use crate::logging::LogFormat;

/// Watches the health of Amazon EKS Fargate profiles, managed node groups, add-ons, clusters and
/// capabilities.
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
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll every configured resource, serve /metrics and the JSON API.
    ///
    /// SIGTERM or Ctrl-C stops it cleanly (exit 0); a second signal exits at once.
    Run {
        /// The TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// Poll only shard I of N (from 0), overriding `[poll] shard`: N instances split the
        /// clusters between them by a fixed hash of account, region and cluster.
        #[arg(long, value_name = "I/N", value_parser = crate::model::Shard::parse)]
        shard: Option<crate::model::Shard>,
    },
    /// Run the daemon against a built-in simulated EKS, with no AWS account and no config.
    ///
    /// A scripted story changes the simulated profiles, node groups and add-ons over the first
    /// two minutes.
    Demo {
        /// Where the daemon's HTTP server listens.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9877")]
        listen: SocketAddr,
        /// Play each step of the story as soon as the previous one shows, not on its schedule.
        #[arg(long)]
        fast: bool,
    },
    /// Validate a config file and list every problem in it (exit 0, or 64 with problems).
    Check {
        /// The TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
    },
    /// Describe every configured resource once and print what is wrong.
    ///
    /// Exit 0: all healthy; 1: an issue is open or a status failed; 2: nothing unhealthy seen,
    /// but something could not be told (a call failed, a named cluster or resource does not
    /// exist, a target matched nothing); 64: bad usage or config.
    Once {
        /// The TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// How to print the result.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Run a simulated EKS and STS on loopback, for trying the monitor without AWS.
    ///
    /// Generates accounts, clusters, profiles, node groups and add-ons (a share of them with
    /// health issues) and serves them until Ctrl-C or SIGTERM. A JSON control API scripts
    /// changes and faults.
    Simulate(SimulateArgs),
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Where the simulated AWS listens (EKS and STS on one port); loopback only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9878")]
    pub listen: SocketAddr,
    /// Where the JSON control API listens; loopback only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9879")]
    pub control_listen: SocketAddr,
    /// Accounts; all but the first are reached by assuming their fargate-health-reader role.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub accounts: u32,
    /// Regions, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "us-east-1")]
    pub regions: Vec<String>,
    /// Clusters per account and region.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub clusters: u32,
    /// Fargate profiles per cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub profiles_per_cluster: u32,
    /// Managed node groups per cluster.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub nodegroups_per_cluster: u32,
    /// Add-ons per cluster.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub addons_per_cluster: u32,
    /// The share of profiles (and of node groups and add-ons) with a health issue, from 0 to 1.
    #[arg(long, default_value_t = 0.1, value_parser = share)]
    pub unhealthy_share: f64,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text} is not a number from 0 to 1")),
    }
}

/// `check`: validates the config, prints every problem and warning, returns the exit code.
pub fn check(path: &Path, env: &dyn Environment, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match config::load(path, env) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = writeln!(err, "warning: {warning}");
            }
            let config = &loaded.config;
            for warning in config::budget::warnings(config) {
                let _ = writeln!(err, "warning: {}: {warning}", path.display());
            }
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

/// Loads a config for a command that runs it: warnings printed, or every problem and 64.
fn load(path: &Path, env: &dyn Environment, err: &mut dyn Write) -> Result<config::Config, u8> {
    let loaded = config::load(path, env).map_err(|error| report_invalid(path, &error, err))?;
    for warning in &loaded.warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
    Ok(loaded.config)
}

/// `once`: one pass over every configured resource; prints the report and returns its exit
/// code (64 for an invalid config).
pub async fn once(
    path: &Path,
    env: &dyn Environment,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let config = match load(path, env, err) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut connector = Connector::new(AwsSettings::new(config.poll.timeout));
    let mut clients = Vec::with_capacity(config.targets.len());
    for target in &config.targets {
        clients.push(connector.connect(target).await);
    }
    let report = crate::once::run(&config, &clients, &RetryPolicy::ONCE, &Clock::wall()).await;
    let text = match format {
        OutputFormat::Table => report.to_table(),
        OutputFormat::Json => report.to_json(),
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    report.exit_code()
}

/// `run`: the daemon, until SIGTERM or Ctrl-C. 64 for an invalid config, 69 when the listen
/// address cannot be bound, 70 when one of its tasks panicked or ended unexpectedly.
pub async fn run(
    path: &Path,
    shard: Option<crate::model::Shard>,
    env: &dyn Environment,
    err: &mut dyn Write,
) -> u8 {
    let mut config = match load(path, env, err) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(shard) = shard {
        config.poll.shard = shard;
    }
    if config.poll.shard.count > 1 {
        tracing::info!(shard = %config.poll.shard, "polling one shard of the fleet");
    }
    let mut hangups = crate::shutdown::Hangups::new();
    let shutdown = crate::shutdown::on_signals();
    let aws = AwsSettings::new(config.poll.timeout);
    let mut daemon = match crate::daemon::Daemon::start(&config, aws, None, Clock::wall()).await {
        Ok(daemon) => daemon,
        Err(error) => return start_failed(&error, err),
    };
    let mut failures = daemon.failures();
    let code = loop {
        tokio::select! {
            () = shutdown.cancelled() => break exit::OK,
            () = hangups.next() => reload(&mut daemon, path, shard, env).await,
            failure = failures.next() => {
                tracing::error!(
                    task = %failure.task,
                    code = exit::FAILURE,
                    "a task of the daemon failed; stopping, to be restarted"
                );
                break exit::FAILURE;
            }
        }
    };
    daemon.stop().await;
    code
}

/// SIGHUP: re-reads and validates the config; applies it when valid, else logs every problem
/// and keeps the config in force.
async fn reload(
    daemon: &mut crate::daemon::Daemon,
    path: &Path,
    shard: Option<crate::model::Shard>,
    env: &dyn Environment,
) {
    tracing::info!(path = %path.display(), "SIGHUP: reloading the config");
    // The same validation as `check` and the start; a panic in it (a bug) fails this reload
    // instead of stopping the daemon.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config::load(path, env)));
    let Ok(loaded) = loaded else {
        tracing::error!("reload failed: reading the config panicked; the config in force stays");
        daemon.reload_failed();
        return;
    };
    match loaded {
        Ok(mut loaded) => {
            if let Some(shard) = shard {
                loaded.config.poll.shard = shard;
            }
            for warning in &loaded.warnings {
                tracing::warn!(problem = %warning, "config warning");
            }
            daemon.reload(loaded.config).await;
        }
        Err(error) => {
            for problem in &error.problems {
                tracing::error!(problem = %problem, "invalid config");
            }
            tracing::error!(
                problems = error.problems.len(),
                "reload failed; the config in force stays"
            );
            daemon.reload_failed();
        }
    }
}

/// Reports why the daemon could not start; returns its exit code ([`start_exit_code`]).
fn start_failed(error: &StartError, err: &mut dyn Write) -> u8 {
    let _ = match error {
        StartError::Bind(_) => writeln!(
            err,
            "error: {error}; is another instance running? Set another [server] listen"
        ),
        StartError::Server(_) => writeln!(err, "error: [server.tls]: {error}"),
    };
    start_exit_code(error)
}

/// 69 when the listen address cannot be bound, 64 for unusable TLS files.
fn start_exit_code(error: &StartError) -> u8 {
    match error {
        StartError::Bind(_) => exit::UNAVAILABLE,
        StartError::Server(_) => exit::USAGE,
    }
}

/// `demo`: the daemon against the simulator, with a scripted story, until SIGTERM or Ctrl-C.
/// 69 when the simulator or the listen address cannot be bound, 73 when its temporary
/// directory cannot be created, 70 for a bug in the demo itself.
pub async fn demo(
    listen: SocketAddr,
    fast: bool,
    out: &mut (dyn Write + Send),
    err: &mut dyn Write,
) -> u8 {
    let shutdown = crate::shutdown::on_signals();
    let Err(error) = demo::run(listen, fast, shutdown.cancelled_owned(), out).await else {
        return exit::OK;
    };
    let _ = writeln!(err, "error: {error}");
    match &error {
        DemoError::Simulator(_) => exit::UNAVAILABLE,
        DemoError::StateDir { .. } => exit::CANT_CREATE,
        DemoError::World(_) | DemoError::Config(_) => exit::FAILURE,
        DemoError::Start(error) => start_exit_code(error),
    }
}

/// `simulate`: runs the simulator until Ctrl-C or SIGTERM.
pub async fn simulate(args: &SimulateArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    use crate::simulator::{self, Population, Simulator};

    for addr in [args.listen, args.control_listen] {
        if !addr.ip().is_loopback() {
            let _ = writeln!(
                err,
                "error: the simulator has no authentication; it listens on loopback only, not {addr}"
            );
            return exit::USAGE;
        }
    }
    let simulator = match Simulator::bind(args.listen, args.control_listen, Clock::wall()).await {
        Ok(simulator) => simulator,
        Err(error) => {
            let _ = writeln!(
                err,
                "error: cannot listen on {} / {}: {error}",
                args.listen, args.control_listen
            );
            return exit::UNAVAILABLE;
        }
    };
    let population = Population {
        accounts: args.accounts as usize,
        regions: args.regions.clone(),
        clusters_per_region: args.clusters as usize,
        profiles_per_cluster: args.profiles_per_cluster as usize,
        nodegroups_per_cluster: args.nodegroups_per_cluster as usize,
        addons_per_cluster: args.addons_per_cluster as usize,
        unhealthy_share: args.unhealthy_share,
    };
    if let Err(error) = simulator.populate(&population) {
        let _ = writeln!(err, "error: cannot build the simulated world: {error}");
        return exit::USAGE;
    }
    let _ = writeln!(
        out,
        "simulated EKS and STS on {url} (control API on {control})\n\
         {profiles} profiles: {accounts} account(s) x {regions} region(s) x {clusters} cluster(s) x {per} profile(s)\n\
         and {nodegroups} node group(s), {addons} add-on(s): {ng_per} and {addons_per} per cluster\n\
         sign with AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret}\n\
         other accounts: role_arn = \"{role}\" (account ids count up from 222233330001)\n\
         stop with Ctrl-C",
        url = simulator.endpoint_url(),
        control = simulator.control_url(),
        profiles = population.profiles(),
        accounts = population.accounts,
        regions = population.regions.len(),
        clusters = population.clusters_per_region,
        per = population.profiles_per_cluster,
        nodegroups = population.nodegroups(),
        addons = population.addons(),
        ng_per = population.nodegroups_per_cluster,
        addons_per = population.addons_per_cluster,
        key = simulator::DEFAULT_ACCESS_KEY_ID,
        secret = simulator::DEFAULT_SECRET_ACCESS_KEY,
        role = simulator::reader_role("<account>"),
    );
    let _ = out.flush();
    crate::shutdown::signal().await;
    exit::OK
}
