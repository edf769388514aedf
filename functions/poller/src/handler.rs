//! The poller: each invocation is one step of a job's tracking workflow
//! (`statemachine/import-job.asl.json`, one execution per job, named after the job id).
//!
//! Input: `{"action": ..., "jobId": ...}` plus what the action needs:
//! - `start`: brings the job to its start. A batch still `OPEN` is closed once it is due (quiet,
//!   maximum wait) or answered with the wait until then; a closed batch's files are copied to its
//!   staging prefix once; then the job takes its turn in its service's lane and is started with its
//!   id as ClientToken. While it must wait (its lane is full, its start slot is not due, or the
//!   service refused the start for now) the answer is `waiting` with the seconds to wait, as long
//!   as it takes: only `START_MAX_AGE` after the batch closed ends it as `START_FAILED`. A job past
//!   `PENDING` is left alone.
//! - `poll` (`polls`: polls made so far): reads the job's status at its service and moves the
//!   record forward (a stale answer changes nothing), storing progress counters.
//! - `finish` (`requireManifest`, default true): reads the output manifest of the terminal job,
//!   records its counts, first failed files and output location once, gives each upload of a
//!   batch its own result, removes the batch's staged copies, and puts the `Import Job Finished`
//!   event once. A completed job's manifest not written yet is errorType
//!   `ManifestNotReady` (retried by the workflow); with `requireManifest: false` the job is
//!   finished without it. A failed or cancelled job may write none: it is never waited for.
//! - `recordFailure` (`error`: the `{Error, Cause}` a Catch put in the state): records on the job
//!   why tracking stopped; a job whose start never succeeded becomes `START_FAILED` and is
//!   announced.
//!
//! `start` and `poll` answer [`TrackingState`] (`jobId, status, terminal, waiting, polls,
//! nextWaitSeconds`), which the workflow's Choices (`terminal`, `waiting`) and Waits
//! (`nextWaitSeconds`) read. A job holds its place in its service's lane until it ends.
//! The step shapes are in [`crate::steps`], the errorTypes in [`crate::error`]; what a manifest
//! means for the outcome is the core's domain ([`healthimport::domain::outcome`]).

use std::collections::HashMap;

use futures::stream::{self, StreamExt, TryStreamExt};
use healthimport::domain::batch::{CloseDue, CloseReason};
use healthimport::domain::finished::JobFinished;
use healthimport::domain::job::{Job, JobId, JobStatus, Timestamp, Transition, MAX_FAILED_FILES};
use healthimport::domain::outcome::{
    decide_manifest, member_result, DecidedOutcome, JobOutcome, ManifestDecision, ManifestRead,
    OutputPlan,
};
use healthimport::intake::Batching;
use healthimport::job_output::{
    read_export_output, read_job_output, read_job_output_within, FailureBounds, ManifestError,
};
use healthimport::launch::{start_job, StartError, StartOutcome, Starts};
use healthimport::metrics::{millis_between, seconds_between, MetricsSink, Observation};
use healthimport::ports::admission::{Pace, StartAdmission};
use healthimport::ports::announce::Announcer;
use healthimport::ports::batches::{BatchStore, CloseOutcome};
use healthimport::ports::objects::{ObjectError, StagedCopies};
use healthimport::ports::outputs::OutputReader;
use healthimport::ports::service_jobs::{JobService, ServiceJob};
use healthimport::ports::store::{JobStore, OutcomeWrite, TransitionOutcome};
use healthimport::telemetry::with_sources;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::error::PollerError;
use crate::schedule::PollSchedule;
use crate::steps::{Deadline, FailureRecorded, Finished, PollerInput, StepError, TrackingState};

/// How many staged copies a batch makes at once, and how many upload results it writes at once.
const CONCURRENT_OBJECT_CALLS: usize = 32;
/// How many uploads the Finished event of a batch names (the count says how many there were).
const ANNOUNCED_UPLOADS: usize = 100;

pub struct Poller<S, I, R, A, M> {
    pub store: S,
    pub services: I,
    pub outputs: R,
    pub announcer: A,
    pub schedule: PollSchedule,
    pub starting: Starting,
    /// `TRACKING_MODE`: wait for the services' job events (`events`) or poll (`polling`).
    pub tracking_mode: TrackingMode,
    /// Batches closed, start waits, jobs started and finished, files settled.
    pub metrics: M,
}

/// How a started job's end is noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrackingMode {
    /// The service's own job event releases the workflow's wait; a re-check outside the
    /// workflow backs up a lost event.
    #[default]
    Events,
    /// The workflow polls with backoff.
    Polling,
}

impl std::str::FromStr for TrackingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "events" => Ok(TrackingMode::Events),
            "polling" => Ok(TrackingMode::Polling),
            other => Err(format!("{other:?}: expected `events` or `polling`")),
        }
    }
}

/// How jobs are brought to their start: when batches close and where their copies go, the
/// services' pace, and how long a job may wait for its start.
#[derive(Debug, Clone, PartialEq)]
pub struct Starting {
    pub batching: Batching,
    pub pace: Pace,
    /// `START_MAX_AGE`: a job not started this long after it was ready ends `START_FAILED`.
    pub max_age: time::Duration,
    /// `START_WAIT_SECONDS`: how long a job waits before it asks its full lane again.
    pub lane_wait_seconds: u64,
}

impl<S, I, R, A, M> Poller<S, I, R, A, M>
where
    S: JobStore + BatchStore + StartAdmission,
    I: JobService,
    R: OutputReader + StagedCopies,
    A: Announcer,
    M: MetricsSink,
{
    /// Handles one invocation.
    pub async fn handle(&self, event: Value) -> Result<Value, PollerError> {
        let input: PollerInput =
            serde_json::from_value(event).map_err(PollerError::InvalidInput)?;
        let span = tracing::info_span!("step", job_id = %input.job_id(), action = input.action());
        self.step(input).instrument(span).await
    }

    async fn step(&self, input: PollerInput) -> Result<Value, PollerError> {
        let result = match input {
            PollerInput::Start { job_id, deadline } => {
                self.start(&job_id, deadline.as_ref()).await.map(to_json)
            }
            PollerInput::Poll {
                job_id,
                polls,
                deadline,
            } => self
                .poll(&job_id, polls, deadline.as_ref())
                .await
                .map(to_json),
            PollerInput::Finish {
                job_id,
                require_manifest,
            } => self.finish(&job_id, require_manifest).await.map(to_json),
            PollerInput::RecordFailure { job_id, error } => {
                self.record_failure(&job_id, error).await.map(to_json)
            }
        };
        match &result {
            Ok(output) => tracing::info!(%output, "step done"),
            // Expected while the workflow retries: not an error yet.
            Err(
                e @ (PollerError::MembersNotVisible { .. } | PollerError::ManifestNotReady { .. }),
            ) => {
                tracing::warn!(error_type = e.error_type(), error = %with_sources(e), "step will be retried")
            }
            Err(e) => {
                tracing::error!(error_type = e.error_type(), error = %with_sources(e), "step failed")
            }
        }
        result
    }

    /// Brings the job to its start: closes its batch when due, stages the batch's files, takes
    /// its turn in its service's lane and starts it. Answers `waiting` while it must wait.
    pub async fn start(
        &self,
        job_id: &JobId,
        deadline: Option<&Deadline>,
    ) -> Result<TrackingState, PollerError> {
        let state = self.bring_to_start(job_id).await?;
        Ok(match self.tracking_mode {
            TrackingMode::Events if !state.waiting && !state.terminal => TrackingState {
                await_events: true,
                await_timeout_seconds: deadline.map(|d| d.remaining_wait(Timestamp::now())),
                ..state
            },
            _ => state,
        })
    }

    async fn bring_to_start(&self, job_id: &JobId) -> Result<TrackingState, PollerError> {
        let mut job = self.load(job_id).await?;
        let now = Timestamp::now();
        if job.status == JobStatus::Open {
            match self.close_when_due(&job, now).await? {
                Some(closed) => job = closed,
                None => {
                    let wait = job
                        .batch()
                        .map(
                            |b| match self.starting.batching.policy.close_due(&b.fill, now) {
                                CloseDue::At(at) => seconds_until(now, at),
                                CloseDue::Now(_) => 1,
                            },
                        )
                        .unwrap_or(1);
                    return Ok(self.waiting(job_id, JobStatus::Open, wait));
                }
            }
        }
        if job.status != JobStatus::Pending {
            return Ok(self.state(job_id, job.status, 0));
        }
        if job.batch().is_some_and(|b| b.staged_at.is_none()) {
            self.stage(&job).await?;
        }
        if let Some(service) = job.service() {
            // Each attempt reports its wait; the Maximum over a period is the oldest batch's.
            self.metrics.emit(Observation::StartWaiting {
                service,
                waited_seconds: seconds_between(ready_at(&job), now),
            });
        }
        if let Some(waited) = self.waited_too_long(&job, now) {
            return self.give_up_start(&job, waited).await;
        }
        let starts = Starts {
            admission: &self.store,
            pace: self.starting.pace,
        };
        let outcome = start_job(&self.store, &starts, &self.services, &job, Timestamp::now)
            .await
            .map_err(|e| match e {
                StartError::Store(e) => PollerError::Store(e),
                StartError::RecordGone(job_id) => PollerError::JobNotFound(job_id),
            })?;
        Ok(match outcome {
            StartOutcome::Started(job) => {
                if let Some(service) = job.service() {
                    self.metrics.emit(Observation::JobStarted { service });
                }
                self.state(job_id, job.status, 0)
            }
            StartOutcome::Waiting {
                retry_after_ms: 0, ..
            }
            | StartOutcome::StillPending(_) => {
                self.waiting(job_id, JobStatus::Pending, self.starting.lane_wait_seconds)
            }
            StartOutcome::Waiting { retry_after_ms, .. } => {
                self.waiting(job_id, JobStatus::Pending, retry_after_ms.div_ceil(1000))
            }
            StartOutcome::StartFailed(_) => self.state(job_id, JobStatus::StartFailed, 0),
            StartOutcome::NotPending(status) => self.state(job_id, status, 0),
        })
    }

    /// Closes the open batch `job` if its time has come; `None` while it has not. The close is
    /// conditional on the fill read, so a file that joined meanwhile keeps the batch open.
    async fn close_when_due(&self, job: &Job, now: Timestamp) -> Result<Option<Job>, PollerError> {
        let Some(batch) = job.batch() else {
            return Ok(None);
        };
        let CloseDue::Now(reason) = self.starting.batching.policy.close_due(&batch.fill, now)
        else {
            return Ok(None);
        };
        let if_last = (reason == CloseReason::Quiet).then_some(batch.fill.last_file_at);
        match self
            .store
            .close_batch(&job.job_id, reason, now, if_last)
            .await?
        {
            CloseOutcome::Closed(closed) => {
                tracing::info!(batch_id = %job.job_id, %reason, files = batch.fill.files, bytes = batch.fill.bytes, "batch closed");
                Ok(Some(*closed))
            }
            CloseOutcome::FillChanged => Ok(None),
            // Closed meanwhile (its marker, or a file that found it full).
            CloseOutcome::NotOpen(_) => Ok(Some(self.load(&job.job_id).await?)),
            CloseOutcome::NotFound => Err(PollerError::JobNotFound(job.job_id.clone())),
        }
    }

    /// Copies every upload of the closed batch `job` into its staging prefix, so that its job
    /// imports exactly them. An upload deleted meanwhile gets its own FAILED result and the batch
    /// goes on without it.
    async fn stage(&self, job: &Job) -> Result<(), PollerError> {
        let (Some(batch), Some(folder)) = (job.batch(), job.batch_folder()) else {
            return Ok(());
        };
        let members = self.store.members(&job.job_id).await?;
        if (members.len() as u64) < batch.fill.files {
            // The index lags the batch's own counter for a moment: read again shortly.
            return Err(PollerError::MembersNotVisible {
                job_id: job.job_id.clone(),
                expected: batch.fill.files,
                found: members.len() as u64,
            });
        }
        let staging = &self.starting.batching.staging;
        let folder = &folder.folder;
        let gone = stream::iter(members.iter().filter(|m| m.status == JobStatus::Batched))
            .map(|member| async move {
                let Some(source) = member.source() else {
                    return Ok(None);
                };
                let to = staging.staged_key(&job.job_id, folder, &source.key);
                match self.outputs.copy(source, &to).await {
                    Ok(()) => Ok(None),
                    Err(ObjectError::Gone { .. }) => Ok(Some(member.job_id.clone())),
                    Err(source) => Err(PollerError::Staging {
                        job_id: job.job_id.clone(),
                        source,
                    }),
                }
            })
            .buffer_unordered(CONCURRENT_OBJECT_CALLS)
            .try_collect::<Vec<_>>()
            .await?;
        let mut failed_now = 0;
        for member in gone.into_iter().flatten() {
            let change = Transition::to(JobStatus::Failed, Timestamp::now()).with_message(
                "the object was deleted before its batch was staged; upload it again to import it",
            );
            if let TransitionOutcome::Applied(_) = self.store.transition(&member, &change).await? {
                failed_now += 1;
            }
        }
        if let (Some(service), true) = (job.service(), failed_now > 0) {
            // These uploads end here, not when the batch's job does.
            self.metrics.emit(Observation::FilesSettled {
                service,
                imported: 0,
                failed: failed_now,
            });
        }
        self.store
            .mark_staged(&job.job_id, Timestamp::now())
            .await?;
        tracing::info!(batch_id = %job.job_id, files = members.len(), "batch staged");
        // Counted here, once per batch whatever closed it (its marker in the starter, a limit in
        // the intake, quiet or its maximum wait here): staging follows every close.
        if let (Some(service), Some(closed)) = (job.service(), batch.closed) {
            self.metrics.emit(Observation::BatchClosed {
                service,
                reason: closed.reason,
            });
        }
        Ok(())
    }

    /// How long the `PENDING` job has waited for its start, when that is past `START_MAX_AGE`.
    fn waited_too_long(&self, job: &Job, now: Timestamp) -> Option<time::Duration> {
        let waited = now.datetime() - ready_at(job).datetime();
        (waited > self.starting.max_age).then_some(waited)
    }

    async fn give_up_start(
        &self,
        job: &Job,
        waited: time::Duration,
    ) -> Result<TrackingState, PollerError> {
        let message = format!(
            "not started within START_MAX_AGE ({} s): it waited {} s for its turn at the service{}",
            self.starting.max_age.whole_seconds(),
            waited.whole_seconds(),
            job.message
                .as_deref()
                .map(|m| format!("; last: {m}"))
                .unwrap_or_default()
        );
        tracing::error!(
            waited_seconds = waited.whole_seconds(),
            "start given up: START_FAILED"
        );
        let change = Transition::to(JobStatus::StartFailed, Timestamp::now()).with_message(message);
        let status = match self.store.transition(&job.job_id, &change).await? {
            TransitionOutcome::Applied(job) => job.status,
            TransitionOutcome::Rejected { current } => current,
            TransitionOutcome::NotFound => {
                return Err(PollerError::JobNotFound(job.job_id.clone()))
            }
        };
        self.release(job).await?;
        Ok(self.state(&job.job_id, status, 0))
    }

    /// Gives the job's place in its lane back (it ended, or will never start).
    async fn release(&self, job: &Job) -> Result<(), PollerError> {
        if let Some(target) = job.target() {
            self.store
                .release(&self.starting.pace.lane(target), &job.job_id)
                .await?;
        }
        Ok(())
    }

    /// Reads the job's status at its service and moves the record forward.
    pub async fn poll(
        &self,
        job_id: &JobId,
        polls: u32,
        deadline: Option<&Deadline>,
    ) -> Result<TrackingState, PollerError> {
        let polls = polls.saturating_add(1);
        let job = self.load(job_id).await?;
        if job.status.is_terminal() {
            // A repeated or late poll: the record is final, the service is not asked.
            return Ok(self.state(job_id, job.status, polls));
        }
        let report = self
            .services
            .describe(
                &ServiceJob::of(&job).ok_or_else(|| PollerError::NotStarted {
                    job_id: job_id.clone(),
                })?,
            )
            .await
            .map_err(|source| PollerError::Service {
                job_id: job_id.clone(),
                source,
            })?;
        let mut change = Transition::to(report.status, Timestamp::now());
        if let Some(message) = report.message {
            change = change.with_message(message);
        }
        if let Some(progress) = report.progress {
            change = change.with_counts(progress);
        }
        let status = match self.store.transition(job_id, &change).await? {
            TransitionOutcome::Applied(recorded) => {
                // Polling mode's completion latency: the service's end time to our record.
                if let (true, Some(service), Some(ended_at)) = (
                    recorded.status.is_terminal(),
                    recorded.service(),
                    report.ended_at,
                ) {
                    self.metrics.emit(Observation::CompletionRecorded {
                        service,
                        latency_ms: millis_between(ended_at, Timestamp::now()),
                    });
                }
                recorded.status
            }
            TransitionOutcome::Rejected { current } => {
                tracing::info!(reported = %report.status, %current, "stale status report; the record is unchanged");
                current
            }
            TransitionOutcome::NotFound => return Err(PollerError::JobNotFound(job_id.clone())),
        };
        let state = self.state(job_id, status, polls);
        if state.terminal {
            // Its lane's next job may start now, before this one's output is read.
            self.release(&job).await?;
        }
        if let Some(deadline) = deadline {
            // The workflow's own TimeoutSeconds cannot be caught: give up while there is time to
            // record why, rather than wait past it.
            if !state.terminal && deadline.passed_before(Timestamp::now(), state.next_wait_seconds)
            {
                return Err(PollerError::TrackingTimedOut {
                    job_id: job_id.clone(),
                    timeout_seconds: deadline.timeout_seconds,
                });
            }
        }
        Ok(state)
    }

    /// Records the outcome of a terminal job from its output manifest, then announces it.
    pub async fn finish(
        &self,
        job_id: &JobId,
        require_manifest: bool,
    ) -> Result<Finished, PollerError> {
        let job = self.load(job_id).await?;
        if !job.status.is_terminal() {
            return Err(PollerError::NotTerminal {
                job_id: job_id.clone(),
                status: job.status,
            });
        }
        let markers = self.store.markers(job_id).await?;
        let mut manifest_found = None;
        let mut note = None;
        if markers.outcome_at.is_none() {
            let mut decided = self.read_outcome(&job, require_manifest).await?;
            if let Some(batch) = job.batch() {
                // The batch's failed files as the uploads they are, not their staged copies.
                let staging = &self.starting.batching.staging;
                for failed in &mut decided.outcome.failed_files {
                    failed.input_file =
                        staging.unstaged(&job.job_id, &batch.folder, &failed.input_file);
                    failed.message = staging.unstaged(&job.job_id, &batch.folder, &failed.message);
                }
            }
            manifest_found = decided.manifest_found;
            note = decided.note;
            match self.store.record_outcome(job_id, &decided.outcome).await? {
                OutcomeWrite::Recorded | OutcomeWrite::AlreadyRecorded => {}
                OutcomeWrite::NotTerminal(status) => {
                    return Err(PollerError::NotTerminal {
                        job_id: job_id.clone(),
                        status,
                    })
                }
                OutcomeWrite::NotFound => return Err(PollerError::JobNotFound(job_id.clone())),
            }
        }
        let job = self.load(job_id).await?;
        self.release(&job).await?;
        let mut summary = JobFinished::from_job(&job, note.as_deref());
        if job.batch().is_some() {
            let uploads = self.settle_members(&job).await?;
            summary = summary.with_uploads(
                uploads.iter().take(ANNOUNCED_UPLOADS).cloned().collect(),
                uploads.len() as u64,
            );
            self.remove_staged_copies(&job).await;
        }
        let announced = match markers.announced_at {
            Some(_) => false,
            None => self.announce(&summary).await?,
        };
        Ok(Finished {
            job_id: job_id.clone(),
            status: job.status,
            announced,
            manifest_found,
            summary,
        })
    }

    /// Gives each upload of the finished batch `job` its own result from the batch's output, once
    /// (an upload that has its result keeps it). Returns the uploads' keys.
    async fn settle_members(&self, job: &Job) -> Result<Vec<String>, PollerError> {
        let members = self.store.members(&job.job_id).await?;
        let failures = self.member_failures(job).await?;
        let at = Timestamp::now();
        let settled = stream::iter(members.iter().filter(|m| m.status == JobStatus::Batched))
            .map(|member| {
                let key = member.source().map(|s| s.key.as_str()).unwrap_or_default();
                let failure = failures.get(key).map(String::as_str);
                let change = member_result(job, failure, at);
                async move { self.store.transition(&member.job_id, &change).await }
            })
            .buffer_unordered(CONCURRENT_OBJECT_CALLS)
            .try_collect::<Vec<_>>()
            .await?;
        // Only the results written now: a repeated finish settles (and counts) nothing twice.
        let (imported, failed) =
            settled
                .iter()
                .fold((0, 0), |(ok, failed), outcome| match outcome {
                    TransitionOutcome::Applied(upload) if upload.status == JobStatus::Completed => {
                        (ok + 1, failed)
                    }
                    TransitionOutcome::Applied(_) => (ok, failed + 1),
                    _ => (ok, failed),
                });
        if let (Some(service), true) = (job.service(), imported + failed > 0) {
            self.metrics.emit(Observation::FilesSettled {
                service,
                imported,
                failed,
            });
        }
        tracing::info!(
            uploads = members.len(),
            failed = failures.len(),
            "batch uploads settled"
        );
        let mut keys: Vec<String> = members
            .iter()
            .filter_map(|m| m.source().map(|s| s.key.clone()))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// The failed files of the batch's job by uploaded key, each with the service's message.
    /// Empty when the outcome was not read from the manifest (the members then say so).
    async fn member_failures(&self, job: &Job) -> Result<HashMap<String, String>, PollerError> {
        let (Some(batch), Some(service), Some(location)) =
            (job.batch(), job.service(), job.output_location.as_deref())
        else {
            return Ok(HashMap::new());
        };
        if job.outcome_verified != Some(true) || !job.has_failures() {
            return Ok(HashMap::new());
        }
        let output = read_job_output_within(
            &self.outputs,
            service,
            location,
            FailureBounds::every_file(),
        )
        .await
        .map_err(|source| PollerError::Manifest {
            job_id: job.job_id.clone(),
            source,
        })?;
        let staging = &self.starting.batching.staging;
        let mut failures = HashMap::new();
        for failed in output.failed_files {
            if let Some(key) = staging.upload_key(&job.job_id, &batch.folder, &failed.input_file) {
                let message = staging.unstaged(&job.job_id, &batch.folder, &failed.message);
                failures.entry(key).or_insert(message);
            }
        }
        Ok(failures)
    }

    /// Removes the batch's staged copies once its outcome is recorded. A failure only warns: the
    /// staging prefix's lifecycle rule removes what is left.
    async fn remove_staged_copies(&self, job: &Job) {
        let Some(batch) = job.batch() else {
            return;
        };
        let prefix = self.starting.batching.staging.batch_prefix(&job.job_id);
        match self.outputs.delete_prefix(&batch.bucket, &prefix).await {
            Ok(removed) => tracing::info!(removed, "staged copies removed"),
            Err(e) => {
                tracing::warn!(error = %with_sources(&e), "staged copies not removed; the lifecycle rule will")
            }
        }
    }

    /// Records why the workflow gave up on the job.
    pub async fn record_failure(
        &self,
        job_id: &JobId,
        error: Option<StepError>,
    ) -> Result<FailureRecorded, PollerError> {
        let reason = error
            .as_ref()
            .map(StepError::describe)
            .unwrap_or_else(|| "tracking failed for an unknown reason".to_owned());
        let Some(job) = self.store.get(job_id).await? else {
            tracing::error!(%reason, "tracking failed for a job that has no record");
            return Ok(FailureRecorded {
                job_id: job_id.clone(),
                status: None,
                recorded: false,
                announced: false,
                error: reason,
            });
        };
        let (status, recorded) = if job.status.is_terminal() {
            // Terminal is final: the record keeps what the service said; the event says more.
            (job.status, false)
        } else {
            // A job that never started is over. A started one may run on at its service, but
            // nothing follows it any more: its record must not look alive.
            let never_started = matches!(job.status, JobStatus::Open | JobStatus::Pending);
            let (to, message) = if never_started {
                (
                    JobStatus::StartFailed,
                    format!("the start did not succeed: {reason}"),
                )
            } else {
                (
                    JobStatus::TrackingStopped,
                    format!(
                        "tracking stopped while the job was {}: {reason}",
                        job.status
                    ),
                )
            };
            let change = Transition::to(to, Timestamp::now()).with_message(message);
            match self.store.transition(job_id, &change).await? {
                TransitionOutcome::Applied(job) => (job.status, true),
                TransitionOutcome::Rejected { current } => (current, false),
                TransitionOutcome::NotFound => {
                    return Err(PollerError::JobNotFound(job_id.clone()))
                }
            }
        };
        let announced = if status.is_terminal() {
            self.announce_best_effort(job_id, &reason).await
        } else {
            false
        };
        Ok(FailureRecorded {
            job_id: job_id.clone(),
            status: Some(status),
            recorded,
            announced,
            error: reason,
        })
    }

    /// Finishes the job without waiting for its manifest; failing that (an unreadable manifest,
    /// say), announces the record as it is. Never fails: the workflow is ending in failure anyway
    /// and its alarm reports it.
    async fn announce_best_effort(&self, job_id: &JobId, reason: &str) -> bool {
        match self.finish(job_id, false).await {
            Ok(finished) => return finished.announced,
            Err(e) => {
                tracing::warn!(error = %with_sources(&e), "finish failed; announcing the record as it is")
            }
        }
        let as_is = async {
            let job = self.load(job_id).await?;
            if self.store.markers(job_id).await?.announced_at.is_some() {
                return Ok(false);
            }
            self.announce(&JobFinished::from_job(&job, Some(reason)))
                .await
        };
        match as_is.await {
            Ok(announced) => announced,
            Err(e) => {
                tracing::error!(error = %with_sources(&e), "the Finished event could not be put");
                false
            }
        }
    }

    /// What the output of the terminal `job` says, read as [`OutputPlan`] directs and judged by
    /// the domain ([`decide_manifest`]).
    async fn read_outcome(
        &self,
        job: &Job,
        require_manifest: bool,
    ) -> Result<DecidedOutcome, PollerError> {
        let at = Timestamp::now();
        let output_error = |source| PollerError::Manifest {
            job_id: job.job_id.clone(),
            source,
        };
        let (service, location) = match OutputPlan::for_job(job) {
            OutputPlan::Nothing => {
                return Ok(DecidedOutcome::without_manifest(JobOutcome::unread(
                    None, at,
                )))
            }
            OutputPlan::LocationOnly { location } => {
                return Ok(DecidedOutcome::without_manifest(JobOutcome::unread(
                    Some(location),
                    at,
                )))
            }
            OutputPlan::CountExport { location } => {
                let output = read_export_output(&self.outputs, &location)
                    .await
                    .map_err(output_error)?;
                return Ok(DecidedOutcome::counted_export(output, at));
            }
            OutputPlan::ReadManifest { service, location } => (service, location),
        };
        let read = match read_job_output(&self.outputs, service, &location, MAX_FAILED_FILES).await
        {
            Ok(output) => ManifestRead::Found(output),
            Err(ManifestError::NotReady { uri }) => ManifestRead::Missing { uri },
            Err(source) => return Err(output_error(source)),
        };
        match decide_manifest(job.status, location, read, require_manifest, at) {
            ManifestDecision::Record(decided) => {
                if decided.manifest_found == Some(false) {
                    tracing::info!(status = %job.status, note = ?decided.note, "finishing without an output manifest");
                }
                Ok(decided)
            }
            ManifestDecision::WaitForManifest { uri } => Err(PollerError::ManifestNotReady {
                job_id: job.job_id.clone(),
                uri,
            }),
        }
    }

    /// Puts the event, then notes it. In that order a crash between the two can repeat the event
    /// (at the retry) but never lose it; consumers deduplicate on `jobId`, as they must for
    /// EventBridge's at-least-once delivery anyway.
    async fn announce(&self, summary: &JobFinished) -> Result<bool, PollerError> {
        let job_id = &summary.job_id;
        self.announcer
            .announce(summary)
            .await
            .map_err(|source| PollerError::Announce {
                job_id: job_id.clone(),
                source,
            })?;
        if !self.store.mark_announced(job_id, Timestamp::now()).await? {
            tracing::warn!("the Finished event had been noted already: it was put twice");
        }
        // Counted with its one Finished event: every way a job ends (its service's end, a start
        // given up, tracking stopped) is announced here.
        if let Some(service) = summary.service {
            self.metrics.emit(Observation::JobFinished {
                service,
                status: summary.status,
            });
        }
        Ok(true)
    }

    async fn load(&self, job_id: &JobId) -> Result<Job, PollerError> {
        self.store
            .get(job_id)
            .await?
            .ok_or_else(|| PollerError::JobNotFound(job_id.clone()))
    }

    fn state(&self, job_id: &JobId, status: JobStatus, polls: u32) -> TrackingState {
        TrackingState {
            job_id: job_id.clone(),
            status,
            terminal: status.is_terminal(),
            waiting: false,
            await_events: false,
            await_timeout_seconds: None,
            polls,
            next_wait_seconds: self.schedule.wait_after(polls),
        }
    }

    /// Not started yet: the workflow waits `seconds` and asks `start` again.
    fn waiting(&self, job_id: &JobId, status: JobStatus, seconds: u64) -> TrackingState {
        TrackingState {
            job_id: job_id.clone(),
            status,
            terminal: false,
            waiting: true,
            await_events: false,
            await_timeout_seconds: None,
            polls: 0,
            next_wait_seconds: seconds.max(1),
        }
    }
}

/// When the job became ready to start: its batch's close, else its record's creation.
fn ready_at(job: &Job) -> Timestamp {
    job.batch()
        .and_then(|b| b.closed.map(|c| c.at))
        .unwrap_or(job.created_at)
}

/// Whole seconds from `now` until `at`, rounded up.
fn seconds_until(now: Timestamp, at: Timestamp) -> u64 {
    let millis = (at.datetime() - now.datetime()).whole_milliseconds().max(0) as u64;
    millis.div_ceil(1000)
}

fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PollerError;
    use healthimport::domain::batch::{BatchFill, BatchFolder, BatchPolicy, CloseReason, Staging};
    use healthimport::domain::export::{ExportMode, ExportRequest, ExportTrigger};
    use healthimport::domain::job::{
        FailedFile, JobCounts, JobKind, Service, SourceObject, Target,
    };
    use healthimport::fakes::{
        MemoryJobStore, MemoryOutputs, RecordingAnnouncer, RecordingMetrics, ReportedJobService,
    };
    use healthimport::metrics::Metric;
    use healthimport::ports::objects::StagedCopies;
    use healthimport::ports::service_jobs::{JobReport, Retry, StartWork};
    use healthimport::ports::store::StoreError;
    use serde_json::json;

    type TestPoller = Poller<
        MemoryJobStore,
        ReportedJobService,
        MemoryOutputs,
        RecordingAnnouncer,
        RecordingMetrics,
    >;

    const DATASTORE: &str = "3c3b1cc0fa0bd16fbc0e1e3b6f8d9e21";
    const SERVICE_JOB: &str = "5e2d4c3b2a1f0e9d8c7b6a5f4e3d2c1b";

    fn poller() -> TestPoller {
        Poller {
            store: MemoryJobStore::default(),
            services: ReportedJobService::default(),
            outputs: MemoryOutputs::default(),
            announcer: RecordingAnnouncer::default(),
            schedule: PollSchedule::default(),
            // The start path's own answers; the events mode's await has its own test.
            tracking_mode: TrackingMode::Polling,
            metrics: RecordingMetrics::default(),
            starting: Starting {
                batching: Batching {
                    policy: BatchPolicy::default(),
                    staging: Staging::default(),
                },
                pace: Pace::default(),
                max_age: time::Duration::hours(24),
                lane_wait_seconds: 30,
            },
        }
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A recorded job of `service` in `status` (started at the service unless PENDING).
    async fn job(p: &TestPoller, service: Service, status: JobStatus) -> JobId {
        let (key, out) = match service {
            Service::HealthImaging => ("dicom/study-7/_READY", "s3://out/dicom/"),
            Service::HealthLake => ("fhir/patients.ndjson", "s3://out/fhir/"),
        };
        let mut job = Job::import(
            SourceObject {
                bucket: "ingest".into(),
                key: key.into(),
                size: 10,
                e_tag: Some(format!("{status}")),
                version_id: None,
            },
            Target {
                service,
                datastore_id: DATASTORE.into(),
                output_s3_uri: out.into(),
            },
            format!("s3://ingest/{key}"),
            Timestamp::now(),
        );
        if status != JobStatus::Pending {
            job.apply(
                &Transition::to(JobStatus::Submitted, Timestamp::now())
                    .with_service_job_id(SERVICE_JOB),
            )
            .unwrap();
            if status != JobStatus::Submitted {
                job.apply(&Transition::to(status, Timestamp::now()))
                    .unwrap();
            }
        }
        p.store.create(&job).await.unwrap();
        job.job_id
    }

    async fn record(p: &TestPoller, id: &JobId) -> Job {
        p.store.get(id).await.unwrap().unwrap()
    }

    fn imaging_location() -> String {
        format!("s3://out/dicom/{DATASTORE}-DicomImport-{SERVICE_JOB}/")
    }

    fn put_imaging_output(p: &TestPoller, failures: &str) {
        let location = imaging_location();
        p.outputs.put(
            format!("{location}job-output-manifest.json"),
            fixture("manifests/imaging-job-output-manifest.json"),
        );
        p.outputs
            .put(format!("{location}FAILURE/failure.ndjson"), failures);
    }

    // --- start ---

    #[tokio::test]
    async fn start_starts_a_pending_job_and_asks_for_the_first_short_wait() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        let out = p
            .handle(json!({"action": "start", "jobId": id}))
            .await
            .unwrap();
        assert_eq!(
            out,
            json!({"jobId": id, "status": "SUBMITTED", "terminal": false, "waiting": false, "awaitEvents": false, "polls": 0, "nextWaitSeconds": 15})
        );
        let job = record(&p, &id).await;
        assert_eq!(job.service_job_id.as_deref(), Some("svc-0"));
        let call = &p.services.starts.start_calls.lock().unwrap()[0];
        assert_eq!(call.job_id, id, "the client token is the job id");
    }

    #[tokio::test]
    async fn a_throttled_start_waits_and_the_job_stays_pending() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::Pending).await;
        p.services
            .starts
            .fail_next("ThrottlingException", Retry::Later);
        let state = p.start(&id, None).await.unwrap();
        assert_eq!(
            (
                state.status,
                state.waiting,
                state.terminal,
                state.next_wait_seconds
            ),
            (JobStatus::Pending, true, false, 30)
        );
        let pending = record(&p, &id).await;
        assert_eq!(pending.status, JobStatus::Pending);
        assert!(pending
            .message
            .is_some_and(|m| m.contains("ThrottlingException")));
        // The workflow's next Start starts it, as the same job at the service.
        assert_eq!(
            p.start(&id, None).await.unwrap().status,
            JobStatus::Submitted
        );
        assert_eq!(p.services.starts.jobs_started(), 1);
        assert_eq!(
            record(&p, &id).await.message,
            None,
            "the retry message no longer holds once the job has started"
        );
    }

    #[tokio::test]
    async fn in_events_mode_a_started_job_awaits_its_event_within_the_executions_deadline() {
        let mut p = poller();
        p.tracking_mode = TrackingMode::Events;
        let id = job(&p, Service::HealthLake, JobStatus::Pending).await;
        let deadline = Deadline {
            execution_started_at: Timestamp::now().plus(time::Duration::seconds(-100)),
            timeout_seconds: 3600,
        };
        let state = p.start(&id, Some(&deadline)).await.unwrap();
        assert_eq!(state.status, JobStatus::Submitted);
        assert!(state.await_events && !state.waiting && !state.terminal);
        // 3600 s less a fifth (at most 300 s) to record the end, less the 100 s gone.
        let timeout = state.await_timeout_seconds.unwrap();
        assert!((3199..=3200).contains(&timeout), "{timeout}");
        // A job that ended is finished, never awaited.
        let ended = job(&p, Service::HealthLake, JobStatus::Completed).await;
        let state = p.start(&ended, Some(&deadline)).await.unwrap();
        assert!(state.terminal && !state.await_events);
    }

    #[tokio::test]
    async fn a_start_refused_for_good_is_terminal_start_failed() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::Pending).await;
        p.services
            .starts
            .fail_next("ValidationException", Retry::Never);
        let state = p.start(&id, None).await.unwrap();
        assert_eq!(
            (state.status, state.terminal),
            (JobStatus::StartFailed, true)
        );
    }

    #[tokio::test]
    async fn start_leaves_a_started_job_alone() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::InProgress).await;
        let state = p.start(&id, None).await.unwrap();
        assert_eq!(state.status, JobStatus::InProgress);
        assert_eq!(p.services.starts.start_call_count(), 0);
    }

    // --- batches ---

    /// An open batch of `files` DICOM uploads in `dicom/study-9/`, each upload's object in the
    /// fake bucket, its first file `opened_secs_ago` ago and its last `quiet_secs` ago.
    async fn open_batch(
        p: &TestPoller,
        files: usize,
        opened_secs_ago: i64,
        quiet_secs: i64,
    ) -> JobId {
        let now = Timestamp::now();
        let folder = BatchFolder {
            service: Service::HealthImaging,
            datastore_id: DATASTORE.into(),
            bucket: "ingest".into(),
            folder: "dicom/study-9/".into(),
        };
        let batch_id = folder.batch_id(0);
        let mut fill = BatchFill::first(10, now.plus(time::Duration::seconds(-opened_secs_ago)));
        fill.files = files as u64;
        fill.bytes = 10 * files as u64;
        fill.last_file_at = now.plus(time::Duration::seconds(-quiet_secs));
        let batch = Job::open_batch(
            &folder,
            0,
            fill,
            "s3://out/dicom/",
            p.starting.batching.staging.batch_uri("ingest", &batch_id),
        );
        p.store.create(&batch).await.unwrap();
        for n in 0..files {
            let key = format!("dicom/study-9/IM{n}");
            let source = SourceObject {
                bucket: "ingest".into(),
                key: key.clone(),
                size: 10,
                e_tag: Some(format!("e{n}")),
                version_id: None,
            };
            let target = batch.target().unwrap().clone();
            p.store
                .create(&Job::batched(source, batch_id.clone(), target, now))
                .await
                .unwrap();
            p.outputs.put(format!("s3://ingest/{key}"), "DICM");
        }
        batch_id
    }

    #[tokio::test]
    async fn an_open_batch_waits_until_it_is_due_then_closes_stages_and_starts() {
        let p = poller();
        let id = open_batch(&p, 3, 10, 10).await;
        let state = p.start(&id, None).await.unwrap();
        assert!(state.waiting, "{state:?}");
        assert_eq!(state.status, JobStatus::Open);
        assert!(
            (49..=51).contains(&state.next_wait_seconds),
            "wakes when quiet: {state:?}"
        );
        assert_eq!(p.services.starts.start_call_count(), 0);
        assert!(
            p.metrics.observed().is_empty(),
            "an open batch is not waiting to start"
        );

        let id = {
            let p2 = poller();
            let id = open_batch(&p2, 3, 70, 61).await;
            let state = p2.start(&id, None).await.unwrap();
            assert_eq!((state.status, state.waiting), (JobStatus::Submitted, false));
            let batch = record(&p2, &id).await;
            assert_eq!(
                batch.batch().unwrap().closed.map(|c| c.reason),
                Some(CloseReason::Quiet)
            );
            assert!(batch.batch().unwrap().staged_at.is_some());
            let staged = p2.outputs.uris_under(&format!("s3://ingest/staging/{id}/"));
            assert_eq!(staged.len(), 3, "{staged:?}");
            let call = &p2.services.starts.start_calls.lock().unwrap()[0];
            assert_eq!(
                call.work,
                StartWork::Import {
                    input_s3_uri: format!("s3://ingest/staging/{id}/")
                },
                "the job imports the batch's own prefix"
            );
            let observed = p2.metrics.observed();
            assert_eq!(
                observed[0],
                Observation::BatchClosed {
                    service: Service::HealthImaging,
                    reason: CloseReason::Quiet
                }
            );
            assert!(
                matches!(
                    observed[1],
                    Observation::StartWaiting {
                        service: Service::HealthImaging,
                        waited_seconds: 0..=2
                    }
                ),
                "{observed:?}"
            );
            assert_eq!(
                observed[2..],
                [Observation::JobStarted {
                    service: Service::HealthImaging
                }]
            );
            id
        };
        assert!(!id.as_str().is_empty());
    }

    #[tokio::test]
    async fn an_upload_deleted_before_staging_fails_alone() {
        let p = poller();
        let id = open_batch(&p, 2, 400, 1).await;
        p.outputs
            .delete_prefix("ingest", "dicom/study-9/IM1")
            .await
            .unwrap();
        let state = p.start(&id, None).await.unwrap();
        assert_eq!(state.status, JobStatus::Submitted, "max wait closed it");
        let members = p.store.members(&id).await.unwrap();
        let statuses: Vec<_> = members.iter().map(|m| (m.subject(), m.status)).collect();
        assert_eq!(
            statuses,
            vec![
                ("dicom/study-9/IM0".to_owned(), JobStatus::Batched),
                ("dicom/study-9/IM1".to_owned(), JobStatus::Failed)
            ]
        );
        assert_eq!(
            p.metrics.total(Metric::FilesFailed),
            1,
            "counted as it fails"
        );
        assert_eq!(p.metrics.total(Metric::FilesImported), 0);
    }

    #[tokio::test]
    async fn a_full_lane_makes_the_start_wait_without_calling_the_service() {
        let mut p = poller();
        p.starting.pace.imaging_max_running = 1;
        // The running-jobs cap is under test here, not the start rate.
        p.starting.pace.imaging_starts_per_second = 1e9;
        let first = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        assert_eq!(
            p.start(&first, None).await.unwrap().status,
            JobStatus::Submitted
        );
        let id = open_batch(&p, 1, 400, 1).await;
        let state = p.start(&id, None).await.unwrap();
        assert_eq!(
            (state.status, state.waiting, state.next_wait_seconds),
            (JobStatus::Pending, true, 30)
        );
        assert_eq!(p.services.starts.start_call_count(), 1);
        // The first job ends: its place is given back, and the batch starts.
        p.services.report(JobReport {
            status: JobStatus::Completed,
            message: None,
            progress: None,
            ended_at: None,
        });
        assert!(p.poll(&first, 0, None).await.unwrap().terminal);
        assert_eq!(
            p.start(&id, None).await.unwrap().status,
            JobStatus::Submitted
        );
    }

    #[tokio::test]
    async fn a_batch_not_started_within_the_maximum_age_is_start_failed() {
        let mut p = poller();
        p.starting.max_age = time::Duration::seconds(60);
        p.starting.pace.imaging_max_running = 1;
        let blocker = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        p.start(&blocker, None).await.unwrap();
        let id = open_batch(&p, 1, 400, 100).await;
        // Closed (and staged) long ago, by the clock: its start has waited past the limit.
        let state = p.start(&id, None).await.unwrap();
        assert!(state.waiting);
        let mut batch = record(&p, &id).await;
        if let healthimport::domain::job::Work::Batch { batch: b, .. } = &mut batch.work {
            b.closed.as_mut().unwrap().at = Timestamp::now().plus(time::Duration::seconds(-61));
        }
        let p = Poller {
            store: {
                let store = MemoryJobStore::default();
                store.create(&batch).await.unwrap();
                store
            },
            ..p
        };
        let state = p.start(&id, None).await.unwrap();
        assert_eq!(
            (state.status, state.terminal),
            (JobStatus::StartFailed, true)
        );
        assert!(record(&p, &id)
            .await
            .message
            .is_some_and(|m| m.contains("START_MAX_AGE")));
    }

    #[tokio::test]
    async fn a_finished_batch_gives_each_upload_its_own_result_removes_its_copies_and_names_them() {
        let p = poller();
        let id = open_batch(&p, 2, 400, 1).await;
        p.start(&id, None).await.unwrap();
        p.services.report(JobReport {
            status: JobStatus::Completed,
            message: None,
            progress: None,
            ended_at: None,
        });
        assert!(p.poll(&id, 0, None).await.unwrap().terminal);
        let location = format!("s3://out/dicom/{DATASTORE}-DicomImport-svc-0/");
        p.outputs.put(
            format!("{location}job-output-manifest.json"),
            json!({"jobSummary": {"jobId": "svc-0", "datastoreId": DATASTORE,
                "numberOfScannedFiles": 2, "numberOfImportedFiles": 1,
                "numberOfFilesWithCustomerError": 1, "numberOfFilesWithServerError": 0,
                "failureOutputS3Uri": format!("{location}FAILURE/")}})
            .to_string(),
        );
        p.outputs.put(
            format!("{location}FAILURE/failure.ndjson"),
            json!({"inputFile": format!("s3://ingest/staging/{id}/IM1"),
                   "exception": {"exceptionType": "InvalidDicomFile", "message": "no DICM"}})
            .to_string(),
        );
        let finished = p.finish(&id, true).await.unwrap();
        let members = p.store.members(&id).await.unwrap();
        let results: Vec<_> = members
            .iter()
            .map(|m| (m.subject(), m.status, m.message.clone()))
            .collect();
        assert_eq!(
            results,
            vec![
                ("dicom/study-9/IM0".to_owned(), JobStatus::Completed, None),
                (
                    "dicom/study-9/IM1".to_owned(),
                    JobStatus::Failed,
                    Some("InvalidDicomFile: no DICM".to_owned())
                ),
            ]
        );
        assert!(p
            .outputs
            .uris_under(&format!("s3://ingest/staging/{id}/"))
            .is_empty());
        let batch = finished.summary.batch.expect("the event names the batch");
        assert_eq!(batch.upload_count, 2);
        assert_eq!(
            batch.uploads,
            vec!["dicom/study-9/IM0", "dicom/study-9/IM1"]
        );
        assert_eq!(p.announcer.events().len(), 1, "one event per job");
        assert_eq!(p.metrics.total(Metric::FilesImported), 1);
        assert_eq!(p.metrics.total(Metric::FilesFailed), 1);
        assert!(p.metrics.observed().contains(&Observation::JobFinished {
            service: Service::HealthImaging,
            status: JobStatus::Completed
        }));
        assert!(p.metrics.observed().contains(&Observation::BatchClosed {
            service: Service::HealthImaging,
            reason: CloseReason::MaxWait
        }));
        // A repeated finish changes no upload's result, and counts nothing again.
        let before = p.metrics.observed();
        p.finish(&id, true).await.unwrap();
        assert_eq!(p.store.members(&id).await.unwrap(), members);
        assert_eq!(p.metrics.observed(), before);
    }

    // --- poll ---

    #[tokio::test]
    async fn every_documented_status_is_recorded_through_the_poll() {
        let documented = [
            (Service::HealthLake, JobStatus::Submitted),
            (Service::HealthLake, JobStatus::Queued),
            (Service::HealthLake, JobStatus::InProgress),
            (Service::HealthLake, JobStatus::CompletedWithErrors),
            (Service::HealthLake, JobStatus::Completed),
            (Service::HealthLake, JobStatus::Failed),
            (Service::HealthLake, JobStatus::CancelSubmitted),
            (Service::HealthLake, JobStatus::CancelInProgress),
            (Service::HealthLake, JobStatus::CancelCompleted),
            (Service::HealthLake, JobStatus::CancelFailed),
            (Service::HealthImaging, JobStatus::Submitted),
            (Service::HealthImaging, JobStatus::InProgress),
            (Service::HealthImaging, JobStatus::Completed),
            (Service::HealthImaging, JobStatus::Failed),
        ];
        for (service, reported) in documented {
            // The adapters map the service's strings; the poll must carry each one to the record.
            assert_eq!(
                JobStatus::from_service(service, reported.as_str()),
                Ok(reported)
            );
            let p = poller();
            let id = job(&p, service, JobStatus::Submitted).await;
            p.services.report_status(reported);
            let state = p.poll(&id, 2, None).await.unwrap();
            assert_eq!(state.status, reported, "{service} {reported}");
            assert_eq!(state.terminal, reported.is_terminal(), "{reported}");
            assert_eq!(state.polls, 3);
            assert_eq!(record(&p, &id).await.status, reported);
        }
    }

    #[tokio::test]
    async fn a_polled_end_reports_its_latency_from_the_service_s_end_time_once() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::InProgress).await;
        p.services.report(JobReport {
            status: JobStatus::InProgress,
            message: None,
            progress: None,
            ended_at: None,
        });
        p.poll(&id, 0, None).await.unwrap();
        assert!(p.metrics.observed().is_empty(), "still running");
        p.services.report(JobReport {
            status: JobStatus::Completed,
            message: None,
            progress: None,
            ended_at: Some(Timestamp::now().plus(time::Duration::seconds(-30))),
        });
        assert!(p.poll(&id, 1, None).await.unwrap().terminal);
        let observed = p.metrics.observed();
        assert!(
            matches!(
                observed[..],
                [Observation::CompletionRecorded {
                    service: Service::HealthLake,
                    latency_ms: 30_000..=40_000
                }]
            ),
            "{observed:?}"
        );
        // A late poll after the end records nothing, and measures nothing.
        p.poll(&id, 2, None).await.unwrap();
        assert_eq!(p.metrics.observed(), observed);
    }

    #[tokio::test]
    async fn progress_counters_and_the_service_message_are_stored_while_running() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::Queued).await;
        let progress = JobCounts {
            scanned: 4,
            imported: 2,
            failed: 0,
        };
        p.services.report(JobReport {
            status: JobStatus::InProgress,
            message: Some("importing".into()),
            progress: Some(progress),
            ended_at: None,
        });
        p.poll(&id, 0, None).await.unwrap();
        let job = record(&p, &id).await;
        assert_eq!(job.counts, Some(progress));
        assert_eq!(job.message.as_deref(), Some("importing"));
        // A second poll at the same status refreshes the counters.
        p.services.report(JobReport {
            status: JobStatus::InProgress,
            message: None,
            progress: Some(JobCounts {
                scanned: 8,
                ..progress
            }),
            ended_at: None,
        });
        p.poll(&id, 1, None).await.unwrap();
        assert_eq!(record(&p, &id).await.counts.unwrap().scanned, 8);
    }

    #[tokio::test]
    async fn a_stale_poll_after_the_end_changes_nothing() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Completed).await;
        let before = record(&p, &id).await;
        p.services.report_status(JobStatus::InProgress);
        let state = p.poll(&id, 7, None).await.unwrap();
        assert_eq!((state.status, state.terminal), (JobStatus::Completed, true));
        assert_eq!(record(&p, &id).await, before);
        assert_eq!(
            p.services.describe_calls(),
            0,
            "a final record is not re-read"
        );
    }

    #[tokio::test]
    async fn a_lagging_report_does_not_move_the_record_back() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::InProgress).await;
        let before = record(&p, &id).await;
        p.services.report_status(JobStatus::Queued);
        let state = p.poll(&id, 0, None).await.unwrap();
        assert_eq!(state.status, JobStatus::InProgress);
        assert_eq!(record(&p, &id).await, before);
    }

    #[tokio::test]
    async fn service_errors_say_whether_the_workflow_should_retry() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::InProgress).await;
        for (code, retry, error_type) in [
            ("ThrottlingException", Retry::Later, "ServiceUnavailable"),
            ("AccessDeniedException", Retry::Never, "ServiceRejected"),
            (
                "MalformedResponse",
                Retry::Later,
                "UnexpectedServiceResponse",
            ),
        ] {
            p.services.fail_next_describe(code, retry);
            let err = p.poll(&id, 0, None).await.unwrap_err();
            assert_eq!(err.error_type(), error_type, "{code}");
        }
    }

    #[tokio::test]
    async fn a_one_hour_job_costs_fourteen_polls_through_the_handler() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Submitted).await;
        put_imaging_output(&p, "");
        let duration = 3_600;
        let mut clock = 0;
        let mut state = p.start(&id, None).await.unwrap();
        let mut transitions = 2; // Start, Choice
        while !state.terminal {
            clock += state.next_wait_seconds;
            if clock >= duration {
                p.services.report_status(JobStatus::Completed);
            }
            state = p.poll(&id, state.polls, None).await.unwrap();
            transitions += 3; // Wait, Poll, Choice
        }
        p.finish(&id, true).await.unwrap();
        transitions += 1; // Finish (End)
        assert_eq!(state.polls, 14);
        assert_eq!(p.services.describe_calls(), 14);
        assert_eq!(transitions, 45);
        assert!(clock - duration <= 300);
    }

    // --- finish ---

    #[tokio::test]
    async fn finish_records_the_manifest_counts_failed_files_and_location_then_announces() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Completed).await;
        put_imaging_output(&p, &fixture("manifests/imaging-failure.ndjson"));
        let finished = p.finish(&id, true).await.unwrap();
        assert!(finished.announced);
        assert_eq!(finished.manifest_found, Some(true));

        let job = record(&p, &id).await;
        assert_eq!(
            job.status,
            JobStatus::Completed,
            "failed files do not change the status"
        );
        assert!(job.has_failures(), "but the record says they failed");
        assert_eq!(
            job.counts,
            Some(JobCounts {
                scanned: 5,
                imported: 3,
                failed: 2
            })
        );
        assert_eq!(job.failed_files.len(), 2);
        assert_eq!(
            job.failed_files[0],
            FailedFile {
                input_file: "s3://ingest/dicom/study-7/broken.dcm".into(),
                message: "ValidationException: The file is not a DICOM P10 file".into(),
            }
        );
        assert_eq!(job.output_location, Some(imaging_location()));

        let events = p.announcer.events();
        assert_eq!(events.len(), 1);
        let event = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(event["status"], "COMPLETED");
        assert_eq!(event["hasFailures"], true);
        assert_eq!(
            event["counts"],
            json!({"scanned": 5, "imported": 3, "failed": 2})
        );
        assert_eq!(event["failedFileCount"], 2);
        assert_eq!(event["outputLocation"], imaging_location());
        assert_eq!(event["source"]["key"], "dicom/study-7/_READY");
    }

    #[tokio::test]
    async fn a_repeated_finish_neither_rereads_nor_reannounces() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Completed).await;
        put_imaging_output(&p, "");
        p.finish(&id, true).await.unwrap();
        let reads = p.outputs.reads();
        let again = p.finish(&id, true).await.unwrap();
        assert!(!again.announced);
        assert_eq!(p.outputs.reads(), reads);
        assert_eq!(p.announcer.events().len(), 1);
        assert_eq!(again.summary.counts.unwrap().imported, 3);
    }

    #[tokio::test]
    async fn a_failed_announcement_is_retried_and_the_event_is_put_once() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Failed).await;
        put_imaging_output(&p, "");
        p.announcer.fail_next();
        let err = p.finish(&id, true).await.unwrap_err();
        assert_eq!(err.error_type(), "AnnounceFailed");
        assert!(
            p.store.markers_of(&id).outcome_at.is_some(),
            "the outcome stands"
        );
        assert!(p.finish(&id, true).await.unwrap().announced);
        assert!(!p.finish(&id, true).await.unwrap().announced);
        assert_eq!(p.announcer.events().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_job_without_a_manifest_finishes_at_once() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::Failed).await;
        let out = p
            .handle(json!({"action": "finish", "jobId": id}))
            .await
            .unwrap();
        assert_eq!(out["manifestFound"], false);
        let events = p.announcer.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, JobStatus::Failed);
        assert!(
            events[0]
                .message
                .as_deref()
                .is_none_or(|m| !m.contains("did not appear")),
            "a failed job's missing manifest is not news: {:?}",
            events[0].message
        );
    }

    /// A recorded export in `status` (started at HealthLake unless PENDING).
    async fn export_job(p: &TestPoller, status: JobStatus) -> JobId {
        let request = ExportRequest::new(
            ExportTrigger::OnDemand {
                request_id: format!("r-{status}"),
            },
            ExportMode::Full,
            None,
            Timestamp::now(),
        );
        let mut job = Job::export(request, DATASTORE, "s3://out/exports/", Timestamp::now());
        if status != JobStatus::Pending {
            job.apply(
                &Transition::to(JobStatus::Submitted, Timestamp::now())
                    .with_service_job_id(SERVICE_JOB),
            )
            .unwrap();
            job.apply(&Transition::to(status, Timestamp::now()))
                .unwrap();
        }
        p.store.create(&job).await.unwrap();
        job.job_id
    }

    #[tokio::test]
    async fn a_pending_export_is_started_as_an_export() {
        let p = poller();
        let id = export_job(&p, JobStatus::Pending).await;
        let state = p.start(&id, None).await.unwrap();
        assert_eq!(state.status, JobStatus::Submitted);
        let call = &p.services.starts.start_calls.lock().unwrap()[0];
        assert_eq!(call.work, StartWork::Export { since: None });
        assert_eq!(call.output_s3_uri, "s3://out/exports/");
    }

    #[tokio::test]
    async fn a_completed_export_counts_the_files_it_wrote_and_is_announced_as_an_export() {
        let p = poller();
        let id = export_job(&p, JobStatus::Completed).await;
        let location = format!("s3://out/exports/{DATASTORE}-FHIR_EXPORT-{SERVICE_JOB}/");
        for file in [
            "Patient/Patient-0.ndjson",
            "Observation/Observation-0.ndjson",
        ] {
            p.outputs.put(format!("{location}{file}"), "{}");
        }
        // Not an export file: another job's folder next to it.
        p.outputs.put(
            format!("s3://out/exports/{DATASTORE}-FHIR_EXPORT-other/Patient/Patient-0.ndjson"),
            "{}",
        );
        let out = p
            .handle(json!({"action": "finish", "jobId": id}))
            .await
            .unwrap();
        assert_eq!(out["announced"], true);
        let job = record(&p, &id).await;
        assert_eq!(
            job.counts,
            Some(JobCounts {
                scanned: 2,
                imported: 2,
                failed: 0
            })
        );
        assert_eq!(job.output_location.as_deref(), Some(location.as_str()));
        let event = &p.announcer.events()[0];
        assert_eq!(event.kind, JobKind::Export);
        assert_eq!(event.detail_type(), "Export Job Finished");
        assert!(event.succeeded);
        assert_eq!(event.source, None);
        assert!(event.export.is_some());
    }

    #[tokio::test]
    async fn a_failed_export_is_recorded_without_counts() {
        let p = poller();
        let id = export_job(&p, JobStatus::Failed).await;
        p.handle(json!({"action": "finish", "jobId": id}))
            .await
            .unwrap();
        let job = record(&p, &id).await;
        assert_eq!(job.counts, None);
        let event = &p.announcer.events()[0];
        assert!(event.has_failures == Some(true) && !event.succeeded);
        assert_eq!(p.outputs.reads(), 0);
    }

    #[tokio::test]
    async fn a_missing_manifest_is_not_ready_until_the_workflow_gives_up_waiting() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::Completed).await;
        let err = p
            .handle(json!({"action": "finish", "jobId": id}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "ManifestNotReady");
        assert!(p.announcer.events().is_empty());
        assert!(p.store.markers_of(&id).outcome_at.is_none());

        let out = p
            .handle(json!({"action": "finish", "jobId": id, "requireManifest": false}))
            .await
            .unwrap();
        assert_eq!(out["manifestFound"], false);
        let event = &p.announcer.events()[0];
        assert!(event.message.as_deref().unwrap().contains("did not appear"));
        assert!(
            !event.succeeded && !event.outcome_verified && event.has_failures.is_none(),
            "an outcome nobody checked is not announced as clean: {event:?}"
        );
        assert_eq!(event.counts, None, "counts unknown");
        assert_eq!(record(&p, &id).await.outcome_verified, Some(false));
        assert_eq!(
            event.output_location.as_deref(),
            Some(format!("s3://out/fhir/{DATASTORE}-FHIR_IMPORT-{SERVICE_JOB}/").as_str())
        );
    }

    #[tokio::test]
    async fn a_healthlake_job_reads_its_manifest_and_failure_files() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::CompletedWithErrors).await;
        let location = format!("s3://out/fhir/{DATASTORE}-FHIR_IMPORT-{SERVICE_JOB}/");
        let manifest = fixture("manifests/healthlake-manifest.json").replace(
            "s3://healthimport-output/fhir/32839038a2f47f17c2fe0f53f0c3a0ba-FHIR_IMPORT-19dd7bb7bcc8ee12a09bf6d322744a3d/",
            &location,
        );
        p.outputs.put(format!("{location}manifest.json"), manifest);
        p.outputs.put(
            format!("{location}FAILURE/patients.ndjson"),
            fixture("manifests/healthlake-failure.ndjson"),
        );
        let finished = p.finish(&id, true).await.unwrap();
        let job = record(&p, &id).await;
        assert_eq!(job.counts.unwrap().scanned, 1);
        assert_eq!(job.failed_files.len(), 3);
        assert_eq!(finished.summary.has_failures, Some(true));
        assert!(finished
            .summary
            .message
            .unwrap()
            .contains("5 resources were not imported"));
    }

    #[tokio::test]
    async fn failed_files_are_bounded_on_the_record_and_in_the_event() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Completed).await;
        let failures: String = (0..5000)
            .map(|i| {
                format!("{{\"inputFile\":\"s3://ingest/dicom/study-7/{i}.dcm\",\"exception\":{{\"exceptionType\":\"ValidationException\",\"message\":\"bad\"}}}}\n")
            })
            .collect();
        put_imaging_output(&p, &failures);
        p.finish(&id, true).await.unwrap();
        assert_eq!(record(&p, &id).await.failed_files.len(), MAX_FAILED_FILES);
        let event = &p.announcer.events()[0];
        assert_eq!(
            event.failed_files.len(),
            healthimport::domain::finished::EVENT_FAILED_FILES
        );
    }

    #[tokio::test]
    async fn a_job_that_never_started_is_announced_without_reading_any_output() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        p.services
            .starts
            .fail_next("ValidationException", Retry::Never);
        p.start(&id, None).await.unwrap();
        let finished = p.finish(&id, true).await.unwrap();
        assert_eq!(finished.status, JobStatus::StartFailed);
        assert!(finished.announced && finished.summary.has_failures == Some(true));
        assert_eq!(p.outputs.reads(), 0);
    }

    #[tokio::test]
    async fn finish_refuses_a_running_job() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::InProgress).await;
        let err = p.finish(&id, true).await.unwrap_err();
        assert_eq!(err.error_type(), "NotTerminal");
    }

    // --- recordFailure ---

    fn staging_failed_catch() -> Value {
        json!({
            "Error": "StagingUnavailable",
            "Cause": json!({
                "errorType": "StagingUnavailable",
                "errorMessage": "the files of batch x could not be staged: CopyObject failed (SlowDown)"
            }).to_string()
        })
    }

    #[tokio::test]
    async fn a_start_that_never_succeeded_is_recorded_start_failed_and_announced() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        let out = p
            .handle(
                json!({"action": "recordFailure", "jobId": id, "error": staging_failed_catch()}),
            )
            .await
            .unwrap();
        assert_eq!(out["status"], "START_FAILED");
        assert_eq!(out["recorded"], true);
        assert_eq!(out["announced"], true);
        let job = record(&p, &id).await;
        assert_eq!(job.status, JobStatus::StartFailed);
        let message = job.message.unwrap();
        assert!(
            message.contains("CopyObject failed (SlowDown)"),
            "the reason is recorded: {message}"
        );
        assert_eq!(p.announcer.events().len(), 1);
        assert_eq!(p.announcer.events()[0].status, JobStatus::StartFailed);
    }

    #[tokio::test]
    async fn a_running_job_whose_tracking_failed_is_left_terminal_with_the_reason_and_announced() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::InProgress).await;
        let error = StepError {
            error: "ServiceRejected".into(),
            cause: Some("not json".into()),
        };
        let out = p.record_failure(&id, Some(error)).await.unwrap();
        assert_eq!(out.status, Some(JobStatus::TrackingStopped));
        assert!(out.recorded && out.announced);
        let job = record(&p, &id).await;
        assert_eq!(job.status, JobStatus::TrackingStopped);
        assert_eq!(
            job.message.as_deref(),
            Some("tracking stopped while the job was IN_PROGRESS: ServiceRejected: not json")
        );
        let events = p.announcer.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, JobStatus::TrackingStopped);
        assert!(!events[0].succeeded && events[0].has_failures == Some(true));
        assert!(events[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("ServiceRejected")));
    }

    #[tokio::test]
    async fn a_job_the_service_no_longer_knows_ends_tracking_stopped() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Submitted).await;
        p.services
            .fail_next_describe("ResourceNotFoundException", Retry::Never);
        let err = p.poll(&id, 0, None).await.unwrap_err();
        assert_eq!(err.error_type(), "ServiceRejected");
        // What the workflow's Catch sends next.
        let out = p
            .handle(json!({"action": "recordFailure", "jobId": id,
                           "error": {"Error": err.error_type(), "Cause": err.to_string()}}))
            .await
            .unwrap();
        assert_eq!(out["status"], "TRACKING_STOPPED");
        assert_eq!(p.announcer.events().len(), 1);
    }

    #[tokio::test]
    async fn a_poll_gives_up_while_there_is_time_to_record_why() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::InProgress).await;
        let now = Timestamp::now().unix_seconds();
        let deadline = |started_ago: i64| Deadline {
            execution_started_at: Timestamp::from_unix_seconds(now - started_ago).unwrap(),
            timeout_seconds: 3600,
        };
        // Early on, the loop goes on.
        let state = p.poll(&id, 0, Some(&deadline(60))).await.unwrap();
        assert!(!state.terminal);
        // Near the end it stops: the next wait would reach into the last five minutes, kept to
        // record the end.
        let err = p.poll(&id, 1, Some(&deadline(3100))).await.unwrap_err();
        assert_eq!(err.error_type(), "TrackingTimedOut");
        // A job that has finished is finished, deadline or not.
        p.services.report_status(JobStatus::Completed);
        let state = p.poll(&id, 2, Some(&deadline(3590))).await.unwrap();
        assert!(state.terminal);
    }

    #[tokio::test]
    async fn a_finished_job_whose_manifest_cannot_be_read_is_still_announced_once() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Completed).await;
        p.outputs.put(
            format!("{}job-output-manifest.json", imaging_location()),
            "<html>",
        );
        let err = p.finish(&id, true).await.unwrap_err();
        assert_eq!(err.error_type(), "ManifestUnreadable");
        let catch = StepError {
            error: err.error_type().into(),
            cause: None,
        };
        let out = p.record_failure(&id, Some(catch.clone())).await.unwrap();
        assert!(out.announced && !out.recorded);
        assert!(!p.record_failure(&id, Some(catch)).await.unwrap().announced);
        assert_eq!(p.announcer.events().len(), 1);
        assert!(p.announcer.events()[0]
            .message
            .as_deref()
            .unwrap()
            .contains("ManifestUnreadable"));
    }

    #[tokio::test]
    async fn a_failure_for_a_job_without_a_record_is_reported_not_raised() {
        let p = poller();
        let out = p
            .record_failure(&JobId::from_stored("nope"), None)
            .await
            .unwrap();
        assert!(!out.recorded && out.status.is_none());
    }

    // --- errors, input, config, samples ---

    #[tokio::test]
    async fn errors_have_the_types_the_workflow_matches_on() {
        let p = poller();
        let err = p
            .handle(json!({"action": "explode", "jobId": "x"}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        let err = p.handle(json!({"action": "poll"})).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        let err = p
            .handle(json!({"action": "poll", "jobId": "missing"}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "JobNotFound");
        let id = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        let err = p.poll(&id, 0, None).await.unwrap_err();
        assert_eq!(err.error_type(), "JobNotStarted");
        let store = PollerError::Store(StoreError::Unavailable {
            operation: "GetItem",
            table: "jobs".into(),
            source: "throttled".into(),
        });
        let diagnostic = lambda_runtime::Diagnostic::from(store);
        assert_eq!(diagnostic.error_type, "StoreUnavailable");
        let too_large = PollerError::Store(StoreError::Rejected {
            operation: "UpdateItem",
            table: "jobs".into(),
            reason: "Item size has exceeded the maximum allowed size".into(),
        });
        // Not one of the errorTypes the workflow retries: the same write would fail again.
        assert_eq!(too_large.error_type(), "RecordRejected");
        assert_eq!(
            diagnostic.error_message,
            "job store GetItem on table jobs failed: throttled"
        );
    }

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn the_sample_events_are_each_action_in_the_workflow_s_shape() {
        let id = JobId::from_stored("9f86d081884c7d659a2feaa0c55ad015");
        let expected = [
            (
                "poller-start.json",
                PollerInput::Start {
                    job_id: JobId::from_stored("b-7da77e05f54200ad8977a604-0"),
                    deadline: Some(Deadline {
                        execution_started_at: "2026-11-24T10:00:00.000Z".parse().unwrap(),
                        timeout_seconds: 86400,
                    }),
                },
            ),
            (
                "poller-poll.json",
                PollerInput::Poll {
                    job_id: id.clone(),
                    polls: 3,
                    deadline: Some(Deadline {
                        execution_started_at: "2026-11-24T10:00:00.000Z".parse().unwrap(),
                        timeout_seconds: 86400,
                    }),
                },
            ),
            (
                "poller-finish.json",
                PollerInput::Finish {
                    job_id: id.clone(),
                    require_manifest: true,
                },
            ),
            (
                "poller-finish-without-manifest.json",
                PollerInput::Finish {
                    job_id: id.clone(),
                    require_manifest: false,
                },
            ),
        ];
        for (name, input) in expected {
            assert_eq!(
                serde_json::from_value::<PollerInput>(sample(name)).unwrap(),
                input,
                "{name}"
            );
        }
        let PollerInput::RecordFailure { job_id, error } =
            serde_json::from_value(sample("poller-record-failure.json")).unwrap()
        else {
            panic!("poller-record-failure.json is not a recordFailure")
        };
        assert_eq!(job_id, id);
        let reason = error.unwrap().describe();
        assert!(reason.starts_with("StagingUnavailable: "), "{reason}");
        assert!(reason.contains("SlowDown"), "{reason}");
    }
}
