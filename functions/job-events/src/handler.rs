//! The job-events function: a service's job event moves the job's record forward (only) and, when
//! it reports the end, releases the execution waiting for it; a completion check (the backstop,
//! for an event that never came) re-reads one job at its service and does the same. The decisions
//! are the core's ([`healthimport::completion`]); this file reads the invocation and answers it.
//!
//! An event that is not a job status change of a service we follow is ignored with a log line; an
//! event for a job that is not ours likewise. A failed re-check is reported in
//! `batchItemFailures`, alone, so SQS redelivers only it.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use healthimport::completion::{
    AwaitOutcome, CheckOutcome, Completion, CompletionError, EventOutcome,
};
use healthimport::domain::job::{Service, Timestamp};
use healthimport::domain::job_event::{parse_job_event, JobEventError};
use healthimport::metrics::{MetricsSink, Observation};
use healthimport::ports::admission::{Pace, StartAdmission};
use healthimport::ports::completion::{CompletionChecks, CompletionStore, WaitingExecutions};
use healthimport::ports::service_jobs::JobService;
use healthimport::ports::store::{JobStore, StoreError};
use healthimport::telemetry::with_sources;
use healthimport_aws::sqs::CompletionCheck;
use serde_json::{json, Value};

use crate::event::{JobEventsEvent, JobEventsResponse};

pub struct JobEvents<S, I, W, C, M> {
    pub store: S,
    pub services: I,
    pub executions: W,
    pub checks: C,
    pub pace: Pace,
    pub backstop_seconds: u32,
    /// Completion latency: from the service's event to the end on our record.
    pub metrics: M,
}

#[derive(Debug, thiserror::Error)]
pub enum JobEventsError {
    /// A job event of a service we follow that lacks what the services document.
    #[error("malformed job event")]
    Malformed(#[source] JobEventError),
    #[error(transparent)]
    Completion(#[from] CompletionError),
    /// The workflow waits for a job that has no record.
    #[error("job {0} has no record")]
    NoRecord(healthimport::domain::job::JobId),
}

/// Every errorType the function fails with (see [`JobEventsError::error_type`]).
pub const ERROR_TYPES: &[&str] = &[
    "MalformedJobEvent",
    "JobNotFound",
    "StoreUnavailable",
    "RecordUnusable",
    "ServiceUnavailable",
    "ReleaseFailed",
    "CheckNotScheduled",
];

impl JobEventsError {
    /// The Lambda errorType (an EventBridge target retries, then its dead-letter queue keeps the
    /// event with this type).
    pub fn error_type(&self) -> &'static str {
        match self {
            JobEventsError::Malformed(_) => "MalformedJobEvent",
            JobEventsError::NoRecord(_) => "JobNotFound",
            JobEventsError::Completion(CompletionError::Store(StoreError::Unavailable {
                ..
            })) => "StoreUnavailable",
            JobEventsError::Completion(CompletionError::Store(_)) => "RecordUnusable",
            JobEventsError::Completion(CompletionError::Service { .. }) => "ServiceUnavailable",
            JobEventsError::Completion(CompletionError::Release(_)) => "ReleaseFailed",
            JobEventsError::Completion(CompletionError::Check(_)) => "CheckNotScheduled",
        }
    }
}

impl From<JobEventsError> for lambda_runtime::Diagnostic {
    fn from(error: JobEventsError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: with_sources(&error),
        }
    }
}

impl<S, I, W, C, M> JobEvents<S, I, W, C, M>
where
    S: JobStore + CompletionStore + StartAdmission,
    I: JobService,
    W: WaitingExecutions,
    C: CompletionChecks,
    M: MetricsSink,
{
    fn completion(&self) -> Completion<'_, S, I, W, C> {
        Completion {
            store: &self.store,
            services: &self.services,
            executions: &self.executions,
            checks: &self.checks,
            pace: self.pace,
            backstop_seconds: self.backstop_seconds,
        }
    }

    pub async fn handle(&self, event: JobEventsEvent) -> Result<JobEventsResponse, JobEventsError> {
        match event {
            JobEventsEvent::Checks(batch) => {
                Ok(JobEventsResponse::Checks(self.checks(batch.records).await))
            }
            JobEventsEvent::Await(request) => {
                // The token is never logged: it releases the execution.
                let outcome = self
                    .completion()
                    .await_end(&request.job_id, &request.task_token)
                    .await
                    .inspect_err(|e| {
                        tracing::error!(job_id = %request.job_id, error = %with_sources(e), "the wait could not begin");
                    })?;
                tracing::info!(job_id = %request.job_id, outcome = ?outcome, "the workflow waits for the job's end");
                Ok(JobEventsResponse::Event(match outcome {
                    Some(AwaitOutcome::AlreadyEnded(status)) => {
                        json!({"jobId": request.job_id, "status": status, "released": true})
                    }
                    Some(AwaitOutcome::Waiting(status)) => {
                        json!({"jobId": request.job_id, "status": status, "waiting": true})
                    }
                    None => return Err(JobEventsError::NoRecord(request.job_id)),
                }))
            }
            JobEventsEvent::ServiceEvent(event) => {
                let source = event.source.as_str();
                let detail_type = event.detail_type.as_str();
                let parsed = match parse_job_event(source, detail_type, &event.detail) {
                    Ok(parsed) => parsed,
                    Err(
                        reason @ (JobEventError::UnknownSource(_)
                        | JobEventError::NotAJobEvent { .. }),
                    ) => {
                        tracing::info!(source, detail_type, decision = "ignored", reason = %reason);
                        return Ok(JobEventsResponse::Event(
                            json!({"ignored": reason.to_string()}),
                        ));
                    }
                    Err(malformed) => {
                        tracing::error!(source, detail_type, error = %malformed, "job event refused");
                        return Err(JobEventsError::Malformed(malformed));
                    }
                };
                let outcome = self.completion().on_event(&parsed).await.inspect_err(|e| {
                    tracing::error!(error = %with_sources(e), "job event not recorded; it will be retried");
                })?;
                Ok(JobEventsResponse::Event(match outcome {
                    EventOutcome::NotOurs => json!({"ignored": "not a job of ours"}),
                    EventOutcome::Recorded { job_id, status } => {
                        if let (true, Some(ended_at)) = (status.is_terminal(), event.time) {
                            // The event's time is the service's end of the job.
                            self.completion_recorded(parsed.service, ended_at.timestamp_millis());
                        }
                        json!({"jobId": job_id, "status": status})
                    }
                    EventOutcome::Stale { job_id, current } => {
                        json!({"jobId": job_id, "status": current, "unchanged": true})
                    }
                }))
            }
        }
    }

    /// Completion latency: from the service's end of a job to its end on our record, now. A
    /// clock ahead of ours counts as no delay.
    fn completion_recorded(&self, service: Service, ended_at_millis: i64) {
        let latency = Timestamp::now().unix_millis() - ended_at_millis;
        self.metrics.emit(Observation::CompletionRecorded {
            service,
            latency_ms: u64::try_from(latency).unwrap_or(0),
        });
    }

    async fn checks(&self, messages: Vec<SqsMessage>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in messages {
            if !self.check(&message).await {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn check(&self, message: &SqsMessage) -> bool {
        let body = message.body.as_deref().unwrap_or_default();
        let check: CompletionCheck = match serde_json::from_str(body) {
            Ok(check) => check,
            Err(e) => {
                // Not ours to retry: a body that does not parse never will.
                tracing::error!(error = %e, decision = "dropped", "completion check message is not a check");
                return true;
            }
        };
        match self.completion().check(&check.job_id).await {
            Ok(outcome) => {
                let outcome: Value = match outcome {
                    CheckOutcome::Finished(status) => json!({"finished": status}),
                    CheckOutcome::EndFound {
                        status,
                        service,
                        ended_at,
                    } => {
                        if let Some(ended_at) = ended_at {
                            self.completion_recorded(service, ended_at.unix_millis());
                        }
                        json!({"finished": status, "endFoundByCheck": true})
                    }
                    CheckOutcome::Running(status) => json!({"running": status}),
                    CheckOutcome::NotStarted(status) => json!({"notStarted": status}),
                    CheckOutcome::Refused => json!("refused by the service"),
                    CheckOutcome::NoRecord => json!("no record"),
                };
                tracing::info!(job_id = %check.job_id, %outcome, "completion checked");
                true
            }
            Err(e) => {
                tracing::error!(job_id = %check.job_id, error = %with_sources(&e), "completion check failed; it will be retried");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthimport::domain::job::{
        Job, JobStatus, Service, SourceObject, Target, Timestamp, Transition,
    };
    use healthimport::fakes::{
        MemoryJobStore, RecordingChecks, RecordingExecutions, RecordingMetrics, ReportedJobService,
    };
    use healthimport::ports::service_jobs::JobReport;

    type TestJobEvents = JobEvents<
        MemoryJobStore,
        ReportedJobService,
        RecordingExecutions,
        RecordingChecks,
        RecordingMetrics,
    >;

    fn handler() -> TestJobEvents {
        JobEvents {
            store: MemoryJobStore::default(),
            services: ReportedJobService::default(),
            executions: RecordingExecutions::default(),
            checks: RecordingChecks::default(),
            pace: Pace::default(),
            backstop_seconds: 900,
            metrics: RecordingMetrics::default(),
        }
    }

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The job the imaging samples name, started and waiting for its end.
    async fn waiting_imaging_job(h: &TestJobEvents, event: &Value) -> Job {
        let detail = &event["detail"];
        let mut job = Job::import(
            SourceObject {
                bucket: "ingest".into(),
                key: "dicom/x.dcm".into(),
                size: 1,
                e_tag: None,
                version_id: None,
            },
            Target {
                service: Service::HealthImaging,
                datastore_id: detail["datastoreId"].as_str().unwrap().into(),
                output_s3_uri: "s3://out/".into(),
            },
            "s3://ingest/staging/x/".into(),
            Timestamp::now(),
        );
        job.job_id =
            healthimport::domain::job::JobId::from_stored(detail["jobName"].as_str().unwrap());
        job.apply(
            &Transition::to(JobStatus::InProgress, Timestamp::now())
                .with_service_job_id(detail["jobId"].as_str().unwrap()),
        )
        .unwrap();
        h.store.create(&job).await.unwrap();
        h.store.keep_task_token(&job.job_id, "t-1").await.unwrap();
        job
    }

    async fn handle(h: &TestJobEvents, event: Value) -> Result<Value, JobEventsError> {
        let event: JobEventsEvent = serde_json::from_value(event).unwrap();
        Ok(serde_json::to_value(h.handle(event).await?).unwrap())
    }

    #[tokio::test]
    async fn a_completed_event_records_the_end_and_releases_the_wait() {
        let h = handler();
        let mut event = sample("job-event-imaging-import-completed.json");
        // The service ended the job two seconds ago.
        let two_seconds_ago = Timestamp::from_unix_seconds(Timestamp::now().unix_seconds() - 2);
        event["time"] = json!(two_seconds_ago.unwrap().to_string());
        let job = waiting_imaging_job(&h, &event).await;
        h.services.report(JobReport {
            status: JobStatus::Completed,
            message: None,
            progress: None,
            ended_at: None,
        });
        let out = handle(&h, event.clone()).await.unwrap();
        assert_eq!(out["status"], "COMPLETED", "{out}");
        assert_eq!(h.store.get_job(&job.job_id).status, JobStatus::Completed);
        assert!(h.executions.released("t-1").is_some());
        let observed = h.metrics.observed();
        assert!(
            matches!(
                observed[..],
                [Observation::CompletionRecorded {
                    service: Service::HealthImaging,
                    latency_ms: 2000..=10_000
                }]
            ),
            "{observed:?}"
        );
        // Delivered again: nothing changes, and nothing is counted twice.
        let again = handle(&h, event).await.unwrap();
        assert_eq!(again["unchanged"], true, "{again}");
        assert_eq!(h.metrics.observed(), observed);
    }

    #[tokio::test]
    async fn other_events_and_other_jobs_are_ignored_with_a_reason() {
        let h = handler();
        let mut event = sample("job-event-imaging-import-completed.json");
        let out = handle(&h, event.clone()).await.unwrap();
        assert_eq!(out["ignored"], "not a job of ours");
        event["detail-type"] = json!("Image Set Created");
        let out = handle(&h, event.clone()).await.unwrap();
        assert!(out["ignored"]
            .as_str()
            .unwrap()
            .contains("not a job status change"));
        event["detail-type"] = json!("Import Job Completed");
        event["detail"].as_object_mut().unwrap().remove("jobName");
        let err = handle(&h, event).await.unwrap_err();
        assert_eq!(err.error_type(), "MalformedJobEvent");
    }

    #[tokio::test]
    async fn the_wait_keeps_its_token_and_is_released_at_once_when_the_job_had_ended() {
        let h = handler();
        let event = sample("job-event-imaging-import-completed.json");
        let job = waiting_imaging_job(&h, &event).await;
        let request = json!({"action": "await", "jobId": job.job_id, "taskToken": "t-2"});
        let out = handle(&h, request.clone()).await.unwrap();
        assert_eq!(out["waiting"], true, "{out}");
        assert_eq!(h.checks.scheduled(), vec![(job.job_id.clone(), 900)]);
        h.services.report(JobReport {
            status: JobStatus::Completed,
            message: None,
            progress: None,
            ended_at: None,
        });
        handle(&h, event).await.unwrap();
        assert!(h.executions.released("t-2").is_some());
        // A wait that begins after the end (the event came first) is released at once.
        let out = handle(
            &h,
            json!({"action": "await", "jobId": job.job_id, "taskToken": "t-3"}),
        )
        .await
        .unwrap();
        assert_eq!(out["released"], true, "{out}");
        assert!(h.executions.released("t-3").is_some());
        let missing = json!({"action": "await", "jobId": "nope", "taskToken": "t"});
        assert_eq!(
            handle(&h, missing).await.unwrap_err().error_type(),
            "JobNotFound"
        );
    }

    #[tokio::test]
    async fn a_check_finds_the_end_of_a_job_whose_event_was_lost() {
        let h = handler();
        let job = waiting_imaging_job(&h, &sample("job-event-imaging-import-completed.json")).await;
        // The service ended the job three seconds ago; its event never came.
        let ended_at = Timestamp::from_unix_seconds(Timestamp::now().unix_seconds() - 3);
        h.services.report(JobReport {
            status: JobStatus::Failed,
            message: Some("the input could not be read".into()),
            progress: None,
            ended_at,
        });
        let batch = json!({"Records": [
            {"messageId": "m1", "body": json!({"jobId": job.job_id}).to_string(), "eventSource": "aws:sqs"},
            {"messageId": "m2", "body": "not a check", "eventSource": "aws:sqs"},
        ]});
        let out = handle(&h, batch).await.unwrap();
        assert_eq!(out, json!({"batchItemFailures": []}));
        let ended = h.store.get_job(&job.job_id);
        assert_eq!(ended.status, JobStatus::Failed);
        assert_eq!(
            ended.message.as_deref(),
            Some("the input could not be read")
        );
        assert!(h.executions.released("t-1").is_some());
        // The backstop's find counts as a completion, timed from the service's own end.
        let observed = h.metrics.observed();
        assert!(
            matches!(
                observed[..],
                [Observation::CompletionRecorded {
                    service: Service::HealthImaging,
                    latency_ms: 3000..=60_000
                }]
            ),
            "{observed:?}"
        );
        // A check that finds the end already recorded counts nothing.
        let again = json!({"Records": [
            {"messageId": "m3", "body": json!({"jobId": job.job_id}).to_string(), "eventSource": "aws:sqs"},
        ]});
        handle(&h, again).await.unwrap();
        assert_eq!(h.metrics.observed(), observed);
    }
}
