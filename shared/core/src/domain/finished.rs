//! "This import (or export) job is finished": the event users subscribe e-mail, chat or a pipeline
//! to. The detail is built from the job record alone ([`JobFinished::from_job`]), so what is
//! announced is what is recorded. Pure; the `Announcer` port puts it.

use serde::{Deserialize, Serialize};

use crate::domain::export::ExportRequest;
use crate::domain::job::{FailedFile, Job, JobCounts, JobId, JobKind, JobStatus, Service};

pub const EVENT_SOURCE: &str = "healthimport";
pub const DETAIL_TYPE_JOB_FINISHED: &str = "Import Job Finished";
/// The detail type of a finished export: the same detail shape, with `kind` `EXPORT`.
pub const DETAIL_TYPE_EXPORT_FINISHED: &str = "Export Job Finished";
/// How many failed files an event lists: the record keeps up to 100, and an event must stay well
/// under EventBridge's 256 KB entry limit.
pub const EVENT_FAILED_FILES: usize = 10;

/// The source object of the announced job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncedSource {
    pub bucket: String,
    pub key: String,
    pub uri: String,
}

/// A finished batch, as its event names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncedBatch {
    pub bucket: String,
    pub folder: String,
    pub upload_count: u64,
    /// The first uploads' keys, sorted.
    pub uploads: Vec<String>,
}

/// How many upload keys a batch's event names at most.
pub const EVENT_UPLOADS: usize = 100;

/// The detail of an `Import Job Finished` event. Consumers deduplicate on `jobId`: the event is
/// put once per job as far as the workflow can ensure, and EventBridge itself delivers at least
/// once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFinished {
    pub job_id: JobId,
    pub kind: JobKind,
    pub status: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datastore_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_job_id: Option<String>,
    /// The upload of an import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<AnnouncedSource>,
    /// What asked for an export, and the window of changes it covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_s3_uri: Option<String>,
    /// A batch's folder and its uploads: the first [`EVENT_UPLOADS`] keys, and how many there
    /// were. Each upload's own result is on its record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<AnnouncedBatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<JobCounts>,
    /// Failed files as the record knows them: the manifest's count when read, else the number
    /// of failed files listed.
    pub failed_file_count: u64,
    /// The first [`EVENT_FAILED_FILES`] failed files.
    pub failed_files: Vec<FailedFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// True for every job that did not import everything: failed, cancelled, never started, or
    /// COMPLETED with failed files. `null` when nobody knows: a completed job whose output was
    /// never read (its manifest did not appear), which is never announced as clean.
    pub has_failures: Option<bool>,
    /// True only for a job that ended with everything imported and whose outcome was checked.
    pub succeeded: bool,
    /// Whether the counts were read from what the service wrote.
    pub outcome_verified: bool,
    pub submitted_at: Option<String>,
    pub finished_at: String,
}

impl JobFinished {
    /// The announcement of the finished record `job`. `note` is added to the service's message
    /// (e.g. why the manifest could not be read).
    /// Names the batch's uploads (the first [`EVENT_UPLOADS`] of `uploads`) and their count.
    pub fn with_uploads(mut self, uploads: Vec<String>, count: u64) -> JobFinished {
        if let Some(batch) = &mut self.batch {
            batch.uploads = uploads.into_iter().take(EVENT_UPLOADS).collect();
            batch.upload_count = count;
        }
        self
    }

    pub fn from_job(job: &Job, note: Option<&str>) -> JobFinished {
        let finished_at = job
            .history
            .get(&job.status)
            .copied()
            .unwrap_or(job.updated_at);
        let submitted_at = job
            .history
            .iter()
            .find(|(status, _)| {
                !matches!(
                    status,
                    JobStatus::Open | JobStatus::Batched | JobStatus::Pending
                )
            })
            .filter(|(status, _)| !matches!(status, JobStatus::StartFailed | JobStatus::Skipped))
            .map(|(_, at)| at.to_string());
        let message = match (job.message.as_deref(), note) {
            (Some(m), Some(n)) => Some(format!("{m} ({n})")),
            (Some(m), None) => Some(m.to_owned()),
            (None, Some(n)) => Some(n.to_owned()),
            (None, None) => None,
        };
        let outcome_verified = job.outcome_verified == Some(true);
        let has_failures = if job.has_failures() || !job.status.is_success() {
            Some(true)
        } else if outcome_verified {
            Some(false)
        } else {
            None
        };
        JobFinished {
            job_id: job.job_id.clone(),
            kind: job.kind(),
            status: job.status,
            service: job.service(),
            datastore_id: job.datastore_id().map(str::to_owned),
            service_job_id: job.service_job_id.clone(),
            source: job.source().map(|source| AnnouncedSource {
                bucket: source.bucket.clone(),
                key: source.key.clone(),
                uri: source.uri(),
            }),
            export: job.export_request().cloned(),
            input_s3_uri: job.input_s3_uri().map(str::to_owned),
            batch: job.batch().map(|b| AnnouncedBatch {
                bucket: b.bucket.clone(),
                folder: b.folder.clone(),
                upload_count: b.fill.files,
                uploads: Vec::new(),
            }),
            counts: job.counts,
            failed_file_count: job
                .counts
                .map(|c| c.failed)
                .filter(|&n| n > 0)
                .unwrap_or(job.failed_files.len() as u64),
            failed_files: job
                .failed_files
                .iter()
                .take(EVENT_FAILED_FILES)
                .cloned()
                .collect(),
            output_location: job.output_location.clone(),
            message,
            has_failures,
            succeeded: has_failures == Some(false),
            outcome_verified,
            submitted_at,
            finished_at: finished_at.to_string(),
        }
    }

    /// The event's detail type, by the job's kind.
    pub fn detail_type(&self) -> &'static str {
        match self.kind {
            JobKind::Import => DETAIL_TYPE_JOB_FINISHED,
            JobKind::Export => DETAIL_TYPE_EXPORT_FINISHED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::job::{SourceObject, Target, Timestamp, Transition};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_790_000_000 + secs).unwrap()
    }

    fn finished_job(status: JobStatus, failed: Vec<FailedFile>) -> Job {
        let target = Target {
            service: Service::HealthImaging,
            datastore_id: "ds".into(),
            output_s3_uri: "s3://out/".into(),
        };
        let mut job = Job::import(
            SourceObject {
                bucket: "ingest".into(),
                key: "dicom/study-7/_READY".into(),
                size: 0,
                e_tag: Some("e".into()),
                version_id: None,
            },
            target,
            "s3://ingest/dicom/study-7/".into(),
            at(0),
        );
        job.apply(&Transition::to(JobStatus::Submitted, at(1)).with_service_job_id("svc"))
            .unwrap();
        job.apply(
            &Transition::to(status, at(60))
                .with_counts(JobCounts {
                    scanned: 3 + failed.len() as u64,
                    imported: 3,
                    failed: failed.len() as u64,
                })
                .with_failed_files(failed),
        )
        .unwrap();
        job
    }

    fn failed_file(i: usize) -> FailedFile {
        FailedFile {
            input_file: format!("s3://ingest/dicom/study-7/{i}.dcm"),
            message: "ValidationException: not DICOM".into(),
        }
    }

    #[test]
    fn completed_with_failed_files_is_announced_as_having_failures() {
        let detail = JobFinished::from_job(
            &finished_job(JobStatus::Completed, vec![failed_file(0)]),
            None,
        );
        assert_eq!(detail.status, JobStatus::Completed);
        assert!(detail.has_failures == Some(true) && !detail.succeeded);
        assert_eq!(detail.failed_file_count, 1);
        assert_eq!(detail.finished_at, at(60).to_string());
        assert_eq!(detail.submitted_at, Some(at(1).to_string()));
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json["jobId"], detail.job_id.as_str());
        assert_eq!(json["service"], "HEALTHIMAGING");
        assert_eq!(json["source"]["uri"], "s3://ingest/dicom/study-7/_READY");
        assert_eq!(
            json["failedFiles"][0]["inputFile"],
            "s3://ingest/dicom/study-7/0.dcm"
        );
        assert_eq!(json["hasFailures"], true);
    }

    #[test]
    fn a_clean_completion_succeeds_and_other_ends_do_not() {
        let mut checked = finished_job(JobStatus::Completed, vec![]);
        checked.outcome_verified = Some(true);
        let clean = JobFinished::from_job(&checked, None);
        assert!(clean.succeeded && clean.has_failures == Some(false) && clean.outcome_verified);
        let failed = JobFinished::from_job(&finished_job(JobStatus::Failed, vec![]), None);
        assert!(failed.has_failures == Some(true) && !failed.succeeded);
    }

    #[test]
    fn a_completion_whose_outcome_was_never_checked_is_not_announced_as_clean() {
        for verified in [None, Some(false)] {
            let mut unchecked = finished_job(JobStatus::Completed, vec![]);
            unchecked.counts = None;
            unchecked.outcome_verified = verified;
            let detail = JobFinished::from_job(&unchecked, Some("the manifest did not appear"));
            assert!(!detail.succeeded && !detail.outcome_verified);
            assert_eq!(detail.has_failures, None);
            let json = serde_json::to_value(&detail).unwrap();
            assert_eq!(json["hasFailures"], serde_json::Value::Null);
            assert_eq!(json["outcomeVerified"], false);
        }
    }

    #[test]
    fn the_event_lists_only_the_first_failed_files() {
        let files = (0..100).map(failed_file).collect();
        let detail = JobFinished::from_job(&finished_job(JobStatus::Completed, files), Some("n"));
        assert_eq!(detail.failed_files.len(), EVENT_FAILED_FILES);
        assert_eq!(detail.failed_file_count, 100);
        assert_eq!(detail.message.as_deref(), Some("n"));
    }
}
