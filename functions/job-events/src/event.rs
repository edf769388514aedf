//! What the job-events function is invoked with: an EventBridge event (a rule on the services'
//! job events), an SQS batch (the completion-check queue), or the tracking workflow's request to
//! wait for its job's end, told apart by shape.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum JobEventsEvent {
    /// Re-checks from the completion-check queue (`Records` of SQS messages).
    Checks(SqsEvent),
    /// The tracking workflow begins to wait for its job's end (`.waitForTaskToken`).
    Await(AwaitRequest),
    /// A service's job event, as an EventBridge rule delivers it.
    ServiceEvent(Box<EventBridgeEvent<Value>>),
}

/// `{"action": "await", "jobId": ..., "taskToken": ...}`: the workflow's AwaitEnd task.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename = "await", rename_all = "camelCase")]
pub struct AwaitRequest {
    pub job_id: healthimport::domain::job::JobId,
    pub task_token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JobEventsResponse {
    Checks(SqsBatchResponse),
    /// What the event did, for the invocation's log.
    Event(Value),
}
