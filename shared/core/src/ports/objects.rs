//! The `ObjectLister` port: what a DICOM batch folder holds, so its size can be checked against
//! HealthImaging's per-job limits before the job is started.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("could not list s3://{bucket}/{prefix}")]
pub struct ListError {
    pub bucket: String,
    pub prefix: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

#[async_trait]
pub trait ObjectLister: Send + Sync {
    /// Up to `limit` objects under `prefix` (more than the per-job limit is enough to refuse).
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ListedObject>, ListError>;
}
