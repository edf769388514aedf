//! The `JobStore` port: the one way every handler reads and writes job records, from creation
//! through every status to the recorded outcome and the announcement marker.
//!
//! Every write is conditional, and the adapters must make the check and the write one atomic
//! operation so that two concurrent writers cannot both win:
//! - a create never overwrites;
//! - a transition applies only from the statuses [`JobStatus::allowed_predecessors`] names;
//! - an outcome is written only on a terminal record and only once (a terminal status is final,
//!   so the outcome cannot be a transition);
//! - the announcement marker is written only once.

use async_trait::async_trait;

use crate::domain::job::{Job, JobId, JobStatus, Timestamp, Transition};
pub use crate::domain::outcome::JobOutcome;

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// A record with this id exists (a redelivered event): it is returned, untouched.
    AlreadyExists(Box<Job>),
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// The record as it is now.
    Applied(Box<Job>),
    /// Not applied: the record's status does not allow it (a stale or repeated write, or an
    /// illegal move). The record is unchanged; `current` is what it holds.
    Rejected {
        current: JobStatus,
    },
    NotFound,
}

/// What an outcome write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeWrite {
    Recorded,
    /// An outcome was recorded before (a retried finish step): it stands, unchanged.
    AlreadyRecorded,
    /// The job is not finished: an outcome cannot be recorded yet.
    NotTerminal(JobStatus),
    NotFound,
}

/// Whether a finished job's outcome was recorded and its event put, and when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeMarkers {
    pub outcome_at: Option<Timestamp>,
    pub announced_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the request (throttling, access, network).
    #[error("job store {operation} on table {table} failed")]
    Unavailable {
        /// The store's own operation name (`PutItem`, `Query`, ...).
        operation: &'static str,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store refused the write for good (an item over its size limit): retrying the same
    /// write cannot succeed.
    #[error("job store {operation} on table {table} was refused: {reason}")]
    Rejected {
        operation: &'static str,
        table: String,
        reason: String,
    },
    #[error("job record {job_id} in table {table} is malformed: {reason}")]
    Malformed {
        job_id: String,
        table: String,
        reason: String,
    },
}

/// The port every handler uses to read and write job records.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates the record unless one with its id exists.
    async fn create(&self, job: &Job) -> Result<CreateOutcome, StoreError>;
    /// Moves the record to `change.to` if its current status allows it.
    async fn transition(
        &self,
        job_id: &JobId,
        change: &Transition,
    ) -> Result<TransitionOutcome, StoreError>;
    async fn get(&self, job_id: &JobId) -> Result<Option<Job>, StoreError>;
    /// Every job made from the object `s3://bucket/key`, oldest first.
    async fn find_by_source(&self, bucket: &str, key: &str) -> Result<Vec<Job>, StoreError>;
    /// The jobs of a data store in a status.
    async fn list_by_datastore_status(
        &self,
        datastore_id: &str,
        status: JobStatus,
    ) -> Result<Vec<Job>, StoreError>;
    /// Every export of a data store (exports only: a handful a day at most).
    async fn exports_of(&self, datastore_id: &str) -> Result<Vec<Job>, StoreError>;
    /// Records the outcome of a terminal job, once.
    async fn record_outcome(
        &self,
        job_id: &JobId,
        outcome: &JobOutcome,
    ) -> Result<OutcomeWrite, StoreError>;
    async fn markers(&self, job_id: &JobId) -> Result<OutcomeMarkers, StoreError>;
    /// Notes that the job's Finished event was put; `false` when it was noted before.
    async fn mark_announced(&self, job_id: &JobId, at: Timestamp) -> Result<bool, StoreError>;
}
