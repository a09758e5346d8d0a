//! The `fargate-health-monitor` binary: parses arguments, sets up logging and calls the library.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use fargate_health_monitor::cli::{self, Cli, Command};
use fargate_health_monitor::config::ProcessEnvironment;
use fargate_health_monitor::{exit, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::from(exit::OK),
                _ => ExitCode::from(exit::USAGE),
            };
        }
    };
    logging::init(cli.log_format);
    let code = match &cli.command {
        Command::Check { config } => cli::check(
            config,
            &ProcessEnvironment,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Command::Once { config, output } => block_on(
            Threads::One,
            cli::once(
                config,
                &ProcessEnvironment,
                *output,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            ),
        ),
        Command::Run { config, shard } => block_on(
            Threads::One,
            cli::run(config, *shard, &ProcessEnvironment, &mut std::io::stderr()),
        ),
        Command::Demo { listen, fast } => block_on(
            Threads::One,
            cli::demo(
                *listen,
                *fast,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            ),
        ),
        Command::Simulate(args) => block_on(
            Threads::PerCore,
            cli::simulate(args, &mut std::io::stdout(), &mut std::io::stderr()),
        ),
    };
    ExitCode::from(code)
}

/// The threads a subcommand's async runtime runs its tasks on.
enum Threads {
    /// One thread for every task: the daemon's work is waiting on the network, and one thread
    /// spares the wake-ups between threads that otherwise cost more CPU than the work itself.
    /// Work that takes milliseconds (rendering `/metrics`, writing the state file, checking a
    /// password) runs on tokio's blocking threads.
    One,
    /// A thread per core, for the simulator, which serves as fast as it can.
    PerCore,
}

/// Runs a subcommand on an async runtime.
fn block_on(threads: Threads, command: impl Future<Output = u8>) -> u8 {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(command),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            exit::FAILURE
        }
    }
}

/// mimalloc instead of glibc's allocator: the daemon allocates and frees many small objects per
/// describe (the SDK's request pipeline), where mimalloc costs about a quarter less CPU per
/// describe (see the benchmark in docs/development.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
