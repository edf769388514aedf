//! The `healthimport` binary: wiring only. Parses the command line, loads the AWS configuration
//! once, resolves the resources, runs the command (`app::run`) and turns its error into a message
//! that says what to do and an exit code (0 ok, 1 not found or refused, 2 usage or configuration,
//! 3 an AWS call failed).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use healthimport_cli::app;
use healthimport_cli::args::Cli;
use healthimport_cli::config::Resources;
use healthimport_cli::error::{report, CliError};

#[tokio::main]
async fn main() -> ExitCode {
    // clap prints usage errors and exits 2 itself; --help and --version exit 0.
    let cli = Cli::parse();
    // Logs go to stderr, quiet unless RUST_LOG asks: stdout is the report, which scripts read.
    // aws_config's own warnings (a region probe that found no instance metadata) are noise to an
    // operator: an unusable configuration fails the first call with its own error.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error")),
        )
        .init();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let outcome: Result<(), CliError> = async {
        let settings = app::settings(&aws, cli.stack.as_deref()).await?;
        app::run(
            cli,
            &aws,
            &Resources::new(settings),
            &mut std::io::stdout().lock(),
        )
        .await
    }
    .await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", report(&error));
            ExitCode::from(error.exit_code())
        }
    }
}
