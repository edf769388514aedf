//! One run of the CLI: resolves the resources (from `--stack` or the environment), builds the
//! adapters a command needs (the functions' own constructors), runs the command and prints its
//! report.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use aws_config::SdkConfig;
use healthimport::domain::job::{Service, Timestamp};

use crate::args::{Cli, Command};
use crate::commands::{self, Target};
use crate::config::{Resources, Settings};
use crate::error::CliError;
use crate::exporter::LambdaExporter;
use crate::render;
use crate::stack::stack_settings;

/// The settings: the stack's, over the environment's, when `--stack` is given.
pub async fn settings(aws: &SdkConfig, stack: Option<&str>) -> Result<Settings, CliError> {
    let settings = Settings::from_process();
    Ok(match stack {
        Some(stack) => {
            let client = aws_sdk_cloudformation::Client::new(aws);
            settings.with_stack(stack, stack_settings(&client, stack).await?)
        }
        None => settings,
    })
}

pub async fn run(
    cli: Cli,
    aws: &SdkConfig,
    resources: &Resources,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = || -> Result<_, CliError> {
        Ok(healthimport_aws::job_store(
            aws,
            &resources.jobs_table()?,
            resources.record_retention_days()?,
        ))
    };
    let text = match cli.command {
        Command::Status { target } => {
            let target = Target::parse(&target)?;
            let report =
                commands::status::status(&store()?, &target, &resources.prefixes()).await?;
            if cli.json {
                render::json(&report)
            } else {
                render::status(&report)
            }
        }
        Command::Jobs(args) => {
            let now = Timestamp::now();
            let filter = commands::jobs::JobFilter {
                status: args
                    .status
                    .as_deref()
                    .map(commands::parse_status)
                    .transpose()?,
                since: args
                    .since
                    .as_deref()
                    .map(|since| commands::parse_since(since, now))
                    .transpose()?,
                service: args.service.map(Service::from),
            };
            let datastores = resources.datastores()?;
            let jobs = commands::jobs::jobs(&store()?, &datastores, &filter).await?;
            if cli.json {
                render::json(&jobs)
            } else {
                render::jobs(&jobs)
            }
        }
        Command::Batches => {
            let datastores = resources.datastores()?;
            let policy = resources.batching()?.policy;
            let open =
                commands::batches::open_batches(&store()?, &datastores, &policy, Timestamp::now())
                    .await?;
            if cli.json {
                render::json(&open)
            } else {
                render::batches(&open)
            }
        }
        Command::Retry { target } => {
            let target = Target::parse(&target)?;
            let batching = resources.batching()?;
            let tracking = healthimport_aws::tracking(aws, &resources.state_machine_arn()?);
            let report =
                commands::retry::retry(&store()?, &tracking, &batching, &target, Timestamp::now())
                    .await?;
            if cli.json {
                render::json(&report)
            } else {
                render::retry(&report)
            }
        }
        Command::Export {
            incremental,
            request_id,
        } => {
            let exporter = LambdaExporter::new(
                aws_sdk_lambda::Client::new(aws),
                resources.exporter_function()?,
            );
            let request_id = request_id
                .unwrap_or_else(|| commands::export::default_request_id(Timestamp::now()));
            let response = commands::export::export(&exporter, &request_id, incremental).await?;
            if cli.json {
                render::json(&response)
            } else {
                render::export(&response)
            }
        }
        Command::Watch {
            interval,
            iterations,
            once,
        } => {
            let datastores = resources.datastores()?;
            let policy = resources.batching()?.policy;
            let schedule = commands::watch::Schedule {
                interval: Duration::from_secs(interval),
                iterations: if once { Some(1) } else { iterations },
            };
            // Redrawn in place on a terminal; frame after frame when piped (a log, a test).
            let in_place = std::io::stdout().is_terminal() && !cli.json;
            let json = cli.json;
            commands::watch::watch(&store()?, &datastores, &policy, schedule, |frame| {
                let text = if json {
                    serde_json::to_string(frame).unwrap_or_default() + "\n"
                } else {
                    render::frame(frame)
                };
                if in_place {
                    out.write_all(render::CLEAR_SCREEN.as_bytes())?;
                }
                out.write_all(text.as_bytes())?;
                out.flush()?;
                Ok(())
            })
            .await?;
            return Ok(());
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}
