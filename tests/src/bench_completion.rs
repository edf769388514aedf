//! `make bench`'s event-driven completion figures (issue 14, item 5): what following one import
//! job to its end costs in each tracking mode, measured on the local stack with real jobs through
//! the whole pipeline (ingest bucket → SQS → starter → batch → tracking execution → job-events /
//! poller), printed side by side.
//!
//! - **State transitions per job** for jobs of 5 minutes, 1 hour and 6 hours: the `*StateEntered`
//!   events of the job's execution history (its batch id names the execution), from the
//!   execution's start to its end, and separately from the moment the job had started (the first
//!   `AwaitEnd` or `WaitBeforePoll`) to the end: the part that must not grow with the job's
//!   duration in events mode (target: at most 8 whatever the duration).
//! - **Completion latency**: from the service's end (the double's `endedAt`, read with
//!   GetDICOMImportJob) to the batch record's terminal status (its `history` timestamp), median
//!   over N jobs (target ≤ 5 s in events mode); also when the workflow learnt of the end (its
//!   `Finish` state entered) and when the outcome was recorded (the execution's end).
//! - **A dropped event**: jobs run while the double drops every job event (`event_drop_share` 1
//!   through its admin API, restored afterwards): how long after the end their record turned
//!   terminal (target ≤ `COMPLETION_BACKSTOP_SECONDS`) and their transitions (at most the same 8).
//!
//! One process measures one stack (`measure`: `BENCH_MODE` events | polling, results as JSON in
//! `BENCH_OUT`); `scripts/bench-completion.sh` runs an events stack and a polling stack side by
//! side and then `report`s both in one table.
//!
//! # Time scale
//! A case's duration is AWS time multiplied by `BENCH_TIME_SCALE`. The double cannot change job
//! timings at runtime (its admin API changes faults only), so a job's length is its file count:
//! the double runs a job for `per-file time × files` (`DOUBLE_IMAGING_RUN_MS` 0), the per-file
//! time stands for 5 AWS minutes, and a case uploads 1, 12 or 72 DICOM files into its own folder
//! `dicom/<tag>-<case>/IM1..`, so each case is one batch and one job of exactly that length.
//! The events stack runs at 1/180 (COMPLETION_BACKSTOP_SECONDS 5 is then the template's 900 s:
//! a 6-hour job sees AWS's 24 re-checks); the polling stack at 1/15, the only common scale at
//! which the template's poll schedule (15 s × 4 up to 300 s) stays in whole seconds, so it
//! measures the 5-minute jobs and the longer ones are computed from the schedule (the poller's
//! `schedule.rs`, mirrored in [`PollSchedule`]). Not scaled: the local stack's own latency
//! (uploads, SQS, Lambda, moto) and the batch's `BATCH_QUIET_SECONDS` before the job starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use healthimport::domain::job::{JobId, Timestamp};
use healthimport::ports::store::JobStore;
use serde::{Deserialize, Serialize};

use crate::bench_env::Lookup;
use crate::double::{DoubleConfig, Faults};
use crate::double_admin::DoubleAdmin;
use crate::local_stack::template_path;
use crate::pipeline::LocalPipeline;
use crate::samples::dicom_p10;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The issue's targets for events mode.
pub const TARGET_TRANSITIONS: usize = 8;
pub const TARGET_LATENCY_SECONDS: f64 = 5.0;

/// AWS seconds one uploaded file stands for: a case of `n × UNIT` seconds uploads `n` files.
pub const UNIT_SECONDS: u64 = 300;

/// Uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 8;

// ----------------------------------------------------------------------------------------------
// Settings and cases

/// The stack's `TRACKING_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Events,
    Polling,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Events => "events",
            Mode::Polling => "polling",
        }
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "events" => Ok(Mode::Events),
            "polling" => Ok(Mode::Polling),
            other => Err(format!("{other:?}: expected events or polling")),
        }
    }
}

/// The job lengths the issue asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobLength {
    FiveMinutes,
    OneHour,
    SixHours,
}

impl JobLength {
    pub const ALL: [JobLength; 3] = [
        JobLength::FiveMinutes,
        JobLength::OneHour,
        JobLength::SixHours,
    ];

    pub fn aws_seconds(self) -> u64 {
        match self {
            JobLength::FiveMinutes => 300,
            JobLength::OneHour => 3_600,
            JobLength::SixHours => 21_600,
        }
    }

    /// Files its folder gets: one per [`UNIT_SECONDS`].
    pub fn files(self) -> usize {
        (self.aws_seconds() / UNIT_SECONDS) as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            JobLength::FiveMinutes => "5 min",
            JobLength::OneHour => "1 h",
            JobLength::SixHours => "6 h",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            JobLength::FiveMinutes => "5min",
            JobLength::OneHour => "1h",
            JobLength::SixHours => "6h",
        }
    }
}

/// One job to run: its own folder, so its own batch and its own service job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The folder's suffix, unique in the run.
    pub name: String,
    /// The row it belongs to (a dropped-event job: nominally 5 min, see `files`).
    pub length: JobLength,
    /// Files its folder gets, so its job runs `files × UNIT_SECONDS` AWS seconds.
    pub files: usize,
    /// Run while the double drops every job event.
    pub dropped_events: bool,
}

impl Case {
    pub fn aws_seconds(&self) -> u64 {
        self.files as u64 * UNIT_SECONDS
    }
}

/// The bench's knobs, from `BENCH_*` variables (`scripts/bench-completion.sh` sets them).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `BENCH_MODE`: the tracking mode the stack was started with (checked against its
    /// `TRACKING_MODE`).
    pub mode: Mode,
    /// `BENCH_TIME_SCALE` (required): local seconds per AWS second.
    pub scale: f64,
    /// `BENCH_LATENCY_JOBS` (10): "5 min" jobs run side by side; their median latency is the
    /// figure, and their transitions the 5-minute row.
    pub latency_jobs: usize,
    /// `BENCH_DROPPED_JOBS` (events 3, polling 0): jobs run while every event is dropped, of 1,
    /// 2, 3, 1, ... files (5, 10, 15 AWS minutes): at 1/180 they end 1.7, 3.3 and 5.0 s after
    /// they start, a third of the way, two thirds of the way and right at the first re-check
    /// (every COMPLETION_BACKSTOP_SECONDS = 5 s from the wait's start), so the phase of the
    /// re-check, and with it its worst case, is sampled.
    pub dropped_jobs: usize,
    /// Measure the 1 h and 6 h jobs too (events: always; polling: `BENCH_POLLING_LONG=1`, which
    /// takes 6 h × scale).
    pub long_jobs: bool,
    /// `BENCH_DEADLINE_SECONDS` (150): how long past its longest job's scaled duration a phase
    /// waits before it reports the rest as unfinished.
    pub margin: Duration,
    /// `BENCH_OUT`: where `measure` writes its JSON.
    pub out: PathBuf,
}

impl Settings {
    pub fn from_env() -> Result<Settings, BoxError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, BoxError> {
        let env = Lookup(lookup);
        let run_it = "run the bench through scripts/bench-completion.sh";
        let mode: Mode = env
            .get("BENCH_MODE")
            .ok_or_else(|| format!("BENCH_MODE is not set: {run_it}"))?
            .parse()
            .map_err(|e| format!("BENCH_MODE={e}"))?;
        let scale = env.time_scale(run_it)?;
        let out = env
            .get("BENCH_OUT")
            .ok_or_else(|| format!("BENCH_OUT is not set: {run_it}"))?;
        let default_dropped = match mode {
            Mode::Events => 3,
            Mode::Polling => 0,
        };
        Ok(Settings {
            mode,
            scale,
            latency_jobs: env.count("BENCH_LATENCY_JOBS", 10)?.max(1),
            dropped_jobs: env.count("BENCH_DROPPED_JOBS", default_dropped)?,
            long_jobs: mode == Mode::Events
                || matches!(env.get("BENCH_POLLING_LONG").as_deref(), Some("1" | "true")),
            margin: Duration::from_secs(env.count("BENCH_DEADLINE_SECONDS", 150)? as u64),
            out: PathBuf::from(out),
        })
    }

    /// The cases of the dropped-event phase and of the normal phase, longest first.
    pub fn plan(&self) -> (Vec<Case>, Vec<Case>) {
        let dropped = (1..=self.dropped_jobs)
            .map(|n| Case {
                name: format!("drop-{n}"),
                length: JobLength::FiveMinutes,
                files: (n - 1) % 3 + 1,
                dropped_events: true,
            })
            .collect();
        let mut normal = Vec::new();
        if self.long_jobs {
            for length in [JobLength::SixHours, JobLength::OneHour] {
                normal.push(Case {
                    name: length.slug().to_owned(),
                    length,
                    files: length.files(),
                    dropped_events: false,
                });
            }
        }
        for n in 1..=self.latency_jobs {
            normal.push(Case {
                name: format!("5min-{n:02}"),
                length: JobLength::FiveMinutes,
                files: JobLength::FiveMinutes.files(),
                dropped_events: false,
            });
        }
        (dropped, normal)
    }

    /// A case's duration on this stack.
    pub fn scaled(&self, length: JobLength) -> Duration {
        Duration::from_secs(length.aws_seconds()).mul_f64(self.scale)
    }
}

// ----------------------------------------------------------------------------------------------
// What one job showed

/// A state the execution entered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateVisit {
    pub name: String,
    /// The history event's type (`TaskStateEntered`, `ChoiceStateEntered`, ...).
    pub kind: String,
    /// Epoch seconds.
    pub at: f64,
}

/// One case's job, as the records, the double and the execution history tell it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub case: Case,
    pub folder: String,
    pub files: usize,
    /// The batch (and execution) of the folder's first file; `None`: it never joined one.
    pub batch_id: Option<String>,
    /// Distinct batches the folder's files joined: 1 when the case was one job.
    pub batches: usize,
    pub service_job_id: Option<String>,
    /// The double's `submittedAt` and `endedAt`, epoch seconds.
    pub job_submitted_at: Option<f64>,
    pub job_ended_at: Option<f64>,
    /// The batch record's status and when it first reached it (its `history`), epoch seconds.
    pub record_status: String,
    pub record_terminal_at: Option<f64>,
    /// `RUNNING` when the phase's deadline passed first; `NONE` without an execution.
    pub execution_status: String,
    pub execution_stopped_at: Option<f64>,
    pub states: Vec<StateVisit>,
    /// Task attempts (`TaskScheduled` / `LambdaFunctionScheduled` events): more than the Task
    /// states entered means retries, which Step Functions bills as transitions too.
    pub task_attempts: usize,
}

impl JobResult {
    /// State transitions of the whole execution.
    pub fn transitions(&self) -> usize {
        self.states.len()
    }

    /// Transitions from the first `AwaitEnd` / `WaitBeforePoll` (the job had started) to the end.
    pub fn after_start(&self) -> Option<usize> {
        self.states
            .iter()
            .position(|s| s.name == "AwaitEnd" || s.name == "WaitBeforePoll")
            .map(|first| self.states.len() - first)
    }

    pub fn polls(&self) -> usize {
        self.states.iter().filter(|s| s.name == "Poll").count()
    }

    pub fn retries(&self) -> usize {
        let tasks = self
            .states
            .iter()
            .filter(|s| s.kind == "TaskStateEntered")
            .count();
        self.task_attempts.saturating_sub(tasks)
    }

    /// How long the double ran the job (submitted → ended).
    pub fn ran(&self) -> Option<f64> {
        Some(self.job_ended_at? - self.job_submitted_at?)
    }

    /// The service's end → the record's terminal status.
    pub fn record_latency(&self) -> Option<f64> {
        Some(self.record_terminal_at? - self.job_ended_at?)
    }

    /// The service's end → the workflow's `Finish` (it learnt of the end).
    pub fn workflow_latency(&self) -> Option<f64> {
        let finish = self.states.iter().find(|s| s.name == "Finish")?;
        Some(finish.at - self.job_ended_at?)
    }

    /// The service's end → the execution's end (outcome, per-upload results, Finished event).
    pub fn outcome_latency(&self) -> Option<f64> {
        Some(self.execution_stopped_at? - self.job_ended_at?)
    }

    /// Ran to a recorded, successful end as one job.
    pub fn finished_well(&self) -> bool {
        self.execution_status == "SUCCEEDED"
            && self.record_status == "COMPLETED"
            && self.batches == 1
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} s"));
        let path: Vec<&str> = self.states.iter().map(|s| s.name.as_str()).collect();
        format!(
            "{} ({} file(s), batch {}): ran {}, record {} {} after the end, Finish {} after, \
             execution {} {} after; {} transitions ({} after start, {} polls, {} retries): {}",
            self.folder,
            self.files,
            self.batch_id.as_deref().unwrap_or("-"),
            opt(self.ran()),
            self.record_status,
            opt(self.record_latency()),
            opt(self.workflow_latency()),
            self.execution_status,
            opt(self.outcome_latency()),
            self.transitions(),
            self.after_start()
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            self.polls(),
            self.retries(),
            compress_path(&path),
        )
    }
}

/// `Start, IsJobStarted, WaitBeforeStart, Start, ...` with repeated runs of the same cycle folded.
fn compress_path(path: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < path.len() {
        // The shortest cycle (up to 3 states) starting here that repeats, and how often.
        let mut folded = false;
        for len in 1..=3 {
            let cycle = &path[i..(i + len).min(path.len())];
            let mut reps = 1;
            while i + (reps + 1) * len <= path.len()
                && &path[i + reps * len..i + (reps + 1) * len] == cycle
            {
                reps += 1;
            }
            if reps >= 2 {
                out.push(format!("({})×{reps}", cycle.join(" → ")));
                i += reps * len;
                folded = true;
                break;
            }
        }
        if !folded {
            out.push(path[i].to_owned());
            i += 1;
        }
    }
    out.join(" → ")
}

/// One stack's measurements, as `measure` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeRun {
    pub mode: Mode,
    pub scale: f64,
    pub run: String,
    /// The double's HealthImaging timings, milliseconds.
    pub submit_delay_ms: f64,
    pub run_overhead_ms: f64,
    pub per_file_ms: f64,
    /// The functions' settings that matter here, as the stack handed them over.
    pub settings: BTreeMap<String, String>,
    pub wall_seconds: f64,
    pub jobs: Vec<JobResult>,
}

impl ModeRun {
    pub fn setting(&self, name: &str) -> &str {
        self.settings.get(name).map_or("unset", String::as_str)
    }

    fn jobs_where(&self, keep: impl Fn(&JobResult) -> bool) -> Vec<&JobResult> {
        self.jobs.iter().filter(|j| keep(j)).collect()
    }

    pub fn of_length(&self, length: JobLength) -> Vec<&JobResult> {
        self.jobs_where(|j| j.case.length == length && !j.case.dropped_events)
    }

    pub fn dropped(&self) -> Vec<&JobResult> {
        self.jobs_where(|j| j.case.dropped_events)
    }
}

// ----------------------------------------------------------------------------------------------
// Measuring

/// Runs the cases on the stack this process was started in and returns what they showed.
pub async fn measure(settings: &Settings) -> Result<ModeRun, BoxError> {
    let began = Instant::now();
    // The double reads the same DOUBLE_* variables (scripts/local-stack.sh passes them through).
    let model = DoubleConfig::from_env()?;
    let unit = Duration::from_secs(UNIT_SECONDS).mul_f64(settings.scale);
    let per_file = model.imaging.per_file;
    if (per_file.as_secs_f64() - unit.as_secs_f64()).abs() > unit.as_secs_f64() * 0.01 {
        return Err(format!(
            "DOUBLE_IMAGING_PER_FILE_MS is {:.3} ms where BENCH_TIME_SCALE={} wants {:.3} ms \
             ({UNIT_SECONDS} s a file): run the bench through scripts/bench-completion.sh",
            per_file.as_secs_f64() * 1000.0,
            settings.scale,
            unit.as_secs_f64() * 1000.0
        )
        .into());
    }
    let pipeline = LocalPipeline::start().await?;
    let tracking = pipeline
        .functions
        .setting("TRACKING_MODE")
        .unwrap_or_else(|_| "events".to_owned());
    if tracking != settings.mode.as_str() {
        return Err(format!(
            "BENCH_MODE={} but the stack's functions run with TRACKING_MODE={tracking}",
            settings.mode.as_str()
        )
        .into());
    }
    let admin = DoubleAdmin::from_env();
    let datastore = pipeline.functions.setting("IMAGING_DATASTORE_ID")?;
    let run = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let mut recorded = BTreeMap::new();
    for name in [
        "TRACKING_MODE",
        "COMPLETION_BACKSTOP_SECONDS",
        "POLL_INITIAL_WAIT_SECONDS",
        "POLL_BACKOFF_RATE",
        "POLL_MAX_WAIT_SECONDS",
        "BATCH_QUIET_SECONDS",
        "BATCH_MAX_WAIT_SECONDS",
        "IMAGING_START_RATE",
        "START_WAIT_SECONDS",
    ] {
        if let Ok(value) = pipeline.functions.setting(name) {
            recorded.insert(name.to_owned(), value);
        }
    }
    eprintln!(
        "{} mode, time scale {}: a file runs {:.3} s (+ {:.3} s per job, submit {:.3} s); \
         \"5 min\" = {:.2} s, \"1 h\" = {:.2} s, \"6 h\" = {:.2} s",
        settings.mode.as_str(),
        settings.scale,
        per_file.as_secs_f64(),
        model.imaging.run_overhead.as_secs_f64(),
        model.imaging.submit_delay.as_secs_f64(),
        settings.scaled(JobLength::FiveMinutes).as_secs_f64(),
        settings.scaled(JobLength::OneHour).as_secs_f64(),
        settings.scaled(JobLength::SixHours).as_secs_f64(),
    );

    let mode_digit = match settings.mode {
        Mode::Events => 1,
        Mode::Polling => 2,
    };
    let context = PhaseContext {
        pipeline: &pipeline,
        datastore: &datastore,
        tag: format!("bc-{run}-{}", settings.mode.as_str()),
        study_base: run.parse::<u64>().unwrap_or(1) * 10_000 + mode_digit * 1_000,
        margin: settings.margin,
        scale: settings.scale,
    };
    let (dropped, normal) = settings.plan();
    let mut jobs = Vec::new();
    if !dropped.is_empty() {
        let before = admin.faults().await?;
        eprintln!(
            "phase 1: {} job(s) while the double drops every job event (event_drop_share 1, was {})",
            dropped.len(),
            before.event_drop_share
        );
        admin
            .set_faults(&Faults {
                event_drop_share: 1.0,
                ..before.clone()
            })
            .await?;
        let outcome = run_phase(&context, &dropped, 0).await;
        // Put the faults back whatever happened, then report the phase's own error first.
        let restored = admin.set_faults(&before).await;
        jobs.extend(outcome?);
        restored?;
        eprintln!("phase 1 done; event faults restored");
    }
    eprintln!(
        "phase 2: {} job(s) side by side, events delivered",
        normal.len()
    );
    jobs.extend(run_phase(&context, &normal, dropped.len()).await?);
    for job in &jobs {
        println!("  {}", job.describe());
    }
    Ok(ModeRun {
        mode: settings.mode,
        scale: settings.scale,
        run,
        submit_delay_ms: model.imaging.submit_delay.as_secs_f64() * 1000.0,
        run_overhead_ms: model.imaging.run_overhead.as_secs_f64() * 1000.0,
        per_file_ms: per_file.as_secs_f64() * 1000.0,
        settings: recorded,
        wall_seconds: began.elapsed().as_secs_f64(),
        jobs,
    })
}

struct PhaseContext<'a> {
    pipeline: &'a LocalPipeline,
    datastore: &'a str,
    tag: String,
    study_base: u64,
    margin: Duration,
    scale: f64,
}

struct Pending<'a> {
    case: &'a Case,
    folder: String,
    keys: Vec<String>,
    batch: Option<JobId>,
}

/// Uploads every case's files, waits until each case's execution has ended (or the deadline
/// passes) and reads what each showed.
async fn run_phase(
    context: &PhaseContext<'_>,
    cases: &[Case],
    first_index: usize,
) -> Result<Vec<JobResult>, BoxError> {
    let began = Instant::now();
    let mut pending = Vec::new();
    let mut uploads = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let folder = format!("dicom/{}-{}", context.tag, case.name);
        let study = format!("2.25.{}", context.study_base + (first_index + i + 1) as u64);
        let keys: Vec<String> = (1..=case.files)
            .map(|n| format!("{folder}/IM{n}"))
            .collect();
        for (n, key) in keys.iter().enumerate() {
            uploads.push((key.clone(), dicom_p10(&study, n as u32 + 1)));
        }
        pending.push(Pending {
            case,
            folder,
            keys,
            batch: None,
        });
    }
    let pipeline = context.pipeline;
    stream::iter(uploads.iter())
        .map(|(key, body)| pipeline.upload(key, body))
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!(
        "  [{:>5.1} s] {} file(s) uploaded into {} folder(s)",
        began.elapsed().as_secs_f64(),
        uploads.len(),
        cases.len()
    );
    let longest = cases
        .iter()
        .map(|c| Duration::from_secs(c.aws_seconds()).mul_f64(context.scale))
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + longest + context.margin;
    let mut results = Vec::new();
    let mut last_report = Instant::now();
    while !pending.is_empty() {
        let mut waiting = Vec::new();
        for mut job in pending {
            if job.batch.is_none() {
                job.batch = pipeline
                    .records(&job.keys[0])
                    .await?
                    .iter()
                    .find_map(|r| r.batch_id().cloned());
            }
            let ended = match &job.batch {
                Some(batch) => matches!(
                    pipeline.execution_status(batch).await?.as_deref(),
                    Some(status) if status != "RUNNING"
                ),
                None => false,
            };
            if ended {
                results.push(collect(context, &job).await?);
            } else {
                waiting.push(job);
            }
        }
        pending = waiting;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "  [{:>5.1} s] deadline passed: {} job(s) reported as unfinished",
                began.elapsed().as_secs_f64(),
                pending.len()
            );
            for job in &pending {
                results.push(collect(context, job).await?);
            }
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let names: Vec<&str> = pending.iter().map(|p| p.case.name.as_str()).collect();
            eprintln!(
                "  [{:>5.1} s] {} done, waiting for {}",
                began.elapsed().as_secs_f64(),
                results.len(),
                names.join(", ")
            );
        }
        // Figures come from the records' and the history's own timestamps: how often this
        // loop looks changes none of them, so moto is spared.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("  [{:>5.1} s] phase done", began.elapsed().as_secs_f64());
    let order: BTreeMap<&str, usize> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    results.sort_by_key(|r| order.get(r.case.name.as_str()).copied());
    Ok(results)
}

fn epoch_seconds(at: Timestamp) -> f64 {
    at.datetime().unix_timestamp_nanos() as f64 / 1e9
}

/// Reads what one job showed: its records, the double's job and its execution's history.
async fn collect(context: &PhaseContext<'_>, job: &Pending<'_>) -> Result<JobResult, BoxError> {
    let pipeline = context.pipeline;
    let mut batches = BTreeSet::new();
    for key in &job.keys {
        for record in pipeline.records(key).await? {
            if let Some(batch) = record.batch_id() {
                batches.insert(batch.as_str().to_owned());
            }
        }
    }
    let mut result = JobResult {
        case: job.case.clone(),
        folder: job.folder.clone(),
        files: job.keys.len(),
        batch_id: job.batch.as_ref().map(|b| b.as_str().to_owned()),
        batches: batches.len(),
        service_job_id: None,
        job_submitted_at: None,
        job_ended_at: None,
        record_status: "NONE".to_owned(),
        record_terminal_at: None,
        execution_status: "NONE".to_owned(),
        execution_stopped_at: None,
        states: Vec::new(),
        task_attempts: 0,
    };
    let Some(batch) = &job.batch else {
        return Ok(result);
    };
    if let Some(record) = pipeline.store.get(batch).await? {
        result.record_status = record.status.as_str().to_owned();
        if record.status.is_terminal() {
            result.record_terminal_at = record
                .history
                .get(&record.status)
                .copied()
                .map(epoch_seconds);
        }
        result.service_job_id = record.service_job_id.clone();
    }
    if let Some(service_job_id) = &result.service_job_id {
        let described = aws_sdk_medicalimaging::Client::new(&pipeline.sdk)
            .get_dicom_import_job()
            .datastore_id(context.datastore)
            .job_id(service_job_id)
            .send()
            .await?;
        if let Some(properties) = described.job_properties() {
            result.job_submitted_at = properties.submitted_at().map(|t| t.as_secs_f64());
            result.job_ended_at = properties.ended_at().map(|t| t.as_secs_f64());
        }
    }
    let sfn = aws_sdk_sfn::Client::new(&pipeline.sdk);
    let arn = pipeline.functions.execution_arn(batch.as_str());
    match sfn.describe_execution().execution_arn(&arn).send().await {
        Ok(execution) => {
            result.execution_status = execution.status().as_str().to_owned();
            result.execution_stopped_at = execution.stop_date().map(|t| t.as_secs_f64());
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            return Ok(result);
        }
        Err(e) => return Err(e.into()),
    }
    let mut next_token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(&arn)
            .max_results(1000)
            .set_next_token(next_token.take())
            .send()
            .await?;
        for event in page.events() {
            let kind = event.r#type().as_str();
            if kind.ends_with("StateEntered") {
                result.states.push(StateVisit {
                    name: event
                        .state_entered_event_details()
                        .map(|d| d.name().to_owned())
                        .unwrap_or_default(),
                    kind: kind.to_owned(),
                    at: event.timestamp().as_secs_f64(),
                });
            } else if kind == "TaskScheduled" || kind == "LambdaFunctionScheduled" {
                result.task_attempts += 1;
            }
        }
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    Ok(result)
}

// ----------------------------------------------------------------------------------------------
// Polling, computed

/// The poller's backoff schedule, mirrored from `functions/poller/src/schedule.rs` (this crate
/// does not build the poller's library): waits `initial × rate^k` up to `cap`, a poll after each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    pub initial_wait_seconds: u64,
    pub backoff_rate: f64,
    pub max_wait_seconds: u64,
}

impl PollSchedule {
    pub fn wait_after(&self, polls: u32) -> u64 {
        let cap = self.max_wait_seconds as f64;
        let grown = self.initial_wait_seconds as f64 * self.backoff_rate.powi(polls.min(64) as i32);
        grown.min(cap).max(1.0) as u64
    }

    /// Polls until a poll sees a job of `duration` seconds ended, and how long after its end.
    pub fn follow(&self, duration: u64) -> (u32, u64) {
        let mut elapsed = 0;
        let mut polls = 0;
        loop {
            elapsed += self.wait_after(polls);
            polls += 1;
            if elapsed >= duration {
                return (polls, elapsed - duration);
            }
        }
    }

    /// Transitions after the start as this bench counts them: (WaitBeforePoll, Poll,
    /// IsJobFinished) per poll, then Finish, DidItStart, Done. (The poller's `tracking-cost`
    /// counts Start, IsJobStarted, the polls and Finish: the same number.)
    pub fn after_start(&self, duration: u64) -> usize {
        3 * self.follow(duration).0 as usize + 3
    }

    /// From `POLL_*` settings, when all three are there.
    pub fn from_settings(settings: &BTreeMap<String, String>) -> Option<PollSchedule> {
        Some(PollSchedule {
            initial_wait_seconds: settings.get("POLL_INITIAL_WAIT_SECONDS")?.parse().ok()?,
            backoff_rate: settings.get("POLL_BACKOFF_RATE")?.parse().ok()?,
            max_wait_seconds: settings.get("POLL_MAX_WAIT_SECONDS")?.parse().ok()?,
        })
    }
}

/// The template's defaults this bench compares against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateDefaults {
    pub poll: PollSchedule,
    pub backstop_seconds: u64,
}

impl TemplateDefaults {
    pub fn read() -> Result<TemplateDefaults, BoxError> {
        Self::from_path(&template_path())
    }

    pub fn from_path(path: &Path) -> Result<TemplateDefaults, BoxError> {
        let template: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
        let default = |name: &str| -> Result<f64, BoxError> {
            let value = &template["Parameters"][name]["Default"];
            value
                .as_f64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| {
                    format!("template.yaml: parameter {name} has no numeric Default").into()
                })
        };
        Ok(TemplateDefaults {
            poll: PollSchedule {
                initial_wait_seconds: default("PollInitialWaitSeconds")? as u64,
                backoff_rate: default("PollBackoffRate")?,
                max_wait_seconds: default("PollMaxWaitSeconds")? as u64,
            },
            backstop_seconds: default("CompletionBackstopSeconds")? as u64,
        })
    }
}

// ----------------------------------------------------------------------------------------------
// The table

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// `9`, or `9–12 (median 10)` when the jobs differ; `-` for none.
fn counts_text(values: &[usize]) -> String {
    let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) else {
        return "-".to_owned();
    };
    if min == max {
        return min.to_string();
    }
    let as_f64: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    format!(
        "{min}–{max} (median {})",
        median(&as_f64).map_or_else(String::new, |m| format!("{m:.0}"))
    )
}

fn seconds_text(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v.abs() < 10.0 => format!("{v:.2} s"),
        Some(v) => format!("{v:.1} s"),
    }
}

/// `1.23 s (0.90–2.10)`, or the one value.
fn spread_text(values: &[f64]) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let Some(mid) = median(&finite) else {
        return "-".to_owned();
    };
    if finite.len() == 1 {
        return seconds_text(Some(mid));
    }
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} ({min:.2}–{max:.2})", seconds_text(Some(mid)))
}

fn scale_text(scale: f64) -> String {
    let inverse = 1.0 / scale;
    if (inverse - inverse.round()).abs() < 1e-3 {
        format!("1/{}", inverse.round())
    } else {
        format!("{scale}")
    }
}

/// A target and whether it was met (`None`: not measured).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

impl Verdict {
    fn line(&self) -> String {
        let word = match self.met {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "NOT MEASURED",
        };
        format!("  {}: {} → {word}", self.target, self.measured)
    }
}

/// The targets, judged on the events stack's jobs.
pub fn verdicts(events: Option<&ModeRun>) -> Vec<Verdict> {
    let Some(run) = events else {
        return vec![Verdict {
            target: "events mode".to_owned(),
            measured: "no measurement".to_owned(),
            met: None,
        }];
    };
    let backstop: f64 = run
        .setting("COMPLETION_BACKSTOP_SECONDS")
        .parse()
        .unwrap_or(f64::NAN);
    let per_length: Vec<(JobLength, Vec<&JobResult>)> = JobLength::ALL
        .into_iter()
        .map(|l| (l, run.of_length(l)))
        .collect();
    let all_well = per_length
        .iter()
        .all(|(_, jobs)| !jobs.is_empty() && jobs.iter().all(|j| j.finished_well()));
    let mut out = Vec::new();

    let mut whole = Vec::new();
    let mut after = Vec::new();
    for (length, jobs) in &per_length {
        let w: Vec<usize> = jobs.iter().map(|j| j.transitions()).collect();
        let a: Vec<usize> = jobs.iter().filter_map(|j| j.after_start()).collect();
        whole.push(format!("{} {}", length.label(), counts_text(&w)));
        after.push(format!("{} {}", length.label(), counts_text(&a)));
    }
    let max_whole = per_length
        .iter()
        .flat_map(|(_, jobs)| jobs.iter().map(|j| j.transitions()))
        .max();
    out.push(Verdict {
        target: format!(
            "transitions per job, whole execution, ≤ {TARGET_TRANSITIONS} whatever the duration"
        ),
        measured: whole.join(", "),
        met: all_well.then(|| max_whole.is_some_and(|m| m <= TARGET_TRANSITIONS)),
    });
    let after_values: BTreeSet<usize> = per_length
        .iter()
        .flat_map(|(_, jobs)| jobs.iter().filter_map(|j| j.after_start()))
        .collect();
    out.push(Verdict {
        target: format!(
            "transitions after the job started: the same for every duration, ≤ {TARGET_TRANSITIONS}"
        ),
        measured: after.join(", "),
        met: all_well.then(|| {
            after_values.len() == 1 && after_values.iter().all(|&n| n <= TARGET_TRANSITIONS)
        }),
    });
    let latencies: Vec<f64> = run
        .of_length(JobLength::FiveMinutes)
        .iter()
        .filter_map(|j| j.record_latency())
        .collect();
    let latency = median(&latencies);
    out.push(Verdict {
        target: format!(
            "completion latency (endedAt → record terminal), median of {} \"5 min\" jobs, ≤ {TARGET_LATENCY_SECONDS} s",
            latencies.len()
        ),
        measured: seconds_text(latency),
        met: latency.map(|l| l <= TARGET_LATENCY_SECONDS),
    });
    let dropped = run.dropped();
    let dropped_latencies: Vec<f64> = dropped.iter().filter_map(|j| j.record_latency()).collect();
    let worst = dropped_latencies
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let dropped_complete = !dropped.is_empty()
        && dropped_latencies.len() == dropped.len()
        && dropped.iter().all(|j| j.finished_well());
    out.push(Verdict {
        target: format!(
            "dropped event: record terminal ≤ COMPLETION_BACKSTOP_SECONDS ({backstop} s) after the end, every one of {} job(s)",
            dropped.len()
        ),
        measured: format!("at most {}", seconds_text(worst)),
        met: (!dropped.is_empty()).then(|| dropped_complete && worst.is_some_and(|w| w <= backstop)),
    });
    let dropped_whole: Vec<usize> = dropped.iter().map(|j| j.transitions()).collect();
    let dropped_after: Vec<usize> = dropped.iter().filter_map(|j| j.after_start()).collect();
    out.push(Verdict {
        target: format!(
            "dropped event: transitions after the job started ≤ {TARGET_TRANSITIONS}, no more than with its event"
        ),
        measured: format!(
            "{} (with its event: {})",
            counts_text(&dropped_after),
            counts_text(&after_values.iter().copied().collect::<Vec<_>>())
        ),
        met: (!dropped.is_empty()).then(|| {
            dropped_complete
                && dropped_after.len() == dropped.len()
                && dropped_after.iter().all(|&n| {
                    n <= TARGET_TRANSITIONS && after_values.iter().all(|&normal| n <= normal)
                })
        }),
    });
    out.push(Verdict {
        target: format!("dropped event: transitions ≤ {TARGET_TRANSITIONS}, whole execution"),
        measured: counts_text(&dropped_whole),
        met: (!dropped.is_empty())
            .then(|| dropped_complete && dropped_whole.iter().all(|&n| n <= TARGET_TRANSITIONS)),
    });
    out
}

/// The whole report: settings, the transitions table, the latency table and the verdicts.
pub fn render(
    events: Option<&ModeRun>,
    polling: Option<&ModeRun>,
    aws: &TemplateDefaults,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== event-driven completion bench (issue 14, item 5)");
    let _ = writeln!(
        out,
        "time scale: job durations are AWS time × the stack's scale (a case's job = the double's \
         per-file time × 1, 12 or 72 DICOM files in its own folder dicom/<tag>-<case>/IM1..)"
    );
    for run in [events, polling].into_iter().flatten() {
        let lengths: Vec<String> = JobLength::ALL
            .iter()
            .map(|l| {
                format!(
                    "\"{}\" = {:.2} s",
                    l.label(),
                    l.aws_seconds() as f64 * run.scale
                )
            })
            .collect();
        let timers = match run.mode {
            Mode::Events => format!(
                "COMPLETION_BACKSTOP_SECONDS={} (template {} s × {})",
                run.setting("COMPLETION_BACKSTOP_SECONDS"),
                aws.backstop_seconds,
                scale_text(run.scale)
            ),
            Mode::Polling => format!(
                "POLL_* {} s ×{} up to {} s (template {} s ×{} up to {} s, × {})",
                run.setting("POLL_INITIAL_WAIT_SECONDS"),
                run.setting("POLL_BACKOFF_RATE"),
                run.setting("POLL_MAX_WAIT_SECONDS"),
                aws.poll.initial_wait_seconds,
                aws.poll.backoff_rate,
                aws.poll.max_wait_seconds,
                scale_text(run.scale)
            ),
        };
        let _ = writeln!(
            out,
            "  {} stack: × {} ({}); {}; a file {:.1} ms, job overhead {:.0} ms, submit {:.0} ms; \
             BATCH_QUIET_SECONDS={} (not scaled); measured in {:.0} s",
            run.mode.as_str(),
            scale_text(run.scale),
            lengths.join(", "),
            timers,
            run.per_file_ms,
            run.run_overhead_ms,
            run.submit_delay_ms,
            run.setting("BATCH_QUIET_SECONDS"),
            run.wall_seconds,
        );
    }
    let _ = writeln!(
        out,
        "  not scaled anywhere: the local stack's own latency (uploads, SQS, Lambda, moto); \
         latencies are local wall-clock seconds"
    );

    // Transitions.
    let _ = writeln!(
        out,
        "\nstate transitions per job (StateEntered events in its execution's history; \"after \
         start\" = from the first AwaitEnd / WaitBeforePoll to the end)\n"
    );
    let header = [
        "job",
        "events: whole",
        "before start",
        "after start",
        "retries",
        "end→record",
        "polling: whole",
        "after start",
        "polls",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    let polling_pre_start = polling.and_then(|p| {
        p.of_length(JobLength::FiveMinutes)
            .iter()
            .filter_map(|j| j.after_start().map(|a| j.transitions() - a))
            .min()
    });
    let mut lines: Vec<(String, Option<JobLength>)> = JobLength::ALL
        .iter()
        .map(|l| (l.label().to_owned(), Some(*l)))
        .collect();
    if let Some(run) = events {
        let minutes: BTreeSet<u64> = run
            .dropped()
            .iter()
            .map(|j| j.case.aws_seconds() / 60)
            .collect();
        if !minutes.is_empty() {
            let minutes: Vec<String> = minutes.iter().map(u64::to_string).collect();
            lines.push((format!("event dropped ({} min)", minutes.join("/")), None));
        }
    }
    for (label, length) in lines {
        let events_jobs: Vec<&JobResult> = match (events, length) {
            (Some(run), Some(l)) => run.of_length(l),
            (Some(run), None) => run.dropped(),
            (None, _) => Vec::new(),
        };
        let count = |jobs: &[&JobResult]| {
            if jobs.len() > 1 {
                format!(" (×{})", jobs.len())
            } else {
                String::new()
            }
        };
        let unwell = |jobs: &[&JobResult]| {
            let bad: Vec<String> = jobs
                .iter()
                .filter(|j| !j.finished_well())
                .map(|j| {
                    format!(
                        "{}: {}/{}",
                        j.case.name, j.execution_status, j.record_status
                    )
                })
                .collect();
            if bad.is_empty() {
                String::new()
            } else {
                format!(" [{}]", bad.join("; "))
            }
        };
        let (e_whole, e_before, e_after, e_retries, e_latency) = if events_jobs.is_empty() {
            let what = if events.is_some() {
                "-"
            } else {
                "not measured"
            };
            (
                what.to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            )
        } else {
            let whole: Vec<usize> = events_jobs.iter().map(|j| j.transitions()).collect();
            let after: Vec<usize> = events_jobs.iter().filter_map(|j| j.after_start()).collect();
            let before: Vec<usize> = events_jobs
                .iter()
                .filter_map(|j| j.after_start().map(|a| j.transitions() - a))
                .collect();
            let retries: Vec<usize> = events_jobs.iter().map(|j| j.retries()).collect();
            let latency: Vec<f64> = events_jobs
                .iter()
                .filter_map(|j| j.record_latency())
                .collect();
            (
                format!(
                    "{}{}{}",
                    counts_text(&whole),
                    count(&events_jobs),
                    unwell(&events_jobs)
                ),
                counts_text(&before),
                counts_text(&after),
                counts_text(&retries),
                spread_text(&latency),
            )
        };
        let (p_whole, p_after, p_polls) = match (polling, length) {
            (_, None) => (
                "- (no backstop: polls)".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ),
            (Some(run), Some(l)) if !run.of_length(l).is_empty() => {
                let jobs = run.of_length(l);
                let whole: Vec<usize> = jobs.iter().map(|j| j.transitions()).collect();
                let after: Vec<usize> = jobs.iter().filter_map(|j| j.after_start()).collect();
                let polls: Vec<usize> = jobs.iter().map(|j| j.polls()).collect();
                (
                    format!(
                        "{} measured{}{}",
                        counts_text(&whole),
                        count(&jobs),
                        unwell(&jobs)
                    ),
                    format!("{} measured", counts_text(&after)),
                    counts_text(&polls),
                )
            }
            (_, Some(l)) => {
                let after = aws.poll.after_start(l.aws_seconds());
                let polls = aws.poll.follow(l.aws_seconds()).0;
                let whole = polling_pre_start.map_or_else(
                    || "- computed".to_owned(),
                    |pre| format!("{} computed", pre + after),
                );
                (whole, format!("{after} computed"), polls.to_string())
            }
        };
        rows.push([
            label, e_whole, e_before, e_after, e_retries, e_latency, p_whole, p_after, p_polls,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let row_text = |cells: &[&str]| {
        let mut line = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let sep = match c {
                0 => "",
                1 | 6 => " | ",
                _ => "  ",
            };
            let pad = widths[c] - cell.chars().count();
            let _ = write!(line, "{sep}{cell}{}", " ".repeat(pad));
        }
        line.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", row_text(&header));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    let _ = writeln!(out, "{}", row_text(&rule).replace(" | ", "-+-"));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", row_text(&cells));
    }
    let _ = writeln!(
        out,
        "  before start = the batch's close wait and the start: Start → IsJobStarted → \
         (WaitBeforeStart → Start → IsJobStarted) × k, k ≥ 1 for a batch that closes on quiet, one \
         more k per later file or paced start (a Wait waits whole seconds); after start counts as \
         the poller's tracking-cost does (its 12, 45, 225 for polling)\n  \
         measured = real jobs on the stack; computed = the template's poll schedule ({} s ×{} up \
         to {} s) in AWS time, \"whole\" adding the fewest transitions before the start measured on \
         the polling stack ({}); end→record = the double's endedAt to the batch record's terminal \
         status",
        aws.poll.initial_wait_seconds,
        aws.poll.backoff_rate,
        aws.poll.max_wait_seconds,
        polling_pre_start.map_or_else(|| "not measured".to_owned(), |p| p.to_string()),
    );

    // Latency.
    let _ = writeln!(
        out,
        "\ncompletion latency after the service's end (the double's endedAt), median (min–max) \
         over the \"5 min\" jobs, local seconds\n"
    );
    let latency_header = [
        "mode",
        "jobs",
        "record terminal",
        "workflow told (Finish)",
        "outcome recorded (execution end)",
    ];
    let mut latency_rows: Vec<[String; 5]> = Vec::new();
    for (name, run) in [("events", events), ("polling", polling)] {
        let Some(run) = run else {
            latency_rows.push([
                name.to_owned(),
                "0".to_owned(),
                "not measured".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ]);
            continue;
        };
        let jobs = run.of_length(JobLength::FiveMinutes);
        let pick = |f: fn(&JobResult) -> Option<f64>| -> Vec<f64> {
            jobs.iter().filter_map(|j| f(j)).collect()
        };
        latency_rows.push([
            format!("{name} (× {})", scale_text(run.scale)),
            jobs.len().to_string(),
            spread_text(&pick(JobResult::record_latency)),
            spread_text(&pick(JobResult::workflow_latency)),
            spread_text(&pick(JobResult::outcome_latency)),
        ]);
    }
    let lag: Vec<String> = JobLength::ALL
        .iter()
        .map(|l| format!("{} {} s", l.label(), aws.poll.follow(l.aws_seconds()).1))
        .collect();
    latency_rows.push([
        "polling on AWS (computed)".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        format!(
            "the poll after the end: {} (at most {} s)",
            lag.join(", "),
            aws.poll.max_wait_seconds
        ),
        "-".to_owned(),
    ]);
    let widths: Vec<usize> = (0..latency_header.len())
        .map(|c| {
            latency_rows
                .iter()
                .map(|r| r[c].chars().count())
                .chain([latency_header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let latency_line = |cells: &[&str]| {
        let mut line = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let sep = if c == 0 { "" } else { " | " };
            let pad = widths[c] - cell.chars().count();
            let _ = write!(line, "{sep}{cell}{}", " ".repeat(pad));
        }
        line.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", latency_line(&latency_header));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    let _ = writeln!(out, "{}", latency_line(&rule).replace(" | ", "-+-"));
    for row in &latency_rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", latency_line(&cells));
    }
    let _ = writeln!(
        out,
        "  the polling stack's waits are its schedule × its scale, so its \"workflow told\" is \
         the scaled lag plus the stack's latency; in polling mode the job-events function still \
         records the end from the service's event, so \"record terminal\" there is not the poll's"
    );
    if let Some(run) = events {
        let dropped = run.dropped();
        if !dropped.is_empty() {
            let _ = writeln!(
                out,
                "\ndropped event (events stack, event_drop_share 1 while these ran; the re-check \
                 every COMPLETION_BACKSTOP_SECONDS={} s from the wait's start found their end):",
                run.setting("COMPLETION_BACKSTOP_SECONDS"),
            );
            for job in dropped {
                let _ = writeln!(
                    out,
                    "  {} min job (ran {}): record terminal {} after the end, workflow told {}, \
                     outcome recorded {}; {} transitions ({} after start)",
                    job.case.aws_seconds() / 60,
                    seconds_text(job.ran()),
                    seconds_text(job.record_latency()),
                    seconds_text(job.workflow_latency()),
                    seconds_text(job.outcome_latency()),
                    job.transitions(),
                    job.after_start()
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                );
            }
            let _ = writeln!(
                out,
                "  (the lag is where the end falls between two re-checks: at worst one whole \
                 interval plus the re-check's own latency)"
            );
        }
    }

    let _ = writeln!(out, "\ntargets (events mode):");
    for verdict in verdicts(events) {
        let _ = writeln!(out, "{}", verdict.line());
    }
    out
}

/// Reads a `measure` result; `None` when the file is not there (that mode did not finish).
pub fn read_run(path: &Path) -> Result<Option<ModeRun>, BoxError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, BoxError> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("BENCH_MODE", "events"),
        ("BENCH_TIME_SCALE", "0.005555556"),
        ("BENCH_OUT", "/tmp/x.json"),
    ];

    #[test]
    fn settings_need_mode_scale_and_out_and_plan_the_issues_cases() {
        assert!(settings(&[]).is_err());
        assert!(settings(&[("BENCH_MODE", "events"), ("BENCH_OUT", "x")]).is_err());
        assert!(settings(&[
            ("BENCH_MODE", "sometimes"),
            ("BENCH_TIME_SCALE", "0.1"),
            ("BENCH_OUT", "x")
        ])
        .is_err());
        assert!(settings(&[
            ("BENCH_MODE", "events"),
            ("BENCH_TIME_SCALE", "2"),
            ("BENCH_OUT", "x")
        ])
        .is_err());
        let events = settings(&BASE).unwrap();
        let (dropped, normal) = events.plan();
        assert_eq!(dropped.len(), 3);
        assert!(dropped
            .iter()
            .all(|c| c.dropped_events && c.length == JobLength::FiveMinutes));
        assert_eq!(normal.len(), 12, "6 h, 1 h and ten 5-minute jobs");
        assert_eq!(normal[0].length, JobLength::SixHours, "longest first");
        let names: BTreeSet<&str> = dropped
            .iter()
            .chain(&normal)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names.len(), 15, "one folder each");

        let polling = settings(&[
            ("BENCH_MODE", "polling"),
            ("BENCH_TIME_SCALE", "0.0666667"),
            ("BENCH_OUT", "x"),
        ])
        .unwrap();
        let (dropped, normal) = polling.plan();
        assert!(dropped.is_empty());
        assert!(normal.iter().all(|c| c.length == JobLength::FiveMinutes));
        let long = settings(&[
            ("BENCH_MODE", "polling"),
            ("BENCH_TIME_SCALE", "0.0666667"),
            ("BENCH_OUT", "x"),
            ("BENCH_POLLING_LONG", "1"),
        ])
        .unwrap();
        assert_eq!(long.plan().1.len(), 12);
    }

    #[test]
    fn lengths_are_whole_files_of_five_minutes() {
        let files: Vec<usize> = JobLength::ALL.iter().map(|l| l.files()).collect();
        assert_eq!(files, vec![1, 12, 72]);
        let s = settings(&BASE).unwrap();
        let six = s.scaled(JobLength::SixHours).as_secs_f64();
        assert!((six - 120.0).abs() < 0.01, "{six}");
    }

    #[test]
    fn the_mirrored_schedule_gives_the_pollers_figures() {
        // functions/poller/src/schedule.rs: 3, 14 and 74 polls, 12, 45 and 225 transitions,
        // noticed 15 s after the end.
        let aws = TemplateDefaults::read().unwrap();
        assert_eq!(
            aws.poll,
            PollSchedule {
                initial_wait_seconds: 15,
                backoff_rate: 4.0,
                max_wait_seconds: 300
            }
        );
        assert_eq!(aws.backstop_seconds, 900);
        let figures: Vec<(u32, u64, usize)> = JobLength::ALL
            .iter()
            .map(|l| {
                let (polls, lag) = aws.poll.follow(l.aws_seconds());
                (polls, lag, aws.poll.after_start(l.aws_seconds()))
            })
            .collect();
        assert_eq!(figures, vec![(3, 15, 12), (14, 15, 45), (74, 15, 225)]);
        // Scaled to 1/15 the schedule keeps its polls for the scaled job.
        let local = PollSchedule {
            initial_wait_seconds: 1,
            backoff_rate: 4.0,
            max_wait_seconds: 20,
        };
        assert_eq!(local.follow(20), (3, 1));
    }

    fn visit(name: &str, kind: &str, at: f64) -> StateVisit {
        StateVisit {
            name: name.to_owned(),
            kind: kind.to_owned(),
            at,
        }
    }

    fn job(states: Vec<StateVisit>) -> JobResult {
        JobResult {
            case: Case {
                name: "5min-01".to_owned(),
                length: JobLength::FiveMinutes,
                files: 1,
                dropped_events: false,
            },
            folder: "dicom/bc-1-events-5min-01".to_owned(),
            files: 1,
            batch_id: Some("b".to_owned()),
            batches: 1,
            service_job_id: Some("j".to_owned()),
            job_submitted_at: Some(100.0),
            job_ended_at: Some(102.0),
            record_status: "COMPLETED".to_owned(),
            record_terminal_at: Some(102.5),
            execution_status: "SUCCEEDED".to_owned(),
            execution_stopped_at: Some(104.0),
            states,
            task_attempts: 5,
        }
    }

    #[test]
    fn transitions_are_split_at_the_jobs_start_and_latencies_read_from_timestamps() {
        let events = job(vec![
            visit("Start", "TaskStateEntered", 90.0),
            visit("IsJobStarted", "ChoiceStateEntered", 90.1),
            visit("WaitBeforeStart", "WaitStateEntered", 90.2),
            visit("Start", "TaskStateEntered", 95.0),
            visit("IsJobStarted", "ChoiceStateEntered", 95.1),
            visit("AwaitEnd", "TaskStateEntered", 95.2),
            visit("Finish", "TaskStateEntered", 103.0),
            visit("DidItStart", "ChoiceStateEntered", 103.5),
            visit("Done", "SucceedStateEntered", 103.6),
        ]);
        assert_eq!(events.transitions(), 9);
        assert_eq!(events.after_start(), Some(4));
        assert_eq!(events.polls(), 0);
        assert_eq!(events.retries(), 1, "five attempts for four Task states");
        assert_eq!(events.ran(), Some(2.0));
        assert_eq!(events.record_latency(), Some(0.5));
        assert_eq!(events.workflow_latency(), Some(1.0));
        assert_eq!(events.outcome_latency(), Some(2.0));
        assert!(events.finished_well());
        let mut polling = job(vec![
            visit("Start", "TaskStateEntered", 90.0),
            visit("IsJobStarted", "ChoiceStateEntered", 90.1),
        ]);
        for _ in 0..3 {
            polling
                .states
                .push(visit("WaitBeforePoll", "WaitStateEntered", 91.0));
            polling.states.push(visit("Poll", "TaskStateEntered", 92.0));
            polling
                .states
                .push(visit("IsJobFinished", "ChoiceStateEntered", 92.1));
        }
        assert_eq!(polling.after_start(), Some(9));
        assert_eq!(polling.polls(), 3);
        let path: Vec<&str> = polling.states.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            compress_path(&path),
            "Start → IsJobStarted → (WaitBeforePoll → Poll → IsJobFinished)×3"
        );
        let split = JobResult {
            batches: 2,
            ..events.clone()
        };
        assert!(!split.finished_well(), "a case that became two jobs");
    }

    #[test]
    fn medians_and_counts_read_well() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(counts_text(&[4, 4, 4]), "4");
        assert_eq!(counts_text(&[9, 12, 9]), "9–12 (median 9)");
        assert_eq!(counts_text(&[]), "-");
        assert_eq!(scale_text(1.0 / 180.0), "1/180");
        assert_eq!(scale_text(1.0 / 15.0), "1/15");
    }

    fn run_of(mode: Mode, jobs: Vec<JobResult>) -> ModeRun {
        ModeRun {
            mode,
            scale: 1.0 / 180.0,
            run: "1".to_owned(),
            submit_delay_ms: 0.0,
            run_overhead_ms: 0.0,
            per_file_ms: 1666.7,
            settings: BTreeMap::from([
                ("COMPLETION_BACKSTOP_SECONDS".to_owned(), "5".to_owned()),
                ("TRACKING_MODE".to_owned(), mode.as_str().to_owned()),
            ]),
            wall_seconds: 100.0,
            jobs,
        }
    }

    #[test]
    fn the_report_judges_the_targets_and_computes_what_polling_did_not_measure() {
        let awaited = vec![
            visit("Start", "TaskStateEntered", 90.0),
            visit("IsJobStarted", "ChoiceStateEntered", 90.1),
            visit("AwaitEnd", "TaskStateEntered", 95.2),
            visit("Finish", "TaskStateEntered", 103.0),
            visit("DidItStart", "ChoiceStateEntered", 103.5),
            visit("Done", "SucceedStateEntered", 103.6),
        ];
        let mut jobs = Vec::new();
        for length in JobLength::ALL {
            let mut j = job(awaited.clone());
            j.case.length = length;
            jobs.push(j);
        }
        let mut dropped = job(awaited.clone());
        dropped.case.dropped_events = true;
        dropped.record_terminal_at = Some(106.0);
        jobs.push(dropped);
        let events = run_of(Mode::Events, jobs);
        let verdicts = verdicts(Some(&events));
        assert_eq!(verdicts.len(), 6);
        assert!(verdicts.iter().all(|v| v.met == Some(true)), "{verdicts:?}");

        let mut polled = vec![
            visit("Start", "TaskStateEntered", 90.0),
            visit("IsJobStarted", "ChoiceStateEntered", 90.1),
        ];
        for _ in 0..3 {
            polled.push(visit("WaitBeforePoll", "WaitStateEntered", 91.0));
            polled.push(visit("Poll", "TaskStateEntered", 92.0));
            polled.push(visit("IsJobFinished", "ChoiceStateEntered", 92.1));
        }
        polled.push(visit("Finish", "TaskStateEntered", 103.0));
        polled.push(visit("DidItStart", "ChoiceStateEntered", 103.5));
        polled.push(visit("Done", "SucceedStateEntered", 103.6));
        let polling = run_of(Mode::Polling, vec![job(polled)]);
        let aws = TemplateDefaults::read().unwrap();
        let report = render(Some(&events), Some(&polling), &aws);
        let row = |label: &str| {
            report
                .lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no row {label}:\n{report}"))
                .to_owned()
        };
        assert!(row("5 min ").contains("14 measured"), "{report}");
        assert!(row("5 min ").contains("12 measured"), "{report}");
        assert!(
            row("1 h").contains("47 computed"),
            "pre-start 2 + 45:\n{report}"
        );
        assert!(row("6 h").contains("225 computed"), "{report}");
        assert!(row("event dropped (5 min)").contains("4"), "{report}");
        assert!(
            report.contains("MET") && !report.contains("MISSED"),
            "{report}"
        );

        let slow = {
            let mut e = events.clone();
            for j in &mut e.jobs {
                j.record_terminal_at = Some(120.0);
            }
            e
        };
        let judged = super::verdicts(Some(&slow));
        assert_eq!(judged[2].met, Some(false), "latency 18 s");
        assert_eq!(judged[3].met, Some(false), "dropped: 18 s > 5 s");
        assert_eq!(super::verdicts(None)[0].met, None);
    }
}
