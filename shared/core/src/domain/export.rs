//! FHIR export requests: what asked for an export, and the job id it maps to. Pure: no AWS types.
//!
//! An export is tracked exactly like an import (same record, statuses, workflow and poller); what
//! differs is its origin. An import comes from an upload; an export comes from a schedule tick or
//! an on-demand request, and that origin is what makes it idempotent: every delivery of one tick,
//! and every retry of one request, derives the same job id, hence one record, one ClientToken and
//! one execution name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::{JobId, Timestamp};

/// Whether an export writes the whole data store or only what changed since the last export that
/// completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportMode {
    #[default]
    Full,
    Incremental,
}

impl FromStr for ExportMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(ExportMode::Full),
            "incremental" => Ok(ExportMode::Incremental),
            other => Err(format!("{other:?} is neither \"full\" nor \"incremental\"")),
        }
    }
}

/// One export as recorded: its trigger and the window of changes it covers. `until` is when the
/// export was recorded; an incremental export's `since` is the `until` of the last export that
/// completed, so consecutive windows overlap a little and never leave a gap (a failed export's
/// window is covered by the next one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRequest {
    #[serde(flatten)]
    pub trigger: ExportTrigger,
    /// Absent for a full export (or an incremental one with no completed export before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    pub until: Timestamp,
}

impl ExportRequest {
    /// The export `trigger` asks for at `now`, given the window end of the last export that
    /// completed (`None` when there is none: the first incremental export is a full one).
    pub fn new(
        trigger: ExportTrigger,
        mode: ExportMode,
        last_completed_until: Option<Timestamp>,
        now: Timestamp,
    ) -> ExportRequest {
        let since = match mode {
            ExportMode::Full => None,
            ExportMode::Incremental => last_completed_until,
        };
        ExportRequest {
            trigger,
            since,
            until: now,
        }
    }
}

/// What an exporter invocation asks for: its trigger, and the mode when the event names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEvent {
    pub trigger: ExportTrigger,
    pub mode: Option<ExportMode>,
}

/// The longest on-demand request id accepted: it is stored and logged, so it stays short.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// What asked for an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "camelCase")]
pub enum ExportTrigger {
    /// A schedule tick, identified by the time it was scheduled for (not the time it ran), so a
    /// redelivered or retried tick is the same export.
    #[serde(rename_all = "camelCase")]
    Schedule { scheduled_at: Timestamp },
    /// A request made by hand or by another system, identified by the caller's request id.
    #[serde(rename_all = "camelCase")]
    OnDemand { request_id: String },
}

impl ExportTrigger {
    fn parts(&self) -> (&'static str, String) {
        match self {
            ExportTrigger::Schedule { scheduled_at } => ("schedule", scheduled_at.to_string()),
            ExportTrigger::OnDemand { request_id } => ("request", request_id.clone()),
        }
    }

    fn identity(&self) -> String {
        let (kind, value) = self.parts();
        format!("{kind}:{value}")
    }

    /// The job id of this trigger's export of `datastore_id`. Four length-prefixed parts where an
    /// upload's id hashes three, so no export id can equal an upload's id.
    pub fn job_id(&self, datastore_id: &str) -> JobId {
        let (kind, value) = self.parts();
        let mut hasher = Sha256::new();
        for part in ["export", datastore_id, kind, &value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        JobId::from_stored(hex::encode(&hasher.finalize()[..16]))
    }
}

impl fmt::Display for ExportTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.identity())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportEventError {
    #[error("the export event is not a JSON object")]
    NotAnObject,
    #[error(
        "the export event names no trigger: send {{\"requestId\": \"...\"}} for an on-demand export, \
         or a scheduled event with its scheduled time"
    )]
    NoTrigger,
    #[error("requestId must be 1 to {MAX_REQUEST_ID_CHARS} characters of A-Z a-z 0-9 . _ : -")]
    InvalidRequestId,
    #[error("the scheduled time {0:?} is not an RFC 3339 timestamp")]
    InvalidScheduledTime(String),
    #[error("mode {0}")]
    InvalidMode(String),
}

impl ExportTrigger {
    /// An on-demand request's trigger. The caller picks the id; the same id again is a retry of
    /// the same export, not a second one.
    pub fn on_demand(request_id: &str) -> Result<ExportTrigger, ExportEventError> {
        if !valid_request_id(request_id) {
            return Err(ExportEventError::InvalidRequestId);
        }
        Ok(ExportTrigger::OnDemand {
            request_id: request_id.to_owned(),
        })
    }

    /// A schedule tick's trigger, from the RFC 3339 time it was scheduled for.
    pub fn scheduled(scheduled_time: &str) -> Result<ExportTrigger, ExportEventError> {
        let scheduled_at = scheduled_time
            .parse::<Timestamp>()
            .map_err(|_| ExportEventError::InvalidScheduledTime(scheduled_time.to_owned()))?;
        Ok(ExportTrigger::Schedule { scheduled_at })
    }
}

impl ExportEvent {
    /// An invocation's trigger with the mode it names, if any (`"full"` or `"incremental"`).
    pub fn new(
        trigger: ExportTrigger,
        mode: Option<&str>,
    ) -> Result<ExportEvent, ExportEventError> {
        let mode = mode
            .map(|m| {
                m.parse::<ExportMode>()
                    .map_err(ExportEventError::InvalidMode)
            })
            .transpose()?;
        Ok(ExportEvent { trigger, mode })
    }
}

fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DATASTORE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_same_trigger_on_another_data_store_is_another_export() {
        let trigger = ExportTrigger::OnDemand {
            request_id: "x".into(),
        };
        assert_ne!(trigger.job_id(DATASTORE), trigger.job_id(&"f".repeat(32)));
    }

    #[test]
    fn export_ids_are_valid_tokens_and_never_an_uploads_id() {
        let trigger = ExportTrigger::OnDemand {
            request_id: "a".into(),
        };
        let id = trigger.job_id(DATASTORE);
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, JobId::for_upload("export", DATASTORE, "request:a"));
    }

    #[test]
    fn an_incremental_window_starts_where_the_last_completed_export_ended() {
        let trigger = ExportTrigger::OnDemand {
            request_id: "r".into(),
        };
        let last: Timestamp = "2026-11-27T02:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-11-28T02:00:05Z".parse().unwrap();
        let incremental =
            ExportRequest::new(trigger.clone(), ExportMode::Incremental, Some(last), now);
        assert_eq!(incremental.since, Some(last));
        assert_eq!(incremental.until, now);
        // No completed export yet: the first incremental export is a full one.
        let first = ExportRequest::new(trigger.clone(), ExportMode::Incremental, None, now);
        assert_eq!(first.since, None);
        let full = ExportRequest::new(trigger, ExportMode::Full, Some(last), now);
        assert_eq!(full.since, None);
        assert_eq!(
            serde_json::to_value(&incremental).unwrap(),
            json!({"trigger": "onDemand", "requestId": "r",
                   "since": "2026-11-27T02:00:00.000Z", "until": "2026-11-28T02:00:05.000Z"})
        );
        assert_eq!(
            serde_json::from_value::<ExportRequest>(serde_json::to_value(&incremental).unwrap())
                .unwrap(),
            incremental
        );
    }

    #[test]
    fn a_trigger_round_trips_through_the_record() {
        let trigger = ExportTrigger::Schedule {
            scheduled_at: "2026-11-28T02:00:00Z".parse().unwrap(),
        };
        let json = serde_json::to_value(&trigger).unwrap();
        assert_eq!(
            json,
            json!({"trigger": "schedule", "scheduledAt": "2026-11-28T02:00:00.000Z"})
        );
        assert_eq!(
            serde_json::from_value::<ExportTrigger>(json).unwrap(),
            trigger
        );
    }
}
