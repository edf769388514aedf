//! `service-double`: the HealthLake + HealthImaging service double as a standalone server, for
//! the demo and for running functions locally against it.
//!
//! ```text
//! service-double [--port N]
//! ```
//! Listens on `127.0.0.1:N` (default 5056, or `DOUBLE_PORT`); `--port` wins over the variable.
//! When ready it prints exactly one line, `service-double listening on http://127.0.0.1:PORT`,
//! and it exits cleanly on SIGTERM or ctrl-c. Logs go to stderr (`RUST_LOG`, default `info`):
//! ids and decisions, never file contents.
//!
//! The jobs read and write S3 through a client from the standard AWS configuration, so
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), `AWS_REGION` and the credentials variables
//! point it at moto's server. The services' job events go to the default event bus through an
//! EventBridge client from the same configuration: by default whenever an EventBridge endpoint
//! is configured (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_EVENTBRIDGE`), so that a double
//! without a local stack never sends anything to AWS; `DOUBLE_EMIT_EVENTS` says otherwise.
//!
//! Knobs (all optional):
//! - `DOUBLE_PORT`: port on 127.0.0.1 (default 5056; 0 = any free port)
//! - `DOUBLE_REGION`, `DOUBLE_ACCOUNT_ID`: region and account in ARNs (us-east-1, 123456789012)
//! - `DOUBLE_FHIR_SUBMIT_DELAY_MS`, `DOUBLE_FHIR_RUN_MS`, `DOUBLE_FHIR_PER_FILE_MS`,
//!   `DOUBLE_FHIR_MANIFEST_DELAY_MS`: HealthLake SUBMITTED time, per-job IN_PROGRESS overhead,
//!   IN_PROGRESS time per input file (fractions allowed), manifest lag after the terminal status
//!   (50, 300, 1, 0): a job runs for overhead + per-file time × files
//! - `DOUBLE_IMAGING_SUBMIT_DELAY_MS`, `DOUBLE_IMAGING_RUN_MS`, `DOUBLE_IMAGING_PER_FILE_MS`,
//!   `DOUBLE_IMAGING_MANIFEST_DELAY_MS`: the same for HealthImaging (50, 300, 1, 0)
//! - `DOUBLE_IMAGING_START_RATE`, `DOUBLE_IMAGING_START_BURST`: StartDICOMImportJob token bucket
//!   (1 per second, burst 2)
//! - `DOUBLE_IMAGING_MAX_RUNNING_JOBS`: running jobs per HealthImaging data store (100)
//! - `DOUBLE_IMAGING_MAX_FILES_PER_JOB`, `DOUBLE_FHIR_MAX_FILES_PER_JOB`: files per job (5000, 10000)
//! - `DOUBLE_IMAGING_MAX_BYTES_PER_JOB`: input bytes per HealthImaging job (10000000000)
//! - `DOUBLE_FHIR_MAX_QUEUED_JOBS`: HealthLake jobs that may wait per data store behind the
//!   account's one running job (25); a start beyond it gets ThrottlingException
//! - `DOUBLE_THROTTLE_SHARE`, `DOUBLE_INTERNAL_ERROR_SHARE`: shares of calls answered
//!   ThrottlingException / InternalServerException (0)
//! - `DOUBLE_JOB_FAILURE_SHARE`: share of jobs that end FAILED (0)
//! - `DOUBLE_STALL_SHARE`: share of jobs that stay IN_PROGRESS for good (0)
//! - `DOUBLE_FAULT_SCOPE`: `all` operations (default) or `start` operations only
//! - `DOUBLE_EMIT_EVENTS`: `true` or `false`: put the services' job events on EventBridge's
//!   default bus (default: when an EventBridge endpoint is configured)
//! - `DOUBLE_EVENT_DROP_SHARE`, `DOUBLE_EVENT_DUPLICATE_SHARE`: shares of job events never put /
//!   put twice (0)
//! - `DOUBLE_EVENT_DELAY_SHARE`, `DOUBLE_EVENT_DELAY_MS`: share of job events put late, and how
//!   late (0, 0)
//! - `DOUBLE_EVENT_REORDER_SHARE`: share of non-terminal job events put after the job's next
//!   event (0)
//! - `DOUBLE_SEED`: seed of the fault-injection RNG
//! - `DOUBLE_SERVICE_MODELS`: botocore's `data` directory; every request is validated against
//!   its `healthlake` and `medical-imaging` service models (default: the repository's `.venv`,
//!   which `make venv` installs; the double does not start without them)
//! - `DOUBLE_DATASTORE_CREATE_MS`: how long a new data store stays CREATING before it turns
//!   ACTIVE (200). Nothing is pre-seeded: data stores are created through the API
//!
//! Admin endpoints: `GET /_double/health`, `GET /_double/stats`, `GET|POST /_double/faults`
//! (the event faults included; see `healthimport_tests::double`).

use std::io::IsTerminal;
use std::process::ExitCode;

use healthimport_tests::double::{DoubleClients, DoubleConfig, ServiceDouble, ENV_VARIABLES};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("--port needs a number from 0 to 65535, got {0:?}")]
    BadPort(String),
    #[error("unknown argument {0:?} (try --help)")]
    UnknownArgument(String),
}

enum Command {
    Help,
    Serve { port: Option<u16> },
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Command, CliError> {
    let mut port = None;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--port" => args.next().unwrap_or_default(),
            other => match other.strip_prefix("--port=") {
                Some(value) => value.to_owned(),
                None => return Err(CliError::UnknownArgument(arg)),
            },
        };
        port = Some(value.parse().map_err(|_| CliError::BadPort(value))?);
    }
    Ok(Command::Serve { port })
}

fn print_help() {
    println!("service-double: HealthLake + HealthImaging service double over HTTP\n");
    println!("usage: service-double [--port N]\n");
    println!("S3 comes from the standard AWS configuration (AWS_ENDPOINT_URL, AWS_REGION, ...),");
    println!("and so does EventBridge, where the job events go (to its default event bus).");
    println!("Environment:");
    for (name, meaning) in ENV_VARIABLES {
        println!("  {name:<36} {meaning}");
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                error!(error = %err, "cannot listen for SIGTERM; only ctrl-c stops the double");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// An endpoint for EventBridge is configured (the local stack's), so events go there and not to
/// AWS.
fn eventbridge_endpoint_configured(aws: &aws_config::SdkConfig) -> bool {
    aws.endpoint_url().is_some()
        || std::env::var("AWS_ENDPOINT_URL_EVENTBRIDGE").is_ok_and(|url| !url.trim().is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let port = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print_help();
            return ExitCode::SUCCESS;
        }
        Ok(Command::Serve { port }) => port,
        Err(err) => {
            eprintln!("service-double: {err}");
            return ExitCode::from(2);
        }
    };
    let mut config = match DoubleConfig::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("service-double: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(port) = port {
        config.port = port;
    }

    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let emit_events = config
        .emit_events
        .unwrap_or_else(|| eventbridge_endpoint_configured(&aws));
    let clients = DoubleClients {
        s3: aws_sdk_s3::Client::new(&aws),
        eventbridge: emit_events.then(|| aws_sdk_eventbridge::Client::new(&aws)),
    };
    if !emit_events {
        info!(
            "job events are off (DOUBLE_EMIT_EVENTS=false, or no EventBridge endpoint configured)"
        );
    }
    let double = match ServiceDouble::start(config, clients).await {
        Ok(double) => double,
        Err(err) => {
            eprintln!("service-double: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("service-double listening on {}", double.endpoint_url());

    shutdown_signal().await;
    info!("stopping");
    double.shutdown().await;
    ExitCode::SUCCESS
}
