//! The import job domain: what a job is, the statuses it can be in, and which way a status may
//! move. Pure: no AWS types, no I/O. The DynamoDB adapter in [`crate::ports::store`] turns the transition
//! rules into conditional writes, so the rules here are the ones the table enforces.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

use crate::domain::export::ExportRequest;

/// The AWS service a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    /// Amazon HealthLake (FHIR R4 NDJSON).
    #[serde(rename = "HEALTHLAKE")]
    HealthLake,
    /// AWS HealthImaging (DICOM P10).
    #[serde(rename = "HEALTHIMAGING")]
    HealthImaging,
}

/// `as_str`, the name a fieldless enum is stored and sent under (the same as its serde name), and
/// `Display` as that name.
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names!(Service {
    HealthLake => "HEALTHLAKE",
    HealthImaging => "HEALTHIMAGING",
});

/// What a job does at its service. Both kinds share the record, statuses, workflow and event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    /// An upload imported into a data store (HealthLake or HealthImaging).
    #[default]
    Import,
    /// A HealthLake data store exported to S3 (`StartFHIRExportJob`).
    Export,
}

wire_names!(JobKind {
    Import => "IMPORT",
    Export => "EXPORT",
});

/// Every status a job record can hold: the union of both services' documented job statuses, plus
/// our own `Pending` (recorded, not started yet), `StartFailed` (the service refused the start for
/// good) and `Skipped` (the upload is not importable; the record says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Submitted,
    /// HealthLake only: waiting behind the data store's one running import.
    Queued,
    InProgress,
    /// HealthLake only.
    CancelSubmitted,
    /// HealthLake only.
    CancelInProgress,
    Completed,
    /// HealthLake only. HealthImaging reports per-file failures only in its output manifest.
    CompletedWithErrors,
    Failed,
    /// HealthLake only.
    CancelCompleted,
    /// HealthLake only.
    CancelFailed,
    StartFailed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {service} job status {status:?}")]
pub struct UnknownStatus {
    pub service: &'static str,
    pub status: String,
}

impl JobStatus {
    pub const ALL: [JobStatus; 13] = [
        JobStatus::Pending,
        JobStatus::Submitted,
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::CancelSubmitted,
        JobStatus::CancelInProgress,
        JobStatus::Completed,
        JobStatus::CompletedWithErrors,
        JobStatus::Failed,
        JobStatus::CancelCompleted,
        JobStatus::CancelFailed,
        JobStatus::StartFailed,
        JobStatus::Skipped,
    ];

    /// Maps a status string reported by `service` (`DescribeFHIRImportJob` /
    /// `GetDICOMImportJob`). Only the statuses that service documents are accepted: a HealthImaging
    /// job reported as `QUEUED` is an unknown status, not a silent guess.
    pub fn from_service(service: Service, status: &str) -> Result<JobStatus, UnknownStatus> {
        use JobStatus::*;
        let documented: &[JobStatus] = match service {
            Service::HealthLake => &[
                Submitted,
                Queued,
                InProgress,
                CompletedWithErrors,
                Completed,
                Failed,
                CancelSubmitted,
                CancelInProgress,
                CancelCompleted,
                CancelFailed,
            ],
            Service::HealthImaging => &[Submitted, InProgress, Completed, Failed],
        };
        documented
            .iter()
            .copied()
            .find(|s| s.as_str() == status)
            .ok_or_else(|| UnknownStatus {
                service: service.as_str(),
                status: status.to_owned(),
            })
    }

    /// A terminal status is final: no write may move a job out of it.
    pub fn is_terminal(self) -> bool {
        self.stage() == Stage::Terminal
    }

    /// Whether a record in `self` may be moved to `next`.
    ///
    /// Status only moves forward through the stages Pending → Submitted → Queued → InProgress →
    /// Cancel* → terminal; a stage may be skipped (a first poll can already see a finished job).
    /// A non-terminal status may be re-written with itself so that a poll can store fresh progress
    /// counters; a terminal status cannot, so a repeated or late poll changes nothing.
    /// `StartFailed` is reachable only from `Pending` (the service never accepted the job), and
    /// `Skipped` only at creation.
    pub fn can_transition_to(self, next: JobStatus) -> bool {
        if self.is_terminal() {
            return false;
        }
        match next {
            JobStatus::Skipped => false,
            JobStatus::StartFailed => self == JobStatus::Pending,
            _ if next == self => true,
            _ => next.stage() > self.stage(),
        }
    }

    /// The statuses from which `next` may be reached: the condition of the store's conditional
    /// write. Empty when nothing may move to `next`.
    pub fn allowed_predecessors(next: JobStatus) -> Vec<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(next))
            .collect()
    }

    /// Whether the job ended with everything imported. `Completed` of a job whose manifest lists
    /// failed files is still recorded as `Completed`; callers check [`Job::has_failures`].
    pub fn is_success(self) -> bool {
        self == JobStatus::Completed
    }

    fn stage(self) -> Stage {
        match self {
            JobStatus::Pending => Stage::Recorded,
            JobStatus::Submitted => Stage::Submitted,
            JobStatus::Queued => Stage::Queued,
            JobStatus::InProgress => Stage::Running,
            JobStatus::CancelSubmitted => Stage::CancelRequested,
            JobStatus::CancelInProgress => Stage::Cancelling,
            JobStatus::Completed
            | JobStatus::CompletedWithErrors
            | JobStatus::Failed
            | JobStatus::CancelCompleted
            | JobStatus::CancelFailed
            | JobStatus::StartFailed
            | JobStatus::Skipped => Stage::Terminal,
        }
    }
}

/// The order in which statuses may follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Recorded,
    Submitted,
    Queued,
    Running,
    CancelRequested,
    Cancelling,
    Terminal,
}

wire_names!(JobStatus {
    Pending => "PENDING",
    Submitted => "SUBMITTED",
    Queued => "QUEUED",
    InProgress => "IN_PROGRESS",
    CancelSubmitted => "CANCEL_SUBMITTED",
    CancelInProgress => "CANCEL_IN_PROGRESS",
    Completed => "COMPLETED",
    CompletedWithErrors => "COMPLETED_WITH_ERRORS",
    Failed => "FAILED",
    CancelCompleted => "CANCEL_COMPLETED",
    CancelFailed => "CANCEL_FAILED",
    StartFailed => "START_FAILED",
    Skipped => "SKIPPED",
});

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    /// Parses our own record's status (any of [`JobStatus::ALL`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus {
                service: "healthimport",
                status: s.to_owned(),
            })
    }
}

/// A job's id: derived from what was uploaded, so every delivery of the same upload event maps to
/// the same id. 32 lowercase hex characters, which is valid as a HealthLake ClientToken
/// (`[a-zA-Z0-9-]{1,64}`), a HealthImaging clientToken (`[A-Za-z0-9._-]{1,64}`) and a Step
/// Functions execution name (≤ 80 characters of `[A-Za-z0-9_-]`) alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// The id of the upload of `key` in `bucket` with content identity `content` (the object's
    /// versionId when the bucket is versioned, else its eTag). Fields are length-prefixed so that
    /// no two different triples hash the same input.
    pub fn for_upload(bucket: &str, key: &str, content: &str) -> JobId {
        let mut hasher = Sha256::new();
        for part in [bucket, key, content] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        JobId(hex::encode(&digest[..16]))
    }

    /// Wraps an id read back from the store or an event; the caller vouches for its origin.
    pub fn from_stored(id: impl Into<String>) -> JobId {
        JobId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The idempotency token passed to the service's Start call.
    pub fn client_token(&self) -> &str {
        &self.0
    }

    /// The name of the job's Step Functions execution.
    pub fn execution_name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A UTC instant with millisecond precision, written in one fixed-width format
/// (`2026-11-23T23:05:01.123Z`) so that stored timestamps sort as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const TIMESTAMP_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    pub fn from_datetime(at: OffsetDateTime) -> Timestamp {
        let at = at.to_offset(time::UtcOffset::UTC);
        // Truncate to what the text form keeps, so a value survives a store round trip unchanged.
        let millis = at.millisecond();
        Timestamp(at.replace_millisecond(millis).unwrap_or(at))
    }

    pub fn from_unix_seconds(secs: i64) -> Option<Timestamp> {
        OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .map(Timestamp)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn plus(self, by: Duration) -> Timestamp {
        Timestamp(self.0 + by)
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(TIMESTAMP_FORMAT) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Timestamp {
    type Err = time::error::Parse;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(Timestamp::from_datetime)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The uploaded object a job was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceObject {
    pub bucket: String,
    /// The decoded key (see [`crate::domain::routing::decode_event_key`]).
    pub key: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl SourceObject {
    /// `s3://bucket/key`: the value the by-source index is keyed on.
    pub fn uri(&self) -> String {
        crate::domain::s3_uri::s3_uri(&self.bucket, &self.key)
    }

    /// What identifies this upload's content: the version when the bucket is versioned (an
    /// overwrite with identical bytes is still a new upload), else the eTag.
    pub fn content_identity(&self) -> &str {
        self.version_id
            .as_deref()
            .or(self.e_tag.as_deref())
            .unwrap_or("")
    }

    pub fn job_id(&self) -> JobId {
        JobId::for_upload(&self.bucket, &self.key, self.content_identity())
    }
}

/// Counts from the service: progress while running, the output manifest's totals at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCounts {
    pub scanned: u64,
    pub imported: u64,
    pub failed: u64,
}

/// One input file the service could not import, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedFile {
    pub input_file: String,
    pub message: String,
}

/// Where a job runs: the service, its data store, and where the service writes its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: Service,
    pub datastore_id: String,
    pub output_s3_uri: String,
}

/// What a job is for. What is specific to an import (its upload and what it imports) or an
/// export (its trigger and window) lives here, so a job cannot lack what its kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// An upload imported into a data store, or skipped with the reason.
    Import {
        source: SourceObject,
        plan: ImportPlan,
    },
    /// A HealthLake data store exported to S3.
    Export {
        request: ExportRequest,
        target: Target,
    },
}

/// What becomes of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportPlan {
    /// Imported at `target`; `input_s3_uri` is what the service reads (the object itself, or a
    /// DICOM batch prefix).
    Run {
        target: Target,
        input_s3_uri: String,
    },
    /// Not importable; `service` is set when the upload was routed to one before it was refused.
    Skip {
        service: Option<Service>,
        reason: String,
    },
}

/// The job record: one per upload (or export request), the single source of truth for what
/// happened to it. Stored as [`JobRecord`], its flat wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JobRecord", into = "JobRecord")]
pub struct Job {
    pub job_id: JobId,
    pub status: JobStatus,
    pub work: Work,
    /// The service's own job id, once the start was accepted.
    pub service_job_id: Option<String>,
    /// The service's message (a refused start, a failed job).
    pub message: Option<String>,
    pub counts: Option<JobCounts>,
    pub failed_files: Vec<FailedFile>,
    /// Where the service wrote its manifest and result files.
    pub output_location: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the job first reached each status it went through. A map rather than a list so that
    /// a repeated write of the same status cannot add a second entry.
    pub history: BTreeMap<JobStatus, Timestamp>,
}

impl Job {
    /// A new `PENDING` import of the upload `source` at `target`.
    pub fn import(
        source: SourceObject,
        target: Target,
        input_s3_uri: String,
        at: Timestamp,
    ) -> Job {
        let job_id = source.job_id();
        let plan = ImportPlan::Run {
            target,
            input_s3_uri,
        };
        Job::new(
            job_id,
            Work::Import { source, plan },
            JobStatus::Pending,
            at,
        )
    }

    /// A new `SKIPPED` record of the upload `source`, with the reason.
    pub fn skipped(
        source: SourceObject,
        service: Option<Service>,
        reason: impl Into<String>,
        at: Timestamp,
    ) -> Job {
        let job_id = source.job_id();
        let plan = ImportPlan::Skip {
            service,
            reason: reason.into(),
        };
        Job::new(
            job_id,
            Work::Import { source, plan },
            JobStatus::Skipped,
            at,
        )
    }

    /// A new `PENDING` export of the HealthLake data store `datastore_id` to `output_s3_uri`.
    pub fn export(
        request: ExportRequest,
        datastore_id: &str,
        output_s3_uri: &str,
        at: Timestamp,
    ) -> Job {
        let job_id = request.trigger.job_id(datastore_id);
        let target = Target {
            service: Service::HealthLake,
            datastore_id: datastore_id.to_owned(),
            output_s3_uri: output_s3_uri.to_owned(),
        };
        Job::new(
            job_id,
            Work::Export { request, target },
            JobStatus::Pending,
            at,
        )
    }

    fn new(job_id: JobId, work: Work, status: JobStatus, at: Timestamp) -> Job {
        Job {
            job_id,
            status,
            work,
            service_job_id: None,
            message: None,
            counts: None,
            failed_files: Vec::new(),
            output_location: None,
            created_at: at,
            updated_at: at,
            history: BTreeMap::from([(status, at)]),
        }
    }

    pub fn kind(&self) -> JobKind {
        match self.work {
            Work::Import { .. } => JobKind::Import,
            Work::Export { .. } => JobKind::Export,
        }
    }

    /// The upload of an import.
    pub fn source(&self) -> Option<&SourceObject> {
        match &self.work {
            Work::Import { source, .. } => Some(source),
            Work::Export { .. } => None,
        }
    }

    /// What asked for an export, and its window.
    pub fn export_request(&self) -> Option<&ExportRequest> {
        match &self.work {
            Work::Export { request, .. } => Some(request),
            Work::Import { .. } => None,
        }
    }

    /// Where the job runs; `None` for a skipped upload.
    pub fn target(&self) -> Option<&Target> {
        match &self.work {
            Work::Import {
                plan: ImportPlan::Run { target, .. },
                ..
            }
            | Work::Export { target, .. } => Some(target),
            Work::Import {
                plan: ImportPlan::Skip { .. },
                ..
            } => None,
        }
    }

    /// The service the job runs on, or that a skipped upload was routed to.
    pub fn service(&self) -> Option<Service> {
        match &self.work {
            Work::Import {
                plan: ImportPlan::Skip { service, .. },
                ..
            } => *service,
            _ => self.target().map(|t| t.service),
        }
    }

    pub fn datastore_id(&self) -> Option<&str> {
        self.target().map(|t| t.datastore_id.as_str())
    }

    /// What an import reads.
    pub fn input_s3_uri(&self) -> Option<&str> {
        match &self.work {
            Work::Import {
                plan: ImportPlan::Run { input_s3_uri, .. },
                ..
            } => Some(input_s3_uri),
            _ => None,
        }
    }

    /// Why the upload was skipped.
    pub fn skip_reason(&self) -> Option<&str> {
        match &self.work {
            Work::Import {
                plan: ImportPlan::Skip { reason, .. },
                ..
            } => Some(reason),
            _ => None,
        }
    }

    /// What the job is about, for people: an import's uploaded key, or an export's trigger.
    pub fn subject(&self) -> String {
        match &self.work {
            Work::Import { source, .. } => source.key.clone(),
            Work::Export { request, .. } => format!("export ({})", request.trigger),
        }
    }

    /// Whether any input file or resource failed, whatever the status says.
    pub fn has_failures(&self) -> bool {
        self.status == JobStatus::CompletedWithErrors
            || !self.failed_files.is_empty()
            || self.counts.is_some_and(|c| c.failed > 0)
    }

    /// Applies `change` to this in-memory record, with the same rule the store enforces.
    pub fn apply(&mut self, change: &Transition) -> Result<(), IllegalTransition> {
        if !self.status.can_transition_to(change.to) {
            return Err(IllegalTransition {
                from: self.status,
                to: change.to,
            });
        }
        self.history.entry(change.to).or_insert(change.at);
        self.status = change.to;
        self.updated_at = change.at;
        let TransitionFields {
            service_job_id,
            message,
            counts,
            failed_files,
            output_location,
        } = change.fields.clone();
        self.service_job_id = service_job_id.or(self.service_job_id.take());
        self.message = message.or(self.message.take());
        self.counts = counts.or(self.counts);
        if let Some(files) = failed_files {
            self.failed_files = files;
        }
        self.output_location = output_location.or(self.output_location.take());
        Ok(())
    }
}

/// The stored form of a [`Job`]: flat, every kind-specific field optional, as DynamoDB items and
/// older records hold it. Only [`Job`]'s conversions build or read it, so an incomplete record is
/// refused when it is read, never carried on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobRecord {
    job_id: JobId,
    /// Records written before exports existed have no kind: they are imports.
    #[serde(default)]
    kind: JobKind,
    status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<SourceObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    export: Option<ExportRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datastore_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_s3_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_s3_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skip_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counts: Option<JobCounts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failed_files: Vec<FailedFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_location: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    history: BTreeMap<JobStatus, Timestamp>,
}

impl From<Job> for JobRecord {
    fn from(job: Job) -> JobRecord {
        let kind = job.kind();
        let service = job.service();
        let (source, export, target, input_s3_uri, skip_reason) = match job.work {
            Work::Import { source, plan } => match plan {
                ImportPlan::Run {
                    target,
                    input_s3_uri,
                } => (Some(source), None, Some(target), Some(input_s3_uri), None),
                ImportPlan::Skip { reason, .. } => (Some(source), None, None, None, Some(reason)),
            },
            Work::Export { request, target } => (None, Some(request), Some(target), None, None),
        };
        let (datastore_id, output_s3_uri) = match target {
            Some(t) => (Some(t.datastore_id), Some(t.output_s3_uri)),
            None => (None, None),
        };
        JobRecord {
            job_id: job.job_id,
            kind,
            status: job.status,
            source,
            export,
            service,
            datastore_id,
            input_s3_uri,
            output_s3_uri,
            service_job_id: job.service_job_id,
            skip_reason,
            message: job.message,
            counts: job.counts,
            failed_files: job.failed_files,
            output_location: job.output_location,
            created_at: job.created_at,
            updated_at: job.updated_at,
            history: job.history,
        }
    }
}

/// A stored record that lacks what its kind needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} record without {missing}")]
pub struct IncompleteRecord {
    kind: JobKind,
    missing: &'static str,
}

impl TryFrom<JobRecord> for Job {
    type Error = IncompleteRecord;

    fn try_from(record: JobRecord) -> Result<Job, IncompleteRecord> {
        let missing = |missing| IncompleteRecord {
            kind: record.kind,
            missing,
        };
        let target = || -> Result<Target, IncompleteRecord> {
            Ok(Target {
                service: record.service.ok_or_else(|| missing("service"))?,
                datastore_id: record
                    .datastore_id
                    .clone()
                    .ok_or_else(|| missing("datastoreId"))?,
                output_s3_uri: record
                    .output_s3_uri
                    .clone()
                    .ok_or_else(|| missing("outputS3Uri"))?,
            })
        };
        let work = match record.kind {
            JobKind::Export => Work::Export {
                request: record.export.clone().ok_or_else(|| missing("export"))?,
                target: target()?,
            },
            JobKind::Import => {
                let plan = match (&record.skip_reason, &record.input_s3_uri) {
                    (Some(reason), _) => ImportPlan::Skip {
                        service: record.service,
                        reason: reason.clone(),
                    },
                    (None, Some(input_s3_uri)) => ImportPlan::Run {
                        target: target()?,
                        input_s3_uri: input_s3_uri.clone(),
                    },
                    (None, None) => return Err(missing("inputS3Uri or skipReason")),
                };
                Work::Import {
                    source: record.source.clone().ok_or_else(|| missing("source"))?,
                    plan,
                }
            }
        };
        Ok(Job {
            job_id: record.job_id,
            status: record.status,
            work,
            service_job_id: record.service_job_id,
            message: record.message,
            counts: record.counts,
            failed_files: record.failed_files,
            output_location: record.output_location,
            created_at: record.created_at,
            updated_at: record.updated_at,
            history: record.history,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot move from {from} to {to}")]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

/// A status change with what was learned along with it. Fields left `None` keep their value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub to: JobStatus,
    pub at: Timestamp,
    pub fields: TransitionFields,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionFields {
    pub service_job_id: Option<String>,
    pub message: Option<String>,
    pub counts: Option<JobCounts>,
    pub failed_files: Option<Vec<FailedFile>>,
    pub output_location: Option<String>,
}

impl Transition {
    pub fn to(to: JobStatus, at: Timestamp) -> Transition {
        Transition {
            to,
            at,
            fields: TransitionFields::default(),
        }
    }

    pub fn with_service_job_id(mut self, id: impl Into<String>) -> Transition {
        self.fields.service_job_id = Some(id.into());
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Transition {
        self.fields.message = Some(message.into());
        self
    }

    pub fn with_counts(mut self, counts: JobCounts) -> Transition {
        self.fields.counts = Some(counts);
        self
    }

    /// At most [`MAX_FAILED_FILES`] are kept: a record must stay well under DynamoDB's 400 KB
    /// item limit even when a batch of 5,000 files fails whole; the manifest has the rest.
    pub fn with_failed_files(mut self, mut files: Vec<FailedFile>) -> Transition {
        files.truncate(MAX_FAILED_FILES);
        self.fields.failed_files = Some(files);
        self
    }

    pub fn with_output_location(mut self, location: impl Into<String>) -> Transition {
        self.fields.output_location = Some(location.into());
        self
    }
}

/// How many failed files a record keeps (see [`Transition::with_failed_files`]).
pub const MAX_FAILED_FILES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_790_000_000 + secs).unwrap()
    }

    fn import(at: Timestamp) -> Job {
        let target = Target {
            service: Service::HealthLake,
            datastore_id: "ds".into(),
            output_s3_uri: "s3://out/".into(),
        };
        Job::import(
            source(),
            target,
            "s3://ingest/fhir/patients.ndjson".into(),
            at,
        )
    }

    fn source() -> SourceObject {
        SourceObject {
            bucket: "ingest".into(),
            key: "fhir/patients.ndjson".into(),
            size: 10,
            e_tag: Some("\"abc\"".into()),
            version_id: None,
        }
    }

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("RUNNING".parse::<JobStatus>().is_err());
    }

    #[test]
    fn every_documented_healthlake_status_maps() {
        for name in [
            "SUBMITTED",
            "QUEUED",
            "IN_PROGRESS",
            "COMPLETED_WITH_ERRORS",
            "COMPLETED",
            "FAILED",
            "CANCEL_SUBMITTED",
            "CANCEL_IN_PROGRESS",
            "CANCEL_COMPLETED",
            "CANCEL_FAILED",
        ] {
            let status = JobStatus::from_service(Service::HealthLake, name).unwrap();
            assert_eq!(status.as_str(), name);
        }
    }

    #[test]
    fn healthimaging_statuses_map_and_foreign_ones_are_refused() {
        for name in ["SUBMITTED", "IN_PROGRESS", "COMPLETED", "FAILED"] {
            assert_eq!(
                JobStatus::from_service(Service::HealthImaging, name)
                    .unwrap()
                    .as_str(),
                name
            );
        }
        for foreign in ["QUEUED", "COMPLETED_WITH_ERRORS", "PENDING", "SKIPPED", ""] {
            let err = JobStatus::from_service(Service::HealthImaging, foreign).unwrap_err();
            assert_eq!(err.status, foreign);
        }
        // Our own statuses are never something a service reports.
        for ours in ["PENDING", "START_FAILED", "SKIPPED"] {
            assert!(JobStatus::from_service(Service::HealthLake, ours).is_err());
        }
    }

    #[test]
    fn terminal_statuses_are_exactly_the_documented_ends_plus_ours() {
        let terminal: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        let documented = [
            Completed,
            CompletedWithErrors,
            Failed,
            CancelCompleted,
            CancelFailed,
        ];
        let ours = [StartFailed, Skipped];
        assert_eq!(terminal, [documented.as_slice(), &ours].concat());
    }

    #[test]
    fn status_only_moves_forward() {
        assert!(Pending.can_transition_to(Submitted));
        assert!(Pending.can_transition_to(InProgress));
        assert!(Pending.can_transition_to(Completed));
        assert!(Submitted.can_transition_to(Queued));
        assert!(Queued.can_transition_to(InProgress));
        assert!(InProgress.can_transition_to(CompletedWithErrors));
        assert!(InProgress.can_transition_to(CancelSubmitted));
        assert!(CancelInProgress.can_transition_to(CancelCompleted));

        assert!(!InProgress.can_transition_to(Queued));
        assert!(!Queued.can_transition_to(Submitted));
        assert!(!Submitted.can_transition_to(Pending));
        assert!(!CancelSubmitted.can_transition_to(InProgress));
    }

    #[test]
    fn terminal_is_final_even_for_the_same_status() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn running_statuses_may_be_rewritten_for_progress() {
        for status in [Pending, Submitted, Queued, InProgress] {
            assert!(status.can_transition_to(status));
        }
    }

    #[test]
    fn start_failed_only_from_pending_and_skipped_never() {
        assert_eq!(JobStatus::allowed_predecessors(StartFailed), vec![Pending]);
        assert!(JobStatus::allowed_predecessors(Skipped).is_empty());
    }

    #[test]
    fn predecessors_of_completed_are_all_non_terminal_statuses() {
        assert_eq!(
            JobStatus::allowed_predecessors(Completed),
            vec![
                Pending,
                Submitted,
                Queued,
                InProgress,
                CancelSubmitted,
                CancelInProgress
            ]
        );
        assert_eq!(
            JobStatus::allowed_predecessors(Queued),
            vec![Pending, Submitted, Queued]
        );
    }

    #[test]
    fn job_id_is_deterministic_and_valid_as_every_token() {
        let a = JobId::for_upload("ingest", "fhir/a.ndjson", "\"etag1\"");
        assert_eq!(a, JobId::for_upload("ingest", "fhir/a.ndjson", "\"etag1\""));
        assert_ne!(a, JobId::for_upload("ingest", "fhir/a.ndjson", "\"etag2\""));
        assert_ne!(a, JobId::for_upload("ingest", "fhir/b.ndjson", "\"etag1\""));
        // Length-prefixing keeps field boundaries: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            JobId::for_upload("ingest", "ab", "c"),
            JobId::for_upload("ingest", "a", "bc")
        );
        let id = a.as_str();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(a.client_token(), id);
        assert_eq!(a.execution_name(), id);
    }

    #[test]
    fn version_id_identifies_content_before_etag() {
        let mut s = source();
        let by_etag = s.job_id();
        s.version_id = Some("v2".into());
        assert_eq!(s.content_identity(), "v2");
        assert_ne!(s.job_id(), by_etag);
    }

    #[test]
    fn timestamps_have_one_sortable_text_form() {
        let t: Timestamp = "2026-11-23T23:05:01.123456+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-23T22:05:01.123Z");
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        assert!(at(1).to_string() > at(0).to_string());
        assert!(at(100_000).to_string() > at(99_999).to_string());
    }

    #[test]
    fn apply_moves_forward_records_history_and_keeps_unset_fields() {
        let mut job = import(at(0));
        job.apply(&Transition::to(Submitted, at(1)).with_service_job_id("j-1"))
            .unwrap();
        job.apply(&Transition::to(InProgress, at(2)).with_counts(JobCounts {
            scanned: 1,
            imported: 0,
            failed: 0,
        }))
        .unwrap();
        job.apply(&Transition::to(InProgress, at(3))).unwrap();
        assert_eq!(job.service_job_id.as_deref(), Some("j-1"));
        assert_eq!(job.counts.unwrap().scanned, 1);
        assert_eq!(
            job.history
                .iter()
                .map(|(s, at)| (*s, *at))
                .collect::<Vec<_>>(),
            vec![(Pending, at(0)), (Submitted, at(1)), (InProgress, at(2))]
        );
        assert_eq!(job.updated_at, at(3));

        job.apply(&Transition::to(Completed, at(4))).unwrap();
        let before = job.clone();
        let err = job.apply(&Transition::to(Failed, at(5))).unwrap_err();
        assert_eq!(
            err,
            IllegalTransition {
                from: Completed,
                to: Failed
            }
        );
        assert_eq!(job, before, "a rejected transition changes nothing");
    }

    #[test]
    fn completed_with_failed_files_is_not_clean_success() {
        let mut job = import(at(0));
        job.apply(
            &Transition::to(Completed, at(1)).with_failed_files(vec![FailedFile {
                input_file: "s3://b/dicom/x.dcm".into(),
                message: "not DICOM".into(),
            }]),
        )
        .unwrap();
        assert!(job.status.is_success());
        assert!(job.has_failures());
    }

    #[test]
    fn failed_files_are_bounded() {
        let files = (0..5000)
            .map(|i| FailedFile {
                input_file: format!("f{i}"),
                message: "bad".into(),
            })
            .collect();
        let t = Transition::to(Completed, at(0)).with_failed_files(files);
        assert_eq!(t.fields.failed_files.unwrap().len(), MAX_FAILED_FILES);
    }

    #[test]
    fn record_serialises_with_camel_case_fields() {
        let job = import(at(0));
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["jobId"], job.job_id.as_str());
        assert_eq!(json["status"], "PENDING");
        assert_eq!(json["source"]["key"], "fhir/patients.ndjson");
        assert_eq!(json["createdAt"], "2026-09-21T14:13:20.000Z");
        assert_eq!(json["history"]["PENDING"], "2026-09-21T14:13:20.000Z");
        assert!(json.get("serviceJobId").is_none());
        let back: Job = serde_json::from_value(json).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn a_record_missing_what_its_kind_needs_is_refused_when_read() {
        let mut json = serde_json::to_value(import(at(0))).unwrap();
        json.as_object_mut().unwrap().remove("outputS3Uri");
        let err = serde_json::from_value::<Job>(json).unwrap_err();
        assert!(err.to_string().contains("outputS3Uri"), "{err}");
    }

    #[test]
    fn a_record_from_before_exports_is_an_import_and_a_skip_keeps_its_reason() {
        let skipped = Job::skipped(source(), None, "not NDJSON", at(0));
        let mut json = serde_json::to_value(&skipped).unwrap();
        assert_eq!(json["skipReason"], "not NDJSON");
        assert!(json.get("datastoreId").is_none());
        json.as_object_mut().unwrap().remove("kind");
        let back: Job = serde_json::from_value(json).unwrap();
        assert_eq!(back, skipped);
        assert_eq!(back.kind(), JobKind::Import);
        assert_eq!(back.target(), None);
        assert_eq!(back.skip_reason(), Some("not NDJSON"));
    }
}
