//! The exporter's configuration, read once at init: a missing or malformed variable stops the
//! function there, naming the variable.

use healthimport::config::{self, ConfigError, Env, ServiceTargets};
use healthimport::domain::export::ExportMode;
use healthimport::metrics::Namespace;
use healthimport::ports::admission::Pace;

/// The exporter's configuration: the FHIR variables the starter reads (exports start through
/// the same HealthLake adapter), of which the export ones are required here.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterConfig {
    pub jobs_table: String,
    pub state_machine_arn: String,
    pub targets: ServiceTargets,
    pub datastore_id: String,
    pub output_s3_uri: String,
    /// `EXPORT_MODE`: `full` (default) or `incremental`; an event's `mode` overrides it.
    pub mode: ExportMode,
    pub record_retention_days: u32,
    /// HealthLake's lane, shared with the imports (`HEALTHLAKE_MAX_OUTSTANDING`).
    pub pace: Pace,
    /// `METRICS_NAMESPACE`: where its metrics go.
    pub metrics_namespace: Namespace,
}

impl ExporterConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let targets = ServiceTargets::from_env(env)?;
        let fhir = targets
            .fhir
            .as_ref()
            .ok_or_else(|| ConfigError::Missing("FHIR_DATASTORE_ID".into()))?;
        let export = fhir
            .export
            .as_ref()
            .ok_or_else(|| ConfigError::Missing("FHIR_EXPORT_S3_URI".into()))?;
        Ok(ExporterConfig {
            jobs_table: config::required(env, "JOBS_TABLE")?,
            state_machine_arn: config::required(env, "STATE_MACHINE_ARN")?,
            datastore_id: fhir.datastore_id.clone(),
            output_s3_uri: export.output_s3_uri.clone(),
            mode: config::parsed_or(env, "EXPORT_MODE", ExportMode::Full)?,
            record_retention_days: config::parsed_or(env, "JOB_RECORD_RETENTION_DAYS", 400)?,
            pace: config::pace(env)?,
            metrics_namespace: Namespace::from_env(env)?,
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATASTORE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn configuration_needs_the_export_location_and_names_what_is_missing() {
        let base = [
            ("JOBS_TABLE", "jobs"),
            (
                "STATE_MACHINE_ARN",
                "arn:aws:states:eu-west-1:123456789012:stateMachine:t",
            ),
            ("FHIR_DATASTORE_ID", DATASTORE),
            (
                "FHIR_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/i",
            ),
            ("FHIR_OUTPUT_S3_URI", "s3://out/fhir/"),
            ("FHIR_OUTPUT_KMS_KEY_ID", "alias/k"),
        ];
        assert_eq!(
            ExporterConfig::from_env(&base).unwrap_err(),
            ConfigError::Missing("FHIR_EXPORT_S3_URI".into())
        );
        let mut full = base.to_vec();
        full.extend([
            ("FHIR_EXPORT_S3_URI", "s3://out/exports"),
            ("FHIR_EXPORT_ROLE_ARN", "arn:aws:iam::123456789012:role/e"),
            ("FHIR_EXPORT_KMS_KEY_ID", "alias/k"),
        ]);
        let config = ExporterConfig::from_env(&full).unwrap();
        assert_eq!(config.output_s3_uri, "s3://out/exports/");
        assert_eq!(config.datastore_id, DATASTORE);
        assert_eq!(
            ExporterConfig::from_env(&[("JOBS_TABLE", "jobs")]).unwrap_err(),
            ConfigError::Missing("FHIR_DATASTORE_ID".into())
        );
    }
}
