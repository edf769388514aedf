//! `provision-datastores`: creates the local stack's FHIR and imaging data stores through the
//! API (CreateFHIRDatastore, CreateDatastore) from `template.yaml`'s data store resources, waits
//! until both are ACTIVE and appends their ids to the functions' env file.
//!
//! ```text
//! provision-datastores --env-file PATH [--template PATH] [--stack-name NAME] [--timeout-seconds N]
//! ```
//! The clients come from the standard AWS configuration: `AWS_ENDPOINT_URL_HEALTHLAKE` and
//! `AWS_ENDPOINT_URL_MEDICAL_IMAGING` point them at the service double (scripts/local-stack.sh
//! runs it after the double is up and before the functions start). Defaults: the repository's
//! template.yaml, stack `healthimport-local`, 60 s.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use healthimport_tests::datastores::{provision, Deployment, Template, LOCAL_STACK_NAME};

#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("--timeout-seconds needs a number, got {0:?}")]
    BadTimeout(String),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("--env-file is required")]
    NoEnvFile,
}

struct Arguments {
    env_file: PathBuf,
    template: PathBuf,
    stack_name: String,
    timeout: Duration,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Arguments, UsageError> {
    let mut env_file = None;
    let mut template = healthimport_tests::local_stack::template_path();
    let mut stack_name = LOCAL_STACK_NAME.to_owned();
    let mut timeout = Duration::from_secs(60);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| UsageError::MissingValue(arg.clone()))
        };
        match arg.as_str() {
            "--env-file" => env_file = Some(PathBuf::from(value()?)),
            "--template" => template = PathBuf::from(value()?),
            "--stack-name" => stack_name = value()?,
            "--timeout-seconds" => {
                let raw = value()?;
                let seconds = raw.parse().map_err(|_| UsageError::BadTimeout(raw))?;
                timeout = Duration::from_secs(seconds);
            }
            _ => return Err(UsageError::Unknown(arg)),
        }
    }
    Ok(Arguments {
        env_file: env_file.ok_or(UsageError::NoEnvFile)?,
        template,
        stack_name,
        timeout,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = match parse(std::env::args().skip(1)) {
        Ok(arguments) => arguments,
        Err(err) => {
            eprintln!("provision-datastores: {err}");
            return ExitCode::from(2);
        }
    };
    let result = async {
        let template = Template::read(
            &arguments.template,
            Deployment::local(&arguments.stack_name),
        )?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let provisioned = provision(&sdk, &template, arguments.timeout).await?;
        provisioned.append_to(&arguments.env_file)?;
        Ok::<_, healthimport_tests::datastores::DatastoreError>(provisioned)
    }
    .await;
    match result {
        Ok(provisioned) => {
            println!(
                "provision-datastores: ACTIVE: FHIR {} imaging {}",
                provisioned.fhir_datastore_id, provisioned.imaging_datastore_id
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("provision-datastores: {message}");
            ExitCode::FAILURE
        }
    }
}
