//! `make bench`'s batching figures (issue item 6): 1,000 FHIR NDJSON files, a 1,000-instance
//! DICOM study synced without a marker and 100 lone DICOM files, drained twice through the
//! service double's timing model, one half after the other (HealthLake's lane is account-wide):
//!
//! - **per upload** (today's design): a driver in this module behaves as the first version did.
//!   One StartFHIRImportJob / StartDICOMImportJob per uploaded file (ClientToken = a per-file id,
//!   input = the object's own S3 URI), sent as soon as the upload is done; a start refused for
//!   now (throttling, quota, 5xx, transport) retried with the old workflow's `StartThrottled`
//!   budget, then START_FAILED; each started job then polled to its end on the old poller's
//!   schedule. A study file without its marker is never started: the first version acknowledged
//!   it and imported nothing. The objects go to a bucket of their own, outside the pipeline's
//!   notifications, so only this driver sees them.
//! - **batches** (the new design): the same files uploaded through the real front door
//!   ([`LocalPipeline::upload`]: ingest bucket → SQS → starter → batches), then the upload records
//!   read until every one is terminal.
//!
//! Each row reports jobs started, START_FAILED, drain time (the row's first upload to its last
//! file's terminal status) and that drain's ratio to the ideal: [`ideal_drain_with_bytes`], the
//! double's own time for perfectly packed jobs. Target for the batches: at most 1.5× the ideal,
//! no START_FAILED.
//!
//! # Time scale
//! AWS's timings (83 s for a one-file HealthLake job) would make the bench take hours, so
//! `scripts/bench-batches.sh` compresses time by `BENCH_TIME_SCALE` and this module reads the
//! same factor. Every duration of the model is multiplied by it: the double's submit delay,
//! per-job overhead and per-file time; the old workflow's start retry and poll schedule (here);
//! the pipeline's timers (`BATCH_QUIET_SECONDS`, `BATCH_MAX_WAIT_SECONDS`, `START_WAIT_SECONDS`,
//! `COMPLETION_BACKSTOP_SECONDS`, `START_MAX_AGE`; whole seconds: rounded up, at least 1). Rates
//! are divided by it (StartDICOMImportJob 1/s becomes `1/scale` per second, in the double and in
//! the pipeline's `IMAGING_START_RATE`), so that every ratio in the model is AWS's own and a run
//! is AWS's timeline compressed; counts (burst 2, 100 running jobs, 25 queued jobs, files per
//! job) stay as they are. Scaling times but not rates would, at 0.1, let the old design's 6-minute retry budget
//! see a tenth of the starts it sees on AWS, and overstate its START_FAILED. What cannot be
//! scaled is the local stack's own latency (uploads, SQS, Lambda, DynamoDB and Step Functions on
//! moto): it weighs `1/scale` times more here than on AWS, so the batches' ratios printed here
//! err on the pessimistic side.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_healthlake::types::{InputDataConfig, OutputDataConfig, S3Configuration};
use healthimport::domain::job::{Job, JobId, JobStatus, Service};
use healthimport::ports::service_jobs::{Retry, ServiceError};
use healthimport::ports::store::JobStore;
use healthimport_aws::errors::service_error;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::bench_env::Lookup;
use crate::double::{ideal_drain_with_bytes, DoubleConfig, Service as DoubleService};
use crate::double_admin::DoubleAdmin;
use crate::pipeline::LocalPipeline;
use crate::provision::LocalFunctions;
use crate::samples::dicom_p10;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the per-upload half puts its objects: not the ingest bucket, so the pipeline never sees
/// them.
pub const LEGACY_BUCKET: &str = "healthimport-bench-legacy";

/// The target the issue sets for the batches.
pub const TARGET_RATIO: f64 = 1.5;

// ----------------------------------------------------------------------------------------------
// Settings

/// Which halves to run (`BENCH_HALVES`, default both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halves {
    pub per_upload: bool,
    pub batches: bool,
}

/// The bench's knobs, from `BENCH_*` variables (`scripts/bench-batches.sh` sets the scale).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSettings {
    /// `BENCH_TIME_SCALE` (required): the factor every modelled duration is multiplied by.
    pub scale: f64,
    /// `BENCH_FHIR_FILES` (1000), `BENCH_STUDY_FILES` (1000), `BENCH_LONE_FILES` (100).
    pub fhir_files: usize,
    pub study_files: usize,
    pub lone_files: usize,
    /// `BENCH_UPLOAD_CONCURRENCY` (32): uploads in flight at once, over the three workloads.
    pub upload_concurrency: usize,
    /// `BENCH_DEADLINE_SECONDS` (600): how long each half waits for its files to turn terminal
    /// after its last upload before it reports them as not drained. Counted from the last
    /// upload because the local stack's ingest rate, not the bench, decides how long uploads take.
    pub deadline: Duration,
    pub halves: Halves,
}

impl BenchSettings {
    pub fn from_env() -> Result<BenchSettings, BoxError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<BenchSettings, BoxError> {
        let env = Lookup(lookup);
        let scale = env.time_scale(
            "run the bench through scripts/bench-batches.sh, which sets it together with the \
             double's timings",
        )?;
        let halves = match env.get("BENCH_HALVES") {
            None => Halves {
                per_upload: true,
                batches: true,
            },
            Some(list) => {
                let names: Vec<&str> = list.split(',').map(str::trim).collect();
                for name in &names {
                    if !matches!(*name, "per-upload" | "batches") {
                        return Err(format!(
                            "BENCH_HALVES={list:?}: expected per-upload and/or batches"
                        )
                        .into());
                    }
                }
                Halves {
                    per_upload: names.contains(&"per-upload"),
                    batches: names.contains(&"batches"),
                }
            }
        };
        let settings = BenchSettings {
            scale,
            fhir_files: env.count("BENCH_FHIR_FILES", 1000)?,
            study_files: env.count("BENCH_STUDY_FILES", 1000)?,
            lone_files: env.count("BENCH_LONE_FILES", 100)?,
            upload_concurrency: env.count("BENCH_UPLOAD_CONCURRENCY", 32)?.max(3),
            deadline: Duration::from_secs(env.count("BENCH_DEADLINE_SECONDS", 600)? as u64),
            halves,
        };
        Ok(settings)
    }

    pub fn files(&self, workload: Workload) -> usize {
        match workload {
            Workload::Fhir => self.fhir_files,
            Workload::Study => self.study_files,
            Workload::Lone => self.lone_files,
        }
    }

    /// Uploads in flight per workload: the lone files get an eighth (a burst of them arrives
    /// quickly), the two big ones share the rest.
    pub fn upload_slots(&self, workload: Workload) -> usize {
        let lone = (self.upload_concurrency / 8).max(1);
        match workload {
            Workload::Lone => lone,
            _ => ((self.upload_concurrency - lone) / 2).max(1),
        }
    }
}

/// `duration × scale`.
pub fn scaled(duration: Duration, scale: f64) -> Duration {
    duration.mul_f64(scale)
}

// ----------------------------------------------------------------------------------------------
// Workloads

/// The three rows of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// NDJSON files dropped into one folder.
    Fhir,
    /// One study's instances synced into one folder, no `_READY` marker.
    Study,
    /// DICOM files straight under `dicom/`, each its own upload.
    Lone,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Fhir, Workload::Study, Workload::Lone];

    pub fn service(self) -> Service {
        match self {
            Workload::Fhir => Service::HealthLake,
            Workload::Study | Workload::Lone => Service::HealthImaging,
        }
    }

    fn double_service(self) -> DoubleService {
        match self.service() {
            Service::HealthLake => DoubleService::HealthLake,
            Service::HealthImaging => DoubleService::Imaging,
        }
    }

    /// The row's name in the table.
    pub fn label(self, files: usize) -> String {
        let files = thousands(files as u64);
        match self {
            Workload::Fhir => format!("FHIR: {files} NDJSON files"),
            Workload::Study => format!("DICOM study: {files} instances, no marker"),
            Workload::Lone => format!("DICOM: {files} lone files"),
        }
    }

    /// The key the batches half uploads file `index` under (in the ingest bucket).
    pub fn pipeline_key(self, run: &str, index: usize) -> String {
        let n = index + 1;
        match self {
            Workload::Fhir => format!("fhir/bench-{run}/patients-{n:04}.ndjson"),
            Workload::Study => format!("dicom/bench-study-{run}/ct-{n:04}.dcm"),
            Workload::Lone => format!("dicom/bench-{run}-xray-{n:04}.dcm"),
        }
    }

    /// The key the per-upload half uploads file `index` under (in [`LEGACY_BUCKET`]).
    pub fn legacy_key(self, run: &str, index: usize) -> String {
        let n = index + 1;
        match self {
            Workload::Fhir => format!("per-upload-{run}/fhir/patients-{n:04}.ndjson"),
            Workload::Study => format!("per-upload-{run}/study/ct-{n:04}.dcm"),
            Workload::Lone => format!("per-upload-{run}/lone/xray-{n:04}.dcm"),
        }
    }

    /// The per-file ClientToken of the per-upload half (both services' patterns allow it).
    pub fn legacy_client_token(self, run: &str, index: usize) -> String {
        let n = index + 1;
        match self {
            Workload::Fhir => format!("bench-{run}-fhir-{n:04}"),
            Workload::Study => format!("bench-{run}-study-{n:04}"),
            Workload::Lone => format!("bench-{run}-lone-{n:04}"),
        }
    }

    /// File `index`'s body: a few hundred bytes, so uploads are fast. NDJSON: two Patient
    /// resources; DICOM: the samples' generated P10 CT image (`DICM` at byte 128), one study for
    /// the study's instances, a study of its own for each lone file.
    pub fn body(self, run: &str, index: usize) -> Vec<u8> {
        let n = index + 1;
        match self {
            Workload::Fhir => {
                let line = |k: usize| {
                    json!({
                        "resourceType": "Patient",
                        "id": format!("bench-{run}-{n:04}-{k}"),
                        "name": [{"family": "Synthetic", "given": [format!("Bench{n}")]}],
                        "gender": if k == 1 { "female" } else { "male" },
                    })
                    .to_string()
                };
                format!("{}\n{}\n", line(1), line(2)).into_bytes()
            }
            Workload::Study => dicom_p10(&format!("2.25.{}", study_number(run, 0)), n as u32),
            Workload::Lone => dicom_p10(&format!("2.25.{}", study_number(run, n)), 1),
        }
    }
}

/// A UID component made of digits only, distinct per run and per lone file.
fn study_number(run: &str, n: usize) -> u64 {
    let digits: String = run.chars().filter(char::is_ascii_digit).collect();
    let run: u64 = digits.parse().unwrap_or(0) % 10_000_000_000;
    run * 10_000 + n as u64
}

/// The double's own time for perfectly packed jobs of `files` files totalling `bytes` bytes.
pub fn ideal(config: &DoubleConfig, workload: Workload, files: usize, bytes: u64) -> Duration {
    ideal_drain_with_bytes(config, workload.double_service(), files as u64, bytes)
}

// ----------------------------------------------------------------------------------------------
// Today's design: start retry and polling

/// The old tracking workflow's `StartThrottled` retry (statemachine/import-job.asl.json before
/// batching): IntervalSeconds 2, BackoffRate 1.5, MaxDelaySeconds 30, MaxAttempts 30 (Step
/// Functions counts retries, after the first try), JitterStrategy FULL: retry `k` waits a uniform
/// draw from `[0, min(2 × 1.5^k, 30) s)`, about 6 minutes in all. Scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRetry {
    pub interval: Duration,
    pub backoff_rate: f64,
    pub max_delay: Duration,
    pub max_retries: u32,
}

impl StartRetry {
    pub fn old_workflow(scale: f64) -> StartRetry {
        StartRetry {
            interval: scaled(Duration::from_secs(2), scale),
            backoff_rate: 1.5,
            max_delay: scaled(Duration::from_secs(30), scale),
            max_retries: 30,
        }
    }

    /// The longest wait before retry `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let grown = self.interval.as_secs_f64() * self.backoff_rate.powi(retry as i32);
        Duration::from_secs_f64(grown.min(self.max_delay.as_secs_f64()))
    }

    /// The wait before retry `retry` for a uniform `draw` in `[0, 1)` (full jitter).
    pub fn delay(&self, retry: u32, draw: f64) -> Duration {
        self.ceiling(retry).mul_f64(draw.clamp(0.0, 1.0))
    }

    /// The expected time from the first try to START_FAILED (half of every ceiling).
    pub fn expected_budget(&self) -> Duration {
        (0..self.max_retries)
            .map(|k| self.ceiling(k))
            .sum::<Duration>()
            / 2
    }
}

/// The old poller's schedule (template defaults PollInitialWaitSeconds 15, PollBackoffRate 4,
/// PollMaxWaitSeconds 300: polls after 15, 60, 240, 300, 300 … s), scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSchedule {
    pub initial: Duration,
    pub backoff_rate: f64,
    pub max_wait: Duration,
}

impl PollSchedule {
    pub fn old_poller(scale: f64) -> PollSchedule {
        PollSchedule {
            initial: scaled(Duration::from_secs(15), scale),
            backoff_rate: 4.0,
            max_wait: scaled(Duration::from_secs(300), scale),
        }
    }

    /// The wait before poll `poll` (0-based).
    pub fn wait(&self, poll: u32) -> Duration {
        let grown = self.initial.as_secs_f64() * self.backoff_rate.powi(poll.min(64) as i32);
        Duration::from_secs_f64(grown.min(self.max_wait.as_secs_f64()))
    }
}

// ----------------------------------------------------------------------------------------------
// Results and the table

/// START_FAILED of a row, or the first version's silence about a study without its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFailures {
    Count(u64),
    NeverImported,
}

/// How a row's drain ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Drain {
    /// Every file terminal, this long after the row's first upload.
    Done(Duration),
    /// The deadline passed first: `terminal` of the files were.
    Unfinished { waited: Duration, terminal: usize },
    /// Nothing will ever end (a study without its marker, today).
    Never,
}

/// One design's figures for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    /// `None` when the figure could not be read.
    pub jobs_started: Option<u64>,
    pub start_failed: StartFailures,
    pub drain: Drain,
    /// Final status of each file (per upload: its job's, START_FAILED or NEVER_STARTED;
    /// batches: the upload record's), counted.
    pub statuses: BTreeMap<String, usize>,
    /// From the row's first upload's start to its last upload's end: the local stack's share of
    /// the drain (on AWS, S3 takes these uploads in seconds; moto under the pipeline's load does
    /// not).
    pub uploads_took: Option<Duration>,
}

impl RowResult {
    /// Whether this row meets the issue's target against `ideal`.
    pub fn meets_target(&self, ideal: Duration) -> bool {
        let drained = match self.drain {
            Drain::Done(drain) => drain.as_secs_f64() <= TARGET_RATIO * ideal.as_secs_f64(),
            _ => false,
        };
        drained && self.start_failed == StartFailures::Count(0)
    }
}

/// One row of the table: the workload, its ideal, and each design's result when that half ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: Workload,
    pub files: usize,
    pub ideal: Duration,
    pub per_upload: Option<RowResult>,
    pub batches: Option<RowResult>,
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(d: Duration) -> String {
    if d == Duration::MAX {
        "never".to_owned()
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn cells(result: Option<&RowResult>, ideal: Duration) -> [String; 4] {
    let Some(result) = result else {
        return [
            "not run".to_owned(),
            String::new(),
            String::new(),
            String::new(),
        ];
    };
    let jobs = result
        .jobs_started
        .map_or_else(|| "?".to_owned(), thousands);
    let failed = match result.start_failed {
        StartFailures::Count(n) => thousands(n),
        StartFailures::NeverImported => "never imported".to_owned(),
    };
    let ratio = |d: Duration| {
        if ideal.is_zero() || ideal == Duration::MAX {
            "-".to_owned()
        } else {
            format!("{:.2}×", d.as_secs_f64() / ideal.as_secs_f64())
        }
    };
    let (drain, ratio) = match &result.drain {
        Drain::Done(d) => (seconds(*d), ratio(*d)),
        Drain::Unfinished { waited, terminal } => (
            format!(
                ">{} ({} done)",
                seconds(*waited),
                thousands(*terminal as u64)
            ),
            format!(">{}", ratio(*waited)),
        ),
        Drain::Never => ("never".to_owned(), "-".to_owned()),
    };
    [jobs, failed, drain, ratio]
}

/// The side-by-side table: one line per workload, each design's jobs started, START_FAILED,
/// drain time and its ratio to the ideal.
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "workload".to_owned(),
        "ideal".to_owned(),
        "jobs".to_owned(),
        "START_FAILED".to_owned(),
        "drain".to_owned(),
        "÷ ideal".to_owned(),
        "jobs".to_owned(),
        "START_FAILED".to_owned(),
        "drain".to_owned(),
        "÷ ideal".to_owned(),
    ];
    let mut lines: Vec<[String; 10]> = vec![header];
    for row in rows {
        let [a, b, c, d] = cells(row.per_upload.as_ref(), row.ideal);
        let [e, f, g, h] = cells(row.batches.as_ref(), row.ideal);
        lines.push([
            row.workload.label(row.files),
            seconds(row.ideal),
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
        ]);
    }
    let width = |col: usize| {
        lines
            .iter()
            .map(|l| l[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..10).map(width).collect();
    let pad = |text: &str, col: usize, left: bool| {
        let fill = widths[col].saturating_sub(text.chars().count());
        if left {
            format!("{text}{}", " ".repeat(fill))
        } else {
            format!("{}{text}", " ".repeat(fill))
        }
    };
    let half_width = |cols: std::ops::Range<usize>| cols.map(|c| widths[c] + 2).sum::<usize>() - 2;
    let mut out = String::new();
    let lead = widths[0] + 2 + widths[1];
    let (left, right) = (half_width(2..6), half_width(6..10));
    let mut push = |line: String| {
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push(format!(
        "{} | {} | batches",
        " ".repeat(lead),
        pad_to("today: one job per upload", left),
    ));
    for (i, line) in lines.iter().enumerate() {
        let cell = |c: usize| pad(&line[c], c, c == 0);
        push(format!(
            "{}  {} | {}  {}  {}  {} | {}  {}  {}  {}",
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            cell(5),
            cell(6),
            cell(7),
            cell(8),
            cell(9)
        ));
        if i == 0 {
            push(format!(
                "{}-+-{}-+-{}",
                "-".repeat(lead),
                "-".repeat(left),
                "-".repeat(right)
            ));
        }
    }
    out
}

/// `text` padded with spaces to `width` characters.
fn pad_to(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(text.chars().count());
    format!("{text}{}", " ".repeat(fill))
}

/// Each row's final statuses, for the lines under the table.
pub fn render_statuses(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        for (design, result) in [("per upload", &row.per_upload), ("batches", &row.batches)] {
            let Some(result) = result else { continue };
            let statuses: Vec<String> = result
                .statuses
                .iter()
                .map(|(status, n)| format!("{status} {}", thousands(*n as u64)))
                .collect();
            let uploads = match (result.uploads_took, &result.drain) {
                (Some(took), Drain::Done(drain)) => format!(
                    "uploads took {}, drained {} after the last; ",
                    seconds(took),
                    seconds(drain.saturating_sub(took))
                ),
                (Some(took), _) => format!("uploads took {}; ", seconds(took)),
                (None, _) => String::new(),
            };
            out.push_str(&format!(
                "  {:<44} {design:<10}: {uploads}{}\n",
                row.workload.label(row.files),
                statuses.join(", ")
            ));
        }
    }
    out
}

// ----------------------------------------------------------------------------------------------
// Uploads

/// One file to upload.
#[derive(Debug, Clone)]
struct BenchFile {
    workload: Workload,
    index: usize,
    key: String,
    body: Vec<u8>,
}

fn files_of(
    settings: &BenchSettings,
    run: &str,
    workload: Workload,
    key: impl Fn(Workload, &str, usize) -> String,
) -> Vec<BenchFile> {
    (0..settings.files(workload))
        .map(|index| BenchFile {
            workload,
            index,
            key: key(workload, run, index),
            body: workload.body(run, index),
        })
        .collect()
}

/// Total bytes of each workload's files (the ideal of an imaging job counts them).
pub fn workload_bytes(settings: &BenchSettings, run: &str, workload: Workload) -> u64 {
    (0..settings.files(workload))
        .map(|i| workload.body(run, i).len() as u64)
        .sum()
}

/// When a workload's uploads ran: its first began, its last completed.
#[derive(Debug, Clone, Copy)]
struct UploadSpan {
    first_wall: OffsetDateTime,
    first: Instant,
    last: Instant,
}

impl UploadSpan {
    fn began(at: Instant) -> UploadSpan {
        UploadSpan {
            first_wall: OffsetDateTime::now_utc(),
            first: at,
            last: at,
        }
    }

    fn took(&self) -> Duration {
        self.last.duration_since(self.first)
    }
}

/// Uploads every file of the three workloads at once, each workload through its own slots
/// (`BenchSettings::upload_slots`), calling `after_upload` as each upload completes. Returns,
/// per workload, when its uploads ran.
async fn upload_all<U, UF, A>(
    settings: &BenchSettings,
    files: Vec<BenchFile>,
    upload: U,
    after_upload: A,
) -> Result<BTreeMap<Workload, UploadSpan>, BoxError>
where
    U: Fn(BenchFile) -> UF + Clone + Send + Sync + 'static,
    UF: std::future::Future<Output = Result<BenchFile, BoxError>> + Send,
    A: Fn(BenchFile) + Clone + Send + Sync + 'static,
{
    let spans: Arc<Mutex<BTreeMap<Workload, UploadSpan>>> = Arc::default();
    let mut workers = JoinSet::new();
    for workload in Workload::ALL {
        let queue: Vec<BenchFile> = files
            .iter()
            .filter(|f| f.workload == workload)
            .cloned()
            .collect();
        let queue = Arc::new(Mutex::new(queue.into_iter()));
        for _ in 0..settings.upload_slots(workload) {
            let (queue, spans) = (Arc::clone(&queue), Arc::clone(&spans));
            let (upload, after_upload) = (upload.clone(), after_upload.clone());
            workers.spawn(async move {
                loop {
                    let Some(file) = queue.lock().await.next() else {
                        return Ok::<(), BoxError>(());
                    };
                    let workload = file.workload;
                    spans
                        .lock()
                        .await
                        .entry(workload)
                        .or_insert_with(|| UploadSpan::began(Instant::now()));
                    let file = upload(file).await?;
                    if let Some(span) = spans.lock().await.get_mut(&workload) {
                        span.last = span.last.max(Instant::now());
                    }
                    after_upload(file);
                }
            });
        }
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let spans = spans.lock().await.clone();
    Ok(spans)
}

// ----------------------------------------------------------------------------------------------
// Today's design: the per-upload driver

/// What the per-upload driver needs to start jobs the way the first version did.
struct LegacyTarget {
    healthlake: aws_sdk_healthlake::Client,
    imaging: aws_sdk_medicalimaging::Client,
    fhir_datastore: String,
    fhir_role: String,
    fhir_output: String,
    fhir_kms_key: String,
    imaging_datastore: String,
    imaging_role: String,
    imaging_output: String,
}

impl LegacyTarget {
    fn new(sdk: &SdkConfig, functions: &LocalFunctions) -> Result<LegacyTarget, BoxError> {
        // One layer retries (the old workflow's schedule, below): the SDK's own retries off.
        let no_retries = aws_sdk_healthlake::config::retry::RetryConfig::disabled();
        let healthlake = aws_sdk_healthlake::Client::from_conf(
            aws_sdk_healthlake::config::Builder::from(sdk)
                .retry_config(no_retries.clone())
                .build(),
        );
        let imaging = aws_sdk_medicalimaging::Client::from_conf(
            aws_sdk_medicalimaging::config::Builder::from(sdk)
                .retry_config(no_retries)
                .build(),
        );
        Ok(LegacyTarget {
            healthlake,
            imaging,
            fhir_datastore: functions.setting("FHIR_DATASTORE_ID")?,
            fhir_role: functions.setting("FHIR_DATA_ACCESS_ROLE_ARN")?,
            fhir_output: functions.setting("FHIR_OUTPUT_S3_URI")?,
            fhir_kms_key: functions.setting("FHIR_OUTPUT_KMS_KEY_ID")?,
            imaging_datastore: functions.setting("IMAGING_DATASTORE_ID")?,
            imaging_role: functions.setting("IMAGING_DATA_ACCESS_ROLE_ARN")?,
            imaging_output: functions.setting("IMAGING_OUTPUT_S3_URI")?,
        })
    }

    /// One start call; the error classified as the adapters classify it.
    async fn start(
        &self,
        workload: Workload,
        token: &str,
        input: &str,
    ) -> Result<String, ServiceError> {
        match workload.service() {
            Service::HealthLake => {
                const OP: &str = "StartFHIRImportJob";
                let output = S3Configuration::builder()
                    .s3_uri(&self.fhir_output)
                    .kms_key_id(&self.fhir_kms_key)
                    .build()
                    .map_err(|_| ServiceError::malformed(Service::HealthLake, OP, "output"))?;
                let started = self
                    .healthlake
                    .start_fhir_import_job()
                    .datastore_id(&self.fhir_datastore)
                    .data_access_role_arn(&self.fhir_role)
                    .client_token(token)
                    .job_name(token)
                    .input_data_config(InputDataConfig::S3Uri(input.to_owned()))
                    .job_output_data_config(OutputDataConfig::S3Configuration(output))
                    .send()
                    .await
                    .map_err(|e| service_error(Service::HealthLake, OP, e))?;
                Ok(started.job_id().to_owned())
            }
            Service::HealthImaging => {
                const OP: &str = "StartDICOMImportJob";
                let started = self
                    .imaging
                    .start_dicom_import_job()
                    .datastore_id(&self.imaging_datastore)
                    .data_access_role_arn(&self.imaging_role)
                    .client_token(token)
                    .job_name(token)
                    .input_s3_uri(input)
                    .output_s3_uri(&self.imaging_output)
                    .send()
                    .await
                    .map_err(|e| service_error(Service::HealthImaging, OP, e))?;
                Ok(started.job_id().to_owned())
            }
        }
    }

    /// The job's status at its service, `None` when the read failed (polled again later).
    async fn status(&self, workload: Workload, job_id: &str) -> Option<JobStatus> {
        let raw = match workload.service() {
            Service::HealthLake => {
                let read = self
                    .healthlake
                    .describe_fhir_import_job()
                    .datastore_id(&self.fhir_datastore)
                    .job_id(job_id)
                    .send()
                    .await
                    .ok()?;
                read.import_job_properties()?
                    .job_status()
                    .as_str()
                    .to_owned()
            }
            Service::HealthImaging => {
                let read = self
                    .imaging
                    .get_dicom_import_job()
                    .datastore_id(&self.imaging_datastore)
                    .job_id(job_id)
                    .send()
                    .await
                    .ok()?;
                read.job_properties()?.job_status().as_str().to_owned()
            }
        };
        JobStatus::from_service(workload.service(), &raw).ok()
    }
}

/// How one file fared in the per-upload half.
#[derive(Debug, Clone)]
struct FileOutcome {
    workload: Workload,
    started: bool,
    /// The final status: the job's, START_FAILED, NEVER_STARTED, or NOT_ENDED at the deadline.
    status: String,
    /// When the status turned final (`None`: never, or not by the deadline).
    ended_at: Option<Instant>,
}

/// Live counters for the progress line.
#[derive(Debug, Default)]
struct LegacyProgress {
    started: BTreeMap<Workload, usize>,
    start_failed: BTreeMap<Workload, usize>,
    ended: BTreeMap<Workload, usize>,
}

/// Starts file `file`'s own job the way the first version did, then polls it to its end.
async fn legacy_file(
    target: Arc<LegacyTarget>,
    run: Arc<str>,
    file: BenchFile,
    retry: StartRetry,
    poll: PollSchedule,
    deadline: Arc<std::sync::OnceLock<Instant>>,
    progress: Arc<std::sync::Mutex<LegacyProgress>>,
) -> FileOutcome {
    let workload = file.workload;
    let count = |what: fn(&mut LegacyProgress) -> &mut BTreeMap<Workload, usize>| {
        if let Ok(mut progress) = progress.lock() {
            *what(&mut progress).entry(workload).or_default() += 1;
        }
    };
    if workload == Workload::Study {
        // No marker: the first version acknowledged the upload and started nothing.
        return FileOutcome {
            workload,
            started: false,
            status: "NEVER_STARTED".to_owned(),
            ended_at: None,
        };
    }
    let token = workload.legacy_client_token(&run, file.index);
    let input = format!("s3://{LEGACY_BUCKET}/{}", file.key);
    let mut retries = 0;
    let job_id = loop {
        match target.start(workload, &token, &input).await {
            Ok(job_id) => break job_id,
            Err(error) if error.retry == Retry::Later && retries < retry.max_retries => {
                tokio::time::sleep(retry.delay(retries, fastrand::f64())).await;
                retries += 1;
            }
            Err(_) => {
                count(|p| &mut p.start_failed);
                return FileOutcome {
                    workload,
                    started: false,
                    status: JobStatus::StartFailed.as_str().to_owned(),
                    ended_at: Some(Instant::now()),
                };
            }
        }
    };
    count(|p| &mut p.started);
    let mut polls = 0;
    loop {
        let wait = poll.wait(polls);
        polls += 1;
        // No deadline until the last upload is done.
        if deadline.get().is_some_and(|d| Instant::now() + wait > *d) {
            return FileOutcome {
                workload,
                started: true,
                status: "NOT_ENDED".to_owned(),
                ended_at: None,
            };
        }
        tokio::time::sleep(wait).await;
        if let Some(status) = target.status(workload, &job_id).await {
            if status.is_terminal() {
                count(|p| &mut p.ended);
                return FileOutcome {
                    workload,
                    started: true,
                    status: status.as_str().to_owned(),
                    ended_at: Some(Instant::now()),
                };
            }
        }
    }
}

/// The double's counters that the bench reports, read before and after a half.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsDelta {
    pub fhir_jobs_created: u64,
    pub imaging_jobs_created: u64,
    pub fhir_start_calls: u64,
    pub imaging_start_calls: u64,
    /// StartDICOMImportJob refused by the start rate.
    pub rate_limited_starts: u64,
    /// StartFHIRImportJob refused because the data store's queue was full.
    pub fhir_queue_refusals: u64,
    /// StartDICOMImportJob refused by the running-jobs quota.
    pub quota_refusals: u64,
}

impl StatsDelta {
    fn between(before: &Value, after: &Value) -> StatsDelta {
        let d = |name: &str| {
            let of = |v: &Value| v[name].as_u64().unwrap_or(0);
            of(after).saturating_sub(of(before))
        };
        StatsDelta {
            fhir_jobs_created: d("fhir_jobs_created"),
            imaging_jobs_created: d("imaging_jobs_created"),
            fhir_start_calls: d("fhir_start_calls"),
            imaging_start_calls: d("imaging_start_calls"),
            rate_limited_starts: d("rate_limited_starts"),
            fhir_queue_refusals: d("fhir_queue_refusals"),
            quota_refusals: d("quota_refusals"),
        }
    }

    pub fn render(&self) -> String {
        format!(
            "jobs created: HealthLake {}, HealthImaging {}; start calls: HealthLake {} ({} refused, queue full), \
             HealthImaging {} ({} refused by the start rate, {} by the running-jobs quota)",
            thousands(self.fhir_jobs_created),
            thousands(self.imaging_jobs_created),
            thousands(self.fhir_start_calls),
            thousands(self.fhir_queue_refusals),
            thousands(self.imaging_start_calls),
            thousands(self.rate_limited_starts),
            thousands(self.quota_refusals),
        )
    }
}

/// One half's results: a row result per workload and the double's counters over the half.
#[derive(Debug, Clone)]
pub struct HalfResult {
    pub rows: BTreeMap<Workload, RowResult>,
    pub stats: StatsDelta,
}

async fn ensure_bucket(sdk: &SdkConfig, bucket: &str) -> Result<(), BoxError> {
    match aws_sdk_s3::Client::new(sdk)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Every `every`, prints a progress line from `line` to stderr until `stop` is dropped.
fn progress_printer(
    every: Duration,
    line: impl Fn() -> String + Send + 'static,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(every) => eprintln!("{}", line()),
            }
        }
    });
    stop
}

/// Today's design: every file uploaded to [`LEGACY_BUCKET`] and started as its own job as soon
/// as its upload is done, with the old workflow's retry, then polled to its end.
pub async fn run_per_upload(
    sdk: &SdkConfig,
    functions: &LocalFunctions,
    admin: &DoubleAdmin,
    settings: &BenchSettings,
    run: &str,
) -> Result<HalfResult, BoxError> {
    ensure_bucket(sdk, LEGACY_BUCKET).await?;
    let target = Arc::new(LegacyTarget::new(sdk, functions)?);
    let stats_before = admin.stats().await?;
    let retry = StartRetry::old_workflow(settings.scale);
    let poll = PollSchedule::old_poller(settings.scale);
    let began = Instant::now();
    let deadline: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let run: Arc<str> = Arc::from(run);
    let progress: Arc<std::sync::Mutex<LegacyProgress>> = Arc::default();
    let trackers: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<FileOutcome>>>> = Arc::default();

    let files: Vec<BenchFile> = Workload::ALL
        .into_iter()
        .flat_map(|w| files_of(settings, &run, w, Workload::legacy_key))
        .collect();
    let s3 = aws_sdk_s3::Client::new(sdk);
    let upload = move |file: BenchFile| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket(LEGACY_BUCKET)
                .key(&file.key)
                .body(file.body.clone().into())
                .send()
                .await?;
            Ok(file)
        }
    };
    let after_upload = {
        let (target, run, progress, trackers, deadline) = (
            Arc::clone(&target),
            Arc::clone(&run),
            Arc::clone(&progress),
            Arc::clone(&trackers),
            Arc::clone(&deadline),
        );
        let (retry, poll) = (retry.clone(), poll.clone());
        move |file: BenchFile| {
            let tracker = tokio::spawn(legacy_file(
                Arc::clone(&target),
                Arc::clone(&run),
                file,
                retry.clone(),
                poll.clone(),
                Arc::clone(&deadline),
                Arc::clone(&progress),
            ));
            if let Ok(mut trackers) = trackers.lock() {
                trackers.push(tracker);
            }
        }
    };
    let stop_progress = {
        let progress = Arc::clone(&progress);
        progress_printer(Duration::from_secs(15), move || {
            let Ok(p) = progress.lock() else {
                return String::new();
            };
            let row = |w: Workload| {
                let n = |m: &BTreeMap<Workload, usize>| m.get(&w).copied().unwrap_or(0);
                format!(
                    "{} started, {} START_FAILED, {} ended",
                    n(&p.started),
                    n(&p.start_failed),
                    n(&p.ended)
                )
            };
            format!(
                "  [per upload, {:>4.0} s] FHIR: {}; lone DICOM: {}",
                began.elapsed().as_secs_f64(),
                row(Workload::Fhir),
                row(Workload::Lone)
            )
        })
    };
    let spans = upload_all(settings, files, upload, after_upload).await?;
    let deadline = *deadline.get_or_init(|| Instant::now() + settings.deadline);
    eprintln!(
        "  [per upload, {:>4.0} s] every file uploaded",
        began.elapsed().as_secs_f64()
    );
    let handles = std::mem::take(&mut *trackers.lock().map_err(|_| "tracker list poisoned")?);
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await?);
    }
    drop(stop_progress);
    let stats = StatsDelta::between(&stats_before, &admin.stats().await?);

    let mut rows = BTreeMap::new();
    for workload in Workload::ALL {
        let of: Vec<&FileOutcome> = outcomes.iter().filter(|o| o.workload == workload).collect();
        let mut statuses = BTreeMap::new();
        for outcome in &of {
            *statuses.entry(outcome.status.clone()).or_insert(0) += 1;
        }
        let span = spans.get(&workload).copied();
        let first = span.map_or(began, |s| s.first);
        let result = if workload == Workload::Study {
            RowResult {
                jobs_started: Some(0),
                start_failed: StartFailures::NeverImported,
                drain: Drain::Never,
                statuses,
                uploads_took: span.map(|s| s.took()),
            }
        } else {
            let ended: Vec<Instant> = of.iter().filter_map(|o| o.ended_at).collect();
            let drain = if ended.len() == of.len() {
                Drain::Done(
                    ended
                        .iter()
                        .max()
                        .map_or(Duration::ZERO, |last| last.duration_since(first)),
                )
            } else {
                Drain::Unfinished {
                    waited: deadline.duration_since(first),
                    terminal: ended.len(),
                }
            };
            RowResult {
                jobs_started: Some(of.iter().filter(|o| o.started).count() as u64),
                start_failed: StartFailures::Count(
                    of.iter()
                        .filter(|o| o.status == JobStatus::StartFailed.as_str())
                        .count() as u64,
                ),
                drain,
                statuses,
                uploads_took: span.map(|s| s.took()),
            }
        };
        rows.insert(workload, result);
    }
    Ok(HalfResult { rows, stats })
}

// ----------------------------------------------------------------------------------------------
// The new design: batches through the real pipeline

/// What the batches half learns of one upload from its records.
#[derive(Debug, Clone)]
struct RecordOutcome {
    status: JobStatus,
    /// When the record reached its terminal status (its history; else its last update).
    terminal_at: OffsetDateTime,
    /// The batch the upload joined (its record holds the service job).
    batch_id: Option<JobId>,
    /// The service job, when the upload record itself names it.
    service_job_id: Option<String>,
}

fn record_outcome(records: &[Job]) -> Option<RecordOutcome> {
    let record = records.last()?;
    if !records.iter().all(|r| r.status.is_terminal()) {
        return None;
    }
    let terminal_at = record
        .history
        .get(&record.status)
        .copied()
        .unwrap_or(record.updated_at)
        .datetime();
    Some(RecordOutcome {
        status: record.status,
        terminal_at,
        batch_id: record.batch_id().cloned(),
        service_job_id: records.iter().rev().find_map(|r| r.service_job_id.clone()),
    })
}

/// Reads, for each pending key in order, its records, until one is not terminal yet (a batch's
/// uploads end together and batches end roughly in upload order, so a round costs about one
/// read per workload while nothing changes). Chunks of `CHUNK` reads run at once.
async fn sweep(
    pipeline: &Arc<LocalPipeline>,
    pending: &mut std::collections::VecDeque<String>,
    done: &mut BTreeMap<String, RecordOutcome>,
) -> Result<(), BoxError> {
    const CHUNK: usize = 16;
    while !pending.is_empty() {
        let chunk: Vec<String> = pending.drain(..CHUNK.min(pending.len())).collect();
        let mut reads = JoinSet::new();
        for (i, key) in chunk.iter().enumerate() {
            let (pipeline, key) = (Arc::clone(pipeline), key.clone());
            reads.spawn(async move { (i, pipeline.records(&key).await) });
        }
        let mut outcomes = vec![None; chunk.len()];
        while let Some(read) = reads.join_next().await {
            let (i, records) = read?;
            outcomes[i] = record_outcome(&records?);
        }
        let mut unfinished = Vec::new();
        for (key, outcome) in chunk.into_iter().zip(outcomes) {
            match outcome {
                Some(outcome) => {
                    done.insert(key, outcome);
                }
                None => unfinished.push(key),
            }
        }
        let stop = !unfinished.is_empty();
        for key in unfinished.into_iter().rev() {
            pending.push_front(key);
        }
        if stop {
            break;
        }
    }
    Ok(())
}

/// The new design: the files uploaded to the ingest bucket (`fhir/bench-<run>/…`,
/// `dicom/bench-study-<run>/…` without a marker, lone files straight under `dicom/`), then the
/// upload records read until each is terminal or the deadline passes.
pub async fn run_batches(
    pipeline: Arc<LocalPipeline>,
    admin: &DoubleAdmin,
    settings: &BenchSettings,
    run: &str,
) -> Result<HalfResult, BoxError> {
    let stats_before = admin.stats().await?;
    let began = Instant::now();
    let files: Vec<BenchFile> = Workload::ALL
        .into_iter()
        .flat_map(|w| files_of(settings, run, w, Workload::pipeline_key))
        .collect();
    let keys: BTreeMap<Workload, Vec<String>> = Workload::ALL
        .into_iter()
        .map(|w| {
            let keys = files
                .iter()
                .filter(|f| f.workload == w)
                .map(|f| f.key.clone())
                .collect();
            (w, keys)
        })
        .collect();
    let upload = {
        let pipeline = Arc::clone(&pipeline);
        move |file: BenchFile| {
            let pipeline = Arc::clone(&pipeline);
            async move {
                pipeline.upload(&file.key, &file.body).await?;
                Ok(file)
            }
        }
    };
    let spans = upload_all(settings, files, upload, |_| {}).await?;
    let deadline = Instant::now() + settings.deadline;
    eprintln!(
        "  [batches, {:>4.0} s] every file uploaded; waiting for the upload records to turn terminal",
        began.elapsed().as_secs_f64()
    );

    let mut pending: BTreeMap<Workload, std::collections::VecDeque<String>> = keys
        .iter()
        .map(|(w, keys)| (*w, keys.iter().cloned().collect()))
        .collect();
    let mut done: BTreeMap<Workload, BTreeMap<String, RecordOutcome>> = BTreeMap::new();
    let mut last_report = Instant::now();
    loop {
        for workload in Workload::ALL {
            let queue = pending.entry(workload).or_default();
            sweep(&pipeline, queue, done.entry(workload).or_default()).await?;
        }
        let remaining: usize = pending.values().map(|p| p.len()).sum();
        if remaining == 0 || Instant::now() >= deadline {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let row = |w: Workload| {
                format!(
                    "{}/{}",
                    done.get(&w).map_or(0, BTreeMap::len),
                    keys.get(&w).map_or(0, Vec::len)
                )
            };
            eprintln!(
                "  [batches, {:>4.0} s] terminal upload records: FHIR {}, study {}, lone {}",
                began.elapsed().as_secs_f64(),
                row(Workload::Fhir),
                row(Workload::Study),
                row(Workload::Lone)
            );
        }
        // The drain is read from the records' own history, so a slow sweep costs no accuracy,
        // and moto (tens of requests a second under the pipeline's load) is spared.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let stats = StatsDelta::between(&stats_before, &admin.stats().await?);

    // Jobs per row: the double counts HealthLake's exactly, but both DICOM rows' jobs together;
    // a DICOM row's own are its batches that got a service job (read from the batch records),
    // or the jobs its upload records name.
    let mut jobs_by_records: BTreeMap<Workload, u64> = BTreeMap::new();
    for workload in Workload::ALL {
        let outcomes = done.get(&workload);
        let batches: BTreeSet<JobId> = outcomes
            .into_iter()
            .flat_map(|d| d.values().filter_map(|o| o.batch_id.clone()))
            .collect();
        let mut jobs: BTreeSet<String> = outcomes
            .into_iter()
            .flat_map(|d| d.values().filter_map(|o| o.service_job_id.clone()))
            .collect();
        for batch in &batches {
            if let Some(job) = pipeline
                .store
                .get(batch)
                .await?
                .and_then(|b| b.service_job_id)
            {
                jobs.insert(job);
            }
        }
        jobs_by_records.insert(workload, jobs.len() as u64);
    }
    let imaging_by_records = jobs_by_records[&Workload::Study] + jobs_by_records[&Workload::Lone];
    if imaging_by_records != stats.imaging_jobs_created {
        eprintln!(
            "  note: the records name {imaging_by_records} HealthImaging jobs, the double created {}",
            stats.imaging_jobs_created
        );
    }
    let imaging_named = imaging_by_records > 0;
    let mut rows = BTreeMap::new();
    for workload in Workload::ALL {
        let total = keys.get(&workload).map_or(0, Vec::len);
        let finished = done.remove(&workload).unwrap_or_default();
        let mut statuses = BTreeMap::new();
        for outcome in finished.values() {
            *statuses
                .entry(outcome.status.as_str().to_owned())
                .or_insert(0) += 1;
        }
        let not_terminal = total - finished.len();
        if not_terminal > 0 {
            statuses.insert("not terminal".to_owned(), not_terminal);
        }
        let span = spans.get(&workload).copied();
        let (first_wall, first_instant) = span.map_or((OffsetDateTime::now_utc(), began), |s| {
            (s.first_wall, s.first)
        });
        let drain = if not_terminal == 0 {
            let last = finished
                .values()
                .map(|o| o.terminal_at)
                .max()
                .unwrap_or(first_wall);
            Drain::Done(Duration::try_from(last - first_wall).unwrap_or(Duration::ZERO))
        } else {
            Drain::Unfinished {
                waited: Instant::now().duration_since(first_instant),
                terminal: finished.len(),
            }
        };
        let jobs_started = match workload.service() {
            Service::HealthLake => Some(stats.fhir_jobs_created),
            Service::HealthImaging if imaging_named => Some(jobs_by_records[&workload]),
            Service::HealthImaging => Some(stats.imaging_jobs_created),
        };
        rows.insert(
            workload,
            RowResult {
                jobs_started,
                start_failed: StartFailures::Count(
                    finished
                        .values()
                        .filter(|o| o.status == JobStatus::StartFailed)
                        .count() as u64,
                ),
                drain,
                statuses,
                uploads_took: span.map(|s| s.took()),
            },
        );
    }
    Ok(HalfResult { rows, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<BenchSettings, BoxError> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        BenchSettings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_scale_is_required_and_bounded_and_counts_default_to_the_issue() {
        assert!(settings(&[]).is_err(), "no scale, no bench");
        assert!(settings(&[("BENCH_TIME_SCALE", "0")]).is_err());
        assert!(settings(&[("BENCH_TIME_SCALE", "2")]).is_err());
        assert!(settings(&[("BENCH_TIME_SCALE", "x")]).is_err());
        let s = settings(&[("BENCH_TIME_SCALE", "0.1")]).unwrap();
        assert_eq!(
            (
                s.fhir_files,
                s.study_files,
                s.lone_files,
                s.upload_concurrency
            ),
            (1000, 1000, 100, 32)
        );
        assert!(s.halves.per_upload && s.halves.batches);
        let only = settings(&[("BENCH_TIME_SCALE", "1"), ("BENCH_HALVES", "batches")]).unwrap();
        assert!(!only.halves.per_upload && only.halves.batches);
        assert!(settings(&[("BENCH_TIME_SCALE", "1"), ("BENCH_HALVES", "both")]).is_err());
    }

    #[test]
    fn upload_slots_share_the_concurrency() {
        let s = settings(&[("BENCH_TIME_SCALE", "0.1")]).unwrap();
        let total: usize = Workload::ALL.into_iter().map(|w| s.upload_slots(w)).sum();
        assert!(total <= 32, "{total}");
        assert_eq!(s.upload_slots(Workload::Lone), 4);
        assert_eq!(s.upload_slots(Workload::Fhir), 14);
    }

    #[test]
    fn the_old_start_retry_takes_about_six_minutes_and_scales() {
        let retry = StartRetry::old_workflow(1.0);
        assert_eq!(retry.ceiling(0), Duration::from_secs(2));
        assert_eq!(retry.ceiling(1), Duration::from_secs(3));
        assert_eq!(retry.ceiling(29), Duration::from_secs(30), "capped");
        let expected = retry.expected_budget().as_secs_f64();
        assert!((350.0..400.0).contains(&expected), "{expected}");
        assert!(retry.delay(5, 0.999) <= retry.ceiling(5));
        assert_eq!(retry.delay(5, 0.0), Duration::ZERO);
        let fast = StartRetry::old_workflow(0.1);
        assert_eq!(fast.ceiling(29), Duration::from_secs(3));
        assert_eq!(fast.max_retries, 30, "counts do not scale");
    }

    #[test]
    fn the_old_poll_schedule_grows_to_its_cap() {
        let poll = PollSchedule::old_poller(1.0);
        let waits: Vec<u64> = (0..5).map(|k| poll.wait(k).as_secs()).collect();
        assert_eq!(waits, vec![15, 60, 240, 300, 300]);
        assert_eq!(
            PollSchedule::old_poller(0.1).wait(0),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn keys_tokens_and_bodies_are_what_each_half_needs() {
        let run = "1764480000";
        assert_eq!(
            Workload::Fhir.pipeline_key(run, 0),
            "fhir/bench-1764480000/patients-0001.ndjson"
        );
        assert_eq!(
            Workload::Study.pipeline_key(run, 999),
            "dicom/bench-study-1764480000/ct-1000.dcm"
        );
        let lone = Workload::Lone.pipeline_key(run, 9);
        assert_eq!(lone, "dicom/bench-1764480000-xray-0010.dcm");
        assert_eq!(lone.matches('/').count(), 1, "straight under dicom/");
        for w in Workload::ALL {
            assert!(!w.legacy_key(run, 0).starts_with("fhir/"));
            assert!(!w.legacy_key(run, 0).starts_with("dicom/"));
            let token = w.legacy_client_token(run, 0);
            assert!(token.len() <= 64);
            assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
            assert!(w.body(run, 0).len() < 1024, "a few hundred bytes");
        }
        let ndjson = String::from_utf8(Workload::Fhir.body(run, 3)).unwrap();
        for line in ndjson.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["resourceType"], "Patient");
        }
        for w in [Workload::Study, Workload::Lone] {
            assert_eq!(&w.body(run, 0)[128..132], b"DICM");
        }
        assert_ne!(Workload::Lone.body(run, 0), Workload::Lone.body(run, 1));
    }

    #[test]
    fn the_ideal_is_the_doubles_packed_time() {
        let config = DoubleConfig::default();
        let fhir = ideal(&config, Workload::Fhir, 1000, 0);
        assert_eq!(
            fhir,
            config.healthlake.submit_delay + config.healthlake.run_time(1000)
        );
        assert!(ideal(&config, Workload::Lone, 100, 0) > Duration::ZERO);
    }

    #[test]
    fn a_row_meets_the_target_only_drained_within_one_and_a_half_ideals_with_no_start_failed() {
        let ideal = Duration::from_secs(100);
        let row = |drain, failed| RowResult {
            jobs_started: Some(1),
            start_failed: failed,
            drain,
            statuses: BTreeMap::new(),
            uploads_took: None,
        };
        let ok = StartFailures::Count(0);
        assert!(row(Drain::Done(Duration::from_secs(150)), ok).meets_target(ideal));
        assert!(!row(Drain::Done(Duration::from_secs(151)), ok).meets_target(ideal));
        assert!(!row(
            Drain::Done(Duration::from_secs(10)),
            StartFailures::Count(1)
        )
        .meets_target(ideal));
        let unfinished = Drain::Unfinished {
            waited: Duration::from_secs(10),
            terminal: 0,
        };
        assert!(!row(unfinished, ok).meets_target(ideal));
        assert!(!row(Drain::Never, StartFailures::NeverImported).meets_target(ideal));
    }

    #[test]
    fn the_table_shows_both_designs_side_by_side() {
        let rows = vec![
            Row {
                workload: Workload::Fhir,
                files: 1000,
                ideal: Duration::from_secs(60),
                per_upload: Some(RowResult {
                    jobs_started: Some(35),
                    start_failed: StartFailures::Count(965),
                    drain: Drain::Done(Duration::from_secs(300)),
                    statuses: BTreeMap::from([("COMPLETED".to_owned(), 35)]),
                    uploads_took: Some(Duration::from_secs(12)),
                }),
                batches: Some(RowResult {
                    jobs_started: Some(1),
                    start_failed: StartFailures::Count(0),
                    drain: Drain::Unfinished {
                        waited: Duration::from_secs(600),
                        terminal: 0,
                    },
                    statuses: BTreeMap::new(),
                    uploads_took: None,
                }),
            },
            Row {
                workload: Workload::Study,
                files: 1000,
                ideal: Duration::from_secs(60),
                per_upload: Some(RowResult {
                    jobs_started: Some(0),
                    start_failed: StartFailures::NeverImported,
                    drain: Drain::Never,
                    statuses: BTreeMap::new(),
                    uploads_took: None,
                }),
                batches: None,
            },
        ];
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].contains("today: one job per upload") && lines[0].contains("batches"));
        assert!(lines[3].starts_with("FHIR: 1,000 NDJSON files"), "{table}");
        assert!(
            lines[3].contains("965") && lines[3].contains("5.00×"),
            "{table}"
        );
        assert!(lines[3].contains(">600.0 s (0 done)") && lines[3].contains(">10.00×"));
        assert!(lines[4].contains("never imported") && lines[4].contains("not run"));
        let statuses = render_statuses(&rows);
        assert!(
            statuses.contains("uploads took 12.0 s, drained 288.0 s after the last; COMPLETED 35"),
            "{statuses}"
        );
        // Every line's first separator is in the same column.
        let column = |l: &str| l.find('|');
        assert!(lines
            .iter()
            .all(|l| column(l) == column(lines[0]) || l.contains('+')));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
