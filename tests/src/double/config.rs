//! The double's knobs: accelerated timings, quotas and fault injection. Nothing is pre-seeded:
//! data stores exist only once a client has created them through the API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Accelerated timings of one service's jobs. A job's IN_PROGRESS time follows the model
/// "per-job overhead plus per-file time": `run_overhead + per_file * files` (see
/// [`JobTimings::run_time`]), where `files` is the number of objects listed under the input
/// prefix when the job turns IN_PROGRESS (an export: the NDJSON files it writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTimings {
    /// How long a job stays SUBMITTED before it can run (HealthLake: then QUEUED while another
    /// job of the account runs).
    pub submit_delay: Duration,
    /// The fixed part of a job's IN_PROGRESS time, paid once per job whatever its size.
    pub run_overhead: Duration,
    /// The IN_PROGRESS time each input file adds.
    pub per_file: Duration,
    /// How long after the status turns terminal the output manifest appears (the real manifest
    /// can lag). Zero writes the manifest before the status turns terminal.
    pub manifest_delay: Duration,
}

impl Default for JobTimings {
    /// Accelerated for tests, the same for both services. The real figures they stand for:
    /// - HealthLake: the developer guide's own ListFHIRImportJobs example shows a one-file import
    ///   taking 83 s from SubmitTime to EndTime (SERVICE-FACTS.md, "Throughput facts that shape
    ///   batching"): minutes of fixed cost per job, which `submit_delay + run_overhead` stands for.
    /// - HealthImaging: AWS documents no job duration.
    /// - Per-file time: documented by neither service. Charging each file a little time is a
    ///   modelling choice, so that a batch of 10,000 files is not free; the default keeps small
    ///   test batches fast (1 ms a file is 10 s for a full HealthLake job).
    fn default() -> Self {
        Self {
            submit_delay: Duration::from_millis(50),
            run_overhead: Duration::from_millis(300),
            per_file: Duration::from_millis(1),
            manifest_delay: Duration::ZERO,
        }
    }
}

impl JobTimings {
    /// IN_PROGRESS time of a job over `files` input files: `run_overhead + per_file * files`
    /// (saturating; a `Duration` holds centuries).
    pub fn run_time(&self, files: u64) -> Duration {
        const NANOS_PER_SECOND: u128 = 1_000_000_000;
        let nanos = self.per_file.as_nanos().saturating_mul(u128::from(files));
        let per_files = match u64::try_from(nanos / NANOS_PER_SECOND) {
            Ok(seconds) => Duration::new(
                seconds,
                u32::try_from(nanos % NANOS_PER_SECOND).unwrap_or_default(),
            ),
            Err(_) => Duration::MAX,
        };
        self.run_overhead.saturating_add(per_files)
    }
}

/// Which calls fault injection applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultScope {
    /// Every operation of both services.
    #[default]
    AllOperations,
    /// Only StartFHIRImportJob and StartDICOMImportJob.
    StartOnly,
}

/// Fault injection, changeable at runtime. Shares are probabilities in `0.0..=1.0`, drawn from
/// the double's seeded RNG so a run is reproducible for a given call order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of calls answered with ThrottlingException.
    pub throttle_share: f64,
    /// Share of calls answered with InternalServerException (HTTP 500).
    pub internal_error_share: f64,
    /// Share of jobs that end FAILED with a message instead of reading their input.
    pub job_failure_share: f64,
    /// Share of jobs that, once running, stay IN_PROGRESS and never end: a job whose tracking
    /// must give up.
    pub stall_share: f64,
    pub scope: FaultScope,
    /// Share of job events (EventBridge) that are never put: a lost event.
    pub event_drop_share: f64,
    /// Share of job events put twice: a duplicate.
    pub event_duplicate_share: f64,
    /// Share of job events put `event_delay_ms` after the status change instead of at once.
    pub event_delay_share: f64,
    /// How late a delayed job event is put, in milliseconds.
    pub event_delay_ms: u64,
    /// Share of a job's non-terminal events held back until the job's next event, then put
    /// after it (at share 1: SUBMITTED, COMPLETED, IN_PROGRESS). A terminal event is never held:
    /// nothing follows it. `event_reorder` is accepted as the member's name as well.
    #[serde(alias = "event_reorder")]
    pub event_reorder_share: f64,
}

impl Faults {
    /// Every StartFHIRImportJob and StartDICOMImportJob answered with ThrottlingException.
    pub fn throttling_every_start() -> Faults {
        Faults {
            throttle_share: 1.0,
            scope: FaultScope::StartOnly,
            ..Faults::default()
        }
    }

    /// Every job that starts running ends FAILED with a message.
    pub fn failing_every_job() -> Faults {
        Faults {
            job_failure_share: 1.0,
            ..Faults::default()
        }
    }

    /// Every job that starts running stays IN_PROGRESS for good.
    pub fn stalling_every_job() -> Faults {
        Faults {
            stall_share: 1.0,
            ..Faults::default()
        }
    }

    /// Every job event (EventBridge) is lost: nothing tells a waiting workflow that a job ended.
    pub fn dropping_every_event() -> Faults {
        Faults {
            event_drop_share: 1.0,
            ..Faults::default()
        }
    }

    /// Every job event is put twice.
    pub fn duplicating_every_event() -> Faults {
        Faults {
            event_duplicate_share: 1.0,
            ..Faults::default()
        }
    }

    /// Every job event is put `delay` after the status change it announces.
    pub fn delaying_every_event(delay: Duration) -> Faults {
        Faults {
            event_delay_share: 1.0,
            event_delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            ..Faults::default()
        }
    }

    /// Every non-terminal job event is put after the job's next one: IN_PROGRESS arrives after
    /// COMPLETED.
    pub fn reordering_every_event() -> Faults {
        Faults {
            event_reorder_share: 1.0,
            ..Faults::default()
        }
    }

    /// The same faults with every share clamped into `0.0..=1.0` (NaN as 0).
    pub fn clamped(self) -> Faults {
        let clamp = |share: f64| {
            if share.is_nan() {
                0.0
            } else {
                share.clamp(0.0, 1.0)
            }
        };
        Faults {
            throttle_share: clamp(self.throttle_share),
            internal_error_share: clamp(self.internal_error_share),
            job_failure_share: clamp(self.job_failure_share),
            stall_share: clamp(self.stall_share),
            scope: self.scope,
            event_drop_share: clamp(self.event_drop_share),
            event_duplicate_share: clamp(self.event_duplicate_share),
            event_delay_share: clamp(self.event_delay_share),
            event_delay_ms: self.event_delay_ms,
            event_reorder_share: clamp(self.event_reorder_share),
        }
    }

    /// Checks every share is a probability and the two per-call shares fit in one draw.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let shares = [
            ("throttle_share", self.throttle_share),
            ("internal_error_share", self.internal_error_share),
            ("job_failure_share", self.job_failure_share),
            ("stall_share", self.stall_share),
            ("event_drop_share", self.event_drop_share),
            ("event_duplicate_share", self.event_duplicate_share),
            ("event_delay_share", self.event_delay_share),
            ("event_reorder_share", self.event_reorder_share),
        ];
        for (name, share) in shares {
            if !(0.0..=1.0).contains(&share) {
                return Err(ConfigError::Invalid {
                    variable: name.to_owned(),
                    value: share.to_string(),
                    reason: "must be between 0.0 and 1.0".to_owned(),
                });
            }
        }
        if self.throttle_share + self.internal_error_share > 1.0 {
            return Err(ConfigError::Invalid {
                variable: "throttle_share + internal_error_share".to_owned(),
                value: (self.throttle_share + self.internal_error_share).to_string(),
                reason: "must not exceed 1.0".to_owned(),
            });
        }
        Ok(())
    }
}

/// Everything the double can be told. `Default` is tuned for fast tests; `from_env` reads the
/// `DOUBLE_*` variables the standalone binary documents.
///
/// Not a knob: HealthLake runs ONE job at a time per account and Region, imports and exports
/// alike, and queues the rest FIFO (AWS General Reference, "AWS HealthLake endpoints and quotas":
/// "Concurrent StartFHIRImportJob jobs: 1 per Region, not adjustable", the same for exports; see
/// SERVICE-FACTS.md, "Throughput facts that shape batching"). The double serves one account and
/// Region, so it has one lane for all its HealthLake data stores.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick one.
    pub port: u16,
    /// Region and account that appear in ARNs.
    pub region: String,
    pub account_id: String,
    pub healthlake: JobTimings,
    pub imaging: JobTimings,
    /// StartDICOMImportJob token bucket (documented: 1 per second, burst 2).
    pub imaging_start_rate_per_second: f64,
    pub imaging_start_burst: u32,
    /// Documented quota: 100 concurrent import jobs per data store.
    pub imaging_max_running_jobs_per_datastore: usize,
    /// Documented quotas: 5,000 files per HealthImaging job, 10,000 per HealthLake job.
    pub imaging_max_files_per_job: usize,
    pub healthlake_max_files_per_job: usize,
    /// Documented quota: 10 GB of input per HealthImaging job. A job whose input totals more
    /// ends FAILED with a message.
    pub imaging_max_bytes_per_job: u64,
    /// HealthLake jobs of one data store that may wait (SUBMITTED or QUEUED) behind the running
    /// one; a start beyond it is refused with ThrottlingException and creates no job.
    pub healthlake_max_queued_jobs_per_datastore: usize,
    pub faults: Faults,
    /// Whether the double puts the services' job events on EventBridge's default bus (of the
    /// EventBridge client it is started with). `None`: whenever it has a client (the standalone
    /// binary builds one when an EventBridge endpoint is configured); `Some(false)`: never.
    pub emit_events: Option<bool>,
    /// The access key and secret every request must be SigV4-signed with (both services' APIs
    /// and the FHIR REST `$export`); `None` accepts any request, signed or not.
    pub signing_credentials: Option<(String, String)>,
    /// Seed of the RNG behind fault injection.
    pub rng_seed: u64,
    /// How long a new data store stays CREATING before it turns ACTIVE. AWS documents no
    /// figure (a real HealthLake data store takes minutes); accelerated so that tests wait
    /// through the transition without waiting long.
    pub datastore_create_delay: Duration,
    /// botocore's `data` directory, whose `healthlake` and `medical-imaging` service models every
    /// request is validated against. `None`: `DOUBLE_SERVICE_MODELS`, else the repository's
    /// `.venv` (see `service_model::locate`); the double refuses to start without them.
    pub service_models: Option<std::path::PathBuf>,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        Self {
            port: 0,
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
            healthlake: JobTimings::default(),
            imaging: JobTimings::default(),
            // AWS HealthImaging developer guide, "Service quotas" (throttling table):
            // StartDICOMImportJob 1 TPS, burst 2. One translation of that page shows 0.25 TPS,
            // hence a parameter.
            imaging_start_rate_per_second: 1.0,
            imaging_start_burst: 2,
            // AWS HealthImaging developer guide, "Service quotas": 100 concurrent import jobs
            // per data store (adjustable; 20 in ap-southeast-2).
            imaging_max_running_jobs_per_datastore: 100,
            // AWS HealthImaging developer guide, "Service quotas": 5,000 files per import job.
            imaging_max_files_per_job: 5_000,
            // AWS General Reference, "AWS HealthLake endpoints and quotas": 10,000 files per
            // import job.
            healthlake_max_files_per_job: 10_000,
            // AWS HealthImaging developer guide, "Service quotas": 10 GB per import job. Read as
            // decimal gigabytes (10^10 bytes), the stricter reading: a batch that fits here also
            // fits under 10 GiB.
            imaging_max_bytes_per_job: 10_000_000_000,
            // Unconfirmed: a third-party digest of the HealthLake quota page lists 25 queued
            // jobs per data store; AWS's own pages give no figure (SERVICE-FACTS.md, "Throughput
            // facts that shape batching"). Modelled so that a pipeline cannot assume an endless
            // queue.
            healthlake_max_queued_jobs_per_datastore: 25,
            faults: Faults::default(),
            emit_events: None,
            // In-process doubles (the conformance harness) take any request; the standalone
            // binary, which the local stack runs, verifies every signature (DOUBLE_VERIFY_SIGNATURES).
            signing_credentials: None,
            rng_seed: 0x5EED,
            datastore_create_delay: Duration::from_millis(200),
            service_models: None,
        }
    }
}

/// The port the standalone binary listens on when neither `--port` nor `DOUBLE_PORT` says.
pub const DEFAULT_BINARY_PORT: u16 = 5056;

/// The variables `DoubleConfig::from_env` reads, with what they set (printed by `--help`).
pub const ENV_VARIABLES: &[(&str, &str)] = &[
    (
        "DOUBLE_PORT",
        "port on 127.0.0.1 (default 5056; 0 = any free port)",
    ),
    ("DOUBLE_REGION", "region in ARNs (default us-east-1)"),
    (
        "DOUBLE_ACCOUNT_ID",
        "account in ARNs (default 123456789012)",
    ),
    (
        "DOUBLE_FHIR_SUBMIT_DELAY_MS",
        "HealthLake SUBMITTED time (default 50)",
    ),
    (
        "DOUBLE_FHIR_RUN_MS",
        "HealthLake per-job IN_PROGRESS overhead (default 300)",
    ),
    (
        "DOUBLE_FHIR_PER_FILE_MS",
        "HealthLake IN_PROGRESS time per input file, fractions allowed (default 1)",
    ),
    (
        "DOUBLE_FHIR_MANIFEST_DELAY_MS",
        "HealthLake manifest lag after the terminal status (default 0)",
    ),
    (
        "DOUBLE_IMAGING_SUBMIT_DELAY_MS",
        "HealthImaging SUBMITTED time (default 50)",
    ),
    (
        "DOUBLE_IMAGING_RUN_MS",
        "HealthImaging per-job IN_PROGRESS overhead (default 300)",
    ),
    (
        "DOUBLE_IMAGING_PER_FILE_MS",
        "HealthImaging IN_PROGRESS time per input file, fractions allowed (default 1)",
    ),
    (
        "DOUBLE_IMAGING_MANIFEST_DELAY_MS",
        "HealthImaging manifest lag after the terminal status (default 0)",
    ),
    (
        "DOUBLE_IMAGING_START_RATE",
        "StartDICOMImportJob refill rate per second (default 1)",
    ),
    (
        "DOUBLE_IMAGING_START_BURST",
        "StartDICOMImportJob burst (default 2)",
    ),
    (
        "DOUBLE_IMAGING_MAX_RUNNING_JOBS",
        "running HealthImaging jobs per data store (default 100)",
    ),
    (
        "DOUBLE_IMAGING_MAX_FILES_PER_JOB",
        "files per HealthImaging job (default 5000)",
    ),
    (
        "DOUBLE_IMAGING_MAX_BYTES_PER_JOB",
        "input bytes per HealthImaging job (default 10000000000)",
    ),
    (
        "DOUBLE_FHIR_MAX_FILES_PER_JOB",
        "files per HealthLake job (default 10000)",
    ),
    (
        "DOUBLE_FHIR_MAX_QUEUED_JOBS",
        "HealthLake jobs waiting per data store behind the account's one running job (default 25)",
    ),
    (
        "DOUBLE_THROTTLE_SHARE",
        "share of calls answered ThrottlingException (default 0)",
    ),
    (
        "DOUBLE_INTERNAL_ERROR_SHARE",
        "share of calls answered InternalServerException (default 0)",
    ),
    (
        "DOUBLE_JOB_FAILURE_SHARE",
        "share of jobs that end FAILED (default 0)",
    ),
    (
        "DOUBLE_STALL_SHARE",
        "share of jobs that stay IN_PROGRESS for good (default 0)",
    ),
    (
        "DOUBLE_FAULT_SCOPE",
        "`all` operations (default) or `start` operations only",
    ),
    (
        "DOUBLE_EMIT_EVENTS",
        "put the services' job events on EventBridge's default bus: true, false (default: when an EventBridge endpoint is configured)",
    ),
    (
        "DOUBLE_EVENT_DROP_SHARE",
        "share of job events never put (default 0)",
    ),
    (
        "DOUBLE_EVENT_DUPLICATE_SHARE",
        "share of job events put twice (default 0)",
    ),
    (
        "DOUBLE_EVENT_DELAY_SHARE",
        "share of job events put DOUBLE_EVENT_DELAY_MS late (default 0)",
    ),
    (
        "DOUBLE_EVENT_DELAY_MS",
        "how late a delayed job event is put (default 0)",
    ),
    (
        "DOUBLE_EVENT_REORDER_SHARE",
        "share of non-terminal job events put after the job's next event (default 0)",
    ),
    (
        "DOUBLE_VERIFY_SIGNATURES",
        "`true` (default) to refuse requests not SigV4-signed with DOUBLE_ACCESS_KEY_ID / DOUBLE_SECRET_ACCESS_KEY (default testing / testing), as AWS does; `false` to take any",
    ),
    (
        "DOUBLE_ACCESS_KEY_ID",
        "the access key requests must be signed with (default testing)",
    ),
    (
        "DOUBLE_SECRET_ACCESS_KEY",
        "its secret (default testing)",
    ),
    (
        "DOUBLE_SEED",
        "seed of the fault-injection RNG (default 24301)",
    ),
    (
        "DOUBLE_SERVICE_MODELS",
        "botocore's data directory, whose service models requests are validated against (default: the repository's .venv; `make venv` installs it)",
    ),
    (
        "DOUBLE_DATASTORE_CREATE_MS",
        "how long a new data store stays CREATING before it turns ACTIVE (default 200)",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable}={value:?}: {reason}")]
    Invalid {
        variable: String,
        value: String,
        reason: String,
    },
}

impl DoubleConfig {
    /// Reads the `DOUBLE_*` variables; unset ones keep the defaults, except the port (5056).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `from_env` over any lookup, so it can be tested without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Lookup(&lookup);
        let defaults = Self::default();
        let config = Self {
            port: env.parse("DOUBLE_PORT")?.unwrap_or(DEFAULT_BINARY_PORT),
            region: env.string("DOUBLE_REGION").unwrap_or(defaults.region),
            account_id: env
                .string("DOUBLE_ACCOUNT_ID")
                .unwrap_or(defaults.account_id),
            healthlake: JobTimings {
                submit_delay: env
                    .millis("DOUBLE_FHIR_SUBMIT_DELAY_MS")?
                    .unwrap_or(defaults.healthlake.submit_delay),
                run_overhead: env
                    .millis("DOUBLE_FHIR_RUN_MS")?
                    .unwrap_or(defaults.healthlake.run_overhead),
                per_file: env
                    .fractional_millis("DOUBLE_FHIR_PER_FILE_MS")?
                    .unwrap_or(defaults.healthlake.per_file),
                manifest_delay: env
                    .millis("DOUBLE_FHIR_MANIFEST_DELAY_MS")?
                    .unwrap_or(defaults.healthlake.manifest_delay),
            },
            imaging: JobTimings {
                submit_delay: env
                    .millis("DOUBLE_IMAGING_SUBMIT_DELAY_MS")?
                    .unwrap_or(defaults.imaging.submit_delay),
                run_overhead: env
                    .millis("DOUBLE_IMAGING_RUN_MS")?
                    .unwrap_or(defaults.imaging.run_overhead),
                per_file: env
                    .fractional_millis("DOUBLE_IMAGING_PER_FILE_MS")?
                    .unwrap_or(defaults.imaging.per_file),
                manifest_delay: env
                    .millis("DOUBLE_IMAGING_MANIFEST_DELAY_MS")?
                    .unwrap_or(defaults.imaging.manifest_delay),
            },
            imaging_start_rate_per_second: env
                .parse("DOUBLE_IMAGING_START_RATE")?
                .unwrap_or(defaults.imaging_start_rate_per_second),
            imaging_start_burst: env
                .parse("DOUBLE_IMAGING_START_BURST")?
                .unwrap_or(defaults.imaging_start_burst),
            imaging_max_running_jobs_per_datastore: env
                .parse("DOUBLE_IMAGING_MAX_RUNNING_JOBS")?
                .unwrap_or(defaults.imaging_max_running_jobs_per_datastore),
            imaging_max_files_per_job: env
                .parse("DOUBLE_IMAGING_MAX_FILES_PER_JOB")?
                .unwrap_or(defaults.imaging_max_files_per_job),
            healthlake_max_files_per_job: env
                .parse("DOUBLE_FHIR_MAX_FILES_PER_JOB")?
                .unwrap_or(defaults.healthlake_max_files_per_job),
            imaging_max_bytes_per_job: env
                .parse("DOUBLE_IMAGING_MAX_BYTES_PER_JOB")?
                .unwrap_or(defaults.imaging_max_bytes_per_job),
            healthlake_max_queued_jobs_per_datastore: env
                .parse("DOUBLE_FHIR_MAX_QUEUED_JOBS")?
                .unwrap_or(defaults.healthlake_max_queued_jobs_per_datastore),
            faults: Faults {
                throttle_share: env.parse("DOUBLE_THROTTLE_SHARE")?.unwrap_or(0.0),
                internal_error_share: env.parse("DOUBLE_INTERNAL_ERROR_SHARE")?.unwrap_or(0.0),
                job_failure_share: env.parse("DOUBLE_JOB_FAILURE_SHARE")?.unwrap_or(0.0),
                stall_share: env.parse("DOUBLE_STALL_SHARE")?.unwrap_or(0.0),
                event_drop_share: env.parse("DOUBLE_EVENT_DROP_SHARE")?.unwrap_or(0.0),
                event_duplicate_share: env.parse("DOUBLE_EVENT_DUPLICATE_SHARE")?.unwrap_or(0.0),
                event_delay_share: env.parse("DOUBLE_EVENT_DELAY_SHARE")?.unwrap_or(0.0),
                event_delay_ms: env.parse("DOUBLE_EVENT_DELAY_MS")?.unwrap_or(0),
                event_reorder_share: env.parse("DOUBLE_EVENT_REORDER_SHARE")?.unwrap_or(0.0),
                scope: match env.string("DOUBLE_FAULT_SCOPE").as_deref() {
                    None | Some("all") => FaultScope::AllOperations,
                    Some("start") => FaultScope::StartOnly,
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            variable: "DOUBLE_FAULT_SCOPE".to_owned(),
                            value: other.to_owned(),
                            reason: "expected `all` or `start`".to_owned(),
                        })
                    }
                },
            },
            emit_events: env.flag("DOUBLE_EMIT_EVENTS")?,
            signing_credentials: match env.parse::<bool>("DOUBLE_VERIFY_SIGNATURES")? {
                Some(false) => None,
                None | Some(true) => Some((
                    env.string("DOUBLE_ACCESS_KEY_ID")
                        .unwrap_or_else(|| "testing".to_owned()),
                    env.string("DOUBLE_SECRET_ACCESS_KEY")
                        .unwrap_or_else(|| "testing".to_owned()),
                )),
            },
            rng_seed: env.parse("DOUBLE_SEED")?.unwrap_or(defaults.rng_seed),
            datastore_create_delay: env
                .millis("DOUBLE_DATASTORE_CREATE_MS")?
                .unwrap_or(defaults.datastore_create_delay),
            service_models: env
                .string("DOUBLE_SERVICE_MODELS")
                .map(std::path::PathBuf::from),
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings the double cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.faults.validate()?;
        let invalid = |variable: &str, value: String, reason: &str| ConfigError::Invalid {
            variable: variable.to_owned(),
            value,
            reason: reason.to_owned(),
        };
        if !(self.imaging_start_rate_per_second.is_finite()
            && self.imaging_start_rate_per_second >= 0.0)
        {
            return Err(invalid(
                "imaging_start_rate_per_second",
                self.imaging_start_rate_per_second.to_string(),
                "must be a finite number >= 0",
            ));
        }
        if self.imaging_start_burst == 0 {
            return Err(invalid(
                "imaging_start_burst",
                "0".to_owned(),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

struct Lookup<'a, F>(&'a F);

/// The functions' own reading of variables (trimmed, blank as unset, comma lists), so the double
/// reads its knobs the way the functions read theirs.
impl<F: Fn(&str) -> Option<String>> healthimport::config::Env for Lookup<'_, F> {
    fn var(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup<'_, F> {
    fn string(&self, name: &str) -> Option<String> {
        healthimport::config::optional(self, name)
    }

    fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.string(name)
            .map(|value| {
                value.parse().map_err(|err: T::Err| ConfigError::Invalid {
                    variable: name.to_owned(),
                    value: value.clone(),
                    reason: err.to_string(),
                })
            })
            .transpose()
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
    fn flag(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(value) = self.string(name) else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::Invalid {
                variable: name.to_owned(),
                value,
                reason: "expected true or false".to_owned(),
            }),
        }
    }

    fn millis(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.parse::<u64>(name)?.map(Duration::from_millis))
    }

    /// Milliseconds that may have a fraction (`0.25`): per-file times well under a millisecond.
    fn fractional_millis(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(millis) = self.parse::<f64>(name)? else {
            return Ok(None);
        };
        Duration::try_from_secs_f64(millis / 1000.0)
            .map(Some)
            .map_err(|err| ConfigError::Invalid {
                variable: name.to_owned(),
                value: millis.to_string(),
                reason: format!("not a duration in milliseconds: {err}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_names_bad_variables() {
        let config = DoubleConfig::from_lookup(|name| match name {
            "DOUBLE_IMAGING_START_BURST" => Some("5".to_owned()),
            "DOUBLE_FAULT_SCOPE" => Some("start".to_owned()),
            "DOUBLE_DATASTORE_CREATE_MS" => Some("1500".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.port, DEFAULT_BINARY_PORT);
        assert_eq!(config.imaging_start_burst, 5);
        assert_eq!(config.faults.scope, FaultScope::StartOnly);
        assert_eq!(config.datastore_create_delay, Duration::from_millis(1500));

        let err = DoubleConfig::from_lookup(|name| {
            (name == "DOUBLE_THROTTLE_SHARE").then(|| "1.5".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("throttle_share"), "{err}");
        let err = DoubleConfig::from_lookup(|name| (name == "DOUBLE_PORT").then(|| "x".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("DOUBLE_PORT"), "{err}");
    }

    #[test]
    fn throughput_knobs_come_from_the_environment() {
        let config = DoubleConfig::from_lookup(|name| {
            let value = match name {
                "DOUBLE_FHIR_RUN_MS" => "83000",
                "DOUBLE_FHIR_PER_FILE_MS" => "0.25",
                "DOUBLE_IMAGING_PER_FILE_MS" => "4",
                "DOUBLE_FHIR_MAX_QUEUED_JOBS" => "3",
                "DOUBLE_IMAGING_MAX_BYTES_PER_JOB" => "42",
                _ => return None,
            };
            Some(value.to_owned())
        })
        .unwrap();
        assert_eq!(config.healthlake.run_overhead, Duration::from_secs(83));
        assert_eq!(config.healthlake.per_file, Duration::from_micros(250));
        assert_eq!(config.imaging.per_file, Duration::from_millis(4));
        assert_eq!(config.healthlake_max_queued_jobs_per_datastore, 3);
        assert_eq!(config.imaging_max_bytes_per_job, 42);
        assert_eq!(
            config.healthlake.run_time(4),
            Duration::from_millis(83_001),
            "overhead plus per-file time"
        );

        let defaults = DoubleConfig::default();
        assert_eq!(defaults.healthlake_max_queued_jobs_per_datastore, 25);
        assert_eq!(defaults.imaging_max_bytes_per_job, 10_000_000_000);
        assert_eq!(defaults.imaging.run_time(0), Duration::from_millis(300));

        for bad in ["-1", "x", "NaN"] {
            let err = DoubleConfig::from_lookup(|name| {
                (name == "DOUBLE_IMAGING_PER_FILE_MS").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert!(
                err.to_string().contains("DOUBLE_IMAGING_PER_FILE_MS"),
                "{err}"
            );
        }
    }

    #[test]
    fn job_events_and_their_faults_come_from_the_environment() {
        let defaults = DoubleConfig::from_lookup(|_| None).unwrap();
        assert_eq!(
            defaults.emit_events, None,
            "on when an endpoint is available"
        );
        let config = DoubleConfig::from_lookup(|name| {
            let value = match name {
                "DOUBLE_EMIT_EVENTS" => "FALSE",
                "DOUBLE_EVENT_DROP_SHARE" => "0.1",
                "DOUBLE_EVENT_DUPLICATE_SHARE" => "0.2",
                "DOUBLE_EVENT_DELAY_SHARE" => "0.3",
                "DOUBLE_EVENT_DELAY_MS" => "1500",
                "DOUBLE_EVENT_REORDER_SHARE" => "1",
                _ => return None,
            };
            Some(value.to_owned())
        })
        .unwrap();
        assert_eq!(config.emit_events, Some(false));
        assert_eq!(config.faults.event_drop_share, 0.1);
        assert_eq!(config.faults.event_duplicate_share, 0.2);
        assert_eq!(config.faults.event_delay_share, 0.3);
        assert_eq!(config.faults.event_delay_ms, 1500);
        assert_eq!(config.faults.event_reorder_share, 1.0);
        let on = DoubleConfig::from_lookup(|name| {
            (name == "DOUBLE_EMIT_EVENTS").then(|| "true".to_owned())
        })
        .unwrap();
        assert_eq!(on.emit_events, Some(true));

        for (name, bad) in [
            ("DOUBLE_EMIT_EVENTS", "maybe"),
            ("DOUBLE_EVENT_DROP_SHARE", "2"),
            ("DOUBLE_EVENT_DELAY_MS", "-1"),
        ] {
            let err =
                DoubleConfig::from_lookup(|variable| (variable == name).then(|| bad.to_owned()))
                    .unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.contains(name)
                    || shown.contains(&name.to_ascii_lowercase()["double_".len()..]),
                "{shown}"
            );
        }
    }

    #[test]
    fn event_faults_read_as_json_with_either_name_for_reordering() {
        let faults: Faults =
            serde_json::from_str(r#"{"event_reorder": 1.0, "event_delay_ms": 20}"#).unwrap();
        assert_eq!(faults.event_reorder_share, 1.0);
        assert_eq!(faults.event_delay_ms, 20);
        assert_eq!(faults.throttle_share, 0.0);
        let faults: Faults = serde_json::from_str(r#"{"event_reorder_share": 0.5}"#).unwrap();
        assert_eq!(faults.event_reorder_share, 0.5);
        let clamped = Faults {
            event_drop_share: 3.0,
            event_delay_share: f64::NAN,
            ..Faults::default()
        }
        .clamped();
        assert_eq!(clamped.event_drop_share, 1.0);
        assert_eq!(clamped.event_delay_share, 0.0);
    }

    #[test]
    fn every_variable_read_is_listed_for_help() {
        let read = std::cell::RefCell::new(Vec::new());
        DoubleConfig::from_lookup(|name| {
            read.borrow_mut().push(name.to_owned());
            None
        })
        .unwrap();
        let mut read = read.into_inner();
        read.sort();
        read.dedup();
        let mut listed: Vec<String> = ENV_VARIABLES
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        listed.sort();
        assert_eq!(read, listed);
    }
}
