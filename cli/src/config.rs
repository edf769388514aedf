//! What the CLI works on, read once before any command runs: from the environment (the same
//! variable names as the functions: `JOBS_TABLE`, `STATE_MACHINE_ARN`, `FHIR_DATASTORE_ID`, ...)
//! or, with `--stack NAME`, from that stack's Outputs and Parameters, with the environment filling
//! what the stack does not say. A missing value is named, with where it comes from.

use std::collections::HashMap;

use healthimport::config::{self as core_config, Env, ProcessEnv};
use healthimport::domain::status::Service;
use healthimport::intake::Batching;

/// Where a variable comes from when it is read from a stack: its Output or Parameter.
pub const STACK_NAMES: [(&str, StackSource); 15] = [
    ("JOBS_TABLE", StackSource::Output("JobsTableName")),
    (
        "STATE_MACHINE_ARN",
        StackSource::Output("ImportJobStateMachineArn"),
    ),
    ("FHIR_DATASTORE_ID", StackSource::Output("FhirDatastoreId")),
    (
        "IMAGING_DATASTORE_ID",
        StackSource::Output("ImagingDatastoreId"),
    ),
    (
        "EXPORTER_FUNCTION_NAME",
        StackSource::Output("ExporterFunctionName"),
    ),
    ("INGEST_BUCKET", StackSource::Output("IngestBucketName")),
    (
        "BATCH_QUIET_SECONDS",
        StackSource::Parameter("BatchQuietSeconds"),
    ),
    (
        "BATCH_MAX_WAIT_SECONDS",
        StackSource::Parameter("BatchMaxWaitSeconds"),
    ),
    (
        "HEALTHLAKE_MAX_FILES_PER_JOB",
        StackSource::Parameter("HealthLakeMaxFilesPerJob"),
    ),
    (
        "IMAGING_MAX_FILES_PER_JOB",
        StackSource::Parameter("ImagingMaxFilesPerJob"),
    ),
    (
        "IMAGING_MAX_BYTES_PER_JOB",
        StackSource::Parameter("ImagingMaxBytesPerJob"),
    ),
    ("STAGING_PREFIX", StackSource::Parameter("StagingPrefix")),
    ("FHIR_PREFIX", StackSource::Parameter("FhirPrefix")),
    ("DICOM_PREFIX", StackSource::Parameter("DicomPrefix")),
    (
        "JOB_RECORD_RETENTION_DAYS",
        StackSource::Parameter("JobRecordRetentionDays"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackSource {
    Output(&'static str),
    Parameter(&'static str),
}

impl std::fmt::Display for StackSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StackSource::Output(name) => write!(f, "output {name}"),
            StackSource::Parameter(name) => write!(f, "parameter {name}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{variable} is not set: export it (the functions use the same name), or pass --stack NAME (its {from})")]
    Missing {
        variable: &'static str,
        from: StackSource,
    },
    #[error(
        "stack {stack} has no {from} and {variable} is not set: is this a healthimport stack?"
    )]
    MissingInStack {
        stack: String,
        variable: &'static str,
        from: StackSource,
    },
    #[error("neither FHIR_DATASTORE_ID nor IMAGING_DATASTORE_ID is set{}: set one, or pass --stack NAME", .stack.as_deref().map(|s| format!(" (nor in stack {s})")).unwrap_or_default())]
    NoDatastore { stack: Option<String> },
    #[error(transparent)]
    Invalid(#[from] core_config::ConfigError),
}

/// The variables, from a stack (when given) over the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    stack: Option<(String, HashMap<String, String>)>,
    /// The process environment, or a map in tests (which never mutate the process's).
    environment: Option<HashMap<String, String>>,
}

impl Env for Settings {
    fn var(&self, name: &str) -> Option<String> {
        let from_environment = || match &self.environment {
            Some(map) => core_config::optional(map, name),
            None => core_config::optional(&ProcessEnv, name),
        };
        self.stack
            .as_ref()
            .and_then(|(_, values)| core_config::optional(values, name))
            .or_else(from_environment)
    }
}

impl Settings {
    /// The process environment alone.
    pub fn from_process() -> Settings {
        Settings {
            stack: None,
            environment: None,
        }
    }

    pub fn from_map(environment: HashMap<String, String>) -> Settings {
        Settings {
            stack: None,
            environment: Some(environment),
        }
    }

    /// `stack`'s values (by variable name) over these.
    pub fn with_stack(mut self, stack: &str, values: HashMap<String, String>) -> Settings {
        self.stack = Some((stack.to_owned(), values));
        self
    }

    fn required(&self, variable: &'static str) -> Result<String, ConfigError> {
        self.var(variable)
            .ok_or_else(|| missing(variable, self.stack.as_ref().map(|(name, _)| name)))
    }

    fn stack_name(&self) -> Option<String> {
        self.stack.as_ref().map(|(name, _)| name.clone())
    }
}

fn missing(variable: &'static str, stack: Option<&String>) -> ConfigError {
    let from = STACK_NAMES
        .iter()
        .find(|(name, _)| *name == variable)
        .map(|(_, source)| *source)
        .unwrap_or(StackSource::Output("?"));
    match stack {
        Some(stack) => ConfigError::MissingInStack {
            stack: stack.clone(),
            variable,
            from,
        },
        None => ConfigError::Missing { variable, from },
    }
}

/// The data stores the CLI lists jobs of: the ones the stack imports into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datastores {
    pub fhir: Option<String>,
    pub imaging: Option<String>,
}

impl Datastores {
    /// Each configured data store with its service, narrowed to `only` when given.
    pub fn of(&self, only: Option<Service>) -> Vec<(Service, &str)> {
        [
            (Service::HealthLake, self.fhir.as_deref()),
            (Service::HealthImaging, self.imaging.as_deref()),
        ]
        .into_iter()
        .filter(|(service, _)| only.is_none_or(|only| only == *service))
        .filter_map(|(service, id)| id.map(|id| (service, id)))
        .collect()
    }
}

/// Everything a command may need; each command asks for what it uses, so `healthimport export`
/// does not need the jobs table, nor `status` the exporter.
#[derive(Debug, Clone)]
pub struct Resources {
    settings: Settings,
}

impl Resources {
    pub fn new(settings: Settings) -> Resources {
        Resources { settings }
    }

    pub fn jobs_table(&self) -> Result<String, ConfigError> {
        self.settings.required("JOBS_TABLE")
    }

    pub fn state_machine_arn(&self) -> Result<String, ConfigError> {
        self.settings.required("STATE_MACHINE_ARN")
    }

    pub fn exporter_function(&self) -> Result<String, ConfigError> {
        self.settings.required("EXPORTER_FUNCTION_NAME")
    }

    pub fn datastores(&self) -> Result<Datastores, ConfigError> {
        let datastores = Datastores {
            fhir: self.settings.var("FHIR_DATASTORE_ID"),
            imaging: self.settings.var("IMAGING_DATASTORE_ID"),
        };
        if datastores.fhir.is_none() && datastores.imaging.is_none() {
            return Err(ConfigError::NoDatastore {
                stack: self.settings.stack_name(),
            });
        }
        Ok(datastores)
    }

    /// The batching policy and staging prefix the functions use (`BATCH_*`, `*_PER_JOB`,
    /// `STAGING_PREFIX`), with the functions' defaults.
    pub fn batching(&self) -> Result<Batching, ConfigError> {
        Ok(core_config::batching(&self.settings)?)
    }

    /// How long the records the CLI writes (a retry's) are kept once terminal, as the starter's.
    pub fn record_retention_days(&self) -> Result<u32, ConfigError> {
        Ok(core_config::parsed_or(
            &self.settings,
            "JOB_RECORD_RETENTION_DAYS",
            400,
        )?)
    }

    /// The watched prefixes, for the hint when an upload has no record.
    pub fn prefixes(&self) -> (String, String) {
        (
            self.settings
                .var("FHIR_PREFIX")
                .unwrap_or_else(|| "fhir/".into()),
            self.settings
                .var("DICOM_PREFIX")
                .unwrap_or_else(|| "dicom/".into()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_missing_variable_is_named_with_the_stack_output_that_gives_it() {
        let resources = Resources::new(settings(&[]));
        let err = resources.jobs_table().unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                variable: "JOBS_TABLE",
                from: StackSource::Output("JobsTableName")
            }
        );
        assert!(err.to_string().contains("JOBS_TABLE"), "{err}");
        assert!(err.to_string().contains("--stack"), "{err}");
        assert!(matches!(
            resources.datastores(),
            Err(ConfigError::NoDatastore { stack: None })
        ));
    }

    #[test]
    fn the_stack_wins_over_the_environment_which_fills_its_gaps() {
        let stack = HashMap::from([
            ("JOBS_TABLE".to_owned(), "from-stack".to_owned()),
            ("FHIR_DATASTORE_ID".to_owned(), String::new()),
        ]);
        let resources = Resources::new(
            settings(&[
                ("JOBS_TABLE", "from-env"),
                ("IMAGING_DATASTORE_ID", "img"),
                ("BATCH_QUIET_SECONDS", "7"),
            ])
            .with_stack("prod", stack),
        );
        assert_eq!(resources.jobs_table().unwrap(), "from-stack");
        assert_eq!(
            resources.datastores().unwrap().of(None),
            vec![(Service::HealthImaging, "img")]
        );
        assert_eq!(
            resources.batching().unwrap().policy.quiet.whole_seconds(),
            7
        );
        let err = resources.state_machine_arn().unwrap_err().to_string();
        assert!(
            err.contains("stack prod has no output ImportJobStateMachineArn"),
            "{err}"
        );
    }

    #[test]
    fn an_invalid_batching_setting_is_named() {
        let resources = Resources::new(settings(&[("BATCH_MAX_WAIT_SECONDS", "soon")]));
        let err = resources.batching().unwrap_err().to_string();
        assert!(err.contains("BATCH_MAX_WAIT_SECONDS"), "{err}");
    }
}
