//! The poller: each invocation is one step of a job's tracking workflow
//! (`statemachine/import-job.asl.json`, one execution per job, named after the job id).
//!
//! Input: `{"action": ..., "jobId": ...}` plus what the action needs:
//! - `start`: starts a `PENDING` job (its start was throttled in the starter) with the job id as
//!   ClientToken; a job past `PENDING` is left alone. A start refused for now fails the invocation
//!   with errorType `StartThrottled`, which the workflow retries with backoff.
//! - `poll` (`polls`: polls made so far): reads the job's status at its service and moves the
//!   record forward (a stale answer changes nothing), storing progress counters.
//! - `finish` (`requireManifest`, default true): reads the output manifest of the terminal job,
//!   records its counts, first failed files and output location once, and puts the
//!   `Import Job Finished` event once. A completed job's manifest not written yet is errorType
//!   `ManifestNotReady` (retried by the workflow); with `requireManifest: false` the job is
//!   finished without it. A failed or cancelled job may write none: it is never waited for.
//! - `recordFailure` (`error`: the `{Error, Cause}` a Catch put in the state): records on the job
//!   why tracking stopped; a job whose start never succeeded becomes `START_FAILED` and is
//!   announced.
//!
//! `start` and `poll` answer [`TrackingState`] (`jobId, status, terminal, polls,
//! nextWaitSeconds`), which the workflow's Choice (`terminal`) and Wait (`nextWaitSeconds`) read.
//! The step shapes are in [`crate::steps`], the errorTypes in [`crate::error`]; what a manifest
//! means for the outcome is the core's domain ([`healthimport::domain::outcome`]).

use healthimport::domain::finished::JobFinished;
use healthimport::domain::job::{Job, JobId, JobStatus, Timestamp, Transition, MAX_FAILED_FILES};
use healthimport::domain::outcome::{
    decide_manifest, DecidedOutcome, JobOutcome, ManifestDecision, ManifestRead, OutputPlan,
};
use healthimport::job_output::{read_export_output, read_job_output, ManifestError};
use healthimport::launch::{start_job, StartError, StartOutcome};
use healthimport::ports::announce::Announcer;
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

pub struct Poller<S, I, R, A> {
    pub store: S,
    pub services: I,
    pub outputs: R,
    pub announcer: A,
    pub schedule: PollSchedule,
}

impl<S, I, R, A> Poller<S, I, R, A>
where
    S: JobStore,
    I: JobService,
    R: OutputReader,
    A: Announcer,
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
            PollerInput::Start { job_id } => self.start(&job_id).await.map(to_json),
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
                e @ (PollerError::StartThrottled { .. } | PollerError::ManifestNotReady { .. }),
            ) => {
                tracing::warn!(error_type = e.error_type(), error = %with_sources(e), "step will be retried")
            }
            Err(e) => {
                tracing::error!(error_type = e.error_type(), error = %with_sources(e), "step failed")
            }
        }
        result
    }

    /// Starts the job if it is still `PENDING`.
    pub async fn start(&self, job_id: &JobId) -> Result<TrackingState, PollerError> {
        let job = self.load(job_id).await?;
        let outcome = start_job(&self.store, &self.services, &job, Timestamp::now)
            .await
            .map_err(|e| match e {
                StartError::Store(e) => PollerError::Store(e),
                StartError::RecordGone(job_id) => PollerError::JobNotFound(job_id),
            })?;
        let status = match outcome {
            StartOutcome::Started(job) => job.status,
            StartOutcome::StillPending(source) => {
                return Err(PollerError::StartThrottled {
                    job_id: job_id.clone(),
                    source,
                })
            }
            StartOutcome::StartFailed(_) => JobStatus::StartFailed,
            StartOutcome::NotPending(status) => status,
        };
        Ok(self.state(job_id, status, 0))
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
            TransitionOutcome::Applied(job) => job.status,
            TransitionOutcome::Rejected { current } => {
                tracing::info!(reported = %report.status, %current, "stale status report; the record is unchanged");
                current
            }
            TransitionOutcome::NotFound => return Err(PollerError::JobNotFound(job_id.clone())),
        };
        let state = self.state(job_id, status, polls);
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
            let decided = self.read_outcome(&job, require_manifest).await?;
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
        let summary = JobFinished::from_job(&job, note.as_deref());
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
            let (to, message) = if job.status == JobStatus::Pending {
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
            polls,
            next_wait_seconds: self.schedule.wait_after(polls),
        }
    }
}

fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PollerError;
    use healthimport::domain::export::{ExportMode, ExportRequest, ExportTrigger};
    use healthimport::domain::job::{
        FailedFile, JobCounts, JobKind, Service, SourceObject, Target,
    };
    use healthimport::fakes::{
        MemoryJobStore, MemoryOutputs, RecordingAnnouncer, ReportedJobService,
    };
    use healthimport::ports::service_jobs::{JobReport, Retry, StartWork};
    use healthimport::ports::store::StoreError;
    use serde_json::json;

    type TestPoller = Poller<MemoryJobStore, ReportedJobService, MemoryOutputs, RecordingAnnouncer>;

    const DATASTORE: &str = "3c3b1cc0fa0bd16fbc0e1e3b6f8d9e21";
    const SERVICE_JOB: &str = "5e2d4c3b2a1f0e9d8c7b6a5f4e3d2c1b";

    fn poller() -> TestPoller {
        Poller {
            store: MemoryJobStore::default(),
            services: ReportedJobService::default(),
            outputs: MemoryOutputs::default(),
            announcer: RecordingAnnouncer::default(),
            schedule: PollSchedule::default(),
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
            json!({"jobId": id, "status": "SUBMITTED", "terminal": false, "polls": 0, "nextWaitSeconds": 15})
        );
        let job = record(&p, &id).await;
        assert_eq!(job.service_job_id.as_deref(), Some("svc-0"));
        let call = &p.services.starts.start_calls.lock().unwrap()[0];
        assert_eq!(call.job_id, id, "the client token is the job id");
    }

    #[tokio::test]
    async fn a_throttled_start_is_a_start_throttled_error_and_the_job_stays_pending() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        p.services
            .starts
            .fail_next("ThrottlingException", Retry::Later);
        let err = p.start(&id).await.unwrap_err();
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "StartThrottled");
        assert!(
            diagnostic.error_message.contains("ThrottlingException"),
            "the service's reason travels with the error: {}",
            diagnostic.error_message
        );
        let pending = record(&p, &id).await;
        assert_eq!(pending.status, JobStatus::Pending);
        assert!(pending
            .message
            .is_some_and(|m| m.contains("start will be retried")));
        // The workflow's retry starts it, as the same job at the service.
        assert_eq!(p.start(&id).await.unwrap().status, JobStatus::Submitted);
        assert_eq!(p.services.starts.jobs_started(), 1);
        assert_eq!(
            record(&p, &id).await.message,
            None,
            "the retry message no longer holds once the job has started"
        );
    }

    #[tokio::test]
    async fn a_start_refused_for_good_is_terminal_start_failed() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::Pending).await;
        p.services
            .starts
            .fail_next("ValidationException", Retry::Never);
        let state = p.start(&id).await.unwrap();
        assert_eq!(
            (state.status, state.terminal),
            (JobStatus::StartFailed, true)
        );
    }

    #[tokio::test]
    async fn start_leaves_a_started_job_alone() {
        let p = poller();
        let id = job(&p, Service::HealthLake, JobStatus::InProgress).await;
        let state = p.start(&id).await.unwrap();
        assert_eq!(state.status, JobStatus::InProgress);
        assert_eq!(p.services.starts.start_call_count(), 0);
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
        let mut state = p.start(&id).await.unwrap();
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
        let state = p.start(&id).await.unwrap();
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
        p.start(&id).await.unwrap();
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

    fn start_throttled_catch() -> Value {
        json!({
            "Error": "StartThrottled",
            "Cause": json!({
                "errorType": "StartThrottled",
                "errorMessage": "the start of job x was refused for now: HEALTHIMAGING StartDICOMImportJob failed (ServiceQuotaExceededException): too many jobs"
            }).to_string()
        })
    }

    #[tokio::test]
    async fn a_start_that_never_succeeded_is_recorded_start_failed_and_announced() {
        let p = poller();
        let id = job(&p, Service::HealthImaging, JobStatus::Pending).await;
        let out = p
            .handle(
                json!({"action": "recordFailure", "jobId": id, "error": start_throttled_catch()}),
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
            message.contains("ServiceQuotaExceededException): too many jobs"),
            "the service's last message is recorded: {message}"
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
                PollerInput::Start { job_id: id.clone() },
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
        assert!(reason.starts_with("StartThrottled: "), "{reason}");
        assert!(reason.contains("ThrottlingException"), "{reason}");
    }
}
