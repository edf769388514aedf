//! The job record: what a job is (an upload's import, or a data store's export), what it has
//! learned from its service, and how a status change is applied to it. Pure: no AWS types, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::batch::{BatchFill, BatchFolder, CloseReason};
use crate::domain::export::ExportRequest;
pub use crate::domain::ids::{JobId, Timestamp};
pub use crate::domain::status::{JobKind, JobStatus, Service, UnknownStatus};

/// The uploaded object a job was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceObject {
    pub bucket: String,
    /// The decoded key (S3 event keys are URL-encoded; routing decodes them).
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
    /// One upload: imported through its batch, or skipped with a reason.
    Import {
        source: SourceObject,
        plan: ImportPlan,
    },
    /// A batch of uploads, imported by one service job from its own staging prefix.
    Batch {
        batch: Batch,
        target: Target,
        /// The batch's staging prefix, which its job imports.
        input_s3_uri: String,
    },
    /// A HealthLake data store exported to S3.
    Export {
        request: ExportRequest,
        target: Target,
    },
}

/// A batch: the folder it collects, which of the folder's batches it is, what it holds, and when
/// and why it closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub bucket: String,
    /// The uploads' parent prefix, ending in `/`.
    pub folder: String,
    pub generation: u64,
    pub fill: BatchFill,
    /// `None` while the batch is `OPEN`.
    pub closed: Option<BatchClosed>,
    /// When its files were copied to its staging prefix; `None` before.
    pub staged_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchClosed {
    pub reason: CloseReason,
    pub at: Timestamp,
}

/// What becomes of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportPlan {
    /// Imported by the job of its batch; the upload gets its own result from that job's output.
    Batched { batch_id: JobId, target: Target },
    /// Imported by a job of its own, `input_s3_uri` being what the service reads (the design
    /// before batches; kept so that records written then still read).
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

/// A re-drive of an upload whose import failed: a record of its own (the failed one stays as it
/// was), numbered, and pointing at the attempt it retries. An upload's first attempt has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 2 for the first retry, and so on.
    pub number: u32,
    /// The record of the attempt this one retries.
    pub retries: JobId,
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
    /// Once the outcome is recorded: whether its counts were read from what the service wrote.
    pub outcome_verified: Option<bool>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the job first reached each status it went through. A map rather than a list so that
    /// a repeated write of the same status cannot add a second entry.
    pub history: BTreeMap<JobStatus, Timestamp>,
    /// An upload's re-drive: which attempt this record is; `None` for the first.
    pub attempt: Option<Attempt>,
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
    /// An upload that joined the batch `batch_id`.
    pub fn batched(source: SourceObject, batch_id: JobId, target: Target, at: Timestamp) -> Job {
        let job_id = source.job_id();
        let plan = ImportPlan::Batched { batch_id, target };
        Job::new(
            job_id,
            Work::Import { source, plan },
            JobStatus::Batched,
            at,
        )
    }

    /// The `generation`th batch of `folder`, opened by its first file (`fill`); its job imports
    /// `input_s3_uri` (its staging prefix).
    pub fn open_batch(
        folder: &BatchFolder,
        generation: u64,
        fill: BatchFill,
        output_s3_uri: &str,
        input_s3_uri: String,
    ) -> Job {
        let target = Target {
            service: folder.service,
            datastore_id: folder.datastore_id.clone(),
            output_s3_uri: output_s3_uri.to_owned(),
        };
        let batch = Batch {
            bucket: folder.bucket.clone(),
            folder: folder.folder.clone(),
            generation,
            fill,
            closed: None,
            staged_at: None,
        };
        Job::new(
            folder.batch_id(generation),
            Work::Batch {
                batch,
                target,
                input_s3_uri,
            },
            JobStatus::Open,
            fill.first_file_at,
        )
    }

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
            outcome_verified: None,
            created_at: at,
            updated_at: at,
            history: BTreeMap::from([(status, at)]),
            attempt: None,
        }
    }

    /// This upload record as `attempt`: its id is the attempt's own (derived from the upload's
    /// first id and the attempt's number, so repeating the same retry finds the same record).
    pub fn as_attempt(mut self, attempt: Attempt) -> Job {
        if let Some(source) = self.source() {
            self.job_id = JobId::for_attempt(&source.job_id(), attempt.number);
        }
        self.attempt = Some(attempt);
        self
    }

    /// Which attempt at its upload this record is: 1 unless it is a retry.
    pub fn attempt_number(&self) -> u32 {
        self.attempt.as_ref().map_or(1, |a| a.number)
    }

    pub fn kind(&self) -> JobKind {
        match self.work {
            Work::Import { .. } | Work::Batch { .. } => JobKind::Import,
            Work::Export { .. } => JobKind::Export,
        }
    }

    /// The upload of an import.
    pub fn source(&self) -> Option<&SourceObject> {
        match &self.work {
            Work::Import { source, .. } => Some(source),
            Work::Batch { .. } | Work::Export { .. } => None,
        }
    }

    pub fn batch(&self) -> Option<&Batch> {
        match &self.work {
            Work::Batch { batch, .. } => Some(batch),
            _ => None,
        }
    }

    /// The folder a batch collects.
    pub fn batch_folder(&self) -> Option<BatchFolder> {
        match &self.work {
            Work::Batch { batch, target, .. } => Some(BatchFolder {
                service: target.service,
                datastore_id: target.datastore_id.clone(),
                bucket: batch.bucket.clone(),
                folder: batch.folder.clone(),
            }),
            _ => None,
        }
    }

    /// The batch an upload joined.
    pub fn batch_id(&self) -> Option<&JobId> {
        match &self.work {
            Work::Import {
                plan: ImportPlan::Batched { batch_id, .. },
                ..
            } => Some(batch_id),
            _ => None,
        }
    }

    /// What asked for an export, and its window.
    pub fn export_request(&self) -> Option<&ExportRequest> {
        match &self.work {
            Work::Export { request, .. } => Some(request),
            Work::Import { .. } | Work::Batch { .. } => None,
        }
    }

    /// Where the job runs; `None` for a skipped upload.
    pub fn target(&self) -> Option<&Target> {
        match &self.work {
            Work::Import {
                plan: ImportPlan::Run { target, .. } | ImportPlan::Batched { target, .. },
                ..
            }
            | Work::Batch { target, .. }
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
            }
            | Work::Batch { input_s3_uri, .. } => Some(input_s3_uri),
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
            Work::Batch { batch, .. } => format!("batch {}", batch.folder),
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
        match message {
            MessageChange::Keep => {}
            MessageChange::Set(message) => self.message = Some(message),
            MessageChange::Clear => self.message = None,
        }
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
    /// An upload's batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_id: Option<JobId>,
    /// A batch's folder (with `bucket`, `generation` and the fill counters); top-level attributes
    /// because the store's join updates and checks them atomically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_file_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_file_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    close_reason: Option<CloseReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged_at: Option<Timestamp>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome_verified: Option<bool>,
    created_at: Timestamp,
    updated_at: Timestamp,
    history: BTreeMap<JobStatus, Timestamp>,
    /// A retried upload's attempt number (absent on a first attempt) and the record it retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retries: Option<JobId>,
}

impl From<Job> for JobRecord {
    fn from(job: Job) -> JobRecord {
        let kind = job.kind();
        let service = job.service();
        let mut batch_id = None;
        let mut batch = None;
        let (source, export, target, input_s3_uri, skip_reason) = match job.work {
            Work::Import { source, plan } => match plan {
                ImportPlan::Batched {
                    batch_id: id,
                    target,
                } => {
                    batch_id = Some(id);
                    (Some(source), None, Some(target), None, None)
                }
                ImportPlan::Run {
                    target,
                    input_s3_uri,
                } => (Some(source), None, Some(target), Some(input_s3_uri), None),
                ImportPlan::Skip { reason, .. } => (Some(source), None, None, None, Some(reason)),
            },
            Work::Batch {
                batch: b,
                target,
                input_s3_uri,
            } => {
                batch = Some(b);
                (None, None, Some(target), Some(input_s3_uri), None)
            }
            Work::Export { request, target } => (None, Some(request), Some(target), None, None),
        };
        let closed = batch.as_ref().and_then(|b| b.closed);
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
            batch_id,
            folder: batch.as_ref().map(|b| b.folder.clone()),
            generation: batch.as_ref().map(|b| b.generation),
            batch_files: batch.as_ref().map(|b| b.fill.files),
            batch_bytes: batch.as_ref().map(|b| b.fill.bytes),
            first_file_at: batch.as_ref().map(|b| b.fill.first_file_at),
            last_file_at: batch.as_ref().map(|b| b.fill.last_file_at),
            staged_at: batch.as_ref().and_then(|b| b.staged_at),
            bucket: batch.map(|b| b.bucket),
            close_reason: closed.map(|c| c.reason),
            closed_at: closed.map(|c| c.at),
            skip_reason,
            message: job.message,
            counts: job.counts,
            failed_files: job.failed_files,
            output_location: job.output_location,
            outcome_verified: job.outcome_verified,
            created_at: job.created_at,
            updated_at: job.updated_at,
            history: job.history,
            attempt: job.attempt.as_ref().map(|a| a.number),
            retries: job.attempt.map(|a| a.retries),
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
            JobKind::Import if record.folder.is_some() => Work::Batch {
                batch: Batch {
                    bucket: record.bucket.clone().ok_or_else(|| missing("bucket"))?,
                    folder: record.folder.clone().unwrap_or_default(),
                    generation: record.generation.ok_or_else(|| missing("generation"))?,
                    fill: BatchFill {
                        files: record.batch_files.unwrap_or(0),
                        bytes: record.batch_bytes.unwrap_or(0),
                        first_file_at: record
                            .first_file_at
                            .ok_or_else(|| missing("firstFileAt"))?,
                        last_file_at: record.last_file_at.ok_or_else(|| missing("lastFileAt"))?,
                    },
                    closed: match (record.close_reason, record.closed_at) {
                        (Some(reason), Some(at)) => Some(BatchClosed { reason, at }),
                        _ => None,
                    },
                    staged_at: record.staged_at,
                },
                target: target()?,
                input_s3_uri: record
                    .input_s3_uri
                    .clone()
                    .ok_or_else(|| missing("inputS3Uri"))?,
            },
            JobKind::Import => {
                let plan = match (&record.skip_reason, &record.input_s3_uri) {
                    (Some(reason), _) => ImportPlan::Skip {
                        service: record.service,
                        reason: reason.clone(),
                    },
                    (None, _) if record.batch_id.is_some() => ImportPlan::Batched {
                        batch_id: record.batch_id.clone().ok_or_else(|| missing("batchId"))?,
                        target: target()?,
                    },
                    (None, Some(input_s3_uri)) => ImportPlan::Run {
                        target: target()?,
                        input_s3_uri: input_s3_uri.clone(),
                    },
                    (None, None) => return Err(missing("batchId, inputS3Uri or skipReason")),
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
            outcome_verified: record.outcome_verified,
            created_at: record.created_at,
            updated_at: record.updated_at,
            history: record.history,
            attempt: match (record.attempt, record.retries) {
                (Some(number), Some(retries)) => Some(Attempt { number, retries }),
                _ => None,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot move from {from} to {to}")]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

/// What a transition does to the record's message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MessageChange {
    #[default]
    Keep,
    Set(String),
    Clear,
}

/// A status change with what was learned along with it. Fields left `None` (and a message left
/// [`MessageChange::Keep`]) keep their value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub to: JobStatus,
    pub at: Timestamp,
    pub fields: TransitionFields,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionFields {
    pub service_job_id: Option<String>,
    pub message: MessageChange,
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
        self.fields.message = MessageChange::Set(message.into());
        self
    }

    /// Removes the record's message: one that no longer holds (why a start was being retried,
    /// once the job has started) must not stay on the record or reach the Finished event.
    pub fn clearing_message(mut self) -> Transition {
        self.fields.message = MessageChange::Clear;
        self
    }

    pub fn with_counts(mut self, counts: JobCounts) -> Transition {
        self.fields.counts = Some(counts);
        self
    }

    /// Bounded by [`bounded_failed_files`]; the manifest has the rest.
    pub fn with_failed_files(mut self, files: Vec<FailedFile>) -> Transition {
        self.fields.failed_files = Some(bounded_failed_files(&files));
        self
    }

    pub fn with_output_location(mut self, location: impl Into<String>) -> Transition {
        self.fields.output_location = Some(location.into());
        self
    }
}

/// How many failed files a record keeps (see [`bounded_failed_files`]).
pub const MAX_FAILED_FILES: usize = 100;
/// How many bytes of failed files (names and messages) a record keeps: a record must stay well
/// under DynamoDB's 400 KB item limit whatever the messages hold (a thousand 4-byte characters
/// each, next to a 1 KB key, would pass it a hundred times over).
pub const MAX_FAILED_FILES_BYTES: usize = 64 * 1024;

/// The first failed files that fit both [`MAX_FAILED_FILES`] and [`MAX_FAILED_FILES_BYTES`]: what
/// a record and its Finished event may carry, even when a batch of 5,000 files fails whole.
pub fn bounded_failed_files(files: &[FailedFile]) -> Vec<FailedFile> {
    let mut bytes = 0;
    files
        .iter()
        .take(MAX_FAILED_FILES)
        .take_while(|file| {
            bytes += file.input_file.len() + file.message.len();
            bytes <= MAX_FAILED_FILES_BYTES
        })
        .cloned()
        .collect()
}

/// Where the next incremental export of a data store starts: the window end of its latest export
/// that completed (`COMPLETED`; an export with errors or a failure left changes unexported).
pub fn last_completed_until(exports: &[Job]) -> Option<Timestamp> {
    exports
        .iter()
        .filter(|job| job.status == JobStatus::Completed)
        .filter_map(|job| job.export_request().map(|e| e.until))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::export::{ExportMode, ExportTrigger};
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
    fn version_id_identifies_content_before_etag() {
        let mut s = source();
        let by_etag = s.job_id();
        s.version_id = Some("v2".into());
        assert_eq!(s.content_identity(), "v2");
        assert_ne!(s.job_id(), by_etag);
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
    fn failed_files_with_huge_messages_are_bounded_by_bytes() {
        let huge = |i: usize| FailedFile {
            input_file: format!("s3://ingest/dicom/{i:04}/{}", "k".repeat(1000)),
            message: "€".repeat(1000),
        };
        let files: Vec<_> = (0..100).map(huge).collect();
        let kept = bounded_failed_files(&files);
        assert!(!kept.is_empty() && kept.len() < files.len());
        let bytes: usize = kept
            .iter()
            .map(|f| f.input_file.len() + f.message.len())
            .sum();
        assert!(bytes <= MAX_FAILED_FILES_BYTES, "{bytes}");
        let mut job = import(at(0));
        job.apply(&Transition::to(Completed, at(1)).with_failed_files(files))
            .unwrap();
        let item = serde_json::to_vec(&job).unwrap();
        assert!(item.len() < 100 * 1024, "a record of {} bytes", item.len());
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

    #[test]
    fn the_next_window_starts_at_the_latest_completed_export_only() {
        let at = |text: &str| text.parse::<Timestamp>().unwrap();
        let export = |id: &str, until: &str, status: JobStatus| {
            let request = ExportRequest::new(
                ExportTrigger::OnDemand {
                    request_id: id.into(),
                },
                ExportMode::Full,
                None,
                at(until),
            );
            let mut job = Job::export(
                request,
                "0123456789abcdef0123456789abcdef",
                "s3://out/",
                at(until),
            );
            job.status = status;
            job
        };
        let exports = [
            export("a", "2026-11-25T02:00:00Z", JobStatus::Completed),
            export("b", "2026-11-26T02:00:00Z", JobStatus::Completed),
            // Later, but not a clean completion: its window is exported again next time.
            export("c", "2026-11-27T02:00:00Z", JobStatus::Failed),
            export("d", "2026-11-27T03:00:00Z", JobStatus::CompletedWithErrors),
            export("e", "2026-11-28T02:00:00Z", JobStatus::InProgress),
        ];
        assert_eq!(
            last_completed_until(&exports),
            Some(at("2026-11-26T02:00:00Z"))
        );
        assert_eq!(last_completed_until(&exports[2..]), None);
    }
}
