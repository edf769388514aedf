//! Starting a recorded job at its service: the one start path, used by the starter right after it
//! records an upload and by the tracking workflow when a start was throttled.
//!
//! The record is created `PENDING` before the service is called and the service gets the job id as
//! its ClientToken, so any number of calls here for one job make one job at the service. Before
//! the call, the job takes its place in its service's lane ([`StartAdmission`]): a job without
//! one waits, untouched. A start the service refuses for now (throttling, quota, 5xx) leaves the
//! record `PENDING` with the reason; a start it refuses for good is recorded as `START_FAILED` with
//! its message, and its place is given back.

use crate::domain::job::{ImportPlan, Job, JobId, JobStatus, Timestamp, Transition, Work};
use crate::ports::admission::{Admission, Pace, StartAdmission};
use crate::ports::service_jobs::{JobService, ServiceError, StartRequest, StartWork};
use crate::ports::store::{CreateOutcome, JobStore, StoreError, TransitionOutcome};
use crate::ports::workflow::{TrackingError, TrackingWorkflow};

#[derive(Debug)]
pub enum StartOutcome {
    /// The service accepted the job; the record holds its service job id and status.
    Started(Box<Job>),
    /// Not admitted yet: its lane is full or its start slot is not due. Nothing was written; ask
    /// again after `retry_after_ms`.
    Waiting { retry_after_ms: u64, reason: String },
    /// Refused for now; the record stays `PENDING` and the start must be retried.
    StillPending(ServiceError),
    /// Refused for good; the record is `START_FAILED` with the service's message.
    StartFailed(ServiceError),
    /// The record is past `PENDING` already (another start won the race, or it was never
    /// startable): nothing was done.
    NotPending(JobStatus),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record disappeared between its read and the write of its start.
    #[error("job {0} has no record")]
    RecordGone(JobId),
}

/// The Start request of a recorded job; `None` for an upload (its batch is started, or it was
/// skipped).
pub fn start_request(job: &Job) -> Option<StartRequest> {
    let (target, work) = match &job.work {
        Work::Import {
            plan:
                ImportPlan::Run {
                    target,
                    input_s3_uri,
                },
            ..
        } => (
            target,
            StartWork::Import {
                input_s3_uri: input_s3_uri.clone(),
            },
        ),
        Work::Batch {
            target,
            input_s3_uri,
            ..
        } => (
            target,
            StartWork::Import {
                input_s3_uri: input_s3_uri.clone(),
            },
        ),
        Work::Export { request, target } => (
            target,
            StartWork::Export {
                since: request.since,
            },
        ),
        // An upload in a batch is started by its batch; a skipped one never.
        Work::Import {
            plan: ImportPlan::Batched { .. } | ImportPlan::Skip { .. },
            ..
        } => return None,
    };
    Some(StartRequest {
        job_id: job.job_id.clone(),
        service: target.service,
        datastore_id: target.datastore_id.clone(),
        work,
        output_s3_uri: target.output_s3_uri.clone(),
    })
}

/// The services' start path with their pace: the lanes and the admission store.
pub struct Starts<'a, A: ?Sized> {
    pub admission: &'a A,
    pub pace: Pace,
}

#[tracing::instrument(name = "start", skip_all, fields(job_id = %job.job_id, kind = %job.kind()))]
pub async fn start_job(
    store: &(impl JobStore + ?Sized),
    starts: &Starts<'_, impl StartAdmission + ?Sized>,
    imports: &(impl JobService + ?Sized),
    job: &Job,
    now: impl Fn() -> Timestamp,
) -> Result<StartOutcome, StartError> {
    let (Some(request), Some(target)) = (
        start_request(job).filter(|_| job.status == JobStatus::Pending),
        job.target(),
    ) else {
        return Ok(StartOutcome::NotPending(job.status));
    };
    let lane = starts.pace.lane(target);
    if let Admission::Wait {
        retry_after_ms,
        reason,
    } = starts.admission.admit(&lane, &job.job_id, now()).await?
    {
        tracing::info!(lane = %lane.name, retry_after_ms, %reason, "start waits for its turn");
        return Ok(StartOutcome::Waiting {
            retry_after_ms,
            reason,
        });
    }
    let (change, outcome_of) = match imports.start(&request).await {
        Ok(started) => {
            tracing::info!(service = %request.service, service_job_id = %started.service_job_id, status = %started.status, "job started");
            let change = Transition::to(started.status, now())
                .with_service_job_id(started.service_job_id)
                .clearing_message();
            (change, Ok(()))
        }
        Err(error) if error.is_retryable() => {
            tracing::warn!(service = %request.service, code = %error.code, "start refused for now; the job stays PENDING and is retried");
            let change = Transition::to(JobStatus::Pending, now())
                .with_message(format!("start will be retried: {error}"));
            (change, Err(error))
        }
        Err(error) => {
            tracing::error!(service = %request.service, code = %error.code, "start refused; recording START_FAILED");
            starts.admission.release(&lane, &job.job_id).await?;
            let change =
                Transition::to(JobStatus::StartFailed, now()).with_message(error.to_string());
            (change, Err(error))
        }
    };
    match store.transition(&job.job_id, &change).await? {
        TransitionOutcome::Applied(job) => Ok(match outcome_of {
            Ok(()) => StartOutcome::Started(job),
            Err(error) if error.is_retryable() => StartOutcome::StillPending(error),
            Err(error) => StartOutcome::StartFailed(error),
        }),
        // Someone else moved the record meanwhile (the workflow's retry and a redelivered event
        // racing): their write stands, and the service has one job either way (same token).
        TransitionOutcome::Rejected { current } => Ok(StartOutcome::NotPending(current)),
        TransitionOutcome::NotFound => Err(StartError::RecordGone(job.job_id.clone())),
    }
}

/// What [`launch`] did with a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launched {
    Started,
    /// Not admitted yet, or refused for now; its tracking execution starts it in its turn.
    StartPending,
    StartFailed,
    /// Recorded before (a redelivered event, a repeated request) and past `PENDING`: nothing
    /// was started again; the record holds this status.
    AlreadyRecorded(JobStatus),
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Tracking(#[from] TrackingError),
}

/// Records a new `PENDING` job, starts it and hands it to its tracking execution: the one path
/// from "something should be imported or exported" to a tracked job. Every step is idempotent on
/// the job id, so calling this again for the same job (a redelivery, a retry after a crash
/// anywhere in between) finishes what was left undone and never makes a second job.
#[tracing::instrument(name = "launch", skip_all, fields(job_id = %job.job_id, kind = %job.kind()))]
pub async fn launch(
    store: &(impl JobStore + ?Sized),
    starts: &Starts<'_, impl StartAdmission + ?Sized>,
    imports: &(impl JobService + ?Sized),
    tracking: &(impl TrackingWorkflow + ?Sized),
    job: Job,
) -> Result<Launched, LaunchError> {
    let job = match store.create(&job).await? {
        CreateOutcome::Created => job,
        // Recorded but never started: a crash between the two, or a throttled start.
        CreateOutcome::AlreadyExists(existing) if existing.status == JobStatus::Pending => {
            *existing
        }
        CreateOutcome::AlreadyExists(existing) => {
            // Started (or refused) before; make sure it is tracked, which is idempotent.
            tracking.track(&existing.job_id, 0).await?;
            return Ok(Launched::AlreadyRecorded(existing.status));
        }
    };
    let launched = match start_job(store, starts, imports, &job, Timestamp::now).await? {
        StartOutcome::Started(_) => Launched::Started,
        StartOutcome::Waiting { .. } | StartOutcome::StillPending(_) => Launched::StartPending,
        StartOutcome::StartFailed(_) => Launched::StartFailed,
        StartOutcome::NotPending(status) => Launched::AlreadyRecorded(status),
    };
    // Every recorded job gets its execution: it polls a started job, retries a pending start,
    // and announces a failed one.
    tracking.track(&job.job_id, 0).await?;
    Ok(launched)
}
