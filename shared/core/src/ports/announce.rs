//! The `Announcer` port: puts a job's Finished event.

use async_trait::async_trait;

use crate::domain::finished::JobFinished;

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("EventBridge PutEvents failed")]
    Put {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// PutEvents answered, but refused the entry (FailedEntryCount > 0).
    #[error("EventBridge refused the event ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("the event detail cannot be serialised")]
    Detail(#[source] serde_json::Error),
}

/// Puts the `Import Job Finished` event.
#[async_trait]
pub trait Announcer: Send + Sync {
    async fn announce(&self, finished: &JobFinished) -> Result<(), AnnounceError>;
}
