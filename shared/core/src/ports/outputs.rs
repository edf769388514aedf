//! The `OutputReader` port: the services' output files (manifests, failure files, exported
//! NDJSON), read from S3.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("could not read {uri}")]
pub struct OutputReadError {
    pub uri: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Reads the services' output files.
#[async_trait]
pub trait OutputReader: Send + Sync {
    /// The object's text (its first `max_bytes` bytes when given), or `None` when it does not
    /// exist.
    async fn read(
        &self,
        uri: &str,
        max_bytes: Option<usize>,
    ) -> Result<Option<String>, OutputReadError>;
    /// Up to `limit` object URIs under the prefix `prefix_uri`, in key order.
    async fn list(&self, prefix_uri: &str, limit: usize) -> Result<Vec<String>, OutputReadError>;
}
