//! The object ports: listing a prefix, and the server-side copies that give each batch exactly its
//! own files.

use async_trait::async_trait;

use crate::domain::job::SourceObject;

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
    /// Up to `limit` objects under `prefix`.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ListedObject>, ListError>;
}

/// Why a copy or a delete failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The source object is gone (deleted after it was uploaded): the copy can never succeed.
    #[error("s3://{bucket}/{key} no longer exists")]
    Gone { bucket: String, key: String },
    #[error("{operation} on s3://{bucket}/{key} failed")]
    Unavailable {
        operation: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The port that gives each batch its own copy of its files: server-side copies into the batch's
/// staging prefix, and their removal once the batch's outcome is recorded.
#[async_trait]
pub trait StagedCopies: Send + Sync {
    /// Copies the uploaded object `source` (the version it was uploaded as, when the bucket is
    /// versioned; multipart above S3's 5 GB single-copy limit) to `to_key` in its bucket. The
    /// version pins the upload's own bytes: an overwrite after the upload is an upload of its own,
    /// and must not be imported in this one's place. Copying again overwrites with the same bytes.
    async fn copy(&self, source: &SourceObject, to_key: &str) -> Result<(), ObjectError>;
    /// Deletes every object under `prefix`; returns how many.
    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<u64, ObjectError>;
}
