//! What the exporter is invoked with, typed: an on-demand request, EventBridge Scheduler's tick,
//! or an EventBridge scheduled rule's event. Each becomes the domain's [`ExportEvent`] through the
//! core's validation ([`ExportTrigger::on_demand`], [`ExportTrigger::scheduled`]).
//!
//! Accepted shapes (any may add `"mode": "full" | "incremental"` to override the configured mode):
//! - on demand: `{"requestId": "backup-2026-11-28"}`;
//! - EventBridge Scheduler, with the input `{"scheduledTime": "<aws.scheduler.scheduled-time>"}`
//!   that `template.yaml` configures;
//! - an EventBridge scheduled rule's event (`"detail-type": "Scheduled Event"`, with `time`).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use healthimport::domain::export::{ExportEvent, ExportEventError, ExportTrigger};
use serde::Deserialize;
use serde_json::Value;

/// The detail type of an EventBridge scheduled rule's event.
const SCHEDULED_EVENT: &str = "Scheduled Event";

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ExporterEvent {
    #[serde(rename_all = "camelCase")]
    OnDemand {
        request_id: String,
        #[serde(default)]
        mode: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SchedulerTick {
        scheduled_time: String,
        #[serde(default)]
        mode: Option<String>,
    },
    ScheduledRule(Box<EventBridgeEvent>),
    /// None of the shapes: refused with the reason (see [`ExporterEvent::into_export_event`]).
    Unrecognised(Value),
}

impl ExporterEvent {
    /// The trigger and mode this invocation asks for, or why it cannot be served.
    pub fn into_export_event(self) -> Result<ExportEvent, ExportEventError> {
        match self {
            ExporterEvent::OnDemand { request_id, mode } => {
                ExportEvent::new(ExportTrigger::on_demand(&request_id)?, mode.as_deref())
            }
            ExporterEvent::SchedulerTick {
                scheduled_time,
                mode,
            } => ExportEvent::new(ExportTrigger::scheduled(&scheduled_time)?, mode.as_deref()),
            ExporterEvent::ScheduledRule(event) => match (event.detail_type.as_str(), event.time) {
                (SCHEDULED_EVENT, Some(time)) => {
                    ExportEvent::new(ExportTrigger::scheduled(&time.to_rfc3339())?, None)
                }
                _ => Err(ExportEventError::NoTrigger),
            },
            ExporterEvent::Unrecognised(value) => Err(unrecognised(&value)),
        }
    }
}

/// Why an event matched no shape: a member of the right name with a value of the wrong type is
/// reported as that member's error, so the caller learns what to fix.
fn unrecognised(event: &Value) -> ExportEventError {
    let Some(fields) = event.as_object() else {
        return ExportEventError::NotAnObject;
    };
    if fields.contains_key("requestId") {
        ExportEventError::InvalidRequestId
    } else if let Some(time) = fields.get("scheduledTime") {
        ExportEventError::InvalidScheduledTime(time.as_str().unwrap_or_default().to_owned())
    } else {
        ExportEventError::NoTrigger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthimport::domain::export::{ExportMode, MAX_REQUEST_ID_CHARS};
    use serde_json::json;

    const DATASTORE: &str = "0123456789abcdef0123456789abcdef";

    /// The event as Lambda hands it over: JSON into the typed event, then into the domain's.
    fn parse_export_event(event: &Value) -> Result<ExportEvent, ExportEventError> {
        serde_json::from_value::<ExporterEvent>(event.clone())
            .expect("every JSON value is an ExporterEvent")
            .into_export_event()
    }

    #[test]
    fn an_on_demand_request_is_identified_by_its_request_id() {
        let trigger = parse_export_event(&json!({"requestId": "backup-2026-11-28"}))
            .unwrap()
            .trigger;
        assert_eq!(
            trigger,
            ExportTrigger::OnDemand {
                request_id: "backup-2026-11-28".into()
            }
        );
        let again = parse_export_event(&json!({"requestId": "backup-2026-11-28"}))
            .unwrap()
            .trigger;
        assert_eq!(trigger.job_id(DATASTORE), again.job_id(DATASTORE));
        let other = parse_export_event(&json!({"requestId": "backup-2026-11-29"}))
            .unwrap()
            .trigger;
        assert_ne!(trigger.job_id(DATASTORE), other.job_id(DATASTORE));
    }

    #[test]
    fn a_scheduler_tick_and_a_scheduled_rule_event_name_their_scheduled_time() {
        let scheduler = parse_export_event(&json!({"scheduledTime": "2026-11-28T02:00:00Z"}))
            .unwrap()
            .trigger;
        let rule = parse_export_event(&json!({
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": "2026-11-28T02:00:00Z",
            "detail": {}
        }))
        .unwrap()
        .trigger;
        assert_eq!(scheduler, rule);
        assert_eq!(scheduler.to_string(), "schedule:2026-11-28T02:00:00.000Z");
        let next = parse_export_event(&json!({"scheduledTime": "2026-11-29T02:00:00Z"}))
            .unwrap()
            .trigger;
        assert_ne!(scheduler.job_id(DATASTORE), next.job_id(DATASTORE));
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
        assert!(matches!(
            parse_export_event(&json!({"requestId": "a", "mode": "partial"})),
            Err(ExportEventError::InvalidMode(_))
        ));
    }

    #[test]
    fn the_event_may_name_the_mode() {
        let event = parse_export_event(&json!({"requestId": "a", "mode": "incremental"})).unwrap();
        assert_eq!(event.mode, Some(ExportMode::Incremental));
        let event = parse_export_event(&json!({"requestId": "a"})).unwrap();
        assert_eq!(event.mode, None);
    }
}
