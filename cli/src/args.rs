//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};

use healthimport::domain::status::Service;

#[derive(Debug, Parser)]
#[command(
    name = "healthimport",
    version,
    about = "Operate healthimport: what happened to an upload, its jobs and batches, retries and exports",
    after_help = "Resources come from --stack NAME (its Outputs and Parameters) or from the functions' \
                  variables: JOBS_TABLE, STATE_MACHINE_ARN, FHIR_DATASTORE_ID, IMAGING_DATASTORE_ID, \
                  EXPORTER_FUNCTION_NAME, BATCH_QUIET_SECONDS, BATCH_MAX_WAIT_SECONDS, STAGING_PREFIX.\n\
                  Exit codes: 0 ok, 1 not found or refused, 2 usage or configuration, 3 an AWS call failed."
)]
pub struct Cli {
    /// Read resources from this CloudFormation stack's Outputs and Parameters.
    #[arg(long, global = true, value_name = "NAME")]
    pub stack: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// An upload's records (every attempt, newest first), its batch, its job and its own result.
    Status {
        /// s3://bucket/key of the upload, or a job id (an upload's, a batch's or an export's).
        target: String,
    },
    /// The service jobs (batches and exports), newest first.
    Jobs(JobsArgs),
    /// The open batches: files, bytes, and when each closes.
    Batches,
    /// Re-drive a START_FAILED or FAILED import as a new attempt; the failed record stays.
    Retry {
        /// s3://bucket/key of the upload, its job id, or a failed batch's id (retries its failed
        /// uploads).
        target: String,
    },
    /// Request an export of the FHIR data store through the exporter function.
    Export {
        /// Export only what changed since the last completed export.
        #[arg(long)]
        incremental: bool,
        /// The request's id (a repeated id is the same request); default: cli-<now>.
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
    },
    /// Live progress of the open batches and running jobs, redrawn in place.
    Watch {
        /// Seconds between redraws.
        #[arg(long, default_value_t = 2, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Stop after this many redraws (default: until interrupted).
        #[arg(long, value_name = "N", conflicts_with = "once")]
        iterations: Option<u32>,
        /// Draw once and stop.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this status (e.g. FAILED, in-progress, completed_with_errors).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only jobs created within this long (30m, 12h, 1d, 2w) or since an RFC 3339 instant.
    #[arg(long, value_name = "AGE")]
    pub since: Option<String>,
    /// Only jobs of one service.
    #[arg(long, value_enum)]
    pub service: Option<ServiceArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceArg {
    /// HealthLake (FHIR NDJSON).
    Fhir,
    /// HealthImaging (DICOM).
    Dicom,
}

impl From<ServiceArg> for Service {
    fn from(arg: ServiceArg) -> Service {
        match arg {
            ServiceArg::Fhir => Service::HealthLake,
            ServiceArg::Dicom => Service::HealthImaging,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "healthimport",
            "jobs",
            "--json",
            "--service",
            "dicom",
            "--stack",
            "prod",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.stack.as_deref(), Some("prod"));
        let Command::Jobs(args) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(args.service, Some(ServiceArg::Dicom));
        assert!(Cli::try_parse_from(["healthimport", "watch", "--interval", "0"]).is_err());
    }
}
