//! Batches, the unit of work: every upload joins the open batch of its service, data store and
//! folder, and each batch becomes one service job. Pure: when a batch takes a file, when it
//! closes, what its ids are, and where its staged copies live.
//!
//! A batch closes at the first of:
//! - its marker object (`_READY`) arriving in its folder;
//! - `quiet` passing without a new file;
//! - `max_wait` passing after its first file;
//! - the next file passing the service's per-job limits (files, bytes): that file opens the next.
//!
//! Closing is decided by the clock, not by who notices: once a batch is due, no file can join it
//! (the store's join is conditional on the same rule, [`JoinRule`]), so whoever writes the close
//! (the batch's workflow, or a starter whose file found the batch due) writes the same membership.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::Duration;

use crate::domain::ids::{JobId, Timestamp};
use crate::domain::s3_uri::s3_uri;
use crate::domain::status::Service;

/// HealthLake: 10,000 files per import job (quota page).
pub const HEALTHLAKE_MAX_JOB_FILES: u64 = 10_000;
/// HealthImaging: 5,000 files per import job (quota page; adjustable).
pub const IMAGING_MAX_JOB_FILES: u64 = 5_000;
/// HealthImaging: 10 GB per import job (quota page).
pub const IMAGING_MAX_JOB_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// A service's per-job limits, which a batch must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    pub max_files: u64,
    /// `None`: the service documents no byte limit per job (HealthLake).
    pub max_bytes: Option<u64>,
}

/// When batches close: the timers and each service's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    pub quiet: Duration,
    pub max_wait: Duration,
    pub healthlake: JobLimits,
    pub imaging: JobLimits,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            quiet: Duration::seconds(60),
            max_wait: Duration::seconds(300),
            healthlake: JobLimits {
                max_files: HEALTHLAKE_MAX_JOB_FILES,
                max_bytes: None,
            },
            imaging: JobLimits {
                max_files: IMAGING_MAX_JOB_FILES,
                max_bytes: Some(IMAGING_MAX_JOB_BYTES),
            },
        }
    }
}

impl BatchPolicy {
    pub fn limits(&self, service: Service) -> JobLimits {
        match service {
            Service::HealthLake => self.healthlake,
            Service::HealthImaging => self.imaging,
        }
    }

    /// The condition under which a file of `size` bytes may join an open batch of `service` at
    /// `now`: what the store checks atomically with the join.
    pub fn join_rule(&self, service: Service, size: u64, now: Timestamp) -> JoinRule {
        let limits = self.limits(service);
        JoinRule {
            files_at_most: limits.max_files.saturating_sub(1),
            bytes_at_most: limits.max_bytes.map(|max| max.saturating_sub(size)),
            last_file_after: now.plus(-self.quiet),
            first_file_after: now.plus(-self.max_wait),
        }
    }

    /// Whether `fill` takes a file of `size` at `now`, or must close first, and why.
    pub fn admits(&self, service: Service, fill: &BatchFill, size: u64, now: Timestamp) -> Admits {
        if let CloseDue::Now(reason) = self.close_due(fill, now) {
            return Admits::CloseFirst(reason);
        }
        let rule = self.join_rule(service, size, now);
        if fill.files > rule.files_at_most {
            return Admits::CloseFirst(CloseReason::FileLimit);
        }
        if rule.bytes_at_most.is_some_and(|most| fill.bytes > most) {
            return Admits::CloseFirst(CloseReason::ByteLimit);
        }
        Admits::Join
    }

    /// When the open batch `fill` closes by the clock: now (and why), or at a later instant.
    pub fn close_due(&self, fill: &BatchFill, now: Timestamp) -> CloseDue {
        let max_wait_at = fill.first_file_at.plus(self.max_wait);
        let quiet_at = fill.last_file_at.plus(self.quiet);
        if now >= max_wait_at {
            CloseDue::Now(CloseReason::MaxWait)
        } else if now >= quiet_at {
            CloseDue::Now(CloseReason::Quiet)
        } else {
            CloseDue::At(quiet_at.min(max_wait_at))
        }
    }
}

/// The store's join condition, as [`BatchPolicy::join_rule`] computes it: the batch is open, holds
/// at most `files_at_most` files and `bytes_at_most` bytes before this one, and is neither quiet
/// (its last file after `last_file_after`) nor past its maximum wait (its first file after
/// `first_file_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRule {
    pub files_at_most: u64,
    pub bytes_at_most: Option<u64>,
    pub last_file_after: Timestamp,
    pub first_file_after: Timestamp,
}

impl JoinRule {
    /// Whether an open batch holding `fill` takes the file: the condition the store writes.
    pub fn holds_for(&self, fill: &BatchFill) -> bool {
        fill.files <= self.files_at_most
            && self.bytes_at_most.is_none_or(|most| fill.bytes <= most)
            && fill.last_file_at > self.last_file_after
            && fill.first_file_at > self.first_file_after
    }
}

/// What [`BatchPolicy::admits`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    Join,
    /// The batch must close (for this reason) and the file open the next one.
    CloseFirst(CloseReason),
}

/// What [`BatchPolicy::close_due`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseDue {
    Now(CloseReason),
    At(Timestamp),
}

/// Why a batch closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CloseReason {
    /// Its marker object arrived.
    Marker,
    /// No file arrived for the quiet period.
    Quiet,
    /// Its maximum wait after the first file passed.
    MaxWait,
    /// The next file would pass the service's files-per-job limit.
    FileLimit,
    /// The next file would pass the service's bytes-per-job limit.
    ByteLimit,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::Marker,
        CloseReason::Quiet,
        CloseReason::MaxWait,
        CloseReason::FileLimit,
        CloseReason::ByteLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Marker => "MARKER",
            CloseReason::Quiet => "QUIET",
            CloseReason::MaxWait => "MAX_WAIT",
            CloseReason::FileLimit => "FILE_LIMIT",
            CloseReason::ByteLimit => "BYTE_LIMIT",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CloseReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CloseReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown batch close reason {s:?}"))
    }
}

/// What an open batch holds: the counters its record keeps and its join condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchFill {
    pub files: u64,
    pub bytes: u64,
    pub first_file_at: Timestamp,
    pub last_file_at: Timestamp,
}

impl BatchFill {
    /// A batch opened by its first file.
    pub fn first(size: u64, at: Timestamp) -> BatchFill {
        BatchFill {
            files: 1,
            bytes: size,
            first_file_at: at,
            last_file_at: at,
        }
    }
}

/// The folder a batch collects: one service and data store, one bucket and key prefix. Batches of
/// a folder follow each other, numbered by generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchFolder {
    pub service: Service,
    pub datastore_id: String,
    pub bucket: String,
    /// The uploads' parent prefix, ending in `/`.
    pub folder: String,
}

impl BatchFolder {
    fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.service.as_str(),
            &self.datastore_id,
            &self.bucket,
            &self.folder,
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(&hasher.finalize()[..12])
    }

    /// The id of the folder's `generation`th batch: `b-<24 hex>-<generation>`, valid as a
    /// ClientToken, a HealthImaging jobName and a Step Functions execution name.
    pub fn batch_id(&self, generation: u64) -> JobId {
        JobId::from_stored(format!("b-{}-{generation}", self.digest()))
    }

    /// The id of the record that remembers the folder's latest generation (a hint: the batch
    /// records' own conditional writes decide).
    pub fn cursor_id(&self) -> JobId {
        JobId::from_stored(format!("folder-{}", self.digest()))
    }
}

/// Where batches keep the copies of their files: a prefix of the ingest bucket outside the
/// watched prefixes, one folder per batch, so that a job imports exactly its batch's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    /// Ends with `/`.
    pub prefix: String,
}

impl Staging {
    pub fn new(prefix: &str) -> Staging {
        let trimmed = prefix.trim().trim_matches('/');
        Staging {
            prefix: format!("{trimmed}/"),
        }
    }

    /// The batch's own folder: what its job imports.
    pub fn batch_prefix(&self, batch_id: &JobId) -> String {
        format!("{}{batch_id}/", self.prefix)
    }

    pub fn batch_uri(&self, bucket: &str, batch_id: &JobId) -> String {
        s3_uri(bucket, &self.batch_prefix(batch_id))
    }

    /// Where the upload `key` of a batch collecting `folder` is copied to.
    pub fn staged_key(&self, batch_id: &JobId, folder: &str, key: &str) -> String {
        let name = key.strip_prefix(folder).unwrap_or(key);
        format!("{}{name}", self.batch_prefix(batch_id))
    }

    /// The uploaded key that a staged copy (a key or an `s3://` URI, as manifests name files)
    /// came from; `None` for a file that is not in this batch's folder.
    pub fn upload_key(&self, batch_id: &JobId, folder: &str, staged: &str) -> Option<String> {
        let root = self.batch_prefix(batch_id);
        let at = staged.find(&root)?;
        let name = &staged[at + root.len()..];
        (!name.is_empty()).then(|| format!("{folder}{name}"))
    }
}

impl Staging {
    /// `text` (a service's message, a failed file's name) with the batch's staged copies named as
    /// the uploads they are: the copies are removed once the outcome is recorded, the uploads stay.
    pub fn unstaged(&self, batch_id: &JobId, folder: &str, text: &str) -> String {
        text.replace(&self.batch_prefix(batch_id), folder)
    }
}

impl Default for Staging {
    fn default() -> Self {
        Staging::new("staging/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000 + seconds).unwrap()
    }

    fn policy() -> BatchPolicy {
        BatchPolicy::default()
    }

    fn fill(files: u64, bytes: u64, first: i64, last: i64) -> BatchFill {
        BatchFill {
            files,
            bytes,
            first_file_at: at(first),
            last_file_at: at(last),
        }
    }

    #[test]
    fn a_quiet_batch_closes_after_the_quiet_period() {
        let f = fill(3, 30, 0, 10);
        assert_eq!(policy().close_due(&f, at(69)), CloseDue::At(at(70)));
        assert_eq!(
            policy().close_due(&f, at(70)),
            CloseDue::Now(CloseReason::Quiet)
        );
    }

    #[test]
    fn a_busy_batch_closes_at_its_maximum_wait() {
        // Files keep arriving every few seconds: the quiet period never passes.
        let f = fill(90, 900, 0, 298);
        assert_eq!(policy().close_due(&f, at(299)), CloseDue::At(at(300)));
        assert_eq!(
            policy().close_due(&f, at(300)),
            CloseDue::Now(CloseReason::MaxWait)
        );
        assert_eq!(
            policy().admits(Service::HealthLake, &f, 1, at(300)),
            Admits::CloseFirst(CloseReason::MaxWait)
        );
    }

    #[test]
    fn the_file_that_would_pass_a_limit_opens_the_next_batch() {
        let p = policy();
        let full = fill(IMAGING_MAX_JOB_FILES, 100, 0, 1);
        assert_eq!(
            p.admits(Service::HealthImaging, &full, 1, at(2)),
            Admits::CloseFirst(CloseReason::FileLimit)
        );
        let almost = fill(IMAGING_MAX_JOB_FILES - 1, 100, 0, 1);
        assert_eq!(
            p.admits(Service::HealthImaging, &almost, 1, at(2)),
            Admits::Join
        );

        let heavy = fill(2, IMAGING_MAX_JOB_BYTES - 10, 0, 1);
        assert_eq!(
            p.admits(Service::HealthImaging, &heavy, 10, at(2)),
            Admits::Join
        );
        assert_eq!(
            p.admits(Service::HealthImaging, &heavy, 11, at(2)),
            Admits::CloseFirst(CloseReason::ByteLimit)
        );
        // HealthLake documents no byte limit per job, only files.
        assert_eq!(
            p.admits(Service::HealthLake, &heavy, u64::MAX / 2, at(2)),
            Admits::Join
        );
        let fhir_full = fill(HEALTHLAKE_MAX_JOB_FILES, 1, 0, 1);
        assert_eq!(
            p.admits(Service::HealthLake, &fhir_full, 1, at(2)),
            Admits::CloseFirst(CloseReason::FileLimit)
        );
    }

    #[test]
    fn a_late_file_finds_its_batch_due_and_must_open_the_next() {
        // The batch went quiet at 70 but its workflow has not written the close yet: the file
        // arriving at 75 must not join it, or the close would decide differently from the join.
        let f = fill(3, 30, 0, 10);
        assert_eq!(
            policy().admits(Service::HealthLake, &f, 1, at(75)),
            Admits::CloseFirst(CloseReason::Quiet)
        );
        assert_eq!(
            policy().admits(Service::HealthLake, &f, 1, at(69)),
            Admits::Join
        );
    }

    #[test]
    fn the_join_rule_is_the_same_decision_as_admits() {
        let p = policy();
        for (f, size, now) in [
            (fill(3, 30, 0, 10), 1, at(69)),
            (fill(3, 30, 0, 10), 1, at(70)),
            (fill(90, 900, 0, 298), 1, at(300)),
            (fill(IMAGING_MAX_JOB_FILES, 1, 0, 1), 1, at(2)),
            (fill(2, IMAGING_MAX_JOB_BYTES - 10, 0, 1), 11, at(2)),
            (fill(2, IMAGING_MAX_JOB_BYTES - 10, 0, 1), 10, at(2)),
        ] {
            let rule = p.join_rule(Service::HealthImaging, size, now);
            let by_rule = rule.holds_for(&f);
            assert_eq!(
                by_rule,
                p.admits(Service::HealthImaging, &f, size, now) == Admits::Join,
                "{f:?} size {size}"
            );
        }
    }

    #[test]
    fn batch_ids_are_per_folder_and_generation_and_valid_everywhere() {
        let folder = BatchFolder {
            service: Service::HealthImaging,
            datastore_id: "d".repeat(32),
            bucket: "ingest".into(),
            folder: "dicom/study-1/".into(),
        };
        let other = BatchFolder {
            folder: "dicom/study-2/".into(),
            ..folder.clone()
        };
        assert_ne!(folder.batch_id(0), other.batch_id(0));
        assert_ne!(folder.batch_id(0), folder.batch_id(1));
        assert_ne!(folder.cursor_id(), folder.batch_id(0));
        let id = folder.batch_id(123_456);
        assert!(id.as_str().len() <= 64, "{id}");
        assert!(id
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn staged_copies_map_back_to_their_uploads() {
        let staging = Staging::new("/staging");
        let batch = JobId::from_stored("b-abc-0");
        let key = staging.staged_key(&batch, "dicom/study 1/", "dicom/study 1/IM 0001.dcm");
        assert_eq!(key, "staging/b-abc-0/IM 0001.dcm");
        assert_eq!(
            staging.batch_uri("ingest", &batch),
            "s3://ingest/staging/b-abc-0/"
        );
        for named in [key.clone(), format!("s3://ingest/{key}")] {
            assert_eq!(
                staging
                    .upload_key(&batch, "dicom/study 1/", &named)
                    .as_deref(),
                Some("dicom/study 1/IM 0001.dcm")
            );
        }
        assert_eq!(
            staging.upload_key(&batch, "dicom/", "s3://ingest/staging/b-other-0/x.dcm"),
            None
        );
        assert_eq!(
            staging.unstaged(
                &batch,
                "dicom/study 1/",
                "s3://ingest/staging/b-abc-0/IM 0001.dcm is not a DICOM P10 file"
            ),
            "s3://ingest/dicom/study 1/IM 0001.dcm is not a DICOM P10 file"
        );
    }

    #[test]
    fn close_reasons_round_trip() {
        for reason in CloseReason::ALL {
            assert_eq!(reason.as_str().parse::<CloseReason>(), Ok(reason));
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::json!(reason.as_str())
            );
        }
    }
}
