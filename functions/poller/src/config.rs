//! The poller's configuration, read once at init: a missing or malformed variable stops the
//! function there, naming the variable.

use healthimport::config::{self, ConfigError, Env, ServiceTargets};
use healthimport::metrics::Namespace;

use crate::handler::{Starting, TrackingMode};
use crate::schedule::PollSchedule;

/// The poller's configuration (environment variables of the same names, upper-cased).
#[derive(Debug, Clone, PartialEq)]
pub struct PollerConfig {
    pub jobs_table: String,
    /// The default bus when unset.
    pub event_bus_name: Option<String>,
    /// What the start retry needs: the same variables as the starter's.
    pub targets: ServiceTargets,
    pub schedule: PollSchedule,
    pub record_retention_days: u32,
    /// Batch closing, the services' pace and the start's patience.
    pub starting: Starting,
    /// `TRACKING_MODE`: `events` (default) or `polling`.
    pub tracking_mode: TrackingMode,
    /// `METRICS_NAMESPACE`: where its metrics go.
    pub metrics_namespace: Namespace,
}

/// `START_MAX_AGE`: seconds, or a number with `s`, `m`, `h` or `d` (`24h`, the default).
fn start_max_age(env: &impl Env) -> Result<time::Duration, ConfigError> {
    let Some(text) = config::optional(env, "START_MAX_AGE") else {
        return Ok(time::Duration::hours(24));
    };
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text.as_str(), 's'),
    };
    let seconds_per_unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    match number.trim().parse::<i64>() {
        Ok(n) if n > 0 && seconds_per_unit > 0 => Ok(time::Duration::seconds(n * seconds_per_unit)),
        _ => Err(ConfigError::Invalid {
            name: "START_MAX_AGE".into(),
            reason: format!("{text:?} is not a duration such as 86400, 90m or 24h"),
        }),
    }
}

impl PollerConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(PollerConfig {
            jobs_table: config::required(env, "JOBS_TABLE")?,
            metrics_namespace: Namespace::from_env(env)?,
            event_bus_name: config::optional(env, "EVENT_BUS_NAME"),
            targets: ServiceTargets::from_env(env)?,
            schedule: PollSchedule::from_env(env)?,
            record_retention_days: config::parsed_or(env, "JOB_RECORD_RETENTION_DAYS", 400)?,
            starting: Starting {
                batching: config::batching(env)?,
                pace: config::pace(env)?,
                max_age: start_max_age(env)?,
                lane_wait_seconds: config::parsed_or(env, "START_WAIT_SECONDS", 30u64)?.max(1),
            },
            tracking_mode: config::parsed_or(env, "TRACKING_MODE", TrackingMode::Events)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthimport::config::{FhirTarget, ImagingTarget};

    const DATASTORE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn start_max_age_reads_seconds_and_units_and_names_itself_when_wrong() {
        for (text, seconds) in [
            ("86400", 86_400),
            ("90m", 5_400),
            ("24h", 86_400),
            ("2d", 172_800),
        ] {
            assert_eq!(
                start_max_age(&[("START_MAX_AGE", text)]).unwrap(),
                time::Duration::seconds(seconds)
            );
        }
        assert_eq!(
            start_max_age(&[("X", "1")]).unwrap(),
            time::Duration::hours(24)
        );
        for bad in ["0", "-5h", "soon", "12w"] {
            let err = start_max_age(&[("START_MAX_AGE", bad)]).unwrap_err();
            assert!(err.to_string().contains("START_MAX_AGE"), "{err}");
        }
    }

    #[test]
    fn config_names_what_is_missing_and_reads_the_start_targets() {
        assert_eq!(
            PollerConfig::from_env(&[("X", "")]).unwrap_err(),
            ConfigError::Missing("JOBS_TABLE".into())
        );
        let env = [
            ("JOBS_TABLE", "jobs"),
            ("IMAGING_DATASTORE_ID", DATASTORE),
            (
                "IMAGING_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/img",
            ),
        ];
        assert_eq!(
            PollerConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("IMAGING_OUTPUT_S3_URI".into())
        );
        let env = [
            ("JOBS_TABLE", "jobs"),
            ("EVENT_BUS_NAME", " "),
            ("FHIR_DATASTORE_ID", DATASTORE),
            (
                "FHIR_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/fhir",
            ),
            ("FHIR_OUTPUT_S3_URI", "s3://out/fhir"),
            ("FHIR_OUTPUT_KMS_KEY_ID", "alias/k"),
        ];
        let config = PollerConfig::from_env(&env).unwrap();
        assert_eq!(config.event_bus_name, None, "blank means the default bus");
        assert_eq!(
            config.targets.fhir,
            Some(FhirTarget {
                datastore_id: DATASTORE.into(),
                data_access_role_arn: "arn:aws:iam::123456789012:role/fhir".into(),
                output_s3_uri: "s3://out/fhir/".into(),
                output_kms_key_id: "alias/k".into(),
                validation_level: None,
                export: None,
            })
        );
        assert_eq!(config.targets.imaging, None::<ImagingTarget>);
        assert_eq!(config.schedule, PollSchedule::default());
    }
}
