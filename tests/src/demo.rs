//! What `make demo` shows: a live table of the jobs its uploads became, and the closing summary.
//! Pure: built from job records (and the workflow's counts), printed by `src/bin/demo.rs`.

use std::fmt::Write as _;

use healthimport::domain::job::{Job, JobStatus};

/// The tracking workflow's cost for one job, read from its execution history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkflowCost {
    pub polls: u64,
    pub state_transitions: u64,
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
            &job.job_id.as_str()[..8],
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

/// The closing summary: jobs by status, files imported and failed (with the reasons), and what
/// tracking cost.
pub fn summary(jobs: &[Job], cost: WorkflowCost) -> String {
    let mut out = String::new();
    let mut by_status: Vec<(JobStatus, usize)> = Vec::new();
    for job in jobs {
        match by_status.iter_mut().find(|(s, _)| *s == job.status) {
            Some((_, n)) => *n += 1,
            None => by_status.push((job.status, 1)),
        }
    }
    let statuses: Vec<String> = by_status
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    let _ = writeln!(out, "jobs: {} ({})", jobs.len(), statuses.join(", "));
    let imported: u64 = jobs
        .iter()
        .filter_map(|j| j.counts)
        .map(|c| c.imported)
        .sum();
    let failed: u64 = jobs.iter().filter_map(|j| j.counts).map(|c| c.failed).sum();
    let _ = writeln!(
        out,
        "files imported: {imported}, files failed: {failed} (a FHIR file with a bad line is imported; its bad lines are listed)"
    );
    for job in jobs {
        for file in &job.failed_files {
            let _ = writeln!(out, "  failed  {}: {}", file.input_file, file.message);
        }
        if let Some(message) = job
            .message
            .as_deref()
            .filter(|_| job.failed_files.is_empty())
        {
            let _ = writeln!(out, "  {}  {}: {message}", job.status, job.subject());
        }
    }
    let _ = writeln!(
        out,
        "tracking: {} polls, {} state transitions ({:.1} per job)",
        cost.polls,
        cost.state_transitions,
        cost.state_transitions as f64 / jobs.len().max(1) as f64,
    );
    out
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
    use healthimport::domain::job::{
        FailedFile, JobCounts, Service, SourceObject, Target, Timestamp,
    };

    fn job(key: &str, status: JobStatus, counts: Option<JobCounts>) -> Job {
        let source = SourceObject {
            bucket: "ingest".into(),
            key: key.into(),
            size: 10,
            e_tag: Some("\"e\"".into()),
            version_id: None,
        };
        let target = Target {
            service: Service::HealthLake,
            datastore_id: "ds".into(),
            output_s3_uri: "s3://out/".into(),
        };
        let input = source.uri();
        let mut job = Job::import(
            source,
            target,
            input,
            Timestamp::from_unix_seconds(0).unwrap(),
        );
        job.status = status;
        job.counts = counts;
        job
    }

    #[test]
    fn the_table_has_a_line_per_job_with_its_status_and_counts() {
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
    fn the_summary_counts_statuses_files_and_reasons() {
        let mut broken = job(
            "fhir/broken.ndjson",
            JobStatus::CompletedWithErrors,
            Some(JobCounts {
                scanned: 3,
                imported: 2,
                failed: 1,
            }),
        );
        broken.failed_files = vec![FailedFile {
            input_file: "s3://ingest/fhir/broken.ndjson".into(),
            message: "line 2: unexpected end".into(),
        }];
        let clean = job(
            "fhir/ok.ndjson",
            JobStatus::Completed,
            Some(JobCounts {
                scanned: 4,
                imported: 4,
                failed: 0,
            }),
        );
        let text = summary(
            &[broken, clean],
            WorkflowCost {
                polls: 6,
                state_transitions: 30,
            },
        );
        assert!(
            text.contains("jobs: 2 (1 COMPLETED_WITH_ERRORS, 1 COMPLETED)"),
            "{text}"
        );
        assert!(
            text.contains("files imported: 6, files failed: 1"),
            "{text}"
        );
        assert!(text.contains("line 2: unexpected end"), "{text}");
        assert!(
            text.contains("6 polls, 30 state transitions (15.0 per job)"),
            "{text}"
        );
    }
}
