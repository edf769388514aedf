//! The starter's configuration, read once at init: a missing or malformed variable stops the
//! function there, naming the variable.

use healthimport::config::{self, ConfigError, Env, ServiceTargets};
use healthimport::domain::routing::RoutingConfig;
use healthimport::intake::Batching;
use healthimport::metrics::Namespace;

/// The starter's configuration (environment variables of the same names, upper-cased).
#[derive(Debug, Clone)]
pub struct StarterConfig {
    pub jobs_table: String,
    pub state_machine_arn: String,
    pub targets: ServiceTargets,
    pub routing: RoutingConfig,
    /// When batches close, and where their copies go (`BATCH_*`, `*_PER_JOB`, `STAGING_PREFIX`).
    pub batching: Batching,
    pub record_retention_days: u32,
    /// `INGEST_BUCKET`: events for any other bucket are recorded as skipped. Unset, every bucket
    /// is accepted (the template always sets it).
    pub ingest_bucket: Option<String>,
    /// `METRICS_NAMESPACE`: where its metrics go.
    pub metrics_namespace: Namespace,
}

impl StarterConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let targets = ServiceTargets::from_env(env)?;
        let defaults = RoutingConfig::default();
        let routing = RoutingConfig {
            batch_marker: config::optional(env, "DICOM_BATCH_MARKER")
                .unwrap_or(defaults.batch_marker),
            fhir_enabled: targets.fhir.is_some(),
            imaging_enabled: targets.imaging.is_some(),
            ..RoutingConfig::default()
        }
        .with_prefixes(
            &config::optional(env, "FHIR_PREFIX").unwrap_or(defaults.fhir_prefix),
            &config::optional(env, "DICOM_PREFIX").unwrap_or(defaults.dicom_prefix),
        );
        if routing.fhir_prefix == routing.dicom_prefix {
            return Err(ConfigError::Invalid {
                name: "DICOM_PREFIX".into(),
                reason: "must differ from FHIR_PREFIX".into(),
            });
        }
        Ok(StarterConfig {
            jobs_table: config::required(env, "JOBS_TABLE")?,
            state_machine_arn: config::required(env, "STATE_MACHINE_ARN")?,
            targets,
            routing,
            batching: config::batching(env)?,
            record_retention_days: config::parsed_or(env, "JOB_RECORD_RETENTION_DAYS", 400)?,
            ingest_bucket: config::optional(env, "INGEST_BUCKET"),
            metrics_namespace: Namespace::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_what_is_missing() {
        assert_eq!(
            StarterConfig::from_env(&[("X", "")]).unwrap_err(),
            ConfigError::Missing("JOBS_TABLE".into())
        );
        let env = [
            ("JOBS_TABLE", "t"),
            ("STATE_MACHINE_ARN", "arn"),
            ("BATCH_MAX_WAIT_SECONDS", "0"),
        ];
        assert!(
            matches!(StarterConfig::from_env(&env), Err(ConfigError::Invalid { name, .. }) if name == "BATCH_MAX_WAIT_SECONDS")
        );
        let env = [
            ("JOBS_TABLE", "t"),
            ("STATE_MACHINE_ARN", "arn"),
            ("FHIR_PREFIX", "in/fhir"),
            ("DICOM_PREFIX", "in/fhir/"),
        ];
        assert!(
            matches!(StarterConfig::from_env(&env), Err(ConfigError::Invalid { name, .. }) if name == "DICOM_PREFIX")
        );
        let env = [
            ("JOBS_TABLE", "t"),
            ("STATE_MACHINE_ARN", "arn"),
            ("DICOM_BATCH_MARKER", "DONE"),
        ];
        let config = StarterConfig::from_env(&env).unwrap();
        assert_eq!(config.routing.batch_marker, "DONE");
        assert!(!config.routing.fhir_enabled && !config.routing.imaging_enabled);
    }
}
