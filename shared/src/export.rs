//! FHIR export requests: what asked for an export, and the job id it maps to. Pure: no AWS types.
//!
//! An export is tracked exactly like an import (same record, statuses, workflow and poller); what
//! differs is its origin. An import comes from an upload; an export comes from a schedule tick or
//! an on-demand request, and that origin is what makes it idempotent: every delivery of one tick,
//! and every retry of one request, derives the same job id, hence one record, one ClientToken and
//! one execution name.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::job::{JobId, Timestamp};

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
}

/// Reads the trigger of an exporter invocation. Accepted shapes:
/// - on demand: `{"requestId": "backup-2026-11-28"}` (the caller picks the id; sending the same
///   id again is a retry of the same export, not a second one);
/// - EventBridge Scheduler, with the input `{"scheduledTime": "<aws.scheduler.scheduled-time>"}`
///   that `template.yaml` configures;
/// - an EventBridge scheduled rule's event (`"detail-type": "Scheduled Event"`, with `time`).
pub fn parse_export_event(event: &Value) -> Result<ExportTrigger, ExportEventError> {
    let fields = event.as_object().ok_or(ExportEventError::NotAnObject)?;
    if let Some(id) = fields.get("requestId") {
        let id = id.as_str().ok_or(ExportEventError::InvalidRequestId)?;
        if !valid_request_id(id) {
            return Err(ExportEventError::InvalidRequestId);
        }
        return Ok(ExportTrigger::OnDemand {
            request_id: id.to_owned(),
        });
    }
    let scheduled = fields.get("scheduledTime").or_else(|| {
        (fields.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event"))
            .then(|| fields.get("time"))
            .flatten()
    });
    let Some(scheduled) = scheduled else {
        return Err(ExportEventError::NoTrigger);
    };
    let text = scheduled.as_str().unwrap_or_default();
    let scheduled_at = text
        .parse::<Timestamp>()
        .map_err(|_| ExportEventError::InvalidScheduledTime(text.to_owned()))?;
    Ok(ExportTrigger::Schedule { scheduled_at })
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
    fn an_on_demand_request_is_identified_by_its_request_id() {
        let trigger = parse_export_event(&json!({"requestId": "backup-2026-11-28"})).unwrap();
        assert_eq!(
            trigger,
            ExportTrigger::OnDemand {
                request_id: "backup-2026-11-28".into()
            }
        );
        let again = parse_export_event(&json!({"requestId": "backup-2026-11-28"})).unwrap();
        assert_eq!(trigger.job_id(DATASTORE), again.job_id(DATASTORE));
        let other = parse_export_event(&json!({"requestId": "backup-2026-11-29"})).unwrap();
        assert_ne!(trigger.job_id(DATASTORE), other.job_id(DATASTORE));
    }

    #[test]
    fn a_scheduler_tick_and_a_scheduled_rule_event_name_their_scheduled_time() {
        let scheduler =
            parse_export_event(&json!({"scheduledTime": "2026-11-28T02:00:00Z"})).unwrap();
        let rule = parse_export_event(&json!({
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": "2026-11-28T02:00:00Z",
            "detail": {}
        }))
        .unwrap();
        assert_eq!(scheduler, rule);
        assert_eq!(scheduler.to_string(), "schedule:2026-11-28T02:00:00.000Z");
        let next = parse_export_event(&json!({"scheduledTime": "2026-11-29T02:00:00Z"})).unwrap();
        assert_ne!(scheduler.job_id(DATASTORE), next.job_id(DATASTORE));
    }

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
    fn events_without_a_usable_trigger_are_refused_with_the_reason() {
        let cases = [
            (json!([1, 2]), ExportEventError::NotAnObject),
            (json!({}), ExportEventError::NoTrigger),
            (
                json!({"detail-type": "Object Created", "time": "2026-11-28T02:00:00Z"}),
                ExportEventError::NoTrigger,
            ),
            (json!({"requestId": ""}), ExportEventError::InvalidRequestId),
            (json!({"requestId": 7}), ExportEventError::InvalidRequestId),
            (
                json!({"requestId": "has space"}),
                ExportEventError::InvalidRequestId,
            ),
            (
                json!({"requestId": "x".repeat(MAX_REQUEST_ID_CHARS + 1)}),
                ExportEventError::InvalidRequestId,
            ),
            (
                json!({"scheduledTime": "yesterday"}),
                ExportEventError::InvalidScheduledTime("yesterday".into()),
            ),
            (
                json!({"scheduledTime": 5}),
                ExportEventError::InvalidScheduledTime(String::new()),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(parse_export_event(&event), Err(expected), "{event}");
        }
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
