//! What `make demo` shows: a live view of the batches its uploads joined (each one line: its
//! folder, what it holds, when it closes or why it closed, and its job's status), the uploads with
//! their own status and batch, and the closing summary. Pure: built from job records (and the
//! workflow's counts), printed by `src/bin/demo.rs`.

use std::fmt::{self, Write as _};

use healthimport::domain::batch::{BatchPolicy, CloseDue, CloseReason};
use healthimport::domain::job::{Job, JobId, JobStatus, Timestamp};

/// The batch workflow's cost for one batch, read from its execution history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkflowCost {
    pub polls: u64,
    pub state_transitions: u64,
}

impl std::ops::AddAssign for WorkflowCost {
    fn add_assign(&mut self, other: WorkflowCost) {
        self.polls += other.polls;
        self.state_transitions += other.state_transitions;
    }
}

/// Where a batch is: still open (closing in so many seconds, or due and about to be closed by its
/// workflow), or closed for a reason, its job in a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    ClosesIn {
        seconds: i64,
    },
    /// Due by the clock; its workflow has not written the close yet.
    Closing(CloseReason),
    Closed {
        reason: CloseReason,
        status: JobStatus,
    },
}

/// One batch as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchView {
    pub id: JobId,
    pub folder: String,
    pub files: u64,
    pub bytes: u64,
    pub state: BatchState,
}

impl BatchView {
    /// The view of the batch record `batch` at `now`, its countdown from `policy` (the functions'
    /// own settings); `None` for a record that is not a batch.
    pub fn of(batch: &Job, policy: &BatchPolicy, now: Timestamp) -> Option<BatchView> {
        let b = batch.batch()?;
        let state = match (b.closed, batch.status) {
            (Some(closed), status) => BatchState::Closed {
                reason: closed.reason,
                status,
            },
            (None, _) => match policy.close_due(&b.fill, now) {
                CloseDue::At(at) => {
                    let millis = (at.datetime() - now.datetime()).whole_milliseconds();
                    BatchState::ClosesIn {
                        seconds: (millis.max(0) as i64 + 999) / 1000,
                    }
                }
                CloseDue::Now(reason) => BatchState::Closing(reason),
            },
        };
        Some(BatchView {
            id: batch.job_id.clone(),
            folder: b.folder.clone(),
            files: b.fill.files,
            bytes: b.fill.bytes,
            state,
        })
    }

    /// Whether its job has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, BatchState::Closed { status, .. } if status.is_terminal())
    }

    /// The line without what changes every second by itself (the countdown): what the log (when
    /// stdout is not a terminal) compares to print a batch only when it changed.
    pub fn without_countdown(&self) -> String {
        match self.state {
            BatchState::ClosesIn { .. } => format!(
                "batch {}: {}, {}, open",
                self.folder,
                files(self.files),
                size(self.bytes)
            ),
            _ => self.to_string(),
        }
    }
}

/// `batch dicom/study-0002/: 12 files, 3.1 MB, closes in 42 s`, or `..., closed (QUIET),
/// IN_PROGRESS`.
impl fmt::Display for BatchView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch {}: {}, {}, ",
            self.folder,
            files(self.files),
            size(self.bytes)
        )?;
        match self.state {
            BatchState::ClosesIn { seconds } => write!(f, "closes in {seconds} s"),
            BatchState::Closing(reason) => write!(f, "closing ({reason})"),
            BatchState::Closed { reason, status } => write!(f, "closed ({reason}), {status}"),
        }
    }
}

/// The batch id as the views show it: `b-` and the first 8 of its 24 hex digits, its generation.
pub fn short_batch_id(id: &JobId) -> String {
    let id = id.as_str();
    match id.strip_prefix("b-").and_then(|rest| rest.rsplit_once('-')) {
        Some((digest, generation)) if digest.len() > 8 => {
            format!("b-{}-{generation}", &digest[..8])
        }
        _ => id.to_owned(),
    }
}

/// One line per batch, its short id after it.
pub fn batch_lines(batches: &[BatchView]) -> String {
    let width = batches
        .iter()
        .map(|b| b.to_string().chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for batch in batches {
        let _ = writeln!(
            out,
            "{:<width$}  {}",
            batch.to_string(),
            short_batch_id(&batch.id)
        );
    }
    out
}

/// One line per upload, in the given order: its key, its status (`-` while it has no record) and
/// its batch (for a marker: the batch it closed).
pub fn upload_table(uploads: &[(String, Option<Job>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<52} {:<22} batch", "upload", "status");
    for (key, record) in uploads {
        let (status, batch) = match record {
            None => ("-".to_owned(), String::new()),
            Some(job) => (job.status.to_string(), upload_batch(job)),
        };
        let _ = writeln!(out, "{:<52} {:<22} {batch}", ellipsis(key, 52), status);
    }
    out
}

/// `21 of 23 recorded: 9 BATCHED, 11 COMPLETED, 1 SKIPPED`.
pub fn upload_progress(uploads: &[(String, Option<Job>)]) -> String {
    let recorded: Vec<JobStatus> = uploads
        .iter()
        .filter_map(|(_, r)| r.as_ref().map(|j| j.status))
        .collect();
    let mut text = format!("{} of {} recorded", recorded.len(), uploads.len());
    if !recorded.is_empty() {
        let _ = write!(text, ": {}", tally(recorded));
    }
    text
}

fn upload_batch(upload: &Job) -> String {
    if let Some(id) = upload.batch_id() {
        return short_batch_id(id);
    }
    // A marker's record says which batch it closed.
    upload
        .skip_reason()
        .and_then(|r| r.strip_prefix("batch marker: closed batch "))
        .and_then(|r| r.split_whitespace().next())
        .map(|id| format!("marker of {}", short_batch_id(&JobId::from_stored(id))))
        .unwrap_or_default()
}

/// One line per job: id, source, service, status, counts.
pub fn job_table(jobs: &[Job]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<48} {:<13} {:<22} {:>8} {:>8} {:>6}",
        "job", "source", "service", "status", "scanned", "imported", "failed"
    );
    for job in jobs {
        let counts = job.counts.unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<10} {:<48} {:<13} {:<22} {:>8} {:>8} {:>6}",
            &job.job_id.as_str()[..8.min(job.job_id.as_str().len())],
            ellipsis(&job.subject(), 48),
            job.service().map(|s| s.as_str()).unwrap_or("-"),
            job.status.as_str(),
            counts.scanned,
            counts.imported,
            counts.failed,
        );
    }
    out
}

/// Whether every job has reached a terminal status.
pub fn all_finished(jobs: &[Job]) -> bool {
    jobs.iter().all(|job| job.status.is_terminal())
}

/// What the summary says about one batch: its record at the end, what its workflow cost, how many
/// Finished events announced it and how many jobs the service holds under its name.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub batch: Job,
    pub cost: WorkflowCost,
    pub finished_events: usize,
    pub service_jobs: usize,
}

/// `3 COMPLETED, 1 FAILED`, in first-seen order.
fn tally<T: PartialEq + fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut counted: Vec<(T, usize)> = Vec::new();
    for item in items {
        match counted.iter_mut().find(|(seen, _)| *seen == item) {
            Some((_, n)) => *n += 1,
            None => counted.push((item, 1)),
        }
    }
    counted
        .iter()
        .map(|(item, n)| format!("{n} {item}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closing summary: uploads by result (with the reasons of the failed ones), batches by how
/// they closed, and per batch its job, its workflow's state transitions and its Finished events.
pub fn summary(uploads: &[Job], batches: &[BatchReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "uploads: {} ({})",
        uploads.len(),
        tally(uploads.iter().map(|u| u.status))
    );
    for upload in uploads
        .iter()
        .filter(|u| u.has_failures() || u.status == JobStatus::Failed)
    {
        let key = upload.source().map(|s| s.key.as_str()).unwrap_or_default();
        let mut reasons: Vec<String> = upload
            .failed_files
            .iter()
            .map(|f| f.message.clone())
            .collect();
        if reasons.is_empty() {
            reasons.extend(upload.message.clone());
        }
        let _ = writeln!(
            out,
            "  {}  {}: {}",
            upload.status,
            ellipsis(key, 52),
            ellipsis(&reasons.join("; "), 240)
        );
    }
    let closes = batches.iter().map(|r| {
        r.batch
            .batch()
            .and_then(|b| b.closed)
            .map(|c| c.reason.to_string())
            .unwrap_or_else(|| "not closed".into())
    });
    let jobs = if batches.iter().all(|r| r.service_jobs == 1) {
        "one service job each".to_owned()
    } else {
        format!(
            "{} service jobs",
            batches.iter().map(|r| r.service_jobs).sum::<usize>()
        )
    };
    let _ = writeln!(
        out,
        "batches: {} (closed by {}), {jobs}",
        batches.len(),
        tally(closes)
    );
    let mut total = WorkflowCost::default();
    for report in batches {
        total += report.cost;
        let batch = &report.batch;
        let Some(b) = batch.batch() else { continue };
        let counts = batch.counts.unwrap_or_default();
        let closed = b
            .closed
            .map(|c| c.reason.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "  {} {}: {} ({closed}) → {} job{} {}, {} imported, {} failed; {} state transitions, {} poll{}; {} Finished event{}",
            short_batch_id(&batch.job_id),
            ellipsis(&b.folder, 36),
            files(b.fill.files),
            report.service_jobs,
            if report.service_jobs == 1 { "" } else { "s" },
            batch.status,
            counts.imported,
            counts.failed,
            report.cost.state_transitions,
            report.cost.polls,
            if report.cost.polls == 1 { "" } else { "s" },
            report.finished_events,
            if report.finished_events == 1 { "" } else { "s" },
        );
    }
    let announced: usize = batches.iter().map(|r| r.finished_events).sum();
    let _ = writeln!(
        out,
        "Import Job Finished events: {announced} for {} batches",
        batches.len()
    );
    let _ = writeln!(
        out,
        "batch workflows: {} state transitions, {} polls ({:.1} transitions per batch, {:.1} per upload)",
        total.state_transitions,
        total.polls,
        total.state_transitions as f64 / batches.len().max(1) as f64,
        total.state_transitions as f64 / uploads.len().max(1) as f64,
    );
    out
}

/// `1 file`, `12 files`.
fn files(n: u64) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

/// Decimal units: `3.1 MB`, `6.2 kB`, `512 B`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let tail: String = text
        .chars()
        .rev()
        .take(width - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthimport::domain::batch::{BatchFill, BatchFolder};
    use healthimport::domain::job::{
        BatchClosed, FailedFile, JobCounts, Service, SourceObject, Target,
    };

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000 + seconds).unwrap()
    }

    fn source(key: &str) -> SourceObject {
        SourceObject {
            bucket: "ingest".into(),
            key: key.into(),
            size: 10,
            e_tag: Some("\"e\"".into()),
            version_id: None,
        }
    }

    fn target() -> Target {
        Target {
            service: Service::HealthLake,
            datastore_id: "ds".into(),
            output_s3_uri: "s3://out/".into(),
        }
    }

    fn job(key: &str, status: JobStatus, counts: Option<JobCounts>) -> Job {
        let source = source(key);
        let input = source.uri();
        let mut job = Job::import(source, target(), input, at(0));
        job.status = status;
        job.counts = counts;
        job
    }

    fn batch(folder: &str, fill: BatchFill) -> Job {
        let folder = BatchFolder {
            service: Service::HealthImaging,
            datastore_id: "d".repeat(32),
            bucket: "ingest".into(),
            folder: folder.into(),
        };
        Job::open_batch(
            &folder,
            0,
            fill,
            "s3://out/dicom/",
            "s3://ingest/staging/".into(),
        )
    }

    fn close(batch: &mut Job, reason: CloseReason, status: JobStatus) {
        if let healthimport::domain::job::Work::Batch { batch: b, .. } = &mut batch.work {
            b.closed = Some(BatchClosed { reason, at: at(60) });
        }
        batch.status = status;
    }

    #[test]
    fn an_open_batch_says_what_it_holds_and_when_it_closes() {
        let policy = BatchPolicy::default(); // quiet 60 s, at most 300 s
        let open = batch(
            "dicom/study-0002/",
            BatchFill {
                files: 12,
                bytes: 3_100_000,
                first_file_at: at(0),
                last_file_at: at(10),
            },
        );
        // The last file came 18.5 s ago: 41.5 s of quiet to go, shown as 42.
        let now = at(28).plus(time::Duration::milliseconds(500));
        let view = BatchView::of(&open, &policy, now).unwrap();
        assert_eq!(
            view.to_string(),
            "batch dicom/study-0002/: 12 files, 3.1 MB, closes in 42 s"
        );
        assert_eq!(
            view.without_countdown(),
            "batch dicom/study-0002/: 12 files, 3.1 MB, open"
        );
        assert!(!view.is_finished());

        // Due but not closed yet by its workflow.
        let view = BatchView::of(&open, &policy, at(70)).unwrap();
        assert_eq!(
            view.to_string(),
            "batch dicom/study-0002/: 12 files, 3.1 MB, closing (QUIET)"
        );
        // Busy batches close at their maximum wait, whatever the quiet timer says.
        let busy = batch(
            "dicom/",
            BatchFill {
                files: 1,
                bytes: 612,
                first_file_at: at(0),
                last_file_at: at(285),
            },
        );
        let view = BatchView::of(&busy, &policy, at(290)).unwrap();
        assert_eq!(
            view.to_string(),
            "batch dicom/: 1 file, 612 B, closes in 10 s"
        );
    }

    #[test]
    fn a_closed_batch_says_why_and_where_its_job_is() {
        let mut closed = batch("dicom/study-0002/", BatchFill::first(6_150, at(0)));
        close(&mut closed, CloseReason::Quiet, JobStatus::InProgress);
        let view = BatchView::of(&closed, &BatchPolicy::default(), at(500)).unwrap();
        assert_eq!(
            view.to_string(),
            "batch dicom/study-0002/: 1 file, 6.2 kB, closed (QUIET), IN_PROGRESS"
        );
        assert!(!view.is_finished());
        close(&mut closed, CloseReason::Quiet, JobStatus::Completed);
        let view = BatchView::of(&closed, &BatchPolicy::default(), at(500)).unwrap();
        assert!(view.is_finished());
        let lines = batch_lines(&[view]);
        let id = short_batch_id(&closed.job_id);
        assert!(
            id.starts_with("b-") && id.len() == "b-12345678-0".len(),
            "{id}"
        );
        assert!(lines.trim_end().ends_with(&id), "{lines}");
        // Not a batch: no view.
        assert!(BatchView::of(
            &job("fhir/a.ndjson", JobStatus::Batched, None),
            &BatchPolicy::default(),
            at(0)
        )
        .is_none());
    }

    #[test]
    fn sizes_use_decimal_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(6_150), "6.2 kB");
        assert_eq!(size(3_100_000), "3.1 MB");
        assert_eq!(size(10_737_418_240), "10.7 GB");
    }

    #[test]
    fn the_upload_table_shows_each_upload_its_status_and_batch() {
        let batch_id = JobId::from_stored("b-0123456789abcdef01234567-3");
        let joined = Job::batched(
            source("dicom/s/ct-1.dcm"),
            batch_id.clone(),
            target(),
            at(0),
        );
        let marker = Job::skipped(
            source("dicom/s/_READY"),
            Some(Service::HealthImaging),
            format!("batch marker: closed batch {batch_id} of its folder"),
            at(1),
        );
        let table = upload_table(&[
            ("dicom/s/ct-1.dcm".into(), Some(joined)),
            ("dicom/s/_READY".into(), Some(marker)),
            ("dicom/s/ct-2.dcm".into(), None),
        ]);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[1].contains("BATCHED") && lines[1].ends_with("b-01234567-3"));
        assert!(lines[2].contains("SKIPPED") && lines[2].ends_with("marker of b-01234567-3"));
        assert!(lines[3].starts_with("dicom/s/ct-2.dcm") && lines[3].contains(" - "));
        assert_eq!(
            upload_progress(&[
                ("a".into(), Some(job("a", JobStatus::Batched, None))),
                ("b".into(), Some(job("b", JobStatus::Batched, None))),
                ("c".into(), None),
            ]),
            "2 of 3 recorded: 2 BATCHED"
        );
    }

    #[test]
    fn the_job_table_has_a_line_per_job_with_its_status_and_counts() {
        let counts = JobCounts {
            scanned: 3,
            imported: 2,
            failed: 1,
        };
        let jobs = [
            job("fhir/a.ndjson", JobStatus::InProgress, None),
            job(
                "fhir/b.ndjson",
                JobStatus::CompletedWithErrors,
                Some(counts),
            ),
        ];
        let table = job_table(&jobs);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains("fhir/a.ndjson") && lines[1].contains("IN_PROGRESS"));
        assert!(lines[2].contains("COMPLETED_WITH_ERRORS"));
        assert!(
            lines[2].trim_end().ends_with("3        2      1"),
            "{}",
            lines[2]
        );
        assert!(!all_finished(&jobs));
        assert!(all_finished(&jobs[1..]));
    }

    #[test]
    fn long_keys_keep_their_end() {
        let key = format!("fhir/{}/patients.ndjson", "x".repeat(80));
        let shown = ellipsis(&key, 48);
        assert_eq!(shown.chars().count(), 48);
        assert!(shown.starts_with('…') && shown.ends_with("/patients.ndjson"));
    }

    #[test]
    fn the_summary_counts_uploads_batches_transitions_and_events() {
        let mut broken = job("dicom/s/ct-5.dcm", JobStatus::Failed, None);
        broken.message = Some("InvalidDicomFile: not a DICOM Part 10 file".into());
        let mut lines = job("fhir/f/enc.ndjson", JobStatus::CompletedWithErrors, None);
        lines.failed_files = vec![FailedFile {
            input_file: "s3://ingest/fhir/f/enc.ndjson".into(),
            message: "line 2: unexpected end".into(),
        }];
        let ok = job("dicom/s/ct-1.dcm", JobStatus::Completed, None);
        let uploads = [broken, lines, ok.clone(), ok];

        let mut study = batch("dicom/s/", BatchFill::first(100, at(0)));
        close(&mut study, CloseReason::Marker, JobStatus::Completed);
        study.counts = Some(JobCounts {
            scanned: 3,
            imported: 2,
            failed: 1,
        });
        let mut synced = batch("dicom/t/", BatchFill::first(100, at(0)));
        close(&mut synced, CloseReason::Quiet, JobStatus::Completed);
        let report = |batch: Job, transitions| BatchReport {
            batch,
            cost: WorkflowCost {
                polls: 2,
                state_transitions: transitions,
            },
            finished_events: 1,
            service_jobs: 1,
        };
        let text = summary(&uploads, &[report(study, 12), report(synced, 10)]);
        assert!(
            text.contains("uploads: 4 (1 FAILED, 1 COMPLETED_WITH_ERRORS, 2 COMPLETED)"),
            "{text}"
        );
        assert!(text.contains("InvalidDicomFile"), "{text}");
        assert!(text.contains("line 2: unexpected end"), "{text}");
        assert!(
            text.contains("batches: 2 (closed by 1 MARKER, 1 QUIET), one service job each"),
            "{text}"
        );
        assert!(
            text.contains("→ 1 job COMPLETED, 2 imported, 1 failed; 12 state transitions, 2 polls; 1 Finished event\n"),
            "{text}"
        );
        assert!(
            text.contains("Import Job Finished events: 2 for 2 batches"),
            "{text}"
        );
        assert!(
            text.contains(
                "22 state transitions, 4 polls (11.0 transitions per batch, 5.5 per upload)"
            ),
            "{text}"
        );
    }
}
