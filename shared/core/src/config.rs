//! Typed configuration from the environment. Every function loads its config once in `main` and
//! stops at init when something is missing or malformed, naming the variable, so a broken
//! deployment fails on its first cold start instead of on its first upload.

use std::str::FromStr;

use crate::domain::job::{Service, Target};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("required environment variable {0} is not set")]
    Missing(String),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

/// A source of variables: the process environment in production, a map in tests (so tests never
/// mutate the shared process environment).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.as_slice().var(name)
    }
}

impl Env for Vec<(&str, &str)> {
    fn var(&self, name: &str) -> Option<String> {
        self.as_slice().var(name)
    }
}

impl Env for [(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A set, non-blank variable, trimmed. Blank counts as unset: CloudFormation renders an empty
/// parameter as an empty string, which must mean "not configured", not "configured as ''".
pub fn optional(env: &impl Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub fn required(env: &impl Env, name: &str) -> Result<String, ConfigError> {
    optional(env, name).ok_or_else(|| ConfigError::Missing(name.to_owned()))
}

/// Parses an optional variable, falling back to `default` when unset.
pub fn parsed_or<T>(env: &impl Env, name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match optional(env, name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name: name.to_owned(),
            reason: format!("{raw:?}: {e}"),
        }),
    }
}

/// Comma-separated list, blanks dropped.
pub fn list(env: &impl Env, name: &str) -> Vec<String> {
    optional(env, name)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_is_named() {
        let env = [("OTHER", "x")];
        assert_eq!(
            required(&env, "JOBS_TABLE").unwrap_err().to_string(),
            "required environment variable JOBS_TABLE is not set"
        );
    }

    #[test]
    fn blank_counts_as_unset() {
        let env = [("JOBS_TABLE", "  ")];
        assert!(matches!(
            required(&env, "JOBS_TABLE"),
            Err(ConfigError::Missing(_))
        ));
        assert_eq!(optional(&env, "JOBS_TABLE"), None);
    }

    #[test]
    fn invalid_number_names_variable_and_value() {
        let env = [("RETENTION_DAYS", "ten")];
        let err = parsed_or(&env, "RETENTION_DAYS", 365u32).unwrap_err();
        assert!(err.to_string().contains("RETENTION_DAYS"), "{err}");
        assert!(err.to_string().contains("\"ten\""), "{err}");
        assert_eq!(parsed_or(&[("X", "1")], "RETENTION_DAYS", 365u32), Ok(365));
    }

    #[test]
    fn list_splits_and_trims() {
        let env = [("L", " a, ,b ,")];
        assert_eq!(list(&env, "L"), vec!["a", "b"]);
        assert!(list(&env, "NONE").is_empty());
    }
}

/// Where each service's imports go: shared by the starter and by the tracking workflow's start
/// retry, which both start jobs. A service whose data store id is unset is not configured (its
/// uploads are skipped with that reason); once the id is set, the rest of its variables are
/// required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTargets {
    pub fhir: Option<FhirTarget>,
    pub imaging: Option<ImagingTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirTarget {
    pub datastore_id: String,
    pub data_access_role_arn: String,
    pub output_s3_uri: String,
    pub output_kms_key_id: String,
    /// `FHIR_VALIDATION_LEVEL`: StartFHIRImportJob's `ValidationLevel` (`strict`,
    /// `structure-only` or `minimal`); `None` sends none, which is the service's default.
    pub validation_level: Option<String>,
    /// Where exports of this data store go; `None` when exports are not configured.
    pub export: Option<ExportTarget>,
}

/// A HealthLake export's destination. Its own role, so that the role HealthLake assumes for an
/// export can write only the export location, and the import role cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportTarget {
    pub data_access_role_arn: String,
    pub output_s3_uri: String,
    pub kms_key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagingTarget {
    pub datastore_id: String,
    pub data_access_role_arn: String,
    pub output_s3_uri: String,
    /// `IMAGING_INPUT_OWNER_ACCOUNT_ID`: the account that must own the input bucket
    /// (StartDICOMImportJob's `inputOwnerAccountId`), a guard against a look-alike bucket in
    /// another account. The template sets the deploying account.
    pub input_owner_account_id: Option<String>,
}

/// StartFHIRImportJob's documented `ValidationLevel` values.
pub const FHIR_VALIDATION_LEVELS: [&str; 3] = ["strict", "structure-only", "minimal"];

impl ServiceTargets {
    /// Where `service`'s imports go; `None` when it is not configured.
    pub fn target(&self, service: Service) -> Option<Target> {
        let (datastore_id, output_s3_uri) = match service {
            Service::HealthLake => self
                .fhir
                .as_ref()
                .map(|t| (&t.datastore_id, &t.output_s3_uri)),
            Service::HealthImaging => self
                .imaging
                .as_ref()
                .map(|t| (&t.datastore_id, &t.output_s3_uri)),
        }?;
        Some(Target {
            service,
            datastore_id: datastore_id.clone(),
            output_s3_uri: output_s3_uri.clone(),
        })
    }

    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let fhir = match optional(env, "FHIR_DATASTORE_ID") {
            None => None,
            Some(datastore_id) => Some(FhirTarget {
                datastore_id,
                data_access_role_arn: required(env, "FHIR_DATA_ACCESS_ROLE_ARN")?,
                output_s3_uri: s3_uri(env, "FHIR_OUTPUT_S3_URI")?,
                output_kms_key_id: required(env, "FHIR_OUTPUT_KMS_KEY_ID")?,
                validation_level: match optional(env, "FHIR_VALIDATION_LEVEL") {
                    None => None,
                    Some(level) if FHIR_VALIDATION_LEVELS.contains(&level.as_str()) => Some(level),
                    Some(level) => {
                        return Err(ConfigError::Invalid {
                            name: "FHIR_VALIDATION_LEVEL".into(),
                            reason: format!(
                                "{level:?}: expected strict, structure-only or minimal"
                            ),
                        })
                    }
                },
                export: match optional(env, "FHIR_EXPORT_S3_URI") {
                    None => None,
                    Some(_) => Some(ExportTarget {
                        data_access_role_arn: required(env, "FHIR_EXPORT_ROLE_ARN")?,
                        output_s3_uri: s3_uri(env, "FHIR_EXPORT_S3_URI")?,
                        kms_key_id: required(env, "FHIR_EXPORT_KMS_KEY_ID")?,
                    }),
                },
            }),
        };
        let imaging = match optional(env, "IMAGING_DATASTORE_ID") {
            None => None,
            Some(datastore_id) => Some(ImagingTarget {
                datastore_id,
                data_access_role_arn: required(env, "IMAGING_DATA_ACCESS_ROLE_ARN")?,
                output_s3_uri: s3_uri(env, "IMAGING_OUTPUT_S3_URI")?,
                input_owner_account_id: match optional(env, "IMAGING_INPUT_OWNER_ACCOUNT_ID") {
                    None => None,
                    Some(account)
                        if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        Some(account)
                    }
                    Some(account) => {
                        return Err(ConfigError::Invalid {
                            name: "IMAGING_INPUT_OWNER_ACCOUNT_ID".into(),
                            reason: format!("{account:?} is not a 12-digit account id"),
                        })
                    }
                },
            }),
        };
        Ok(ServiceTargets { fhir, imaging })
    }
}

/// A required `s3://bucket/prefix` variable, normalised to end with `/` (both services treat the
/// output location as a prefix).
fn s3_uri(env: &impl Env, name: &str) -> Result<String, ConfigError> {
    let value = required(env, name)?;
    if !value.starts_with("s3://") || value.len() <= "s3://".len() {
        return Err(ConfigError::Invalid {
            name: name.to_owned(),
            reason: format!("{value:?} is not an s3:// URI"),
        });
    }
    Ok(if value.ends_with('/') {
        value
    } else {
        format!("{value}/")
    })
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn the_new_start_members_are_read_and_checked() {
        let env = [
            ("FHIR_DATASTORE_ID", "f"),
            (
                "FHIR_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/r",
            ),
            ("FHIR_OUTPUT_S3_URI", "s3://out/fhir/"),
            ("FHIR_OUTPUT_KMS_KEY_ID", "k"),
            ("FHIR_VALIDATION_LEVEL", "structure-only"),
            ("IMAGING_DATASTORE_ID", "d"),
            (
                "IMAGING_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/i",
            ),
            ("IMAGING_OUTPUT_S3_URI", "s3://out/dicom/"),
            ("IMAGING_INPUT_OWNER_ACCOUNT_ID", "123456789012"),
        ];
        let targets = ServiceTargets::from_env(&env).unwrap();
        assert_eq!(
            targets.fhir.unwrap().validation_level.as_deref(),
            Some("structure-only")
        );
        assert_eq!(
            targets.imaging.unwrap().input_owner_account_id.as_deref(),
            Some("123456789012")
        );
        for (name, bad) in [
            ("FHIR_VALIDATION_LEVEL", "lenient"),
            ("IMAGING_INPUT_OWNER_ACCOUNT_ID", "1234"),
        ] {
            let env: Vec<_> = env
                .iter()
                .map(|&(k, v)| (k, if k == name { bad } else { v }))
                .collect();
            let err = ServiceTargets::from_env(&env).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn unset_datastore_means_service_not_configured() {
        let targets = ServiceTargets::from_env(&[("OTHER", "")]).unwrap();
        assert_eq!(
            targets,
            ServiceTargets {
                fhir: None,
                imaging: None
            }
        );
    }

    #[test]
    fn a_configured_service_needs_all_its_variables() {
        let env = [
            ("FHIR_DATASTORE_ID", "abc"),
            (
                "FHIR_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/r",
            ),
        ];
        assert_eq!(
            ServiceTargets::from_env(&env).unwrap_err(),
            ConfigError::Missing("FHIR_OUTPUT_S3_URI".into())
        );
    }

    #[test]
    fn output_uris_are_checked_and_normalised() {
        let env = [
            ("IMAGING_DATASTORE_ID", "d"),
            (
                "IMAGING_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/r",
            ),
            ("IMAGING_OUTPUT_S3_URI", "s3://out/imaging"),
        ];
        let targets = ServiceTargets::from_env(&env).unwrap();
        assert_eq!(targets.imaging.unwrap().output_s3_uri, "s3://out/imaging/");
        let bad = [
            ("IMAGING_DATASTORE_ID", "d"),
            ("IMAGING_DATA_ACCESS_ROLE_ARN", "r"),
            ("IMAGING_OUTPUT_S3_URI", "out/imaging"),
        ];
        assert!(matches!(
            ServiceTargets::from_env(&bad),
            Err(ConfigError::Invalid { name, .. }) if name == "IMAGING_OUTPUT_S3_URI"
        ));
    }

    #[test]
    fn exports_are_configured_by_their_location_and_then_need_role_and_key() {
        let fhir = [
            ("FHIR_DATASTORE_ID", "abc"),
            (
                "FHIR_DATA_ACCESS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/r",
            ),
            ("FHIR_OUTPUT_S3_URI", "s3://out/fhir/"),
            ("FHIR_OUTPUT_KMS_KEY_ID", "alias/k"),
        ];
        let targets = ServiceTargets::from_env(&fhir).unwrap();
        assert_eq!(targets.fhir.unwrap().export, None);

        let mut partial = fhir.to_vec();
        partial.push(("FHIR_EXPORT_S3_URI", "s3://exports/nightly"));
        assert_eq!(
            ServiceTargets::from_env(&partial).unwrap_err(),
            ConfigError::Missing("FHIR_EXPORT_ROLE_ARN".into())
        );

        let mut full = partial.clone();
        full.push(("FHIR_EXPORT_ROLE_ARN", "arn:aws:iam::123456789012:role/x"));
        full.push(("FHIR_EXPORT_KMS_KEY_ID", "alias/x"));
        let export = ServiceTargets::from_env(&full)
            .unwrap()
            .fhir
            .unwrap()
            .export
            .unwrap();
        assert_eq!(export.output_s3_uri, "s3://exports/nightly/");
        assert_eq!(export.kms_key_id, "alias/x");
    }
}

/// How uploads are batched, read by the starter (which joins and closes batches) and the poller
/// (whose batch workflow closes them by the clock): `BATCH_QUIET_SECONDS` (60),
/// `BATCH_MAX_WAIT_SECONDS` (300), `HEALTHLAKE_MAX_FILES_PER_JOB` (10,000),
/// `IMAGING_MAX_FILES_PER_JOB` (5,000), `IMAGING_MAX_BYTES_PER_JOB` (10 GiB), `STAGING_PREFIX`
/// (`staging/`).
pub fn batching(env: &impl Env) -> Result<crate::intake::Batching, ConfigError> {
    use crate::domain::batch::{BatchPolicy, Staging};
    let defaults = BatchPolicy::default();
    let seconds = |name: &str, default: time::Duration| -> Result<time::Duration, ConfigError> {
        let value: u64 = parsed_or(env, name, default.whole_seconds() as u64)?;
        if value == 0 {
            return Err(ConfigError::Invalid {
                name: name.to_owned(),
                reason: "must be at least 1 second".into(),
            });
        }
        Ok(time::Duration::seconds(value as i64))
    };
    let at_least_one = |name: &str, default: u64| -> Result<u64, ConfigError> {
        match parsed_or(env, name, default)? {
            0 => Err(ConfigError::Invalid {
                name: name.to_owned(),
                reason: "must be at least 1".into(),
            }),
            value => Ok(value),
        }
    };
    let policy = BatchPolicy {
        quiet: seconds("BATCH_QUIET_SECONDS", defaults.quiet)?,
        max_wait: seconds("BATCH_MAX_WAIT_SECONDS", defaults.max_wait)?,
        healthlake: crate::domain::batch::JobLimits {
            max_files: at_least_one(
                "HEALTHLAKE_MAX_FILES_PER_JOB",
                defaults.healthlake.max_files,
            )?,
            max_bytes: None,
        },
        imaging: crate::domain::batch::JobLimits {
            max_files: at_least_one("IMAGING_MAX_FILES_PER_JOB", defaults.imaging.max_files)?,
            max_bytes: Some(at_least_one(
                "IMAGING_MAX_BYTES_PER_JOB",
                defaults.imaging.max_bytes.unwrap_or(u64::MAX),
            )?),
        },
    };
    let staging =
        Staging::new(&optional(env, "STAGING_PREFIX").unwrap_or_else(|| "staging/".into()));
    if staging.prefix == "/" {
        return Err(ConfigError::Invalid {
            name: "STAGING_PREFIX".into(),
            reason: "must name a prefix (the batches' copies must not land at the bucket's root)"
                .into(),
        });
    }
    Ok(crate::intake::Batching { policy, staging })
}

/// The services' pace: `HEALTHLAKE_MAX_OUTSTANDING` (2), `IMAGING_MAX_RUNNING` (100),
/// `IMAGING_START_RATE` (starts a second, 1).
pub fn pace(env: &impl Env) -> Result<crate::ports::admission::Pace, ConfigError> {
    let defaults = crate::ports::admission::Pace::default();
    let rate: f64 = parsed_or(
        env,
        "IMAGING_START_RATE",
        defaults.imaging_starts_per_second,
    )?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(ConfigError::Invalid {
            name: "IMAGING_START_RATE".into(),
            reason: "must be a number of starts a second above 0".into(),
        });
    }
    Ok(crate::ports::admission::Pace {
        healthlake_max_outstanding: parsed_or(
            env,
            "HEALTHLAKE_MAX_OUTSTANDING",
            defaults.healthlake_max_outstanding,
        )?
        .max(1),
        imaging_max_running: parsed_or(env, "IMAGING_MAX_RUNNING", defaults.imaging_max_running)?
            .max(1),
        imaging_starts_per_second: rate,
    })
}

#[cfg(test)]
mod batching_tests {
    use super::*;

    #[test]
    fn batching_and_pace_read_their_variables_and_name_bad_ones() {
        let env = [
            ("BATCH_QUIET_SECONDS", "5"),
            ("IMAGING_MAX_FILES_PER_JOB", "10"),
            ("STAGING_PREFIX", "/work/"),
            ("IMAGING_START_RATE", "0.25"),
        ];
        let read = batching(&env).unwrap();
        assert_eq!(read.policy.quiet, time::Duration::seconds(5));
        assert_eq!(read.policy.max_wait, time::Duration::seconds(300));
        assert_eq!(read.policy.imaging.max_files, 10);
        assert_eq!(read.staging.prefix, "work/");
        let read = pace(&env).unwrap();
        assert_eq!(read.imaging_starts_per_second, 0.25);
        assert_eq!(read.healthlake_max_outstanding, 2);
        for (name, value) in [
            ("BATCH_QUIET_SECONDS", "0"),
            ("BATCH_MAX_WAIT_SECONDS", "soon"),
            ("STAGING_PREFIX", "/"),
        ] {
            let err = batching(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = pace(&[("IMAGING_START_RATE", "0")]).unwrap_err();
        assert!(err.to_string().contains("IMAGING_START_RATE"), "{err}");
    }
}
