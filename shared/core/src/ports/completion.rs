//! The ports of event-driven completion: the executions that wait for their job's end (released
//! with a task token), the per-job re-check that backs up a lost event, and the store's part (the
//! waiting execution's token on the job's record, and finding a job by the service's job id).

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::job::{Job, JobId};
use crate::ports::store::StoreError;

/// What releasing a waiting execution did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Released,
    /// Its wait had ended already (released before, timed out, or the execution is gone): Step
    /// Functions answers InvalidToken, TaskDoesNotExist or TaskTimedOut, which all mean this.
    AlreadyReleased,
}

#[derive(Debug, thiserror::Error)]
#[error("could not release the execution waiting for job {job_id}")]
pub struct ReleaseError {
    pub job_id: JobId,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The executions waiting on a task token for their job's end.
#[async_trait]
pub trait WaitingExecutions: Send + Sync {
    /// Ends the wait with `output` (the job's end, which the workflow then finishes).
    async fn succeed(
        &self,
        job_id: &JobId,
        token: &str,
        output: &Value,
    ) -> Result<Release, ReleaseError>;
    /// Ends the wait with an error (`error` is what the workflow's Catch matches).
    async fn fail(
        &self,
        job_id: &JobId,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<Release, ReleaseError>;
}

#[derive(Debug, thiserror::Error)]
#[error("could not schedule the completion check of job {job_id}")]
pub struct CheckError {
    pub job_id: JobId,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The backstop: a re-check of one job a while from now, outside its workflow.
#[async_trait]
pub trait CompletionChecks: Send + Sync {
    async fn check_later(&self, job_id: &JobId, after_seconds: u32) -> Result<(), CheckError>;
}

/// The store's part of completion.
#[async_trait]
pub trait CompletionStore: Send + Sync {
    /// Keeps the waiting execution's token on the job's record; the record as it is then (`None`
    /// when there is no record).
    async fn keep_task_token(&self, job_id: &JobId, token: &str)
        -> Result<Option<Job>, StoreError>;
    /// The token of the execution waiting for the job, if one was kept.
    async fn task_token(&self, job_id: &JobId) -> Result<Option<String>, StoreError>;
    /// The job the service knows as `service_job_id` (HealthLake's events name no job of ours).
    async fn find_by_service_job(&self, service_job_id: &str) -> Result<Option<Job>, StoreError>;
}
