//! The `TrackingWorkflow` port: one Step Functions execution per job follows it to its end.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::job::JobId;

/// The input of a tracking execution: the job it follows. Everything else is read from the
/// record, so the input stays identical for every delivery of the same upload, which is what
/// makes a repeated StartExecution with the same name a no-op rather than an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingInput {
    pub job_id: JobId,
    /// How long the execution waits before its first step: a batch's quiet period (it cannot
    /// close sooner), 0 for a job that can start at once. Fixed per kind of job, so a repeated
    /// start has the same input.
    pub next_wait_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingOutcome {
    Started {
        execution_arn: String,
    },
    /// An execution of this job exists already (a redelivered event).
    AlreadyTracking,
}

#[derive(Debug, thiserror::Error)]
#[error("could not start the tracking execution of job {job_id}")]
pub struct TrackingError {
    pub job_id: JobId,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

#[async_trait]
pub trait TrackingWorkflow: Send + Sync {
    /// Starts the job's execution, which waits `first_wait_seconds` before its first step.
    async fn track(
        &self,
        job_id: &JobId,
        first_wait_seconds: u64,
    ) -> Result<TrackingOutcome, TrackingError>;
}
