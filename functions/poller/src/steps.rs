//! The shapes of the tracking workflow's steps: what the state machine sends the poller
//! ([`PollerInput`]) and what each step answers, which its Choice and Wait states read. The
//! contract with `statemachine/import-job.asl.json` is tested in `workflow_definition`.

use healthimport::domain::finished::JobFinished;
use healthimport::domain::job::{JobId, JobStatus, Timestamp};
use healthimport::domain::manifest::MAX_MESSAGE_CHARS;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step of the tracking workflow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum PollerInput {
    Start {
        job_id: JobId,
        /// The execution's deadline: a started job's wait for its end must end before it.
        #[serde(default, flatten)]
        deadline: Option<Deadline>,
    },
    Poll {
        job_id: JobId,
        #[serde(default)]
        polls: u32,
        /// When the execution started and how long it may track (absent: no deadline).
        #[serde(default, flatten)]
        deadline: Option<Deadline>,
    },
    Finish {
        job_id: JobId,
        #[serde(default = "manifest_required")]
        require_manifest: bool,
    },
    RecordFailure {
        job_id: JobId,
        #[serde(default)]
        error: Option<StepError>,
    },
}

impl PollerInput {
    pub fn job_id(&self) -> &JobId {
        match self {
            PollerInput::Start { job_id, .. }
            | PollerInput::Poll { job_id, .. }
            | PollerInput::Finish { job_id, .. }
            | PollerInput::RecordFailure { job_id, .. } => job_id,
        }
    }

    /// The step's name, as the workflow sends it.
    pub fn action(&self) -> &'static str {
        match self {
            PollerInput::Start { .. } => "start",
            PollerInput::Poll { .. } => "poll",
            PollerInput::Finish { .. } => "finish",
            PollerInput::RecordFailure { .. } => "recordFailure",
        }
    }
}

/// The tracking execution's deadline: its start (`$$.Execution.StartTime`) and the template's
/// `TrackingTimeoutSeconds`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deadline {
    pub execution_started_at: Timestamp,
    pub timeout_seconds: u64,
}

impl Deadline {
    /// Whether, waiting `next_wait_seconds` more from `now`, the workflow would leave too little
    /// of its time to record the end: a fifth of it, at most five minutes.
    pub fn passed_before(&self, now: Timestamp, next_wait_seconds: u64) -> bool {
        let allowance = (self.timeout_seconds / 5).min(300);
        let budget = self.timeout_seconds.saturating_sub(allowance);
        let elapsed = now
            .unix_seconds()
            .saturating_sub(self.execution_started_at.unix_seconds())
            .max(0) as u64;
        elapsed.saturating_add(next_wait_seconds) >= budget
    }

    /// How long a wait that begins `now` may last: up to the point where [`Self::passed_before`]
    /// would give up, so that the end can still be recorded.
    pub fn remaining_wait(&self, now: Timestamp) -> u64 {
        let allowance = (self.timeout_seconds / 5).min(300);
        let budget = self.timeout_seconds.saturating_sub(allowance);
        let elapsed = now
            .unix_seconds()
            .saturating_sub(self.execution_started_at.unix_seconds())
            .max(0) as u64;
        budget.saturating_sub(elapsed).max(1)
    }
}

fn manifest_required() -> bool {
    true
}

/// What a Step Functions Catch puts at its `ResultPath`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct StepError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

impl StepError {
    /// `Error: message`, the message taken from a Lambda error's JSON cause when it is one.
    pub fn describe(&self) -> String {
        if self.error == "States.Timeout" {
            // The wait for the job's end (events mode) ran to its TimeoutSeconds: the same end as
            // a poll's TrackingTimedOut.
            return "TrackingTimedOut: the job was not finished when its tracking time ran out (States.Timeout)".to_owned();
        }
        let message = self.cause.as_deref().map(|cause| {
            serde_json::from_str::<Value>(cause)
                .ok()
                .and_then(|v| {
                    v.get("errorMessage")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| cause.to_owned())
        });
        let text = match message.filter(|m| !m.is_empty()) {
            Some(m) => format!("{}: {m}", self.error),
            None => self.error.clone(),
        };
        text.chars().take(MAX_MESSAGE_CHARS).collect()
    }
}

/// What `start` and `poll` answer: what the workflow's Choice and Wait states read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingState {
    pub job_id: JobId,
    pub status: JobStatus,
    pub terminal: bool,
    /// Not started yet (its batch is open, or it waits for its turn): wait and start again.
    #[serde(default)]
    pub waiting: bool,
    /// Started, in `events` tracking mode: wait for the service's job event (AwaitEnd), for at most
    /// `awaitTimeoutSeconds`, instead of polling.
    #[serde(default)]
    pub await_events: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub await_timeout_seconds: Option<u64>,
    pub polls: u32,
    pub next_wait_seconds: u64,
}

/// What `finish` answers: the announced summary (also the execution's output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finished {
    pub job_id: JobId,
    pub status: JobStatus,
    /// Whether this invocation put the Finished event (false: it was put before).
    pub announced: bool,
    /// Whether the output manifest was read by this invocation (absent: nothing to read, or it
    /// was read before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_found: Option<bool>,
    pub summary: JobFinished,
}

/// What `recordFailure` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecorded {
    pub job_id: JobId,
    /// The record's status now; absent when there is no record.
    pub status: Option<JobStatus>,
    /// Whether the failure was written to the record.
    pub recorded: bool,
    pub announced: bool,
    pub error: String,
}
