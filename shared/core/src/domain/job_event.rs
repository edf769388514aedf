//! The services' own job events (EventBridge, default bus), read into what they say about a job:
//! which job, and which status it reached. Pure: the envelope's `source`, `detail-type` and
//! `detail` in, a [`ServiceJobEvent`] out.
//!
//! - HealthImaging (`aws.medical-imaging`): `Import Job Submitted | In Progress | Completed |
//!   Failed`, `detail{imagingVersion, datastoreId, jobId, jobName, jobStatus, inputS3Uri,
//!   outputS3Uri}`. `jobName` is ours (the batch id), chosen before the start, so the event is
//!   matched by it even when it arrives before the start call returns.
//! - HealthLake (`aws.healthlake`): `Import Job …` and `Export Job …` with `Submitted | Queued |
//!   In Progress | Completed | Completed With Errors | Failed`, `detail{jobId, submitTime,
//!   datastoreId, inputDataConfig | outputDataConfig}`. The status is only in the detail-type, and
//!   there is no message or progress: the job is matched by the service's `jobId`, and a terminal
//!   event is completed by one Describe.

use serde_json::Value;

use crate::domain::ids::JobId;
use crate::domain::status::{JobKind, JobStatus, Service};

pub const HEALTHLAKE_SOURCE: &str = "aws.healthlake";
pub const IMAGING_SOURCE: &str = "aws.medical-imaging";

/// How an event names its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobReference {
    /// Our id, as the job's name (HealthImaging's `jobName`).
    Ours(JobId),
    /// Only the service's job id (HealthLake).
    ServiceJobId(String),
}

/// What a job event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceJobEvent {
    pub service: Service,
    pub kind: JobKind,
    pub datastore_id: String,
    pub service_job_id: String,
    pub job: JobReference,
    pub status: JobStatus,
}

impl ServiceJobEvent {
    /// Whether the event reports the job's end.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// Why an event is not a job event we read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobEventError {
    #[error("source {0:?} is not a service whose jobs we follow")]
    UnknownSource(String),
    /// A detail-type of the service that is not a job status change (e.g. an image set event).
    #[error("{event_source} detail-type {detail_type:?} is not a job status change")]
    NotAJobEvent {
        event_source: &'static str,
        detail_type: String,
    },
    #[error("{event_source} event {detail_type:?} has no {member}")]
    Missing {
        event_source: &'static str,
        detail_type: String,
        member: &'static str,
    },
}

/// Reads one event's `source`, `detail-type` and `detail`.
pub fn parse_job_event(
    source: &str,
    detail_type: &str,
    detail: &Value,
) -> Result<ServiceJobEvent, JobEventError> {
    let (service, source) = match source {
        HEALTHLAKE_SOURCE => (Service::HealthLake, HEALTHLAKE_SOURCE),
        IMAGING_SOURCE => (Service::HealthImaging, IMAGING_SOURCE),
        other => return Err(JobEventError::UnknownSource(other.to_owned())),
    };
    let not_a_job_event = || JobEventError::NotAJobEvent {
        event_source: source,
        detail_type: detail_type.to_owned(),
    };
    let (kind, change) = if let Some(change) = detail_type.strip_prefix("Import Job ") {
        (JobKind::Import, change)
    } else if let Some(change) = detail_type.strip_prefix("Export Job ") {
        if service != Service::HealthLake {
            return Err(not_a_job_event());
        }
        (JobKind::Export, change)
    } else {
        return Err(not_a_job_event());
    };
    let status = match change {
        "Submitted" => JobStatus::Submitted,
        "Queued" if service == Service::HealthLake => JobStatus::Queued,
        "In Progress" => JobStatus::InProgress,
        "Completed" => JobStatus::Completed,
        "Completed With Errors" if service == Service::HealthLake => JobStatus::CompletedWithErrors,
        "Failed" => JobStatus::Failed,
        _ => return Err(not_a_job_event()),
    };
    let member = |name: &'static str| {
        detail
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| JobEventError::Missing {
                event_source: source,
                detail_type: detail_type.to_owned(),
                member: name,
            })
    };
    let service_job_id = member("jobId")?;
    let job = match service {
        Service::HealthImaging => JobReference::Ours(JobId::from_stored(member("jobName")?)),
        Service::HealthLake => JobReference::ServiceJobId(service_job_id.clone()),
    };
    Ok(ServiceJobEvent {
        service,
        kind,
        datastore_id: member("datastoreId")?,
        service_job_id,
        job,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        )
        .unwrap()
    }

    fn parse_sample(name: &str) -> ServiceJobEvent {
        let event = sample(name);
        parse_job_event(
            event["source"].as_str().unwrap(),
            event["detail-type"].as_str().unwrap(),
            &event["detail"],
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_documented_samples_parse() {
        let imaging = parse_sample("job-event-imaging-import-completed.json");
        assert_eq!(imaging.service, Service::HealthImaging);
        assert_eq!(imaging.status, JobStatus::Completed);
        assert_eq!(
            imaging.job,
            JobReference::Ours(JobId::from_stored("b-7da77e05f54200ad8977a604-0"))
        );
        assert_eq!(imaging.datastore_id, "d1c0d1c0d1c0d1c0d1c0d1c0d1c0d1c0");
        assert_eq!(
            parse_sample("job-event-imaging-import-failed.json").status,
            JobStatus::Failed
        );

        let fhir = parse_sample("job-event-healthlake-import-completed.json");
        assert_eq!(
            (fhir.service, fhir.kind),
            (Service::HealthLake, JobKind::Import)
        );
        assert_eq!(fhir.status, JobStatus::Completed);
        assert_eq!(
            fhir.job,
            JobReference::ServiceJobId(fhir.service_job_id.clone())
        );
        assert_eq!(
            parse_sample("job-event-healthlake-import-completed-with-errors.json").status,
            JobStatus::CompletedWithErrors
        );
        assert_eq!(
            parse_sample("job-event-healthlake-import-in-progress.json").status,
            JobStatus::InProgress
        );
        let export = parse_sample("job-event-healthlake-export-completed.json");
        assert_eq!(
            (export.kind, export.status),
            (JobKind::Export, JobStatus::Completed)
        );
        assert!(export.is_terminal());
    }

    #[test]
    fn every_documented_detail_type_maps_to_its_status() {
        let detail = serde_json::json!({"jobId": "j", "jobName": "b-1-0", "datastoreId": "d"});
        for (source, detail_type, status) in [
            (IMAGING_SOURCE, "Import Job Submitted", JobStatus::Submitted),
            (
                IMAGING_SOURCE,
                "Import Job In Progress",
                JobStatus::InProgress,
            ),
            (IMAGING_SOURCE, "Import Job Completed", JobStatus::Completed),
            (IMAGING_SOURCE, "Import Job Failed", JobStatus::Failed),
            (HEALTHLAKE_SOURCE, "Import Job Queued", JobStatus::Queued),
            (
                HEALTHLAKE_SOURCE,
                "Import Job Completed With Errors",
                JobStatus::CompletedWithErrors,
            ),
            (HEALTHLAKE_SOURCE, "Export Job Failed", JobStatus::Failed),
        ] {
            assert_eq!(
                parse_job_event(source, detail_type, &detail)
                    .unwrap()
                    .status,
                status,
                "{detail_type}"
            );
        }
    }

    #[test]
    fn other_events_are_refused_with_a_reason() {
        let detail = serde_json::json!({"jobId": "j", "datastoreId": "d"});
        assert!(matches!(
            parse_job_event("aws.s3", "Object Created", &detail),
            Err(JobEventError::UnknownSource(_))
        ));
        for (source, detail_type) in [
            (IMAGING_SOURCE, "Image Set Created"),
            (IMAGING_SOURCE, "Export Job Completed"),
            (IMAGING_SOURCE, "Import Job Queued"),
            (HEALTHLAKE_SOURCE, "Data Store Created"),
        ] {
            assert!(
                matches!(
                    parse_job_event(source, detail_type, &detail),
                    Err(JobEventError::NotAJobEvent { .. })
                ),
                "{detail_type}"
            );
        }
        // An imaging event must name our job.
        assert!(matches!(
            parse_job_event(IMAGING_SOURCE, "Import Job Completed", &detail),
            Err(JobEventError::Missing {
                member: "jobName",
                ..
            })
        ));
    }
}
