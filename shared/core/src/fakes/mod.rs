//! In-memory implementations of the ports, for handler tests (feature `fakes`). They follow the
//! same rules as the real adapters: the store applies [`Job::apply`]'s transition rule
//! atomically, the import service returns one job per client token.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::job::{Job, JobId, JobStatus, Service, Transition};
use crate::ports::objects::{ListError, ListedObject, ObjectLister};
use crate::ports::service_jobs::{
    JobReport, JobService, Retry, ServiceError, ServiceJob, StartRequest, StartedJob,
};
use crate::ports::store::{
    CreateOutcome, JobOutcome, JobStore, OutcomeMarkers, OutcomeWrite, StoreError,
    TransitionOutcome,
};
use crate::ports::workflow::{TrackingError, TrackingOutcome, TrackingWorkflow};

/// The error a test queued for the next call.
fn scripted(service: Service, operation: &'static str, code: String, retry: Retry) -> ServiceError {
    ServiceError {
        service,
        operation,
        message: format!("scripted {code}"),
        code,
        retry,
        source: None,
    }
}

mod batches;
mod completion;
mod metrics;
pub use completion::{RecordingChecks, RecordingExecutions};
pub use metrics::RecordingMetrics;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The job store in memory, under the same rules as the DynamoDB adapter: transitions by
/// [`Job::apply`]'s rule, an outcome only on a terminal record and only once, the announcement
/// marker once.
#[derive(Debug, Default)]
pub struct MemoryJobStore {
    jobs: Mutex<HashMap<JobId, Job>>,
    markers: Mutex<HashMap<JobId, OutcomeMarkers>>,
    cursors: Mutex<HashMap<JobId, u64>>,
    lanes: Mutex<HashMap<String, batches::LaneState>>,
    tokens: Mutex<HashMap<JobId, String>>,
}

impl MemoryJobStore {
    pub fn all(&self) -> Vec<Job> {
        let mut jobs: Vec<_> = lock(&self.jobs).values().cloned().collect();
        jobs.sort_by_key(Job::subject);
        jobs
    }

    pub fn markers_of(&self, job_id: &JobId) -> OutcomeMarkers {
        lock(&self.markers).get(job_id).copied().unwrap_or_default()
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, job: &Job) -> Result<CreateOutcome, StoreError> {
        let mut jobs = lock(&self.jobs);
        match jobs.get(&job.job_id) {
            Some(existing) => Ok(CreateOutcome::AlreadyExists(Box::new(existing.clone()))),
            None => {
                jobs.insert(job.job_id.clone(), job.clone());
                Ok(CreateOutcome::Created)
            }
        }
    }

    async fn transition(
        &self,
        job_id: &JobId,
        change: &Transition,
    ) -> Result<TransitionOutcome, StoreError> {
        let mut jobs = lock(&self.jobs);
        let Some(job) = jobs.get_mut(job_id) else {
            return Ok(TransitionOutcome::NotFound);
        };
        Ok(match job.apply(change) {
            Ok(()) => TransitionOutcome::Applied(Box::new(job.clone())),
            Err(_) => TransitionOutcome::Rejected {
                current: job.status,
            },
        })
    }

    async fn get(&self, job_id: &JobId) -> Result<Option<Job>, StoreError> {
        Ok(lock(&self.jobs).get(job_id).cloned())
    }

    async fn find_by_source(&self, bucket: &str, key: &str) -> Result<Vec<Job>, StoreError> {
        let mut found: Vec<_> = lock(&self.jobs)
            .values()
            .filter(|j| {
                j.source()
                    .as_ref()
                    .is_some_and(|s| s.bucket == bucket && s.key == key)
            })
            .cloned()
            .collect();
        found.sort_by_key(|j| j.created_at);
        Ok(found)
    }

    async fn list_by_datastore_status(
        &self,
        datastore_id: &str,
        status: JobStatus,
    ) -> Result<Vec<Job>, StoreError> {
        Ok(lock(&self.jobs)
            .values()
            .filter(|j| j.datastore_id() == Some(datastore_id) && j.status == status)
            .cloned()
            .collect())
    }

    async fn exports_of(&self, datastore_id: &str) -> Result<Vec<Job>, StoreError> {
        Ok(lock(&self.jobs)
            .values()
            .filter(|j| {
                j.kind() == crate::domain::job::JobKind::Export
                    && j.datastore_id() == Some(datastore_id)
            })
            .cloned()
            .collect())
    }

    async fn record_outcome(
        &self,
        job_id: &JobId,
        outcome: &JobOutcome,
    ) -> Result<OutcomeWrite, StoreError> {
        let mut jobs = lock(&self.jobs);
        let mut markers = lock(&self.markers);
        let Some(job) = jobs.get_mut(job_id) else {
            return Ok(OutcomeWrite::NotFound);
        };
        let marker = markers.entry(job_id.clone()).or_default();
        if marker.outcome_at.is_some() {
            return Ok(OutcomeWrite::AlreadyRecorded);
        }
        if !job.status.is_terminal() {
            return Ok(OutcomeWrite::NotTerminal(job.status));
        }
        if let Some(counts) = outcome.counts {
            job.counts = Some(counts);
        }
        if !outcome.failed_files.is_empty() {
            job.failed_files = crate::domain::job::bounded_failed_files(&outcome.failed_files);
        }
        if let Some(location) = &outcome.output_location {
            job.output_location = Some(location.clone());
        }
        job.outcome_verified = Some(outcome.verified);
        job.updated_at = outcome.at;
        marker.outcome_at = Some(outcome.at);
        Ok(OutcomeWrite::Recorded)
    }

    async fn markers(&self, job_id: &JobId) -> Result<OutcomeMarkers, StoreError> {
        Ok(self.markers_of(job_id))
    }

    async fn mark_announced(
        &self,
        job_id: &JobId,
        at: crate::domain::job::Timestamp,
    ) -> Result<bool, StoreError> {
        if !lock(&self.jobs).contains_key(job_id) {
            return Ok(false);
        }
        let mut markers = lock(&self.markers);
        let marker = markers.entry(job_id.clone()).or_default();
        if marker.announced_at.is_some() {
            return Ok(false);
        }
        marker.announced_at = Some(at);
        Ok(true)
    }
}

#[async_trait]
impl crate::ports::queries::JobQueries for MemoryJobStore {
    async fn service_jobs(
        &self,
        datastore_id: &str,
        status: JobStatus,
        since: Option<crate::domain::job::Timestamp>,
    ) -> Result<Vec<Job>, StoreError> {
        let mut found: Vec<_> = lock(&self.jobs)
            .values()
            .filter(|j| j.source().is_none())
            .filter(|j| j.datastore_id() == Some(datastore_id) && j.status == status)
            .filter(|j| since.is_none_or(|since| j.created_at >= since))
            .cloned()
            .collect();
        found.sort_by_key(|j| j.created_at);
        Ok(found)
    }
}

/// An import service whose answers are scripted: by default every start is accepted (one job per
/// client token); queued errors are returned first, one per call.
#[derive(Debug, Default)]
pub struct ScriptedJobService {
    errors: Mutex<Vec<(String, Retry)>>,
    jobs: Mutex<HashMap<String, StartedJob>>,
    pub start_calls: Mutex<Vec<StartRequest>>,
}

impl ScriptedJobService {
    /// The next start calls fail with these error codes, in order.
    pub fn fail_next(&self, code: &str, retry: Retry) {
        lock(&self.errors).insert(0, (code.to_owned(), retry));
    }

    pub fn jobs_started(&self) -> usize {
        lock(&self.jobs).len()
    }

    pub fn start_call_count(&self) -> usize {
        lock(&self.start_calls).len()
    }
}

#[async_trait]
impl JobService for ScriptedJobService {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError> {
        lock(&self.start_calls).push(request.clone());
        if let Some((code, retry)) = lock(&self.errors).pop() {
            return Err(scripted(request.service, "Start", code, retry));
        }
        let mut jobs = lock(&self.jobs);
        let count = jobs.len();
        Ok(jobs
            .entry(request.job_id.client_token().to_owned())
            .or_insert_with(|| StartedJob {
                service_job_id: format!("svc-{count}"),
                status: JobStatus::Submitted,
            })
            .clone())
    }

    async fn describe(&self, _job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        Ok(JobReport {
            status: JobStatus::InProgress,
            message: None,
            progress: None,
            ended_at: None,
        })
    }
}

/// Records tracked job ids; a second track of the same id is `AlreadyTracking`.
#[derive(Debug, Default)]
pub struct RecordingTracking {
    pub tracked: Mutex<Vec<JobId>>,
}

impl RecordingTracking {
    pub fn tracked(&self) -> Vec<JobId> {
        lock(&self.tracked).clone()
    }
}

#[async_trait]
impl TrackingWorkflow for RecordingTracking {
    async fn track(
        &self,
        job_id: &JobId,
        _first_wait_seconds: u64,
    ) -> Result<TrackingOutcome, TrackingError> {
        let mut tracked = lock(&self.tracked);
        if tracked.contains(job_id) {
            return Ok(TrackingOutcome::AlreadyTracking);
        }
        tracked.push(job_id.clone());
        Ok(TrackingOutcome::Started {
            execution_arn: format!("arn:aws:states:::execution:test:{job_id}"),
        })
    }
}

/// A bucket listing given up front.
#[derive(Debug, Default)]
pub struct StaticLister {
    pub objects: Vec<ListedObject>,
}

#[async_trait]
impl ObjectLister for StaticLister {
    async fn list(
        &self,
        _bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ListedObject>, ListError> {
        Ok(self
            .objects
            .iter()
            .filter(|o| o.key.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }
}

// --- The poller's ports: a job service whose job status is set by the test, the services' output
// files, the Finished event. ---

use std::collections::BTreeMap;

use crate::domain::finished::JobFinished;
use crate::ports::announce::{AnnounceError, Announcer};
use crate::ports::outputs::{OutputReadError, OutputReader};

/// An import service whose job status the test sets ([`ReportedJobService::report`]); starts are
/// answered by an inner [`ScriptedJobService`]. Queued describe errors are returned first.
#[derive(Debug)]
pub struct ReportedJobService {
    pub starts: ScriptedJobService,
    report: Mutex<JobReport>,
    describe_errors: Mutex<Vec<(String, Retry)>>,
    describe_calls: Mutex<usize>,
}

impl Default for ReportedJobService {
    fn default() -> Self {
        ReportedJobService {
            starts: ScriptedJobService::default(),
            report: Mutex::new(JobReport {
                status: JobStatus::Submitted,
                message: None,
                progress: None,
                ended_at: None,
            }),
            describe_errors: Mutex::new(Vec::new()),
            describe_calls: Mutex::new(0),
        }
    }
}

impl ReportedJobService {
    /// What the next describe calls answer.
    pub fn report(&self, report: JobReport) {
        *lock(&self.report) = report;
    }

    pub fn report_status(&self, status: JobStatus) {
        lock(&self.report).status = status;
    }

    /// The next describe call fails with this error code.
    pub fn fail_next_describe(&self, code: &str, retry: Retry) {
        lock(&self.describe_errors).insert(0, (code.to_owned(), retry));
    }

    pub fn describe_calls(&self) -> usize {
        *lock(&self.describe_calls)
    }
}

#[async_trait]
impl JobService for ReportedJobService {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError> {
        self.starts.start(request).await
    }

    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        *lock(&self.describe_calls) += 1;
        if let Some((code, retry)) = lock(&self.describe_errors).pop() {
            return Err(scripted(job.service, "Describe", code, retry));
        }
        Ok(lock(&self.report).clone())
    }
}

/// Output files by `s3://` URI.
#[derive(Debug, Default)]
pub struct MemoryOutputs {
    objects: Mutex<BTreeMap<String, String>>,
    reads: Mutex<usize>,
}

impl MemoryOutputs {
    /// The URIs held under `prefix_uri`.
    pub fn uris_under(&self, prefix_uri: &str) -> Vec<String> {
        lock(&self.objects)
            .keys()
            .filter(|k| k.starts_with(prefix_uri))
            .cloned()
            .collect()
    }

    pub fn put(&self, uri: impl Into<String>, text: impl Into<String>) {
        lock(&self.objects).insert(uri.into(), text.into());
    }

    pub fn reads(&self) -> usize {
        *lock(&self.reads)
    }
}

#[async_trait]
impl OutputReader for MemoryOutputs {
    async fn read(
        &self,
        uri: &str,
        max_bytes: Option<usize>,
    ) -> Result<Option<String>, OutputReadError> {
        *lock(&self.reads) += 1;
        Ok(lock(&self.objects).get(uri).map(|text| match max_bytes {
            Some(n) if text.len() > n => {
                String::from_utf8_lossy(&text.as_bytes()[..n]).into_owned()
            }
            _ => text.clone(),
        }))
    }

    async fn list(&self, prefix_uri: &str, limit: usize) -> Result<Vec<String>, OutputReadError> {
        Ok(lock(&self.objects)
            .keys()
            .filter(|k| k.starts_with(prefix_uri) && !k.ends_with('/'))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Records the Finished events; `fail_next` makes the next put fail.
#[derive(Debug, Default)]
pub struct RecordingAnnouncer {
    events: Mutex<Vec<JobFinished>>,
    failures: Mutex<usize>,
}

impl RecordingAnnouncer {
    pub fn events(&self) -> Vec<JobFinished> {
        lock(&self.events).clone()
    }

    pub fn fail_next(&self) {
        *lock(&self.failures) += 1;
    }
}

#[async_trait]
impl Announcer for RecordingAnnouncer {
    async fn announce(&self, finished: &JobFinished) -> Result<(), AnnounceError> {
        let mut failures = lock(&self.failures);
        if *failures > 0 {
            *failures -= 1;
            return Err(AnnounceError::Refused {
                code: "InternalFailure".into(),
                message: "scripted failure".into(),
            });
        }
        lock(&self.events).push(finished.clone());
        Ok(())
    }
}
