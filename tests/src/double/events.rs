//! The services' own job events, put on EventBridge's default bus the way HealthLake and
//! HealthImaging send them: one event per status change of a job, with the service's source,
//! detail-type and detail members, and the data store's ARN in `resources` (`account`, `region`,
//! `id` and `version` are EventBridge's to set).
//!
//! - HealthImaging (developer guide, "Using Amazon EventBridge with HealthImaging", event
//!   structure and examples): source `aws.medical-imaging`, detail-types `Import Job Submitted`,
//!   `Import Job In Progress`, `Import Job Completed`, `Import Job Failed`; `detail{imagingVersion
//!   "1.0", datastoreId, jobId, jobName, jobStatus, inputS3Uri, outputS3Uri}`; resource
//!   `arn:aws:medical-imaging:<region>:<account>:datastore/<datastoreId>`.
//! - HealthLake (developer guide, "Monitoring HealthLake events using Amazon EventBridge"; the
//!   `Queued` detail-types from the EventBridge events reference, "AWS HealthLake events"):
//!   source `aws.healthlake`, detail-types `Import Job Submitted | Queued | In Progress |
//!   Completed | Completed With Errors | Failed` and `Export Job …` the same; `detail{jobId,
//!   submitTime, datastoreId, inputDataConfig{s3Uri}}` for an import, `outputDataConfig{s3Uri}`
//!   for an export; no status, message or progress (the status is in the detail-type only);
//!   resource `arn:aws:healthlake:<region>:<account>:datastore/fhir/<datastoreId>`.
//!
//! The state announces each change under its lock ([`super::state::State::announce`]) into an
//! unbounded channel, so a job's events leave in the order of its changes and announcing never
//! waits. One emitter task per double drains the channel, applies the event faults
//! ([`super::Faults`]: drop, duplicate, delay, reorder; drawn from the seeded RNG) and puts up to
//! ten entries per PutEvents call. A failed put (after the client's own retries) is logged and
//! counted ([`super::DoubleStats::event_put_failures`]) and never seen by the job.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::state::{EventFate, Job, JobKind, Service};
use super::Shared;

/// `source` of HealthImaging's events.
pub const IMAGING_SOURCE: &str = "aws.medical-imaging";
/// `source` of HealthLake's events.
pub const HEALTHLAKE_SOURCE: &str = "aws.healthlake";
/// `detail.imagingVersion` of HealthImaging's events.
const IMAGING_VERSION: &str = "1.0";
/// PutEvents takes at most ten entries.
const MAX_ENTRIES_PER_PUT: usize = 10;

/// Region and account of the ARNs in events.
#[derive(Debug, Clone)]
pub struct ArnScope {
    pub region: String,
    pub account_id: String,
}

/// One job event, ready to put.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub job_id: String,
    pub source: &'static str,
    pub detail_type: String,
    /// The data store's ARN.
    pub resource: String,
    pub detail: Value,
    /// When the status changed.
    pub time: SystemTime,
    /// COMPLETED, COMPLETED_WITH_ERRORS or FAILED: nothing follows it.
    pub terminal: bool,
}

impl JobEvent {
    /// The event announcing that `job` is now `status` (a wire status).
    pub fn of(job: &Job, status: &str, scope: &ArnScope) -> Self {
        let request = &job.request;
        let terminal = matches!(status, "COMPLETED" | "COMPLETED_WITH_ERRORS" | "FAILED");
        let time = match status {
            "SUBMITTED" => job.submitted_at,
            _ if terminal => job.ended_at().unwrap_or_else(SystemTime::now),
            _ => SystemTime::now(),
        };
        let (source, detail_type, resource, detail) = match job.service {
            Service::Imaging => (
                IMAGING_SOURCE,
                format!("Import Job {}", status_words(status)),
                format!(
                    "arn:aws:medical-imaging:{}:{}:datastore/{}",
                    scope.region, scope.account_id, request.datastore_id
                ),
                json!({
                    "imagingVersion": IMAGING_VERSION,
                    "datastoreId": request.datastore_id,
                    "jobId": job.id,
                    // GetDICOMImportJob's jobName for a job started without one.
                    "jobName": request.name.clone().unwrap_or_default(),
                    "jobStatus": status,
                    "inputS3Uri": request.input_s3_uri,
                    "outputS3Uri": request.output_s3_uri,
                }),
            ),
            Service::HealthLake => {
                let (kind, location) = match request.kind {
                    JobKind::Import => (
                        "Import",
                        json!({"inputDataConfig": {"s3Uri": request.input_s3_uri}}),
                    ),
                    JobKind::Export => (
                        "Export",
                        json!({"outputDataConfig": {"s3Uri": request.output_s3_uri}}),
                    ),
                };
                let mut detail = json!({
                    "jobId": job.id,
                    "submitTime": iso_millis(job.submitted_at),
                    "datastoreId": request.datastore_id,
                });
                if let (Some(detail), Value::Object(location)) = (detail.as_object_mut(), location)
                {
                    detail.extend(location);
                }
                (
                    HEALTHLAKE_SOURCE,
                    format!("{kind} Job {}", status_words(status)),
                    format!(
                        "arn:aws:healthlake:{}:{}:datastore/fhir/{}",
                        scope.region, scope.account_id, request.datastore_id
                    ),
                    detail,
                )
            }
        };
        Self {
            job_id: job.id.clone(),
            source,
            detail_type,
            resource,
            detail,
            time,
            terminal,
        }
    }

    fn entry(&self) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .source(self.source)
            .detail_type(&self.detail_type)
            .detail(self.detail.to_string())
            .resources(&self.resource)
            .time(DateTime::from(self.time))
            .build()
    }
}

/// `IN_PROGRESS` → `In Progress`, `COMPLETED_WITH_ERRORS` → `Completed With Errors`: the
/// detail-type spelling of a wire status.
fn status_words(status: &str) -> String {
    status
        .split('_')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `2023-12-08T01:50:50.986Z`, the shape of HealthLake's `submitTime`.
fn iso_millis(time: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(time)
        .format(&format)
        .unwrap_or_default()
}

/// Where the state announces job events: the emitter's channel. Sending never waits and never
/// fails the caller.
#[derive(Debug, Clone)]
pub struct EventSink(mpsc::UnboundedSender<JobEvent>);

impl EventSink {
    /// A sink and the receiving end of its channel.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<JobEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self(sender), receiver)
    }

    pub fn send(&self, event: JobEvent) {
        if let Err(unsent) = self.0.send(event) {
            debug!(
                job_id = unsent.0.job_id,
                "the event emitter has stopped; job event not sent"
            );
        }
    }
}

/// Turns events on: the state announces into a channel that a new task drains onto
/// EventBridge through `client`. Needs a Tokio runtime.
pub(crate) fn start_emitter(shared: &Arc<Shared>, client: aws_sdk_eventbridge::Client) {
    let (sink, receiver) = EventSink::channel();
    shared.state.lock().set_event_sink(sink);
    tokio::spawn(emit(receiver, Arc::downgrade(shared), client));
}

/// The emitter: ends when the double is gone.
async fn emit(
    mut receiver: mpsc::UnboundedReceiver<JobEvent>,
    shared: Weak<Shared>,
    client: aws_sdk_eventbridge::Client,
) {
    // Events held back by `event_reorder_share`, by job, with their number of copies.
    let mut held: HashMap<String, (JobEvent, usize)> = HashMap::new();
    while let Some(first) = receiver.recv().await {
        let mut incoming = vec![first];
        while incoming.len() < MAX_ENTRIES_PER_PUT {
            match receiver.try_recv() {
                Ok(event) => incoming.push(event),
                Err(_) => break,
            }
        }
        let Some(double) = shared.upgrade() else {
            break;
        };
        let mut now = Vec::new();
        {
            let mut state = double.state.lock();
            for event in incoming {
                // The job's next event releases the one held before it.
                let released = held.remove(&event.job_id);
                match state.event_fate(event.terminal) {
                    EventFate::Dropped => {
                        debug!(
                            job_id = event.job_id,
                            detail_type = event.detail_type,
                            "job event dropped (event_drop_share)"
                        );
                    }
                    EventFate::Now { copies } => {
                        now.extend(std::iter::repeat_n(event, copies));
                    }
                    EventFate::Delayed { copies, delay } => {
                        let late = vec![event; copies];
                        tokio::spawn(put_later(client.clone(), Weak::clone(&shared), late, delay));
                    }
                    EventFate::Held { copies } => {
                        held.insert(event.job_id.clone(), (event, copies));
                    }
                }
                if let Some((event, copies)) = released {
                    now.extend(std::iter::repeat_n(event, copies));
                }
            }
        }
        drop(double);
        put(&client, &shared, &now).await;
    }
}

async fn put_later(
    client: aws_sdk_eventbridge::Client,
    shared: Weak<Shared>,
    events: Vec<JobEvent>,
    delay: Duration,
) {
    tokio::time::sleep(delay).await;
    put(&client, &shared, &events).await;
}

/// Puts `events` in order, ten entries a call, and counts the outcome.
async fn put(client: &aws_sdk_eventbridge::Client, shared: &Weak<Shared>, events: &[JobEvent]) {
    for chunk in events.chunks(MAX_ENTRIES_PER_PUT) {
        let entries = chunk.iter().map(JobEvent::entry).collect();
        let failed = match client.put_events().set_entries(Some(entries)).send().await {
            Ok(output) => {
                let mut failed = 0;
                for (event, result) in chunk.iter().zip(output.entries()) {
                    if let Some(code) = result.error_code() {
                        failed += 1;
                        warn!(
                            job_id = event.job_id,
                            detail_type = event.detail_type,
                            error_code = code,
                            error_message = result.error_message().unwrap_or(""),
                            "EventBridge refused a job event"
                        );
                    }
                }
                // An answer with fewer result entries than were sent counts the rest as failed.
                failed + chunk.len().saturating_sub(output.entries().len())
            }
            Err(err) => {
                warn!(
                    events = chunk.len(),
                    error = %DisplayErrorContext(&err),
                    "putting job events on EventBridge failed"
                );
                chunk.len()
            }
        };
        if let Some(double) = shared.upgrade() {
            let mut state = double.state.lock();
            state.stats.events_put += u64::try_from(chunk.len() - failed).unwrap_or(u64::MAX);
            state.stats.event_put_failures += u64::try_from(failed).unwrap_or(u64::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_types_spell_the_status_as_the_services_do() {
        assert_eq!(status_words("SUBMITTED"), "Submitted");
        assert_eq!(status_words("QUEUED"), "Queued");
        assert_eq!(status_words("IN_PROGRESS"), "In Progress");
        assert_eq!(
            status_words("COMPLETED_WITH_ERRORS"),
            "Completed With Errors"
        );
        assert_eq!(status_words("FAILED"), "Failed");
    }

    #[test]
    fn submit_time_has_milliseconds_and_a_z() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_702_000_250_986);
        assert_eq!(iso_millis(time), "2023-12-08T01:50:50.986Z");
    }
}
