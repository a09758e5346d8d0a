//! The `fargate-health-monitor` binary: parses arguments, sets up logging and calls the library.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use fargate_health_monitor::cli::{self, Cli, Command, exit};
use fargate_health_monitor::config::ProcessEnvironment;
use fargate_health_monitor::logging;

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
        Command::Once { config, output } => block_on(cli::once(
            config,
            &ProcessEnvironment,
            *output,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Run { config, shard } => block_on(cli::run(
            config,
            *shard,
            &ProcessEnvironment,
            &mut std::io::stderr(),
        )),
        Command::Demo { listen } => block_on(cli::demo(
            *listen,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Simulate(args) => block_on(cli::simulate(
            args,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
    };
    ExitCode::from(code)
}

/// Runs a subcommand on a multi-threaded runtime.
fn block_on(command: impl Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            exit::FAILURE
        }
    }
}
