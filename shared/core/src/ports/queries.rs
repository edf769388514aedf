//! The `JobQueries` port: the questions an operator asks of the records, beyond what the handlers
//! need. Which service jobs (batches and exports, not the uploads in them) a data store has in a
//! status, and since when.

use async_trait::async_trait;

use crate::domain::job::{Job, JobStatus, Timestamp};
use crate::ports::store::StoreError;

#[async_trait]
pub trait JobQueries: Send + Sync {
    /// The batches and exports of `datastore_id` in `status`, created at or after `since` when
    /// given, oldest first. Upload records are left out: a batch's job stands for them.
    async fn service_jobs(
        &self,
        datastore_id: &str,
        status: JobStatus,
        since: Option<Timestamp>,
    ) -> Result<Vec<Job>, StoreError>;
}
