//! What the starter is invoked with, typed: S3 event notifications, delivered directly by S3 or
//! wrapped in SQS messages (the template's path), and what it answers.
//!
//! Both deliveries carry a `Records` array whose entries name their `eventSource` (`aws:s3` or
//! `aws:sqs`): that tag, not the order of guesses, tells them apart. A record that is neither is
//! kept as [`EventRecord::Malformed`] so that it fails alone and the rest of the batch is still
//! processed.

use aws_lambda_events::s3::S3EventRecord;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One invocation: an S3 notification or an SQS batch of them, or the `Records` of one SQS
/// message's body.
#[derive(Debug, Clone, Deserialize)]
pub struct StarterEvent {
    #[serde(rename = "Records")]
    pub records: Vec<EventRecord>,
}

/// One entry of `Records`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EventRecord {
    Delivered(Delivered),
    /// Not a record of either source: it fails alone, with its parse error logged.
    Malformed(Value),
}

/// A record by its source.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "eventSource")]
pub enum Delivered {
    #[serde(rename = "aws:s3")]
    S3(Box<S3EventRecord>),
    #[serde(rename = "aws:sqs")]
    Sqs(Box<SqsMessage>),
}

/// The body of an SQS message from an S3 notification: the notification, or the test event S3
/// sends once when a notification is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SqsBody {
    Notification(StarterEvent),
    TestEvent {
        #[serde(rename = "Event")]
        event: String,
    },
}

/// What an invocation answers: a count for a direct S3 invocation, the failed messages for an
/// SQS batch (`ReportBatchItemFailures`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StarterResponse {
    Processed { processed: usize },
    Batch(SqsBatchResponse),
}

impl StarterEvent {
    /// Whether this is an SQS batch (its first record came from SQS).
    pub fn is_sqs_batch(&self) -> bool {
        matches!(
            self.records.first(),
            Some(EventRecord::Delivered(Delivered::Sqs(_)))
        )
    }
}

/// Why a record could not be read, for the log: the parse error of the record as S3's.
pub fn malformed_reason(record: &Value) -> String {
    match serde_json::from_value::<S3EventRecord>(record.clone()) {
        Ok(_) => "a record of an unknown event source".to_owned(),
        Err(e) => e.to_string(),
    }
}
