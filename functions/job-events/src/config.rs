//! The job-events function's configuration, read once at init: a missing or malformed variable
//! stops the function there, naming the variable.

use healthimport::config::{self, ConfigError, Env, ServiceTargets};
use healthimport::metrics::Namespace;
use healthimport::ports::admission::Pace;

#[derive(Debug, Clone, PartialEq)]
pub struct JobEventsConfig {
    pub jobs_table: String,
    /// The data stores whose jobs are ours (and how to Describe them).
    pub targets: ServiceTargets,
    /// `COMPLETION_CHECK_QUEUE_URL`: where the backstop's re-checks are queued.
    pub completion_check_queue_url: String,
    /// `COMPLETION_BACKSTOP_SECONDS` (900): the re-checks' interval.
    pub backstop_seconds: u32,
    /// The lanes a finished job gives its place back to.
    pub pace: Pace,
    pub record_retention_days: u32,
    /// `METRICS_NAMESPACE`: where its metrics go.
    pub metrics_namespace: Namespace,
}

impl JobEventsConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(JobEventsConfig {
            jobs_table: config::required(env, "JOBS_TABLE")?,
            targets: ServiceTargets::from_env(env)?,
            completion_check_queue_url: config::required(env, "COMPLETION_CHECK_QUEUE_URL")?,
            backstop_seconds: backstop_seconds(env)?,
            pace: config::pace(env)?,
            record_retention_days: config::parsed_or(env, "JOB_RECORD_RETENTION_DAYS", 400)?,
            metrics_namespace: Namespace::from_env(env)?,
        })
    }
}

/// `COMPLETION_BACKSTOP_SECONDS`, shared with the poller (which schedules the first re-check).
pub fn backstop_seconds(env: &impl Env) -> Result<u32, ConfigError> {
    match config::parsed_or(env, "COMPLETION_BACKSTOP_SECONDS", 900u32)? {
        0 => Err(ConfigError::Invalid {
            name: "COMPLETION_BACKSTOP_SECONDS".into(),
            reason: "must be at least 1 second".into(),
        }),
        seconds => Ok(seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_what_is_missing_or_wrong() {
        assert_eq!(
            JobEventsConfig::from_env(&[("X", "")]).unwrap_err(),
            ConfigError::Missing("JOBS_TABLE".into())
        );
        assert_eq!(
            JobEventsConfig::from_env(&[("JOBS_TABLE", "t")]).unwrap_err(),
            ConfigError::Missing("COMPLETION_CHECK_QUEUE_URL".into())
        );
        let env = [
            ("JOBS_TABLE", "t"),
            ("COMPLETION_CHECK_QUEUE_URL", "https://sqs/q"),
            ("COMPLETION_BACKSTOP_SECONDS", "0"),
        ];
        assert!(
            matches!(JobEventsConfig::from_env(&env), Err(ConfigError::Invalid { name, .. }) if name == "COMPLETION_BACKSTOP_SECONDS")
        );
        let env = [
            ("JOBS_TABLE", "t"),
            ("COMPLETION_CHECK_QUEUE_URL", "https://sqs/q"),
        ];
        assert_eq!(
            JobEventsConfig::from_env(&env).unwrap().backstop_seconds,
            900
        );
    }
}
