//! Event-driven completion: a job's end as the service announces it (its EventBridge job event) or,
//! when an event is lost, as a re-check finds it. Either way the record moves forward only, the
//! job's place in its service's lane is given back, and the execution waiting for the job's end is
//! released, once, whoever gets there first.
//!
//! The waiting execution keeps its task token on the job's record ([`await_end`]) and then reads
//! the record: an end recorded before the token was kept (a fast job, an event before the wait) is
//! seen there, so it is never lost. An event handler records the end and then reads the token. One
//! of the two always sees the other's write; when both do, the second release is answered "already
//! released", which changes nothing.

use serde_json::json;

use crate::domain::job::{Job, JobId, JobStatus, Service, Timestamp, Transition};
use crate::domain::job_event::{JobReference, ServiceJobEvent};
use crate::ports::admission::{Pace, StartAdmission};
use crate::ports::completion::{
    CheckError, CompletionChecks, CompletionStore, Release, ReleaseError, WaitingExecutions,
};
use crate::ports::service_jobs::{JobService, ServiceError, ServiceJob};
use crate::ports::store::{JobStore, StoreError, TransitionOutcome};

/// Everything completion needs, borrowed from the function's wiring.
pub struct Completion<'a, S: ?Sized, I: ?Sized, W: ?Sized, C: ?Sized> {
    pub store: &'a S,
    pub services: &'a I,
    pub executions: &'a W,
    pub checks: &'a C,
    pub pace: Pace,
    /// How long after a job's end its record may stay unfinished when no event comes
    /// (`CompletionBackstopSeconds`): the interval of the re-checks.
    pub backstop_seconds: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the status of job {job_id} could not be read")]
    Service {
        job_id: JobId,
        #[source]
        source: ServiceError,
    },
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// What an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// No job of ours (another data store, another application, or a job we never recorded).
    NotOurs,
    /// The record moved to this status (and, when terminal, its execution was released).
    Recorded { job_id: JobId, status: JobStatus },
    /// The record was already past this status (a duplicate or a late event): unchanged.
    Stale { job_id: JobId, current: JobStatus },
}

/// What a re-check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The job had ended already (its event, or an earlier check, recorded it); its execution is
    /// released.
    Finished(JobStatus),
    /// This check found the job's end (its event was lost or late), recorded it and released the
    /// execution. `ended_at`: the service's end time, when its Describe gives one.
    EndFound {
        status: JobStatus,
        service: Service,
        ended_at: Option<Timestamp>,
    },
    /// Still running: checked again later.
    Running(JobStatus),
    /// Not started at a service yet: nothing to ask; checked again later.
    NotStarted(JobStatus),
    /// The service refuses to describe the job for good (it does not know it): the waiting
    /// execution is failed with that reason, so its workflow records why tracking stopped.
    Refused,
    NoRecord,
}

/// What the waiting execution learned when it kept its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwaitOutcome {
    /// The job had ended already: the execution was released at once.
    AlreadyEnded(JobStatus),
    /// It waits; a re-check is scheduled as the backstop.
    Waiting(JobStatus),
}

/// A Describe read into the change to record, with the service's end time when it has one.
struct Described {
    change: Transition,
    ended_at: Option<Timestamp>,
}

impl<S, I, W, C> Completion<'_, S, I, W, C>
where
    S: JobStore + CompletionStore + StartAdmission + ?Sized,
    I: JobService + ?Sized,
    W: WaitingExecutions + ?Sized,
    C: CompletionChecks + ?Sized,
{
    /// A service job event arrived.
    #[tracing::instrument(name = "job_event", skip_all, fields(service = %event.service, status = %event.status, job_id = tracing::field::Empty))]
    pub async fn on_event(&self, event: &ServiceJobEvent) -> Result<EventOutcome, CompletionError> {
        let job = match &event.job {
            JobReference::Ours(id) => self.store.get(id).await?,
            JobReference::ServiceJobId(id) => self.store.find_by_service_job(id).await?,
        };
        let Some(job) = job.filter(|job| {
            job.service() == Some(event.service)
                && job.datastore_id() == Some(event.datastore_id.as_str())
                && job.kind() == event.kind
        }) else {
            tracing::info!(service_job_id = %event.service_job_id, decision = "ignored", reason = "no job of ours has this id");
            return Ok(EventOutcome::NotOurs);
        };
        tracing::Span::current().record("job_id", tracing::field::display(&job.job_id));
        if job.status.is_terminal() {
            // A duplicate or late event: the end is recorded; make sure its wait is over.
            self.settle(&job).await?;
            return Ok(EventOutcome::Stale {
                job_id: job.job_id,
                current: job.status,
            });
        }
        let mut change = Transition::to(event.status, Timestamp::now())
            .with_service_job_id(&event.service_job_id);
        if event.is_terminal() {
            // The events carry no message and no progress: one read fills them in.
            change = self
                .described(&job, &event.service_job_id, change)
                .await?
                .change;
        }
        self.record(&job, &change).await
    }

    /// The backstop's re-check of one job, outside its workflow.
    #[tracing::instrument(name = "completion_check", skip_all, fields(job_id = %job_id))]
    pub async fn check(&self, job_id: &JobId) -> Result<CheckOutcome, CompletionError> {
        let Some(job) = self.store.get(job_id).await? else {
            return Ok(CheckOutcome::NoRecord);
        };
        if job.status.is_terminal() {
            self.settle(&job).await?;
            return Ok(CheckOutcome::Finished(job.status));
        }
        let Some(service_job_id) = job.service_job_id.clone() else {
            self.checks
                .check_later(job_id, self.backstop_seconds)
                .await?;
            return Ok(CheckOutcome::NotStarted(job.status));
        };
        let Described { change, ended_at } = match self
            .described(
                &job,
                &service_job_id,
                Transition::to(job.status, Timestamp::now()),
            )
            .await
        {
            Ok(described) => described,
            Err(CompletionError::Service { source, .. }) if !source.is_retryable() => {
                tracing::error!(code = %source.code, "the service refuses to describe the job; its wait ends in failure");
                if let Some(token) = self.store.task_token(job_id).await? {
                    self.executions
                        .fail(job_id, &token, "ServiceRejected", &source.to_string())
                        .await?;
                }
                return Ok(CheckOutcome::Refused);
            }
            Err(other) => return Err(other),
        };
        match self.record(&job, &change).await? {
            EventOutcome::Recorded { status, .. } if status.is_terminal() => {
                tracing::warn!(%status, "the job's end was found by the re-check: its event was lost or late");
                Ok(match job.service() {
                    Some(service) => CheckOutcome::EndFound {
                        status,
                        service,
                        ended_at,
                    },
                    None => CheckOutcome::Finished(status),
                })
            }
            EventOutcome::Stale {
                current: status, ..
            } if status.is_terminal() => Ok(CheckOutcome::Finished(status)),
            EventOutcome::Recorded { status, .. }
            | EventOutcome::Stale {
                current: status, ..
            } => {
                self.checks
                    .check_later(job_id, self.backstop_seconds)
                    .await?;
                Ok(CheckOutcome::Running(status))
            }
            EventOutcome::NotOurs => Ok(CheckOutcome::NoRecord),
        }
    }

    /// The workflow begins to wait for the job's end: its token is kept on the record, and an end
    /// recorded before releases it at once; otherwise the backstop's first re-check is scheduled.
    #[tracing::instrument(name = "await", skip_all, fields(job_id = %job_id))]
    pub async fn await_end(
        &self,
        job_id: &JobId,
        token: &str,
    ) -> Result<Option<AwaitOutcome>, CompletionError> {
        let Some(job) = self.store.keep_task_token(job_id, token).await? else {
            return Ok(None);
        };
        if job.status.is_terminal() {
            self.release_lane(&job).await?;
            self.executions
                .succeed(job_id, token, &ended_output(&job))
                .await?;
            return Ok(Some(AwaitOutcome::AlreadyEnded(job.status)));
        }
        self.checks
            .check_later(job_id, self.backstop_seconds)
            .await?;
        Ok(Some(AwaitOutcome::Waiting(job.status)))
    }

    /// The transition `change`, completed with what the service says of the job now (its status
    /// when later, its message and progress).
    async fn described(
        &self,
        job: &Job,
        service_job_id: &str,
        change: Transition,
    ) -> Result<Described, CompletionError> {
        let Some(target) = job.target() else {
            return Ok(Described {
                change,
                ended_at: None,
            });
        };
        let asked = ServiceJob {
            kind: job.kind(),
            service: target.service,
            datastore_id: &target.datastore_id,
            service_job_id,
        };
        let report =
            self.services
                .describe(&asked)
                .await
                .map_err(|source| CompletionError::Service {
                    job_id: job.job_id.clone(),
                    source,
                })?;
        // The later of the event's status and the service's: a Describe can be ahead of a late
        // event, and (eventually consistent) a moment behind a fresh one.
        let to = if report.status.is_terminal() || !change.to.is_terminal() {
            report.status
        } else {
            change.to
        };
        // Stamped after the read: an earlier status written meanwhile (events arrive together)
        // keeps an earlier time in the history than this end.
        let mut described =
            Transition::to(to, Timestamp::now()).with_service_job_id(service_job_id);
        if let Some(message) = report.message {
            described = described.with_message(message);
        }
        if let Some(progress) = report.progress {
            described = described.with_counts(progress);
        }
        Ok(Described {
            change: described,
            ended_at: report.ended_at,
        })
    }

    async fn record(
        &self,
        job: &Job,
        change: &Transition,
    ) -> Result<EventOutcome, CompletionError> {
        match self.store.transition(&job.job_id, change).await? {
            TransitionOutcome::Applied(recorded) => {
                tracing::info!(status = %recorded.status, "job status recorded");
                if recorded.status.is_terminal() {
                    self.settle(&recorded).await?;
                }
                Ok(EventOutcome::Recorded {
                    job_id: recorded.job_id,
                    status: recorded.status,
                })
            }
            TransitionOutcome::Rejected { current } => {
                tracing::info!(reported = %change.to, %current, decision = "unchanged", reason = "stale or out-of-order status");
                Ok(EventOutcome::Stale {
                    job_id: job.job_id.clone(),
                    current,
                })
            }
            TransitionOutcome::NotFound => Ok(EventOutcome::NotOurs),
        }
    }

    /// The job has ended: its lane's place goes back and its waiting execution is released.
    async fn settle(&self, job: &Job) -> Result<(), CompletionError> {
        self.release_lane(job).await?;
        let Some(token) = self.store.task_token(&job.job_id).await? else {
            // Not waiting yet: the execution sees the end when it begins to wait.
            return Ok(());
        };
        let release = self
            .executions
            .succeed(&job.job_id, &token, &ended_output(job))
            .await?;
        if release == Release::AlreadyReleased {
            tracing::info!("the execution's wait had ended already");
        }
        Ok(())
    }

    async fn release_lane(&self, job: &Job) -> Result<(), CompletionError> {
        if let Some(target) = job.target() {
            self.store
                .release(&self.pace.lane(target), &job.job_id)
                .await?;
        }
        Ok(())
    }
}

/// What a released wait hands on to the workflow: the job and its end, which `finish` records.
pub fn ended_output(job: &Job) -> serde_json::Value {
    json!({
        "jobId": job.job_id,
        "status": job.status,
        "terminal": job.status.is_terminal(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::job::{JobKind, SourceObject, Target};
    use crate::fakes::{MemoryJobStore, RecordingChecks, RecordingExecutions, ReportedJobService};
    use crate::ports::service_jobs::JobReport;

    const DATASTORE: &str = "d1c0d1c0d1c0d1c0d1c0d1c0d1c0d1c0";

    struct Rig {
        store: MemoryJobStore,
        services: ReportedJobService,
        executions: RecordingExecutions,
        checks: RecordingChecks,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                store: MemoryJobStore::default(),
                services: ReportedJobService::default(),
                executions: RecordingExecutions::default(),
                checks: RecordingChecks::default(),
            }
        }

        fn completion(
            &self,
        ) -> Completion<'_, MemoryJobStore, ReportedJobService, RecordingExecutions, RecordingChecks>
        {
            Completion {
                store: &self.store,
                services: &self.services,
                executions: &self.executions,
                checks: &self.checks,
                pace: Pace::default(),
                backstop_seconds: 900,
            }
        }

        /// A job started at `service` as service job `svc-1`.
        async fn started(&self, service: Service) -> Job {
            let mut job = Job::import(
                SourceObject {
                    bucket: "ingest".into(),
                    key: "dicom/a.dcm".into(),
                    size: 1,
                    e_tag: Some("e".into()),
                    version_id: None,
                },
                Target {
                    service,
                    datastore_id: DATASTORE.into(),
                    output_s3_uri: "s3://out/".into(),
                },
                "s3://ingest/staging/b/".into(),
                Timestamp::now(),
            );
            job.apply(
                &Transition::to(JobStatus::Submitted, Timestamp::now())
                    .with_service_job_id("svc-1"),
            )
            .unwrap();
            self.store.create(&job).await.unwrap();
            let lane = Pace::default().lane(job.target().unwrap());
            self.store
                .admit(&lane, &job.job_id, Timestamp::now())
                .await
                .unwrap();
            job
        }

        fn status(&self, job: &Job) -> JobStatus {
            self.store.get_job(&job.job_id).status
        }
    }

    fn event(job: &Job, status: JobStatus) -> ServiceJobEvent {
        let service = job.service().unwrap();
        ServiceJobEvent {
            service,
            kind: JobKind::Import,
            datastore_id: DATASTORE.into(),
            service_job_id: "svc-1".into(),
            job: match service {
                Service::HealthImaging => JobReference::Ours(job.job_id.clone()),
                Service::HealthLake => JobReference::ServiceJobId("svc-1".into()),
            },
            status,
        }
    }

    fn ended(rig: &Rig, status: JobStatus, message: Option<&str>) {
        rig.services.report(JobReport {
            status,
            message: message.map(str::to_owned),
            progress: None,
            ended_at: None,
        });
    }

    #[tokio::test]
    async fn the_end_releases_the_waiting_execution_once_and_duplicates_change_nothing() {
        let rig = Rig::new();
        let c = rig.completion();
        let job = rig.started(Service::HealthImaging).await;
        assert_eq!(
            c.await_end(&job.job_id, "token-1").await.unwrap(),
            Some(AwaitOutcome::Waiting(JobStatus::Submitted))
        );
        assert_eq!(rig.checks.scheduled(), vec![(job.job_id.clone(), 900)]);
        c.on_event(&event(&job, JobStatus::InProgress))
            .await
            .unwrap();
        assert_eq!(rig.executions.released("token-1"), None, "not ended yet");
        ended(&rig, JobStatus::Completed, None);
        assert_eq!(
            c.on_event(&event(&job, JobStatus::Completed))
                .await
                .unwrap(),
            EventOutcome::Recorded {
                job_id: job.job_id.clone(),
                status: JobStatus::Completed
            }
        );
        let released = rig.executions.released("token-1").unwrap().unwrap();
        assert_eq!(released["status"], "COMPLETED");
        assert!(rig
            .store
            .lane_holders(&format!("lane-HEALTHIMAGING-{DATASTORE}"))
            .is_empty());
        // The same event again, and a late IN_PROGRESS: nothing moves.
        for late in [JobStatus::Completed, JobStatus::InProgress] {
            assert!(matches!(
                c.on_event(&event(&job, late)).await.unwrap(),
                EventOutcome::Stale {
                    current: JobStatus::Completed,
                    ..
                }
            ));
        }
        assert_eq!(rig.status(&job), JobStatus::Completed);
    }

    #[tokio::test]
    async fn an_event_before_the_wait_is_kept_and_releases_the_wait_when_it_begins() {
        let rig = Rig::new();
        let c = rig.completion();
        let job = rig.started(Service::HealthImaging).await;
        ended(&rig, JobStatus::Failed, Some("no files"));
        c.on_event(&event(&job, JobStatus::Failed)).await.unwrap();
        let recorded = rig.store.get_job(&job.job_id);
        assert_eq!(recorded.status, JobStatus::Failed);
        assert_eq!(
            recorded.message.as_deref(),
            Some("no files"),
            "from one Describe"
        );
        assert_eq!(
            c.await_end(&job.job_id, "late-token").await.unwrap(),
            Some(AwaitOutcome::AlreadyEnded(JobStatus::Failed))
        );
        assert!(rig.executions.released("late-token").is_some());
        assert!(
            rig.checks.scheduled().is_empty(),
            "no backstop for an ended job"
        );
    }

    #[tokio::test]
    async fn healthlake_events_are_matched_by_the_services_job_id_and_others_ignored() {
        let rig = Rig::new();
        let c = rig.completion();
        let job = rig.started(Service::HealthLake).await;
        ended(
            &rig,
            JobStatus::CompletedWithErrors,
            Some("1 resources were not imported"),
        );
        assert!(matches!(
            c.on_event(&event(&job, JobStatus::Completed))
                .await
                .unwrap(),
            EventOutcome::Recorded {
                status: JobStatus::CompletedWithErrors,
                ..
            }
        ));
        let mut foreign = event(&job, JobStatus::Completed);
        foreign.job = JobReference::ServiceJobId("someone-elses".into());
        assert_eq!(c.on_event(&foreign).await.unwrap(), EventOutcome::NotOurs);
        let mut other_store = event(&job, JobStatus::Completed);
        other_store.datastore_id = "f".repeat(32);
        assert_eq!(
            c.on_event(&other_store).await.unwrap(),
            EventOutcome::NotOurs
        );
    }

    #[tokio::test]
    async fn the_backstop_finds_an_end_whose_event_was_lost_and_keeps_checking_a_running_job() {
        let rig = Rig::new();
        let c = rig.completion();
        let job = rig.started(Service::HealthImaging).await;
        c.await_end(&job.job_id, "token-2").await.unwrap();
        ended(&rig, JobStatus::InProgress, None);
        assert_eq!(
            c.check(&job.job_id).await.unwrap(),
            CheckOutcome::Running(JobStatus::InProgress)
        );
        assert_eq!(rig.checks.scheduled().len(), 2, "checked again later");
        let service_end = Timestamp::from_unix_seconds(1_767_323_045).unwrap();
        rig.services.report(JobReport {
            status: JobStatus::Completed,
            message: None,
            progress: None,
            ended_at: Some(service_end),
        });
        assert_eq!(
            c.check(&job.job_id).await.unwrap(),
            CheckOutcome::EndFound {
                status: JobStatus::Completed,
                service: Service::HealthImaging,
                ended_at: Some(service_end),
            }
        );
        assert_eq!(
            c.check(&job.job_id).await.unwrap(),
            CheckOutcome::Finished(JobStatus::Completed),
            "a later check finds it recorded"
        );
        assert!(rig.executions.released("token-2").is_some());
        assert_eq!(
            rig.checks.scheduled().len(),
            2,
            "an ended job is not checked again"
        );
        assert_eq!(
            c.check(&JobId::from_stored("gone")).await.unwrap(),
            CheckOutcome::NoRecord
        );
    }
}
