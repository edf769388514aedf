//! The `BatchStore` port: opening, joining and closing batches, and reading a batch's members.
//!
//! Like every store write, each of these is conditional and atomic in the adapter:
//! - an upload joins a batch in the same atomic write that creates the upload's record, so a
//!   redelivered event finds its record (and its batch) instead of joining another batch;
//! - the join holds only while the batch is `OPEN` and [`JoinRule`] holds (its limits and timers);
//! - a batch is opened by its first file in one write that creates both records;
//! - a close applies only to an `OPEN` batch (and, for a close by the quiet timer, only if no file
//!   joined since the fill the closer read).

use async_trait::async_trait;

use crate::domain::batch::{BatchFolder, CloseReason, JoinRule};
use crate::domain::job::{Job, JobId, JobStatus, Timestamp};
use crate::ports::store::StoreError;

/// What opening a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenOutcome {
    /// The batch exists now, holding the upload as its first file.
    Opened,
    /// Another file opened this batch first: join it instead.
    BatchExists,
    /// The upload has a record already (a redelivered event): it is returned, untouched.
    UploadExists(Box<Job>),
}

/// What a join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The upload is in the batch.
    Joined,
    /// The batch did not take the file: it is closed, full or due, or does not exist (`None`).
    /// The batch's record as it is now.
    NotAdmitted(Option<Box<Job>>),
    /// The upload has a record already (a redelivered event): it is returned, untouched.
    UploadExists(Box<Job>),
}

/// What a close did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The batch is `PENDING` now, with its final membership.
    Closed(Box<Job>),
    /// The batch is not `OPEN` (closed before: a marker after a close is harmless).
    NotOpen(JobStatus),
    /// A file joined after the fill the close was conditioned on: read again and decide again.
    FillChanged,
    NotFound,
}

#[async_trait]
pub trait BatchStore: Send + Sync {
    /// The latest generation of `folder`'s batches that the folder's cursor remembers (0 when
    /// none was ever opened). A hint: the batches' own conditional writes decide.
    async fn latest_generation(&self, folder: &BatchFolder) -> Result<u64, StoreError>;

    /// Opens `batch` (`OPEN`, holding `upload` as its first file) and creates `upload`'s record,
    /// in one atomic write; then moves the folder's cursor to the batch's generation.
    async fn open_batch(&self, batch: &Job, upload: &Job) -> Result<OpenOutcome, StoreError>;

    /// Adds `upload` (of `size` bytes, at `at`) to the open batch `batch_id` if `rule` holds,
    /// and creates its record, in one atomic write.
    async fn join_batch(
        &self,
        batch_id: &JobId,
        upload: &Job,
        size: u64,
        at: Timestamp,
        rule: &JoinRule,
    ) -> Result<JoinOutcome, StoreError>;

    /// Closes the `OPEN` batch for `reason`: it becomes `PENDING`. With `if_last_file_at`, only
    /// if its last file is still that one.
    async fn close_batch(
        &self,
        batch_id: &JobId,
        reason: CloseReason,
        at: Timestamp,
        if_last_file_at: Option<Timestamp>,
    ) -> Result<CloseOutcome, StoreError>;

    /// Notes that the batch's files are copied to its staging prefix.
    async fn mark_staged(&self, batch_id: &JobId, at: Timestamp) -> Result<(), StoreError>;

    /// The records of every upload in the batch.
    async fn members(&self, batch_id: &JobId) -> Result<Vec<Job>, StoreError>;
}
