//! The exporter's behaviour: read the trigger, then record, start and track one export job through
//! the same launch path as an upload's import ([`healthimport::launch::launch`]).

use healthimport::domain::export::{ExportEventError, ExportMode, ExportRequest, ExportTrigger};
use healthimport::domain::job::Service;
use healthimport::domain::job::{last_completed_until, Job, JobId, JobStatus, Timestamp};
use healthimport::launch::{launch, LaunchError, Launched, StartError, Starts};
use healthimport::metrics::{MetricsSink, Observation};
use healthimport::ports::admission::{Pace, StartAdmission};
use healthimport::ports::service_jobs::JobService;
use healthimport::ports::store::JobStore;
use healthimport::ports::workflow::TrackingWorkflow;
use healthimport::telemetry::with_sources;
use serde::Serialize;
use tracing::Instrument;

use crate::event::ExporterEvent;

/// What became of the request: the answer of an on-demand invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResponse {
    pub job_id: JobId,
    #[serde(flatten)]
    pub trigger: ExportTrigger,
    pub outcome: ExportOutcome,
    /// The record's status when the request repeated an earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExportOutcome {
    Started,
    /// Not started yet: HealthLake's lane (shared with the imports) is full, or the service
    /// refused the start for now. The tracking workflow starts it in its turn.
    StartPending,
    StartFailed,
    /// The same tick or request id was handled before: nothing new was started.
    AlreadyRecorded,
}

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error(transparent)]
    InvalidEvent(#[from] ExportEventError),
    #[error("export job {job_id} could not be launched")]
    Launch {
        job_id: JobId,
        #[source]
        source: LaunchError,
    },
}

impl ExporterError {
    /// The Lambda `errorType`: what a caller or an alarm can tell apart.
    pub fn error_type(&self) -> &'static str {
        match self {
            ExporterError::InvalidEvent(_) => "InvalidExportEvent",
            ExporterError::Launch { source, .. } => match source {
                LaunchError::Store(_) | LaunchError::Start(StartError::Store(_)) => "JobStoreError",
                LaunchError::Start(StartError::RecordGone(_)) => "JobNotFound",
                LaunchError::Tracking(_) => "TrackingStartFailed",
            },
        }
    }
}

impl From<ExporterError> for lambda_runtime::Diagnostic {
    fn from(error: ExporterError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: with_sources(&error),
        }
    }
}

pub struct Exporter<S, I, W, M> {
    pub store: S,
    pub services: I,
    pub tracking: W,
    pub datastore_id: String,
    pub output_s3_uri: String,
    pub mode: ExportMode,
    /// Exports share HealthLake's one-job lane with imports: they wait for their turn in it.
    pub pace: Pace,
    /// Counts the exports it starts (`JobsStarted`); their ends are the poller's to count.
    pub metrics: M,
}

impl<S, I, W, M> Exporter<S, I, W, M>
where
    S: JobStore + StartAdmission,
    I: JobService,
    W: TrackingWorkflow,
    M: MetricsSink,
{
    /// Handles one invocation: a schedule tick or an on-demand request.
    pub async fn handle(&self, event: ExporterEvent) -> Result<ExportResponse, ExporterError> {
        let event = event.into_export_event().inspect_err(|error| {
            tracing::error!(error = %error, "export event refused");
        })?;
        let trigger = event.trigger;
        let job_id = trigger.job_id(&self.datastore_id);
        let span = tracing::info_span!("export", job_id = %job_id, trigger = %trigger);
        self.launch(job_id, trigger, event.mode)
            .instrument(span)
            .await
    }

    async fn launch(
        &self,
        job_id: JobId,
        trigger: ExportTrigger,
        mode: Option<ExportMode>,
    ) -> Result<ExportResponse, ExporterError> {
        let launched = async {
            let request = self
                .request(trigger.clone(), mode.unwrap_or(self.mode))
                .await?;
            let job = Job::export(
                request,
                &self.datastore_id,
                &self.output_s3_uri,
                Timestamp::now(),
            );
            let starts = Starts {
                admission: &self.store,
                pace: self.pace,
            };
            launch(&self.store, &starts, &self.services, &self.tracking, job).await
        }
        .await
        .map_err(|source| ExporterError::Launch {
            job_id: job_id.clone(),
            source,
        });
        let launched = match launched {
            Ok(launched) => launched,
            Err(error) => {
                tracing::error!(error = %with_sources(&error), "export launch failed");
                return Err(error);
            }
        };
        let (outcome, status) = match launched {
            Launched::Started => {
                self.metrics.emit(Observation::JobStarted {
                    service: Service::HealthLake,
                });
                (ExportOutcome::Started, None)
            }
            Launched::StartPending => (ExportOutcome::StartPending, None),
            Launched::StartFailed => (ExportOutcome::StartFailed, None),
            Launched::AlreadyRecorded(status) => (ExportOutcome::AlreadyRecorded, Some(status)),
        };
        tracing::info!(?outcome, "export handled");
        Ok(ExportResponse {
            job_id,
            trigger,
            outcome,
            status,
        })
    }

    /// The export to record: an incremental one starts where the last completed export ended.
    async fn request(
        &self,
        trigger: ExportTrigger,
        mode: ExportMode,
    ) -> Result<ExportRequest, LaunchError> {
        let last = match mode {
            ExportMode::Full => None,
            ExportMode::Incremental => {
                last_completed_until(&self.store.exports_of(&self.datastore_id).await?)
            }
        };
        let request = ExportRequest::new(trigger, mode, last, Timestamp::now());
        tracing::info!(trigger = %request.trigger, ?mode, since = ?request.since.map(|s| s.to_string()), "export window");
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthimport::domain::job::{JobKind, Transition};
    use healthimport::fakes::{
        MemoryJobStore, RecordingMetrics, RecordingTracking, ScriptedJobService,
    };
    use healthimport::ports::service_jobs::{Retry, StartWork};
    use serde_json::{json, Value};

    const DATASTORE: &str = "ffffffffffffffffffffffffffffffff";

    type TestExporter =
        Exporter<MemoryJobStore, ScriptedJobService, RecordingTracking, RecordingMetrics>;

    impl TestExporter {
        /// The invocation as Lambda makes it: JSON into the typed event.
        async fn handle_json(&self, event: Value) -> Result<ExportResponse, ExporterError> {
            self.handle(serde_json::from_value(event).unwrap()).await
        }
    }

    fn exporter() -> TestExporter {
        Exporter {
            store: MemoryJobStore::default(),
            services: ScriptedJobService::default(),
            tracking: RecordingTracking::default(),
            datastore_id: DATASTORE.into(),
            output_s3_uri: "s3://out/exports/".into(),
            mode: ExportMode::Full,
            // Room for every export these tests start; the lane's limit has its own test.
            pace: Pace {
                healthlake_max_outstanding: 100,
                ..Pace::default()
            },
            metrics: RecordingMetrics::default(),
        }
    }

    #[tokio::test]
    async fn an_export_waits_for_its_turn_in_healthlakes_lane_shared_with_imports() {
        let mut exporter = exporter();
        exporter.pace.healthlake_max_outstanding = 1;
        // An import holds the lane's one place.
        let lane = exporter.pace.lane(&healthimport::domain::job::Target {
            service: healthimport::domain::job::Service::HealthLake,
            datastore_id: "another-datastore".into(),
            output_s3_uri: "s3://out/fhir/".into(),
        });
        let import = healthimport::domain::job::JobId::from_stored("an-import");
        assert_eq!(
            exporter
                .store
                .admit(&lane, &import, Timestamp::now())
                .await
                .unwrap(),
            healthimport::ports::admission::Admission::Granted
        );
        let response = exporter
            .handle_json(json!({"requestId": "r-1"}))
            .await
            .unwrap();
        assert_eq!(response.outcome, ExportOutcome::StartPending);
        assert_eq!(exporter.services.start_call_count(), 0);
        assert!(
            exporter.metrics.observed().is_empty(),
            "a waiting export is not started"
        );
        assert_eq!(exporter.tracking.tracked(), vec![response.job_id.clone()]);
        let job = exporter.store.get(&response.job_id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Pending);
    }

    #[tokio::test]
    async fn an_on_demand_request_records_starts_and_tracks_one_export() {
        let exporter = exporter();
        let response = exporter
            .handle_json(json!({"requestId": "backup-1"}))
            .await
            .unwrap();
        assert_eq!(response.outcome, ExportOutcome::Started);
        assert_eq!(
            exporter.metrics.observed(),
            vec![Observation::JobStarted {
                service: Service::HealthLake
            }]
        );

        let jobs = exporter.store.all();
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!(job.job_id, response.job_id);
        assert_eq!(job.kind(), JobKind::Export);
        assert_eq!(job.service(), Some(Service::HealthLake));
        assert_eq!(job.status, JobStatus::Submitted);
        assert_eq!(job.source(), None);
        assert_eq!(
            job.target().map(|t| t.output_s3_uri.as_str()),
            Some("s3://out/exports/")
        );
        let starts = exporter.services.start_calls.lock().unwrap().clone();
        assert_eq!(starts.len(), 1);
        assert_eq!(starts[0].work, StartWork::Export { since: None });
        assert_eq!(starts[0].datastore_id, DATASTORE);
        assert_eq!(exporter.tracking.tracked(), vec![response.job_id]);
    }

    #[tokio::test]
    async fn a_repeated_request_or_tick_starts_nothing_new() {
        let exporter = exporter();
        for event in [
            json!({"requestId": "backup-1"}),
            json!({"scheduledTime": "2026-11-28T02:00:00Z"}),
        ] {
            let first = exporter.handle_json(event.clone()).await.unwrap();
            let again = exporter.handle_json(event).await.unwrap();
            assert_eq!(again.job_id, first.job_id);
            assert_eq!(again.outcome, ExportOutcome::AlreadyRecorded);
            assert_eq!(again.status, Some(JobStatus::Submitted));
        }
        assert_eq!(exporter.store.all().len(), 2);
        assert_eq!(exporter.services.start_call_count(), 2);
        assert_eq!(exporter.services.jobs_started(), 2);
    }

    #[tokio::test]
    async fn a_throttled_start_stays_pending_and_is_handed_to_the_workflow() {
        let exporter = exporter();
        exporter
            .services
            .fail_next("ThrottlingException", Retry::Later);
        let response = exporter
            .handle_json(json!({"requestId": "backup-2"}))
            .await
            .unwrap();
        assert_eq!(response.outcome, ExportOutcome::StartPending);
        let job = exporter.store.all().remove(0);
        assert_eq!(job.status, JobStatus::Pending);
        assert_eq!(exporter.tracking.tracked(), vec![job.job_id.clone()]);

        // The request sent again (or the workflow's retry) starts the same job once.
        let again = exporter
            .handle_json(json!({"requestId": "backup-2"}))
            .await
            .unwrap();
        assert_eq!(again.outcome, ExportOutcome::Started);
        assert_eq!(exporter.services.jobs_started(), 1);
    }

    #[tokio::test]
    async fn a_refused_start_is_recorded_as_start_failed() {
        let exporter = exporter();
        exporter
            .services
            .fail_next("AccessDeniedException", Retry::Never);
        let response = exporter
            .handle_json(json!({"requestId": "backup-3"}))
            .await
            .unwrap();
        assert_eq!(response.outcome, ExportOutcome::StartFailed);
        let job = exporter.store.all().remove(0);
        assert_eq!(job.status, JobStatus::StartFailed);
        assert!(job
            .message
            .as_deref()
            .is_some_and(|m| m.contains("AccessDeniedException")));
    }

    #[tokio::test]
    async fn a_malformed_event_is_an_error_that_names_the_problem_and_records_nothing() {
        let exporter = exporter();
        let error = exporter
            .handle_json(json!({"requestId": "no spaces please"}))
            .await
            .unwrap_err();
        assert_eq!(error.error_type(), "InvalidExportEvent");
        let diagnostic = lambda_runtime::Diagnostic::from(error);
        assert!(diagnostic.error_message.contains("requestId"));
        assert!(exporter.store.all().is_empty());
        assert_eq!(exporter.services.start_call_count(), 0);
    }

    #[test]
    fn the_response_says_which_trigger_and_outcome() {
        let response = ExportResponse {
            job_id: JobId::from_stored("j"),
            trigger: ExportTrigger::OnDemand {
                request_id: "r".into(),
            },
            outcome: ExportOutcome::StartPending,
            status: None,
        };
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"jobId": "j", "trigger": "onDemand", "requestId": "r", "outcome": "START_PENDING"})
        );
    }

    fn sample_event(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_sample_events_do_what_their_names_say() {
        let exporter = exporter();
        let on_demand = exporter
            .handle_json(sample_event("exporter-on-demand.json"))
            .await
            .unwrap();
        assert_eq!(on_demand.outcome, ExportOutcome::Started);
        // The Scheduler tick and the scheduled rule's event name the same instant: one export.
        let tick = exporter
            .handle_json(sample_event("exporter-scheduler-tick.json"))
            .await
            .unwrap();
        let rule = exporter
            .handle_json(sample_event("exporter-scheduled-rule.json"))
            .await
            .unwrap();
        assert_eq!(tick.outcome, ExportOutcome::Started);
        assert_eq!(rule.job_id, tick.job_id);
        assert_eq!(rule.outcome, ExportOutcome::AlreadyRecorded);
        let incremental = exporter
            .handle_json(sample_event("exporter-incremental.json"))
            .await
            .unwrap();
        let job = exporter
            .store
            .get(&incremental.job_id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            job.export_request().is_some_and(|e| e.since.is_none()),
            "nothing completed yet: full"
        );
        let invalid = exporter
            .handle_json(sample_event("exporter-invalid-request.json"))
            .await
            .unwrap_err();
        assert_eq!(invalid.error_type(), "InvalidExportEvent");
        assert_eq!(exporter.services.jobs_started(), 3);
    }

    #[tokio::test]
    async fn an_incremental_export_starts_where_the_last_completed_one_ended() {
        let exporter = exporter();
        let incremental = |id: &str| json!({"requestId": id, "mode": "incremental"});
        // No export has completed yet: the first incremental export is a full one.
        let first = exporter.handle_json(incremental("i-1")).await.unwrap();
        let first_job = exporter.store.get(&first.job_id).await.unwrap().unwrap();
        assert_eq!(first_job.export_request().unwrap().since, None);
        let until = first_job.export_request().unwrap().until;

        // Still running: the next one cannot start after it.
        let second = exporter.handle_json(incremental("i-2")).await.unwrap();
        let second_job = exporter.store.get(&second.job_id).await.unwrap().unwrap();
        assert_eq!(second_job.export_request().unwrap().since, None);

        exporter
            .store
            .transition(
                &first.job_id,
                &Transition::to(JobStatus::Completed, Timestamp::now()),
            )
            .await
            .unwrap();
        let third = exporter.handle_json(incremental("i-3")).await.unwrap();
        let third_job = exporter.store.get(&third.job_id).await.unwrap().unwrap();
        assert_eq!(third_job.export_request().unwrap().since, Some(until));
        let starts = exporter.services.start_calls.lock().unwrap().clone();
        assert_eq!(starts[2].work, StartWork::Export { since: Some(until) });

        // A full export ignores the window, whatever the history.
        let full = exporter
            .handle_json(json!({"requestId": "f-1", "mode": "full"}))
            .await
            .unwrap();
        let full_job = exporter.store.get(&full.job_id).await.unwrap().unwrap();
        assert_eq!(full_job.export_request().unwrap().since, None);
    }
}
