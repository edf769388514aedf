//! SQS adapter of the [`CompletionChecks`] port: a per-job re-check as a delayed message on the
//! completion-check queue, whose consumer (the job-events function) re-reads the job. SQS delays a
//! message at most 15 minutes; a longer interval is capped there (the consumer schedules the next
//! check itself).

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use healthimport::domain::job::JobId;
use healthimport::ports::completion::{CheckError, CompletionChecks};
use serde::{Deserialize, Serialize};

/// SQS's longest message delay.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// The body of a completion-check message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionCheck {
    pub job_id: JobId,
}

#[derive(Debug, Clone)]
pub struct SqsCompletionChecks {
    client: Client,
    queue_url: String,
}

impl SqsCompletionChecks {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsCompletionChecks {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl CompletionChecks for SqsCompletionChecks {
    async fn check_later(&self, job_id: &JobId, after_seconds: u32) -> Result<(), CheckError> {
        let body = serde_json::to_string(&CompletionCheck {
            job_id: job_id.clone(),
        })
        .map_err(|e| CheckError {
            job_id: job_id.clone(),
            source: Box::new(e),
        })?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(after_seconds.min(MAX_DELAY_SECONDS) as i32)
            .send()
            .await
            .map_err(|e| CheckError {
                job_id: job_id.clone(),
                source: Box::new(e),
            })?;
        Ok(())
    }
}
