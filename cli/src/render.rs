//! What the commands found, for people (aligned tables, short times) or for scripts (`--json`:
//! the reports as JSON, records in their stored camelCase form).

use std::fmt::Write as _;

use healthimport::domain::job::{Job, Service, Timestamp};
use serde::Serialize;
use serde_json::Value;

use crate::commands::batches::{Closes, OpenBatch};
use crate::commands::retry::RetryReport;
use crate::commands::status::StatusReport;
use crate::commands::watch::Frame;

/// Pretty JSON with a final newline.
pub fn json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise: {e}\"}}"));
    text.push('\n');
    text
}

/// Columns aligned on the widest cell, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `2026-11-30 07:53:01`, UTC.
pub fn time(at: Timestamp) -> String {
    let text = at.to_string();
    format!("{} {}", &text[..10], &text[11..19])
}

/// The service as `--service` names it.
pub fn service(service: Option<Service>) -> &'static str {
    match service {
        Some(Service::HealthLake) => "fhir",
        Some(Service::HealthImaging) => "dicom",
        None => "-",
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn kind(job: &Job) -> &'static str {
    if job.batch().is_some() {
        "batch"
    } else if job.export_request().is_some() {
        "export"
    } else {
        "upload"
    }
}

/// What a job covers: a batch's folder, an export's trigger.
fn what(job: &Job) -> String {
    match job.batch() {
        Some(batch) => format!("s3://{}/{}", batch.bucket, batch.folder),
        None => job.subject(),
    }
}

fn counts(job: &Job) -> (String, String, String) {
    let files = job.batch().map(|b| b.fill.files);
    match job.counts {
        Some(c) => (
            or_dash(files.or(Some(c.scanned))),
            c.imported.to_string(),
            c.failed.to_string(),
        ),
        None => (or_dash(files), "-".into(), "-".into()),
    }
}

pub fn jobs(jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return "no jobs match\n".to_owned();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let (files, imported, failed) = counts(job);
            vec![
                job.job_id.to_string(),
                kind(job).to_owned(),
                service(job.service()).to_owned(),
                job.status.to_string(),
                files,
                imported,
                failed,
                time(job.created_at),
                time(job.updated_at),
                what(job),
            ]
        })
        .collect();
    table(
        &[
            "JOB", "KIND", "SERVICE", "STATUS", "FILES", "IMPORTED", "FAILED", "CREATED",
            "UPDATED", "WHAT",
        ],
        &rows,
    )
}

fn closes(closes: &Closes) -> String {
    match closes {
        Closes::Later {
            in_seconds, reason, ..
        } => format!("in {} ({})", duration(*in_seconds), reason),
        Closes::Due { reason } => format!("due now ({reason})"),
    }
}

pub fn batches(open: &[OpenBatch]) -> String {
    if open.is_empty() {
        return "no open batches\n".to_owned();
    }
    let rows: Vec<Vec<String>> = open
        .iter()
        .map(|b| {
            let fill = b.batch.batch().map(|batch| batch.fill);
            vec![
                b.batch.job_id.to_string(),
                service(b.batch.service()).to_owned(),
                or_dash(fill.map(|f| f.files)),
                or_dash(fill.map(|f| bytes(f.bytes))),
                or_dash(fill.map(|f| time(f.first_file_at))),
                or_dash(fill.map(|f| time(f.last_file_at))),
                closes(&b.closes),
                what(&b.batch),
            ]
        })
        .collect();
    table(
        &[
            "BATCH",
            "SERVICE",
            "FILES",
            "BYTES",
            "FIRST FILE",
            "LAST FILE",
            "CLOSES",
            "FOLDER",
        ],
        &rows,
    )
}

fn job_block(out: &mut String, label: &str, job: &Job) {
    let _ = writeln!(out, "{label:<9}{}  {}", job.job_id, job.status);
    let _ = writeln!(
        out,
        "  service    {}, data store {}",
        service(job.service()),
        job.datastore_id().unwrap_or("-")
    );
    let _ = writeln!(out, "  covers     {}", what(job));
    if let Some(batch) = job.batch() {
        let _ = writeln!(
            out,
            "  files      {} ({}), first {}, last {}",
            batch.fill.files,
            bytes(batch.fill.bytes),
            time(batch.fill.first_file_at),
            time(batch.fill.last_file_at)
        );
        if let Some(closed) = batch.closed {
            let _ = writeln!(out, "  closed     {} ({})", time(closed.at), closed.reason);
        }
    }
    let _ = writeln!(
        out,
        "  job        {}",
        job.service_job_id
            .as_deref()
            .unwrap_or("not started at the service")
    );
    if let Some(c) = job.counts {
        let _ = writeln!(
            out,
            "  counts     scanned {}, imported {}, failed {}",
            c.scanned, c.imported, c.failed
        );
    }
    if let Some(message) = &job.message {
        let _ = writeln!(out, "  message    {message}");
    }
    if let Some(location) = &job.output_location {
        let _ = writeln!(out, "  output     {location}");
    }
    let history: Vec<String> = job
        .history
        .iter()
        .map(|(status, at)| format!("{status} {}", time(*at)))
        .collect();
    let _ = writeln!(out, "  history    {}", history.join(" → "));
}

pub fn status(report: &StatusReport) -> String {
    let mut out = String::new();
    match report {
        StatusReport::Upload {
            upload,
            attempts,
            batch,
            result,
        } => {
            let _ = writeln!(out, "upload   {upload}");
            let _ = writeln!(out, "result   {}: {}", result.status, result.summary);
            if let Some(message) = &result.message {
                let _ = writeln!(out, "         {message}");
            }
            let _ = writeln!(out, "attempts (newest first)");
            let rows: Vec<Vec<String>> = attempts
                .iter()
                .map(|a| {
                    vec![
                        a.attempt_number().to_string(),
                        a.job_id.to_string(),
                        a.status.to_string(),
                        time(a.created_at),
                        time(a.updated_at),
                        or_dash(a.attempt.as_ref().map(|r| r.retries.clone())),
                        or_dash(a.batch_id()),
                    ]
                })
                .collect();
            let attempts = table(
                &[
                    "#", "RECORD", "STATUS", "CREATED", "UPDATED", "RETRIES", "BATCH",
                ],
                &rows,
            );
            for line in attempts.lines() {
                let _ = writeln!(out, "  {line}");
            }
            match batch {
                Some(batch) => job_block(&mut out, "batch", batch),
                None => {
                    let _ = writeln!(out, "batch    none (the upload joined no batch)");
                }
            }
        }
        StatusReport::Job { job } => job_block(&mut out, kind(job), job),
    }
    out
}

pub fn retry(report: &RetryReport) -> String {
    let mut out = String::new();
    for r in &report.retried {
        let _ = writeln!(
            out,
            "retrying {} as attempt {} (record {}, retries {}) in batch {}{}",
            r.upload,
            r.attempt,
            r.job_id,
            r.retries,
            r.batch_id,
            if r.opened_batch {
                ", which it opened"
            } else {
                ""
            }
        );
    }
    for n in &report.not_retried {
        let _ = writeln!(out, "not retried {}: {}", n.upload, n.reason);
    }
    let _ = writeln!(
        out,
        "follow it with `healthimport status {}`",
        report
            .retried
            .first()
            .map_or("<s3://…>", |r| r.upload.as_str())
    );
    out
}

pub fn export(response: &Value) -> String {
    let field = |name: &str| response[name].as_str().unwrap_or("-").to_owned();
    let mut out = format!(
        "export {}: {} (request {})\n",
        field("jobId"),
        field("outcome"),
        field("requestId")
    );
    if let Some(status) = response["status"].as_str() {
        let _ = writeln!(
            out,
            "  the same request was made before; its job is {status}"
        );
    }
    let _ = writeln!(
        out,
        "follow it with `healthimport status {}`",
        field("jobId")
    );
    out
}

pub fn frame(frame: &Frame) -> String {
    format!(
        "healthimport watch  {} UTC  (Ctrl-C to stop)\n\nOPEN BATCHES\n{}\nRUNNING JOBS\n{}",
        time(frame.at),
        batches(&frame.open_batches),
        if frame.running.is_empty() {
            "none\n".to_owned()
        } else {
            jobs(&frame.running)
        }
    )
}

/// Clears the terminal and moves to its top-left corner, so a frame redraws in place.
pub const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let text = table(
            &["A", "LONG HEADER", "Z"],
            &[vec!["wide cell".into(), "x".into(), "last".into()]],
        );
        assert_eq!(
            text,
            "A          LONG HEADER  Z\nwide cell  x            last\n"
        );
    }

    #[tokio::test]
    async fn an_uploads_status_reads_result_attempts_and_batch() {
        use crate::commands::status::status as status_of;
        use crate::commands::testing::*;
        use crate::commands::Target;
        use healthimport::domain::job::JobStatus;
        let store = healthimport::fakes::MemoryJobStore::default();
        let (batch, upload) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s1/",
            "dicom/s1/IM1",
            at(0),
        )
        .await;
        advance(&store, &upload.job_id, &[(JobStatus::Failed, 60)]).await;
        let target = Target::Upload {
            bucket: "ingest".into(),
            key: "dicom/s1/IM1".into(),
        };
        let report = status_of(&store, &target, &("fhir/".into(), "dicom/".into()))
            .await
            .unwrap();
        let text = status(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "upload   s3://ingest/dicom/s1/IM1");
        assert!(
            lines[1].starts_with("result   FAILED: not imported"),
            "{text}"
        );
        assert_eq!(lines[2].trim(), "InvalidDicomFile: not DICOM");
        assert!(
            lines[5].starts_with(&format!("  1  {}  FAILED", upload.job_id)),
            "{text}"
        );
        assert_eq!(lines[6], format!("batch    {}  OPEN", batch.job_id));
        assert!(
            text.contains("  job        not started at the service\n"),
            "{text}"
        );
        let json: Value = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(json["attempts"][0]["jobId"], upload.job_id.as_str());
    }

    #[test]
    fn sizes_times_and_durations_read_short() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(10 * 1024 * 1024 * 1024), "10.0 GB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(250), "4m10s");
        assert_eq!(duration(7260), "2h01m");
        let at: Timestamp = "2026-11-30T07:53:01.123Z".parse().unwrap();
        assert_eq!(time(at), "2026-11-30 07:53:01");
    }
}
