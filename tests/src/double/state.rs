//! The double's memory: data stores, jobs, client tokens, the start throttle, fault injection
//! and the statistics tests assert on. One mutex guards it all; it is never held across an
//! `.await`, so every decision (throttle, idempotency, quota, queueing) is atomic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use super::config::{DoubleConfig, FaultScope, Faults, JobTimings};
use super::events::{ArnScope, EventSink, JobEvent};
use super::output::JobCounts;
use super::validate::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    HealthLake,
    Imaging,
}

/// The operations the double serves, by wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    StartFhirImportJob,
    DescribeFhirImportJob,
    ListFhirImportJobs,
    StartFhirExportJob,
    DescribeFhirExportJob,
    ListFhirExportJobs,
    /// The FHIR REST `POST <endpoint>$export`.
    FhirRestExport,
    CreateFhirDatastore,
    DescribeFhirDatastore,
    ListFhirDatastores,
    StartDicomImportJob,
    GetDicomImportJob,
    ListDicomImportJobs,
    CreateDatastore,
    GetDatastore,
    ListDatastores,
}

impl Operation {
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::StartFhirImportJob => "StartFHIRImportJob",
            Self::DescribeFhirImportJob => "DescribeFHIRImportJob",
            Self::ListFhirImportJobs => "ListFHIRImportJobs",
            Self::StartFhirExportJob => "StartFHIRExportJob",
            Self::DescribeFhirExportJob => "DescribeFHIRExportJob",
            Self::ListFhirExportJobs => "ListFHIRExportJobs",
            Self::FhirRestExport => "$export",
            Self::CreateFhirDatastore => "CreateFHIRDatastore",
            Self::DescribeFhirDatastore => "DescribeFHIRDatastore",
            Self::ListFhirDatastores => "ListFHIRDatastores",
            Self::StartDicomImportJob => "StartDICOMImportJob",
            Self::GetDicomImportJob => "GetDICOMImportJob",
            Self::ListDicomImportJobs => "ListDICOMImportJobs",
            Self::CreateDatastore => "CreateDatastore",
            Self::GetDatastore => "GetDatastore",
            Self::ListDatastores => "ListDatastores",
        }
    }

    /// The HealthLake operation an `X-Amz-Target: HealthLake.<name>` header names.
    pub fn from_healthlake_name(name: &str) -> Option<Self> {
        [
            Self::StartFhirImportJob,
            Self::DescribeFhirImportJob,
            Self::ListFhirImportJobs,
            Self::StartFhirExportJob,
            Self::DescribeFhirExportJob,
            Self::ListFhirExportJobs,
            Self::CreateFhirDatastore,
            Self::DescribeFhirDatastore,
            Self::ListFhirDatastores,
        ]
        .into_iter()
        .find(|op| op.wire_name() == name)
    }

    fn is_start(self) -> bool {
        matches!(
            self,
            Self::StartFhirImportJob
                | Self::StartFhirExportJob
                | Self::FhirRestExport
                | Self::StartDicomImportJob
        )
    }
}

/// What the double has seen and decided, for tests and `GET /_double/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DoubleStats {
    /// Calls received, by operation wire name (faulted ones included).
    pub calls_by_operation: BTreeMap<String, u64>,
    /// Start calls that passed validation and named an existing data store.
    pub fhir_start_calls: u64,
    pub imaging_start_calls: u64,
    pub fhir_jobs_created: u64,
    /// FHIR export jobs created (a replayed ClientToken creates none), `$export` ones included.
    pub fhir_export_jobs_created: u64,
    /// Of those, the ones `POST $export` created (with `_since`, when given).
    pub fhir_rest_exports_created: u64,
    pub imaging_jobs_created: u64,
    pub datastores_created: u64,
    /// Every ThrottlingException answered: injected ones, the start rate limit's and the full
    /// HealthLake queue's.
    pub throttled_answers: u64,
    /// StartDICOMImportJob calls refused by the token bucket.
    pub rate_limited_starts: u64,
    pub internal_error_answers: u64,
    /// StartDICOMImportJob calls refused by the running-jobs quota.
    pub quota_refusals: u64,
    /// StartFHIRImportJob / StartFHIRExportJob / `$export` calls refused (ThrottlingException)
    /// because the data store already had `healthlake_max_queued_jobs_per_datastore` jobs
    /// waiting.
    pub fhir_queue_refusals: u64,
    pub validation_errors: u64,
    pub not_found_errors: u64,
    /// Starts answered with the job an earlier call with the same ClientToken created.
    pub idempotent_replays: u64,
    /// Start calls per `<datastoreId>/<clientToken>` that passed validation and named an
    /// existing data store (throttled ones included).
    pub start_calls_by_client_token: BTreeMap<String, u64>,
    /// Jobs failed on purpose by `job_failure_share`.
    pub injected_job_failures: u64,
    /// Job events announced (one per status change), by detail-type, before event faults.
    pub events_by_detail_type: BTreeMap<String, u64>,
    /// Job event entries EventBridge accepted (each copy of a duplicate counts).
    pub events_put: u64,
    /// Job event entries EventBridge refused or that could not be sent (each is logged; the job
    /// goes on regardless).
    pub event_put_failures: u64,
    /// Job events never put (`event_drop_share`).
    pub events_dropped: u64,
    /// Job events put twice (`event_duplicate_share`).
    pub events_duplicated: u64,
    /// Job events put late (`event_delay_share`).
    pub events_delayed: u64,
    /// Job events held back until the job's next event (`event_reorder_share`).
    pub events_reordered: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    Completed,
    /// HealthLake only: some resources failed.
    CompletedWithErrors,
    Failed,
}

#[derive(Debug, Clone)]
pub enum JobPhase {
    Submitted,
    InProgress {
        started: Instant,
    },
    Ended {
        outcome: Terminal,
        ended_at: SystemTime,
        message: Option<String>,
    },
}

/// A HealthLake job imports into its data store or exports all of it; both share the account's
/// one lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JobKind {
    #[default]
    Import,
    Export,
}

/// What a start request asks for, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kind: JobKind,
    pub datastore_id: String,
    pub name: Option<String>,
    pub role_arn: String,
    /// Empty for an export.
    pub input_s3_uri: String,
    pub output_s3_uri: String,
    /// HealthLake's output KmsKeyId.
    pub kms_key_id: Option<String>,
    /// An `$export` with `_since`: only resources changed at or after it are exported.
    pub since: Option<SystemTime>,
    pub validation_level: Option<String>,
    /// HealthImaging's `inputOwnerAccountId`, as given.
    pub input_owner_account_id: Option<String>,
    pub client_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub service: Service,
    pub id: String,
    pub request: JobRequest,
    pub submitted_at: SystemTime,
    pub submitted_instant: Instant,
    /// HealthLake: waiting behind the account's running job.
    pub waiting_in_queue: bool,
    pub phase: JobPhase,
    /// Known once the input has been read.
    pub counts: Option<JobCounts>,
    /// The job's IN_PROGRESS time, `run_overhead + per_file * files`: known once its input has
    /// been listed (an export: once it knows what it writes).
    pub run_time: Option<Duration>,
    /// Decided when the job starts running, from `job_failure_share`.
    pub injected_failure: bool,
    /// Decided when the job starts running, from `stall_share`: it never ends.
    pub stalled: bool,
    /// HealthLake: its QUEUED event has been announced.
    pub queued_announced: bool,
}

impl Job {
    /// The wire status now. QUEUED is derived rather than stored: a waiting HealthLake job turns
    /// QUEUED once its submit delay has passed, and leaves the queue straight to IN_PROGRESS.
    pub fn status(&self, timings: &JobTimings) -> &'static str {
        match &self.phase {
            JobPhase::Submitted
                if self.waiting_in_queue
                    && self.submitted_instant.elapsed() >= timings.submit_delay =>
            {
                "QUEUED"
            }
            JobPhase::Submitted => "SUBMITTED",
            JobPhase::InProgress { .. } => "IN_PROGRESS",
            JobPhase::Ended { outcome, .. } => match outcome {
                Terminal::Completed => "COMPLETED",
                Terminal::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
                Terminal::Failed => "FAILED",
            },
        }
    }

    pub fn is_running(&self) -> bool {
        !matches!(self.phase, JobPhase::Ended { .. })
    }

    pub fn ended_at(&self) -> Option<SystemTime> {
        match &self.phase {
            JobPhase::Ended { ended_at, .. } => Some(*ended_at),
            _ => None,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match &self.phase {
            JobPhase::Ended { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    /// Counters as a progress report shows them: growing with the share of its run time spent
    /// IN_PROGRESS (zero until the input has been listed).
    pub fn progress(&self) -> Option<JobCounts> {
        match &self.phase {
            JobPhase::Submitted => None,
            JobPhase::InProgress { started } => {
                let fraction = match self.run_time {
                    None => 0.0,
                    Some(run_time) if run_time.is_zero() => 1.0,
                    Some(run_time) => {
                        (started.elapsed().as_secs_f64() / run_time.as_secs_f64()).min(1.0)
                    }
                };
                Some(
                    self.counts
                        .as_ref()
                        .map(|counts| counts.scaled(fraction))
                        .unwrap_or_default(),
                )
            }
            JobPhase::Ended { .. } => self.counts.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Datastore {
    pub id: String,
    pub name: Option<String>,
    pub created_at: SystemTime,
    /// When it turns from CREATING to ACTIVE (`datastore_create_delay` after its creation).
    pub active_from: Instant,
    /// The members of its create request that Describe / Get answer with, as given (validated
    /// against the service model before they got here).
    pub described_members: serde_json::Map<String, serde_json::Value>,
    /// HealthLake: the resources its completed imports stored, by type then id, with when each
    /// was last written: what an export writes out.
    pub resources: BTreeMap<String, BTreeMap<String, SystemTime>>,
}

/// StartDICOMImportJob's documented throttle: a token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_second: f64,
    capacity: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Self {
            rate_per_second,
            capacity: f64::from(burst),
            tokens: f64::from(burst),
            refilled_at: Instant::now(),
        }
    }

    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled_at).as_secs_f64() * self.rate_per_second;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// HealthLake's one lane per account and Region: the job running (or about to, during its
/// submit delay), then the FIFO queue behind it, imports and exports of every data store alike.
#[derive(Debug, Default)]
pub struct Lane {
    pub running: Option<String>,
    pub waiting: VecDeque<String>,
}

/// Whether a start created a job (which then needs a runner) or replayed an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Created { job_id: String, run_now: bool },
    Replayed { job_id: String },
}

impl Started {
    pub fn job_id(&self) -> &str {
        match self {
            Self::Created { job_id, .. } | Self::Replayed { job_id } => job_id,
        }
    }
}

impl Datastore {
    /// The wire status now: CREATING, then ACTIVE once `active_from` has passed. Derived rather
    /// than stored, as a job's QUEUED is, so no task has to flip it.
    pub fn status(&self) -> &'static str {
        if Instant::now() >= self.active_from {
            "ACTIVE"
        } else {
            "CREATING"
        }
    }
}

pub struct State {
    pub datastores: HashMap<(Service, String), Datastore>,
    datastore_tokens: HashMap<(Service, String), String>,
    pub jobs: HashMap<(Service, String), Job>,
    /// (service, datastore id, client token) → job id.
    job_tokens: HashMap<(Service, String, String), String>,
    start_bucket: TokenBucket,
    /// HealthLake's account-wide lane.
    pub fhir_lane: Lane,
    pub faults: Faults,
    fault_rng: fastrand::Rng,
    /// The event faults' own draws, so that turning them on leaves the other faults' sequence
    /// alone.
    event_rng: fastrand::Rng,
    pub stats: DoubleStats,
    imaging_max_running_jobs: usize,
    fhir_max_queued_jobs: usize,
    /// Where job events go; `None` while events are off.
    event_sink: Option<EventSink>,
    healthlake_timings: JobTimings,
    imaging_timings: JobTimings,
    /// Region and account of the data store ARNs in job events.
    arn_scope: ArnScope,
    datastore_create_delay: Duration,
}

/// What the event faults do to one job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFate {
    /// Never put.
    Dropped,
    /// Put now, once or twice.
    Now { copies: usize },
    /// Put `delay` later, once or twice.
    Delayed { copies: usize, delay: Duration },
    /// Held until the job's next event, then put after it.
    Held { copies: usize },
}

/// Mixed into `rng_seed` for the event faults' RNG.
const EVENT_RNG_SALT: u64 = 0xE7E7_E7E7_E7E7_E7E7;

/// A fresh id: 32 lowercase hex characters, which fits every id pattern of both services.
pub fn new_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

impl State {
    pub fn new(config: &DoubleConfig) -> Self {
        Self {
            datastores: HashMap::new(),
            datastore_tokens: HashMap::new(),
            jobs: HashMap::new(),
            job_tokens: HashMap::new(),
            start_bucket: TokenBucket::new(
                config.imaging_start_rate_per_second,
                config.imaging_start_burst,
            ),
            fhir_lane: Lane::default(),
            faults: config.faults.clone(),
            fault_rng: fastrand::Rng::with_seed(config.rng_seed),
            event_rng: fastrand::Rng::with_seed(config.rng_seed ^ EVENT_RNG_SALT),
            stats: DoubleStats::default(),
            imaging_max_running_jobs: config.imaging_max_running_jobs_per_datastore,
            fhir_max_queued_jobs: config.healthlake_max_queued_jobs_per_datastore,
            event_sink: None,
            healthlake_timings: config.healthlake.clone(),
            imaging_timings: config.imaging.clone(),
            arn_scope: ArnScope {
                region: config.region.clone(),
                account_id: config.account_id.clone(),
            },
            datastore_create_delay: config.datastore_create_delay,
        }
    }

    /// Counts the call and draws its fate from the fault-injection RNG.
    pub fn admit(&mut self, operation: Operation) -> Result<(), ApiError> {
        *self
            .stats
            .calls_by_operation
            .entry(operation.wire_name().to_owned())
            .or_default() += 1;
        let in_scope = match self.faults.scope {
            FaultScope::AllOperations => true,
            FaultScope::StartOnly => operation.is_start(),
        };
        let Faults {
            throttle_share,
            internal_error_share,
            ..
        } = self.faults;
        // No draw when no fault is configured, so enabling faults later starts from the seed.
        if !in_scope || throttle_share + internal_error_share <= 0.0 {
            return Ok(());
        }
        let draw = self.fault_rng.f64();
        if draw < throttle_share {
            self.stats.throttled_answers += 1;
            Err(ApiError::Throttling("Rate exceeded".to_owned()))
        } else if draw < throttle_share + internal_error_share {
            self.stats.internal_error_answers += 1;
            Err(ApiError::InternalServer(
                "An internal error occurred (injected by the service double)".to_owned(),
            ))
        } else {
            Ok(())
        }
    }

    /// Draws whether a job that starts running fails on purpose.
    pub fn roll_job_failure(&mut self) -> bool {
        let share = self.faults.job_failure_share;
        share > 0.0 && self.fault_rng.f64() < share
    }

    /// Draws whether a job that starts running stalls for good.
    pub fn roll_stall(&mut self) -> bool {
        let share = self.faults.stall_share;
        share > 0.0 && self.fault_rng.f64() < share
    }

    /// Keeps the statistics of error answers in one place.
    pub fn record_error(&mut self, error: &ApiError) {
        if error.is_validation() {
            self.stats.validation_errors += 1;
        } else if matches!(error, ApiError::ResourceNotFound(_)) {
            self.stats.not_found_errors += 1;
        }
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Creates a data store (CREATING for `datastore_create_delay`, then ACTIVE), or returns the
    /// one this ClientToken created.
    pub fn create_datastore(
        &mut self,
        service: Service,
        name: Option<String>,
        client_token: Option<String>,
        described_members: serde_json::Map<String, serde_json::Value>,
    ) -> Datastore {
        if let Some(token) = &client_token {
            let existing = self
                .datastore_tokens
                .get(&(service, token.clone()))
                .and_then(|id| self.datastores.get(&(service, id.clone())));
            if let Some(datastore) = existing {
                return datastore.clone();
            }
        }
        let id = new_id();
        if let Some(token) = &client_token {
            self.datastore_tokens
                .insert((service, token.clone()), id.clone());
        }
        self.stats.datastores_created += 1;
        let datastore = Datastore {
            id: id.clone(),
            name,
            created_at: SystemTime::now(),
            active_from: Instant::now() + self.datastore_create_delay,
            described_members,
            resources: BTreeMap::new(),
        };
        self.datastores.insert((service, id), datastore.clone());
        datastore
    }

    /// Ends the CREATING phase of every data store now: a test holds data stores in CREATING
    /// (a long `datastore_create_delay`) for exactly as long as it needs, whatever the machine's
    /// speed.
    pub fn finish_creating_datastores(&mut self) {
        let now = Instant::now();
        for datastore in self.datastores.values_mut() {
            datastore.active_from = datastore.active_from.min(now);
        }
    }

    /// The data stores of a service, oldest first: what the List operations page through.
    pub fn datastores_of(&self, service: Service) -> Vec<&Datastore> {
        let mut datastores: Vec<&Datastore> = self
            .datastores
            .iter()
            .filter(|((of, _), _)| *of == service)
            .map(|(_, datastore)| datastore)
            .collect();
        datastores.sort_by_key(|datastore| (datastore.created_at, datastore.id.clone()));
        datastores
    }

    /// The data store a job is started into: it must exist and be ACTIVE, as both services'
    /// Start operations say ("into an ACTIVE data store"). Neither documents the error for one
    /// still CREATING, so each answers with the error of its Start operation's model that fits:
    /// - HealthLake: ValidationException. Its model has a ConflictException worded for exactly
    ///   this ("The data store is in a transition state"), but lists it for no Start operation,
    ///   so an SDK would not parse it as a Start error; the request names a data store that
    ///   cannot take it, which is a validation failure.
    /// - HealthImaging: ConflictException (409), which its model lists for StartDICOMImportJob
    ///   ("can cause an inconsistent state").
    fn active_datastore(&self, service: Service, id: &str) -> Result<&Datastore, ApiError> {
        let datastore = self.datastore(service, id)?;
        let status = datastore.status();
        if status == "ACTIVE" {
            return Ok(datastore);
        }
        let message = format!("Datastore {id} is {status}, not ACTIVE: it cannot start jobs yet");
        Err(match service {
            Service::HealthLake => ApiError::Validation(message),
            Service::Imaging => ApiError::Conflict(message),
        })
    }

    pub fn datastore(&self, service: Service, id: &str) -> Result<&Datastore, ApiError> {
        self.datastores
            .get(&(service, id.to_owned()))
            .ok_or_else(|| ApiError::ResourceNotFound(format!("Datastore {id} does not exist")))
    }

    pub fn job(
        &self,
        service: Service,
        datastore_id: &str,
        job_id: &str,
    ) -> Result<&Job, ApiError> {
        self.datastore(service, datastore_id)?;
        self.jobs
            .get(&(service, job_id.to_owned()))
            .filter(|job| job.request.datastore_id == datastore_id)
            .ok_or_else(|| {
                ApiError::ResourceNotFound(format!(
                    "Import job {job_id} does not exist in datastore {datastore_id}"
                ))
            })
    }

    /// The jobs of a data store in submission order.
    pub fn jobs_of(&self, service: Service, datastore_id: &str) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = self
            .jobs
            .values()
            .filter(|job| job.service == service && job.request.datastore_id == datastore_id)
            .collect();
        jobs.sort_by_key(|job| job.submitted_instant);
        jobs
    }

    /// Counts a start that named an existing data store, before throttling decides on it.
    fn count_start(&mut self, service: Service, request: &JobRequest) {
        match service {
            Service::HealthLake => self.stats.fhir_start_calls += 1,
            Service::Imaging => self.stats.imaging_start_calls += 1,
        }
        if let Some(token) = &request.client_token {
            let key = format!("{}/{token}", request.datastore_id);
            *self
                .stats
                .start_calls_by_client_token
                .entry(key)
                .or_default() += 1;
        }
    }

    /// The earlier job started with this ClientToken on this data store, if any. The same token
    /// with a different input or output is refused: that is a caller bug, not a retry.
    fn replay(
        &mut self,
        service: Service,
        request: &JobRequest,
    ) -> Result<Option<String>, ApiError> {
        let Some(token) = &request.client_token else {
            return Ok(None);
        };
        let lookup = (service, request.datastore_id.clone(), token.clone());
        let Some(job_id) = self.job_tokens.get(&lookup).cloned() else {
            return Ok(None);
        };
        let same_request = self
            .jobs
            .get(&(service, job_id.clone()))
            .is_some_and(|job| {
                job.request.kind == request.kind
                    && job.request.input_s3_uri == request.input_s3_uri
                    && job.request.output_s3_uri == request.output_s3_uri
            });
        if !same_request {
            let message =
                format!("ClientToken {token} was already used with a different input or output");
            return Err(match service {
                Service::HealthLake => ApiError::Validation(message),
                Service::Imaging => ApiError::Conflict(message),
            });
        }
        self.stats.idempotent_replays += 1;
        Ok(Some(job_id))
    }

    fn insert_job(
        &mut self,
        service: Service,
        request: JobRequest,
        waiting_in_queue: bool,
    ) -> String {
        let id = new_id();
        if let Some(token) = &request.client_token {
            self.job_tokens.insert(
                (service, request.datastore_id.clone(), token.clone()),
                id.clone(),
            );
        }
        let job = Job {
            service,
            id: id.clone(),
            request,
            submitted_at: SystemTime::now(),
            submitted_instant: Instant::now(),
            waiting_in_queue,
            phase: JobPhase::Submitted,
            counts: None,
            run_time: None,
            injected_failure: false,
            stalled: false,
            queued_announced: false,
        };
        self.jobs.insert((service, id.clone()), job);
        self.announce(service, &id);
        id
    }

    /// Where the job events go: from now on every status change is announced to `sink`.
    pub fn set_event_sink(&mut self, sink: EventSink) {
        self.event_sink = Some(sink);
    }

    /// Announces the job's current status as its service's job event. Called under the lock at
    /// the moment of each status change, so a job's events leave in the order of its changes.
    /// Never fails: without a sink (events off) it does nothing.
    pub fn announce(&mut self, service: Service, job_id: &str) {
        let timings = match service {
            Service::HealthLake => &self.healthlake_timings,
            Service::Imaging => &self.imaging_timings,
        };
        let Some(status) = self
            .jobs
            .get(&(service, job_id.to_owned()))
            .map(|job| job.status(timings))
        else {
            return;
        };
        self.announce_status(service, job_id, status);
    }

    fn announce_status(&mut self, service: Service, job_id: &str, status: &'static str) {
        let Some(sink) = &self.event_sink else {
            return;
        };
        let Some(job) = self.jobs.get(&(service, job_id.to_owned())) else {
            return;
        };
        let event = JobEvent::of(job, status, &self.arn_scope);
        *self
            .stats
            .events_by_detail_type
            .entry(event.detail_type.clone())
            .or_default() += 1;
        sink.send(event);
    }

    /// A HealthLake job still waiting in the account's queue once its submit delay has passed
    /// shows QUEUED: announce it, once.
    pub fn announce_queued(&mut self, job_id: &str) {
        let Some(job) = self.job_mut(Service::HealthLake, job_id) else {
            return;
        };
        if job.queued_announced
            || !job.waiting_in_queue
            || !matches!(job.phase, JobPhase::Submitted)
        {
            return;
        }
        job.queued_announced = true;
        self.announce_status(Service::HealthLake, job_id, "QUEUED");
    }

    /// Draws what the event faults do to one job event, counting it.
    pub fn event_fate(&mut self, terminal: bool) -> EventFate {
        let Faults {
            event_drop_share,
            event_duplicate_share,
            event_delay_share,
            event_delay_ms,
            event_reorder_share,
            ..
        } = self.faults;
        // No draw for a fault that is off, as for the other faults.
        let mut roll = |share: f64| share > 0.0 && self.event_rng.f64() < share;
        if roll(event_drop_share) {
            self.stats.events_dropped += 1;
            return EventFate::Dropped;
        }
        let copies = if roll(event_duplicate_share) { 2 } else { 1 };
        let delayed = roll(event_delay_share);
        let held = !delayed && !terminal && roll(event_reorder_share);
        if copies == 2 {
            self.stats.events_duplicated += 1;
        }
        if delayed {
            self.stats.events_delayed += 1;
            EventFate::Delayed {
                copies,
                delay: Duration::from_millis(event_delay_ms),
            }
        } else if held {
            self.stats.events_reordered += 1;
            EventFate::Held { copies }
        } else {
            EventFate::Now { copies }
        }
    }

    /// A HealthLake job of `kind`: an import is not found by DescribeFHIRExportJob, nor the
    /// other way round.
    pub fn fhir_job(
        &self,
        kind: JobKind,
        datastore_id: &str,
        job_id: &str,
    ) -> Result<&Job, ApiError> {
        let job = self.job(Service::HealthLake, datastore_id, job_id)?;
        if job.request.kind == kind {
            return Ok(job);
        }
        let what = match kind {
            JobKind::Import => "Import",
            JobKind::Export => "Export",
        };
        Err(ApiError::ResourceNotFound(format!(
            "{what} job {job_id} does not exist in datastore {datastore_id}"
        )))
    }

    /// Stores what a completed import imported, so that later exports write it out.
    pub fn store_resources(
        &mut self,
        datastore_id: &str,
        resources: impl IntoIterator<Item = (String, String)>,
    ) {
        if let Some(datastore) = self
            .datastores
            .get_mut(&(Service::HealthLake, datastore_id.to_owned()))
        {
            let now = SystemTime::now();
            for (resource_type, id) in resources {
                datastore
                    .resources
                    .entry(resource_type)
                    .or_default()
                    .insert(id, now);
            }
        }
    }

    /// StartFHIRImportJob and StartFHIRExportJob: one job runs per account, imports and
    /// exports of every data store alike; the rest wait FIFO, at most
    /// `healthlake_max_queued_jobs_per_datastore` of them per data store.
    ///
    /// A start beyond that queue is refused with ThrottlingException and creates no job. Of the
    /// errors the HealthLake model (botocore `healthlake` 2017-07-01, aws-sdk-healthlake)
    /// documents for StartFHIRImportJob and StartFHIRExportJob (AccessDenied, FailedDependency,
    /// InternalServer, ResourceNotFound, Throttling, Validation) it is the one that says "not
    /// now, try again later": nothing is wrong with the request, the service is busy.
    /// ServiceQuotaExceededException exists in HealthLake's model but only on the data
    /// transformation operations, so an SDK would not even parse it as a Start error; and the
    /// project's clients already treat ThrottlingException as "retry later".
    pub fn start_fhir_job(&mut self, request: JobRequest) -> Result<Started, ApiError> {
        self.active_datastore(Service::HealthLake, &request.datastore_id)?;
        self.count_start(Service::HealthLake, &request);
        if let Some(job_id) = self.replay(Service::HealthLake, &request)? {
            return Ok(Started::Replayed { job_id });
        }
        let busy = self.fhir_lane.running.is_some();
        if busy {
            let waiting = self.fhir_waiting_on(&request.datastore_id);
            if waiting >= self.fhir_max_queued_jobs {
                self.stats.fhir_queue_refusals += 1;
                self.stats.throttled_answers += 1;
                return Err(ApiError::Throttling(format!(
                    "Datastore {} already has {waiting} jobs queued (at most {}); try again later",
                    request.datastore_id, self.fhir_max_queued_jobs
                )));
            }
        }
        match request.kind {
            JobKind::Import => self.stats.fhir_jobs_created += 1,
            JobKind::Export => self.stats.fhir_export_jobs_created += 1,
        }
        let job_id = self.insert_job(Service::HealthLake, request, busy);
        if busy {
            self.fhir_lane.waiting.push_back(job_id.clone());
        } else {
            self.fhir_lane.running = Some(job_id.clone());
        }
        Ok(Started::Created {
            job_id,
            run_now: !busy,
        })
    }

    /// HealthLake jobs of a data store waiting in the account's queue.
    fn fhir_waiting_on(&self, datastore_id: &str) -> usize {
        self.fhir_lane
            .waiting
            .iter()
            .filter(|job_id| {
                self.jobs
                    .get(&(Service::HealthLake, (*job_id).clone()))
                    .is_some_and(|job| job.request.datastore_id == datastore_id)
            })
            .count()
    }

    /// StartDICOMImportJob: throttle, then idempotency, then the running-jobs quota.
    pub fn start_imaging_job(&mut self, request: JobRequest) -> Result<Started, ApiError> {
        self.active_datastore(Service::Imaging, &request.datastore_id)?;
        self.count_start(Service::Imaging, &request);
        if !self.start_bucket.try_take() {
            self.stats.throttled_answers += 1;
            self.stats.rate_limited_starts += 1;
            return Err(ApiError::Throttling("Rate exceeded".to_owned()));
        }
        if let Some(job_id) = self.replay(Service::Imaging, &request)? {
            return Ok(Started::Replayed { job_id });
        }
        let running = self
            .jobs
            .values()
            .filter(|job| {
                job.service == Service::Imaging
                    && job.request.datastore_id == request.datastore_id
                    && job.is_running()
            })
            .count();
        if running >= self.imaging_max_running_jobs {
            self.stats.quota_refusals += 1;
            return Err(ApiError::ServiceQuotaExceeded(format!(
                "Datastore {} already has {running} import jobs running (quota {})",
                request.datastore_id, self.imaging_max_running_jobs
            )));
        }
        let job_id = self.insert_job(Service::Imaging, request, false);
        self.stats.imaging_jobs_created += 1;
        Ok(Started::Created {
            job_id,
            run_now: true,
        })
    }

    pub fn job_mut(&mut self, service: Service, job_id: &str) -> Option<&mut Job> {
        self.jobs.get_mut(&(service, job_id.to_owned()))
    }

    /// Ends a job and, for HealthLake, hands the account's lane to the next queued job (of any
    /// data store). Returns the job that should run next.
    pub fn end_job(
        &mut self,
        service: Service,
        job_id: &str,
        outcome: Terminal,
        message: Option<String>,
        submit_delay: Duration,
    ) -> Option<String> {
        let job = self.job_mut(service, job_id)?;
        job.phase = JobPhase::Ended {
            outcome,
            ended_at: SystemTime::now(),
            message,
        };
        self.announce(service, job_id);
        if service != Service::HealthLake || self.fhir_lane.running.as_deref() != Some(job_id) {
            return None;
        }
        let next = self.fhir_lane.waiting.pop_front();
        self.fhir_lane.running.clone_from(&next);
        let next_id = next.clone()?;
        let next_job = self.job_mut(service, &next_id)?;
        // A job that has shown QUEUED must go straight on to IN_PROGRESS, never back to SUBMITTED.
        if next_job.submitted_instant.elapsed() >= submit_delay {
            // It has been QUEUED since its submit delay passed: announced by its queue watch, or
            // now if the hand-over beat the watch to it.
            self.announce_queued(&next_id);
            let next_job = self.job_mut(service, &next_id)?;
            next_job.waiting_in_queue = false;
            next_job.phase = JobPhase::InProgress {
                started: Instant::now(),
            };
            self.announce(service, &next_id);
        } else {
            next_job.waiting_in_queue = false;
        }
        next
    }
}

/// The state behind its lock. A panic while holding it cannot leave a half-made decision that
/// matters more than answering, so a poisoned lock is used as is.
pub struct Locked(Mutex<State>);

impl Locked {
    pub fn new(state: State) -> Self {
        Self(Mutex::new(state))
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(datastore_id: &str, token: Option<&str>) -> JobRequest {
        JobRequest {
            kind: JobKind::Import,
            datastore_id: datastore_id.to_owned(),
            name: None,
            role_arn: "arn:aws:iam::123456789012:role/import".to_owned(),
            input_s3_uri: "s3://in/x/".to_owned(),
            output_s3_uri: "s3://out/y/".to_owned(),
            kms_key_id: None,
            since: None,
            validation_level: None,
            input_owner_account_id: None,
            client_token: token.map(str::to_owned),
        }
    }

    /// Data stores ACTIVE at once: these tests are about jobs.
    fn instant_datastores() -> DoubleConfig {
        DoubleConfig {
            datastore_create_delay: Duration::ZERO,
            ..DoubleConfig::default()
        }
    }

    #[tokio::test]
    async fn a_creating_datastore_refuses_starts_until_it_is_active() {
        let mut state = State::new(&DoubleConfig {
            datastore_create_delay: Duration::from_secs(3600),
            ..DoubleConfig::default()
        });
        let fhir = state.create_datastore(Service::HealthLake, None, None, serde_json::Map::new());
        let imaging = state.create_datastore(Service::Imaging, None, None, serde_json::Map::new());
        assert_eq!(fhir.status(), "CREATING");
        assert!(matches!(
            state.start_fhir_job(request(&fhir.id, None)),
            Err(ApiError::Validation(message)) if message.contains("CREATING")
        ));
        assert!(matches!(
            state.start_imaging_job(request(&imaging.id, Some("t"))),
            Err(ApiError::Conflict(_))
        ));
        assert!(state.jobs.is_empty(), "a refused start creates no job");
        state.finish_creating_datastores();
        assert_eq!(
            state
                .datastore(Service::HealthLake, &fhir.id)
                .unwrap()
                .status(),
            "ACTIVE"
        );
        assert!(state.start_fhir_job(request(&fhir.id, None)).is_ok());
        assert!(state
            .start_imaging_job(request(&imaging.id, Some("t")))
            .is_ok());
        let listed: Vec<&str> = state
            .datastores_of(Service::Imaging)
            .iter()
            .map(|datastore| datastore.id.as_str())
            .collect();
        assert_eq!(listed, [imaging.id.as_str()]);
    }

    #[tokio::test]
    async fn token_bucket_allows_the_burst_then_refuses() {
        let mut bucket = TokenBucket::new(0.0, 2);
        assert!(bucket.try_take());
        assert!(bucket.try_take());
        assert!(!bucket.try_take());
    }

    #[tokio::test]
    async fn fhir_jobs_queue_behind_the_active_one_and_hand_over_in_order() {
        let mut state = State::new(&instant_datastores());
        let datastore = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let first = state.start_fhir_job(request(&datastore, None)).unwrap();
        let second = state.start_fhir_job(request(&datastore, None)).unwrap();
        let third = state.start_fhir_job(request(&datastore, None)).unwrap();
        assert!(matches!(first, Started::Created { run_now: true, .. }));
        assert!(matches!(second, Started::Created { run_now: false, .. }));
        let next = state.end_job(
            Service::HealthLake,
            first.job_id(),
            Terminal::Completed,
            None,
            Duration::ZERO,
        );
        assert_eq!(next.as_deref(), Some(second.job_id()));
        let next = state.end_job(
            Service::HealthLake,
            second.job_id(),
            Terminal::Completed,
            None,
            Duration::ZERO,
        );
        assert_eq!(next.as_deref(), Some(third.job_id()));
    }

    #[tokio::test]
    async fn same_token_different_input_is_refused() {
        let mut state = State::new(&instant_datastores());
        let datastore = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let first = state
            .start_fhir_job(request(&datastore, Some("t-1")))
            .unwrap();
        let again = state
            .start_fhir_job(request(&datastore, Some("t-1")))
            .unwrap();
        assert_eq!(
            again,
            Started::Replayed {
                job_id: first.job_id().to_owned()
            }
        );
        let mut other = request(&datastore, Some("t-1"));
        other.input_s3_uri = "s3://in/other/".to_owned();
        assert!(matches!(
            state.start_fhir_job(other),
            Err(ApiError::Validation(_))
        ));
    }

    #[tokio::test]
    async fn an_export_waits_behind_the_running_import_and_is_not_an_import() {
        let mut state = State::new(&instant_datastores());
        let datastore = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let import = state.start_fhir_job(request(&datastore, None)).unwrap();
        let mut export = request(&datastore, Some("e-1"));
        export.kind = JobKind::Export;
        export.input_s3_uri = String::new();
        let export = state.start_fhir_job(export).unwrap();
        assert!(matches!(export, Started::Created { run_now: false, .. }));
        assert!(state
            .fhir_job(JobKind::Export, &datastore, export.job_id())
            .is_ok());
        assert!(matches!(
            state.fhir_job(JobKind::Import, &datastore, export.job_id()),
            Err(ApiError::ResourceNotFound(_))
        ));
        let next = state.end_job(
            Service::HealthLake,
            import.job_id(),
            Terminal::Completed,
            None,
            Duration::ZERO,
        );
        assert_eq!(next.as_deref(), Some(export.job_id()));
        assert_eq!(state.stats.fhir_export_jobs_created, 1);
        assert_eq!(state.stats.fhir_jobs_created, 1);
    }

    #[tokio::test]
    async fn the_fhir_lane_is_one_per_account_across_data_stores() {
        let mut state = State::new(&instant_datastores());
        let first_store = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let second_store = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let first = state.start_fhir_job(request(&first_store, None)).unwrap();
        let second = state.start_fhir_job(request(&second_store, None)).unwrap();
        let mut export = request(&first_store, None);
        export.kind = JobKind::Export;
        let third = state.start_fhir_job(export).unwrap();
        assert!(matches!(first, Started::Created { run_now: true, .. }));
        assert!(
            matches!(second, Started::Created { run_now: false, .. }),
            "another data store's job waits for the account's lane"
        );
        assert!(matches!(third, Started::Created { run_now: false, .. }));
        assert_eq!(state.fhir_lane.running.as_deref(), Some(first.job_id()));
        assert_eq!(state.fhir_lane.waiting.len(), 2);
        let next = state.end_job(
            Service::HealthLake,
            first.job_id(),
            Terminal::Completed,
            None,
            Duration::ZERO,
        );
        assert_eq!(next.as_deref(), Some(second.job_id()));
        assert!(matches!(
            state.jobs[&(Service::HealthLake, second.job_id().to_owned())].phase,
            JobPhase::InProgress { .. }
        ));
        // Ending a job that does not hold the lane hands nothing over.
        let stray = state.end_job(
            Service::HealthLake,
            third.job_id(),
            Terminal::Failed,
            None,
            Duration::ZERO,
        );
        assert_eq!(stray, None);
        assert_eq!(state.fhir_lane.running.as_deref(), Some(second.job_id()));
    }

    #[tokio::test]
    async fn a_full_fhir_queue_refuses_with_throttling_and_creates_no_job() {
        let mut state = State::new(&DoubleConfig {
            healthlake_max_queued_jobs_per_datastore: 2,
            ..instant_datastores()
        });
        let datastore = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let other = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let running = state
            .start_fhir_job(request(&datastore, Some("q-0")))
            .unwrap();
        for n in 1..=2 {
            state
                .start_fhir_job(request(&datastore, Some(&format!("q-{n}"))))
                .unwrap();
        }
        let refused = state.start_fhir_job(request(&datastore, Some("q-3")));
        assert!(
            matches!(refused, Err(ApiError::Throttling(_))),
            "{refused:?}"
        );
        assert_eq!(state.jobs.len(), 3, "a refused start creates no job");
        assert_eq!(state.stats.fhir_jobs_created, 3);
        assert_eq!(state.stats.fhir_queue_refusals, 1);
        assert_eq!(state.stats.throttled_answers, 1);
        // A retry of an accepted start is still answered with its job.
        assert!(matches!(
            state.start_fhir_job(request(&datastore, Some("q-1"))),
            Ok(Started::Replayed { .. })
        ));
        // The limit is per data store: another one still queues.
        assert!(state.start_fhir_job(request(&other, None)).is_ok());
        // Once the running job ends, the queue has room again; the refused token is free.
        state.end_job(
            Service::HealthLake,
            running.job_id(),
            Terminal::Completed,
            None,
            Duration::ZERO,
        );
        assert!(matches!(
            state.start_fhir_job(request(&datastore, Some("q-3"))),
            Ok(Started::Created { run_now: false, .. })
        ));
    }

    #[tokio::test]
    async fn job_events_are_announced_in_the_order_of_the_job_s_changes() {
        let mut state = State::new(&instant_datastores());
        let (sink, mut receiver) = EventSink::channel();
        state.set_event_sink(sink);
        let datastore = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let first = state
            .start_fhir_job(request(&datastore, Some("e-1")))
            .unwrap();
        let second = state
            .start_fhir_job(request(&datastore, Some("e-2")))
            .unwrap();
        // A replayed start changes nothing and announces nothing.
        state
            .start_fhir_job(request(&datastore, Some("e-2")))
            .unwrap();
        state.end_job(
            Service::HealthLake,
            first.job_id(),
            Terminal::Completed,
            None,
            Duration::ZERO,
        );
        // The hand-over announced QUEUED: the watch finds nothing left to say.
        state.announce_queued(second.job_id());
        state.end_job(
            Service::HealthLake,
            second.job_id(),
            Terminal::CompletedWithErrors,
            None,
            Duration::ZERO,
        );
        let mut announced = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            assert_eq!(event.source, "aws.healthlake");
            assert_eq!(
                event.resource,
                format!("arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/{datastore}")
            );
            announced.push((event.job_id, event.detail_type, event.terminal));
        }
        let (first, second) = (first.job_id().to_owned(), second.job_id().to_owned());
        assert_eq!(
            announced,
            [
                (first.clone(), "Import Job Submitted".to_owned(), false),
                (second.clone(), "Import Job Submitted".to_owned(), false),
                (first, "Import Job Completed".to_owned(), true),
                (second.clone(), "Import Job Queued".to_owned(), false),
                (second.clone(), "Import Job In Progress".to_owned(), false),
                (second, "Import Job Completed With Errors".to_owned(), true),
            ]
        );
        assert_eq!(state.stats.events_by_detail_type["Import Job Submitted"], 2);
    }

    #[tokio::test]
    async fn event_faults_are_drawn_from_the_seed_and_never_hold_a_terminal_event() {
        let faults = Faults {
            event_drop_share: 0.2,
            event_duplicate_share: 0.2,
            event_delay_share: 0.2,
            event_delay_ms: 7,
            event_reorder_share: 0.5,
            ..Faults::default()
        };
        let draws = |terminal: bool| {
            let mut state = State::new(&instant_datastores());
            state.set_faults(faults.clone());
            (0..200)
                .map(|_| state.event_fate(terminal))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(false), draws(false), "the same seed, the same fates");
        let fates = draws(false);
        for fate in [
            EventFate::Dropped,
            EventFate::Now { copies: 1 },
            EventFate::Held { copies: 1 },
            EventFate::Delayed {
                copies: 2,
                delay: Duration::from_millis(7),
            },
        ] {
            assert!(fates.contains(&fate), "{fate:?} never drawn");
        }
        assert!(!draws(true)
            .iter()
            .any(|fate| matches!(fate, EventFate::Held { .. })));
        // Off means no draw at all: the other faults' sequence is untouched.
        let mut state = State::new(&instant_datastores());
        assert_eq!(state.event_fate(false), EventFate::Now { copies: 1 });
        assert_eq!(state.stats.events_dropped + state.stats.events_reordered, 0);
    }

    #[tokio::test]
    async fn progress_follows_the_job_s_own_run_time() {
        let mut state = State::new(&instant_datastores());
        let datastore = state
            .create_datastore(Service::HealthLake, None, None, serde_json::Map::new())
            .id;
        let started = state.start_fhir_job(request(&datastore, None)).unwrap();
        let job = state
            .job_mut(Service::HealthLake, started.job_id())
            .unwrap();
        assert_eq!(job.progress(), None, "SUBMITTED reports no progress");
        job.phase = JobPhase::InProgress {
            started: Instant::now(),
        };
        job.counts = Some(JobCounts {
            scanned_files: 10,
            ..JobCounts::default()
        });
        assert_eq!(
            job.progress().unwrap().scanned_files,
            0,
            "nothing before the input is listed"
        );
        job.run_time = Some(Duration::ZERO);
        assert_eq!(job.progress().unwrap().scanned_files, 10);
        job.run_time = Some(Duration::from_secs(3600));
        assert_eq!(job.progress().unwrap().scanned_files, 0);
    }
}
