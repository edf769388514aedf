//! Re-driving an upload whose import failed: which of its records a retry follows, whether it may
//! be retried, and what the new attempt is. Pure: the operator CLI asks, the intake path does.
//!
//! A retry is a new attempt with a record of its own (the failed record stays, as every record
//! does: status only moves forward), so the upload's history reads attempt by attempt. Only an
//! upload whose latest attempt ended `START_FAILED` or `FAILED` is retried: a completed one has
//! nothing to redo, a running one may still succeed, and a skipped one would be skipped again.

use crate::domain::batch::BatchFolder;
use crate::domain::job::{Attempt, Job, JobId, JobStatus, SourceObject, Target};

/// The statuses an upload's latest attempt may end in for a retry to be allowed.
pub const RETRYABLE: [JobStatus; 2] = [JobStatus::StartFailed, JobStatus::Failed];

/// Why an upload cannot be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryRefused {
    #[error("the upload has no record")]
    NoRecord,
    #[error("{job_id} is {what}, not an upload: only uploads and failed batches are retried")]
    NotAnUpload { job_id: JobId, what: &'static str },
    #[error("attempt {attempt} ({job_id}) is {status}: nothing to retry")]
    Succeeded {
        job_id: JobId,
        attempt: u32,
        status: JobStatus,
    },
    #[error("attempt {attempt} ({job_id}) is still {status}: wait for it to end")]
    StillRunning {
        job_id: JobId,
        attempt: u32,
        status: JobStatus,
    },
    #[error("attempt {attempt} ({job_id}) ended {status}; only START_FAILED or FAILED imports are retried")]
    NotRetryable {
        job_id: JobId,
        attempt: u32,
        status: JobStatus,
    },
    #[error("the upload was skipped ({reason}); upload it again where it can be imported")]
    Skipped { reason: String },
    #[error("batch {job_id} is {status}; only the uploads of a START_FAILED or FAILED batch are retried")]
    BatchNotFailed { job_id: JobId, status: JobStatus },
    #[error("none of the uploads of batch {job_id} can be retried")]
    NothingToRetry { job_id: JobId },
}

/// What a retry does: the upload joins its folder's open batch again as attempt `attempt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPlan {
    pub source: SourceObject,
    pub target: Target,
    pub folder: BatchFolder,
    pub attempt: Attempt,
}

/// The latest attempt among an upload's records (by attempt number, then creation).
pub fn latest_attempt(records: &[Job]) -> Option<&Job> {
    records
        .iter()
        .filter(|job| job.source().is_some())
        .max_by_key(|job| (job.attempt_number(), job.created_at))
}

/// The retry of the upload whose records are `records` (every attempt, in any order).
pub fn plan_retry(records: &[Job]) -> Result<RetryPlan, RetryRefused> {
    let latest = latest_attempt(records).ok_or(RetryRefused::NoRecord)?;
    let attempt = latest.attempt_number();
    let refused_as = |status: JobStatus| {
        let (job_id, attempt) = (latest.job_id.clone(), attempt);
        if status.is_success() || status == JobStatus::CompletedWithErrors {
            RetryRefused::Succeeded {
                job_id,
                attempt,
                status,
            }
        } else if !status.is_terminal() {
            RetryRefused::StillRunning {
                job_id,
                attempt,
                status,
            }
        } else {
            RetryRefused::NotRetryable {
                job_id,
                attempt,
                status,
            }
        }
    };
    if let Some(reason) = latest.skip_reason() {
        return Err(RetryRefused::Skipped {
            reason: reason.to_owned(),
        });
    }
    if !RETRYABLE.contains(&latest.status) {
        return Err(refused_as(latest.status));
    }
    let (Some(source), Some(target)) = (latest.source(), latest.target()) else {
        return Err(RetryRefused::NoRecord);
    };
    Ok(RetryPlan {
        folder: BatchFolder {
            service: target.service,
            datastore_id: target.datastore_id.clone(),
            bucket: source.bucket.clone(),
            folder: parent_folder(&source.key),
        },
        source: source.clone(),
        target: target.clone(),
        attempt: Attempt {
            number: attempt + 1,
            retries: latest.job_id.clone(),
        },
    })
}

/// The key's parent prefix, ending in `/`: the folder routing gave the upload's batch.
fn parent_folder(key: &str) -> String {
    key.rfind('/')
        .map(|at| key[..=at].to_owned())
        .unwrap_or_default()
}

/// Whether the batch `batch` failed as a whole, so that its uploads may be retried.
pub fn batch_failed(batch: &Job) -> Result<(), RetryRefused> {
    if RETRYABLE.contains(&batch.status) {
        Ok(())
    } else {
        Err(RetryRefused::BatchNotFailed {
            job_id: batch.job_id.clone(),
            status: batch.status,
        })
    }
}

/// What a record that is not an upload is, for the refusal.
pub fn not_an_upload(job: &Job) -> Option<RetryRefused> {
    let what = if job.batch().is_some() {
        "a batch"
    } else if job.export_request().is_some() {
        "an export (request a new one with `healthimport export`)"
    } else {
        return None;
    };
    Some(RetryRefused::NotAnUpload {
        job_id: job.job_id.clone(),
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::job::{Service, Timestamp, Transition};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000 + seconds).unwrap()
    }

    fn upload(status: JobStatus) -> Job {
        let source = SourceObject {
            bucket: "ingest".into(),
            key: "dicom/study-1/IM1".into(),
            size: 10,
            e_tag: Some("e".into()),
            version_id: None,
        };
        let target = Target {
            service: Service::HealthImaging,
            datastore_id: "d".repeat(32),
            output_s3_uri: "s3://out/dicom/".into(),
        };
        let mut job = Job::batched(source, JobId::from_stored("b-1-0"), target, at(0));
        if status != JobStatus::Batched {
            job.apply(&Transition::to(status, at(1))).unwrap();
        }
        job
    }

    #[test]
    fn a_failed_upload_is_retried_as_the_next_attempt_in_its_folder() {
        let first = upload(JobStatus::Failed);
        let plan = plan_retry(std::slice::from_ref(&first)).unwrap();
        assert_eq!(plan.attempt.number, 2);
        assert_eq!(plan.attempt.retries, first.job_id);
        assert_eq!(plan.folder.folder, "dicom/study-1/");
        assert_eq!(plan.folder.service, Service::HealthImaging);

        // The second attempt failed too: the third retries the second, not the first.
        let second = upload(JobStatus::Failed).as_attempt(plan.attempt.clone());
        assert_ne!(second.job_id, first.job_id);
        let plan = plan_retry(&[second.clone(), first]).unwrap();
        assert_eq!(plan.attempt.number, 3);
        assert_eq!(plan.attempt.retries, second.job_id);
    }

    #[test]
    fn the_same_attempt_has_the_same_id() {
        let first = upload(JobStatus::StartFailed);
        let plan = plan_retry(std::slice::from_ref(&first)).unwrap();
        let a = upload(JobStatus::Batched).as_attempt(plan.attempt.clone());
        let b = upload(JobStatus::Batched).as_attempt(plan.attempt);
        assert_eq!(a.job_id, b.job_id);
        assert_eq!(a.attempt_number(), 2);
    }

    #[test]
    fn completed_running_and_skipped_uploads_are_refused_with_the_reason() {
        let refused = |status| plan_retry(&[upload(status)]).unwrap_err();
        assert!(matches!(
            refused(JobStatus::Completed),
            RetryRefused::Succeeded { .. }
        ));
        assert!(matches!(
            refused(JobStatus::Batched),
            RetryRefused::StillRunning { .. }
        ));
        assert!(matches!(
            refused(JobStatus::TrackingStopped),
            RetryRefused::NotRetryable { .. }
        ));
        assert_eq!(plan_retry(&[]).unwrap_err(), RetryRefused::NoRecord);
        let skipped = Job::skipped(
            upload(JobStatus::Batched).source().unwrap().clone(),
            None,
            "not NDJSON",
            at(0),
        );
        assert!(
            matches!(plan_retry(&[skipped]).unwrap_err(), RetryRefused::Skipped { reason } if reason == "not NDJSON")
        );
    }

    #[test]
    fn an_attempt_survives_the_stored_form() {
        let retried = upload(JobStatus::Batched).as_attempt(Attempt {
            number: 2,
            retries: JobId::from_stored("first"),
        });
        let json = serde_json::to_value(&retried).unwrap();
        assert_eq!(json["attempt"], 2);
        assert_eq!(json["retries"], "first");
        assert_eq!(serde_json::from_value::<Job>(json).unwrap(), retried);
        let first = serde_json::to_value(upload(JobStatus::Batched)).unwrap();
        assert!(first.get("attempt").is_none());
    }
}
