//! Job progression on the double's own accelerated clock: SUBMITTED → (QUEUED) → IN_PROGRESS →
//! terminal, one tokio task per running job. A job stays IN_PROGRESS for `run_overhead +
//! per_file * files` ([`super::JobTimings::run_time`]), counted once its input has been listed. A
//! HealthLake job's task hands the account's lane to the next queued job when it ends, so no task
//! outlives its job.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::{info, warn};

use super::output::{self, JobCounts, Judgement, OutputLayout, S3Location};
use super::state::{Job, JobKind, JobPhase, Service, Terminal};
use super::Shared;

/// Starts the task that carries a job to its end.
pub(crate) fn spawn_job(shared: Arc<Shared>, service: Service, job_id: String) {
    tokio::spawn(run_job(shared, service, job_id));
}

/// A HealthLake job created behind the account's running job: once its submit delay has passed
/// it shows QUEUED, which is announced then (if the lane has not reached it first).
pub(crate) fn watch_queued(shared: Arc<Shared>, job_id: String) {
    tokio::spawn(async move {
        let submit_delay = shared.config.healthlake.submit_delay;
        let Some(submitted) = shared
            .state
            .lock()
            .job_mut(Service::HealthLake, &job_id)
            .map(|job| job.submitted_instant)
        else {
            return;
        };
        tokio::time::sleep_until(submitted + submit_delay).await;
        shared.state.lock().announce_queued(&job_id);
    });
}

/// A finished run: the counts, the resources an import stored, and the manifest when it is due
/// after the terminal status.
struct Finished {
    counts: JobCounts,
    stored: Vec<(String, String)>,
    late_manifest: Option<(OutputLayout, Value)>,
}

async fn run_job(shared: Arc<Shared>, service: Service, job_id: String) {
    let timings = shared.config.timings(service).clone();
    let Some(submitted) = shared
        .state
        .lock()
        .job_mut(service, &job_id)
        .map(|job| job.submitted_instant)
    else {
        return;
    };
    tokio::time::sleep_until(submitted + timings.submit_delay).await;

    let Some((job, started)) = begin(&shared, service, &job_id) else {
        return;
    };
    info!(
        job_id,
        datastore_id = job.request.datastore_id,
        ?service,
        "import job in progress"
    );
    let result = match job.request.kind {
        JobKind::Import => execute(&shared, &job, started).await,
        JobKind::Export => export(&shared, &job, started).await,
    };

    let (outcome, message, late_manifest) = match result {
        Ok(finished) => {
            shared
                .state
                .lock()
                .store_resources(&job.request.datastore_id, finished.stored);
            let outcome = if service == Service::HealthLake && finished.counts.has_errors() {
                Terminal::CompletedWithErrors
            } else {
                Terminal::Completed
            };
            (outcome, None, finished.late_manifest)
        }
        Err(message) => (Terminal::Failed, Some(message), None),
    };
    info!(
        job_id,
        ?outcome,
        message = message.as_deref().unwrap_or(""),
        "import job ended"
    );
    let next =
        shared
            .state
            .lock()
            .end_job(service, &job_id, outcome, message, timings.submit_delay);
    if let Some(next) = next {
        info!(
            job_id = next,
            "next queued HealthLake job takes the account's lane"
        );
        spawn_job(Arc::clone(&shared), service, next);
    }
    if let Some((layout, manifest)) = late_manifest {
        tokio::time::sleep(timings.manifest_delay).await;
        if let Err(err) = layout.write_manifest(&shared.s3, &manifest).await {
            warn!(job_id, error = %err, "writing the late manifest failed");
        }
    }
}

/// Marks the job IN_PROGRESS (unless the queue hand-over already did) and decides whether it
/// fails on purpose. Returns a snapshot to work from without the lock.
fn begin(shared: &Shared, service: Service, job_id: &str) -> Option<(Job, Instant)> {
    let mut state = shared.state.lock();
    let injected_failure = state.roll_job_failure();
    if injected_failure {
        state.stats.injected_job_failures += 1;
    }
    let stalled = state.roll_stall();
    let job = state.job_mut(service, job_id)?;
    job.injected_failure = injected_failure;
    job.stalled = stalled;
    let (started, changed) = match job.phase {
        JobPhase::InProgress { started } => (started, false),
        _ => {
            let now = Instant::now();
            job.phase = JobPhase::InProgress { started: now };
            (now, true)
        }
    };
    let snapshot = job.clone();
    if changed {
        state.announce(service, job_id);
    }
    Some((snapshot, started))
}

/// Records how long a job runs (for its progress report) and returns when it ends.
fn schedule_end(shared: &Shared, job: &Job, started: Instant, files: u64) -> Instant {
    let run_time = shared.config.timings(job.service).run_time(files);
    if let Some(record) = shared.state.lock().job_mut(job.service, &job.id) {
        record.run_time = Some(run_time);
    }
    started + run_time
}

/// Reads and judges the input, waits out the run, writes the output. `Err` is the FAILED
/// message.
async fn execute(shared: &Shared, job: &Job, started: Instant) -> Result<Finished, String> {
    if job.stalled {
        // IN_PROGRESS for good: nothing ever ends it.
        std::future::pending::<()>().await;
    }
    let timings = shared.config.timings(job.service);
    if job.injected_failure {
        // Fails before reading anything: the per-job overhead only.
        tokio::time::sleep_until(schedule_end(shared, job, started, 0)).await;
        return Err(
            "Internal error: the import job failed (job_failure_share of the service double)"
                .to_owned(),
        );
    }
    let input_uri = &job.request.input_s3_uri;
    let input = S3Location::parse(input_uri).ok_or_else(|| format!("Invalid input {input_uri}"))?;
    let files = output::list_input(&shared.s3, &input, job.service)
        .await
        .map_err(|err| format!("Unable to read the input {input_uri}: {err}"))?;
    if files.is_empty() {
        return Err(format!("No files found under {input_uri}"));
    }
    let limit = match job.service {
        Service::HealthLake => shared.config.healthlake_max_files_per_job,
        Service::Imaging => shared.config.imaging_max_files_per_job,
    };
    if files.len() > limit {
        return Err(format!(
            "The input {input_uri} holds {} files, more than the {limit} files one import job accepts",
            files.len()
        ));
    }
    if job.service == Service::Imaging {
        let bytes: u64 = files.iter().map(|file| file.size).sum();
        let limit = shared.config.imaging_max_bytes_per_job;
        if bytes > limit {
            return Err(format!(
                "The input {input_uri} holds {bytes} bytes, more than the {limit} bytes one import job accepts"
            ));
        }
    }
    let file_count = u64::try_from(files.len()).unwrap_or(u64::MAX);
    let run_ends = schedule_end(shared, job, started, file_count);
    let judgement: Judgement = match job.service {
        Service::HealthLake => output::judge_ndjson(&shared.s3, &files).await,
        Service::Imaging => output::judge_dicom(&shared.s3, &files).await,
    };
    if let Some(record) = shared.state.lock().job_mut(job.service, &job.id) {
        record.counts = Some(judgement.counts.clone());
    }
    let stored: Vec<(String, String)> = judgement
        .success_lines
        .iter()
        .filter_map(|line| {
            Some((
                line.get("resourceType")?.as_str()?.to_owned(),
                line.get("id")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    tokio::time::sleep_until(run_ends).await;

    let output_uri = &job.request.output_s3_uri;
    let layout = OutputLayout::new(job).ok_or_else(|| format!("Invalid output {output_uri}"))?;
    let write_failed =
        |err: output::S3Failure| format!("Unable to write the output to {output_uri}: {err}");
    layout
        .write_details(&shared.s3, &judgement)
        .await
        .map_err(write_failed)?;
    let manifest = layout.manifest_document(job, &judgement);
    if timings.manifest_delay.is_zero() {
        layout
            .write_manifest(&shared.s3, &manifest)
            .await
            .map_err(write_failed)?;
        Ok(Finished {
            counts: judgement.counts,
            stored,
            late_manifest: None,
        })
    } else {
        Ok(Finished {
            counts: judgement.counts,
            stored,
            late_manifest: Some((layout, manifest)),
        })
    }
}

/// An export: what the data store holds when the export starts running, one NDJSON file per
/// resource type under `<output>/<datastoreId>-FHIR_EXPORT-<jobId>/<Type>/`. The lines are
/// synthetic stand-ins (`resourceType` and `id` only): the double keeps no resource bodies.
async fn export(shared: &Shared, job: &Job, started: Instant) -> Result<Finished, String> {
    if job.stalled {
        // IN_PROGRESS for good: nothing ever ends it.
        std::future::pending::<()>().await;
    }
    if job.injected_failure {
        tokio::time::sleep_until(schedule_end(shared, job, started, 0)).await;
        return Err(
            "Internal error: the export job failed (job_failure_share of the service double)"
                .to_owned(),
        );
    }
    // What the data store holds (changed at or after `_since`, for an `$export` with one).
    let resources: Vec<(String, Vec<String>)> = shared
        .state
        .lock()
        .datastores
        .get(&(Service::HealthLake, job.request.datastore_id.clone()))
        .map(|datastore| {
            datastore
                .resources
                .iter()
                .map(|(resource_type, ids)| {
                    let changed = ids
                        .iter()
                        .filter(|(_, written)| {
                            job.request.since.is_none_or(|since| **written >= since)
                        })
                        .map(|(id, _)| id.clone())
                        .collect::<Vec<_>>();
                    (resource_type.clone(), changed)
                })
                .filter(|(_, ids)| !ids.is_empty())
                .collect()
        })
        .unwrap_or_default();
    // An export's files are the ones it writes: one per resource type.
    let file_count = u64::try_from(resources.len()).unwrap_or(u64::MAX);
    tokio::time::sleep_until(schedule_end(shared, job, started, file_count)).await;
    let output_uri = &job.request.output_s3_uri;
    let layout = OutputLayout::new(job).ok_or_else(|| format!("Invalid output {output_uri}"))?;
    for (resource_type, ids) in &resources {
        let mut body = String::new();
        for id in ids {
            body.push_str(&json!({"resourceType": resource_type, "id": id}).to_string());
            body.push('\n');
        }
        layout
            .write_export_file(&shared.s3, resource_type, body.into_bytes())
            .await
            .map_err(|err| format!("Unable to write the export to {output_uri}: {err}"))?;
    }
    Ok(Finished {
        counts: JobCounts::default(),
        stored: Vec::new(),
        late_manifest: None,
    })
}
