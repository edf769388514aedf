//! What a finished job's outcome is: which output there is to read, and what a manifest (or its
//! absence) means for the record and the Finished event. Pure: the reading happens in
//! [`crate::job_output`], the writing through the store port.

use crate::domain::job::{FailedFile, Job, JobCounts, JobKind, JobStatus, Service, Timestamp};
use crate::domain::manifest::{self, JobOutput};

/// What the output of a finished job says, as the record keeps it. `None` fields keep what the
/// record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub counts: Option<JobCounts>,
    /// Bounded by [`crate::domain::job::MAX_FAILED_FILES`] on write.
    pub failed_files: Vec<FailedFile>,
    pub output_location: Option<String>,
    /// Whether the counts were read from what the service wrote (its manifest, or an export's
    /// files). An unverified outcome is never announced as clean.
    pub verified: bool,
    pub at: Timestamp,
}

impl JobOutcome {
    /// An outcome with nothing read: only where the output is, if anywhere. Unverified.
    pub fn unread(output_location: Option<String>, at: Timestamp) -> JobOutcome {
        JobOutcome {
            counts: None,
            failed_files: Vec::new(),
            output_location,
            verified: false,
            at,
        }
    }

    fn from_output(output: JobOutput, at: Timestamp) -> JobOutcome {
        JobOutcome {
            counts: Some(output.manifest.counts),
            failed_files: output.failed_files,
            output_location: Some(output.location),
            verified: true,
            at,
        }
    }
}

/// What there is to read of a terminal job's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputPlan {
    /// Never started at a service (or never accepted): there is no output.
    Nothing,
    /// A failed export: what it left behind is partial, so only its location is recorded.
    LocationOnly { location: String },
    /// A completed export: its files are counted (no manifest is documented for exports).
    CountExport { location: String },
    /// An import: its manifest and failure files.
    ReadManifest { service: Service, location: String },
}

impl OutputPlan {
    pub fn for_job(job: &Job) -> OutputPlan {
        let Some(location) = output_location(job) else {
            return OutputPlan::Nothing;
        };
        match (job.kind(), job.status.is_success()) {
            (JobKind::Export, true) => OutputPlan::CountExport { location },
            (JobKind::Export, false) => OutputPlan::LocationOnly { location },
            (JobKind::Import, _) => OutputPlan::ReadManifest {
                service: job.service().unwrap_or(Service::HealthLake),
                location,
            },
        }
    }
}

/// The output folder of a job the service accepted; `None` for a job that never started.
pub fn output_location(job: &Job) -> Option<String> {
    if job.status == JobStatus::StartFailed {
        return None;
    }
    let target = job.target()?;
    Some(manifest::output_location(
        target.service,
        job.kind(),
        &target.output_s3_uri,
        &target.datastore_id,
        job.service_job_id.as_deref()?,
    ))
}

/// The result of looking for an import's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRead {
    Found(JobOutput),
    Missing { uri: String },
}

/// The outcome to record, whether the manifest was found, and a note for the Finished event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidedOutcome {
    pub outcome: JobOutcome,
    /// Absent when there was no manifest to look for.
    pub manifest_found: Option<bool>,
    pub note: Option<String>,
}

impl DecidedOutcome {
    /// An outcome for which no manifest was looked for.
    pub fn without_manifest(outcome: JobOutcome) -> DecidedOutcome {
        DecidedOutcome {
            outcome,
            manifest_found: None,
            note: None,
        }
    }

    /// A completed export's files, counted.
    pub fn counted_export(output: JobOutput, at: Timestamp) -> DecidedOutcome {
        DecidedOutcome::without_manifest(JobOutcome::from_output(output, at))
    }
}

/// What to do with an import's manifest read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestDecision {
    Record(DecidedOutcome),
    /// A completed job's manifest is not there yet: the service writes it shortly after the job
    /// ends, so the finish step is retried.
    WaitForManifest {
        uri: String,
    },
}

/// Only a job that completed is sure to write a manifest; one that failed or was cancelled may
/// write none, so its manifest is read if it is there and never waited for.
pub fn expects_manifest(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    )
}

/// What an import's manifest read means. `require_manifest` is false once the workflow has
/// waited long enough: a missing manifest is then recorded as missing, with a note.
pub fn decide_manifest(
    status: JobStatus,
    location: String,
    read: ManifestRead,
    require_manifest: bool,
    at: Timestamp,
) -> ManifestDecision {
    match read {
        ManifestRead::Found(output) => {
            let note = output
                .manifest
                .resources_failed
                .filter(|&n| n > 0)
                .map(|n| format!("{n} resources were not imported"));
            ManifestDecision::Record(DecidedOutcome {
                outcome: JobOutcome::from_output(output, at),
                manifest_found: Some(true),
                note,
            })
        }
        ManifestRead::Missing { uri } if require_manifest && expects_manifest(status) => {
            ManifestDecision::WaitForManifest { uri }
        }
        ManifestRead::Missing { uri } => ManifestDecision::Record(DecidedOutcome {
            outcome: JobOutcome::unread(Some(location), at),
            manifest_found: Some(false),
            note: expects_manifest(status)
                .then(|| format!("the output manifest {uri} did not appear")),
        }),
    }
}

/// The result one upload of a finished batch gets, from its batch's end and what the batch's
/// output says of its file (`failure`: the service's message for it, if it failed). Only an
/// outcome read from the manifest lets an upload be `COMPLETED`; a batch that ended without one
/// passes its own status on, saying that the file's result was not checked.
pub fn member_result(
    batch: &Job,
    failure: Option<&str>,
    at: Timestamp,
) -> crate::domain::job::Transition {
    use crate::domain::job::Transition;
    let verified = batch.outcome_verified == Some(true);
    match batch.status {
        JobStatus::Completed | JobStatus::CompletedWithErrors if verified => match failure {
            None => Transition::to(JobStatus::Completed, at),
            // HealthLake reports failed resources, so a file with some can still have imported
            // the rest; a HealthImaging failure is the whole file's.
            Some(message) => {
                let status = match batch.service() {
                    Some(Service::HealthLake) => JobStatus::CompletedWithErrors,
                    _ => JobStatus::Failed,
                };
                Transition::to(status, at).with_message(message)
            }
        },
        JobStatus::Completed | JobStatus::CompletedWithErrors => Transition::to(batch.status, at)
            .with_message(format!(
                "the batch's job ended {}, but its output manifest was not read: this file's own result is not known",
                batch.status
            )),
        status => {
            let why = batch.message.as_deref().unwrap_or("no message");
            Transition::to(status, at).with_message(format!("the batch's job ended {status}: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::OutputManifest;

    fn at() -> Timestamp {
        Timestamp::from_unix_seconds(1_790_000_000).unwrap()
    }

    fn output(failed: u64, resources_failed: Option<u64>) -> JobOutput {
        JobOutput {
            location: "s3://out/ds-FHIR_IMPORT-j/".into(),
            manifest: OutputManifest {
                counts: JobCounts {
                    scanned: 2,
                    imported: 2 - failed,
                    failed,
                },
                failure_output: None,
                resources_failed,
            },
            failed_files: Vec::new(),
        }
    }

    fn missing() -> ManifestRead {
        ManifestRead::Missing {
            uri: "s3://out/x/manifest.json".into(),
        }
    }

    #[test]
    fn a_found_manifest_is_recorded_with_its_counts() {
        let ManifestDecision::Record(decided) = decide_manifest(
            JobStatus::Completed,
            "s3://out/x/".into(),
            ManifestRead::Found(output(1, None)),
            true,
            at(),
        ) else {
            panic!("a found manifest is recorded")
        };
        assert_eq!(decided.manifest_found, Some(true));
        assert!(decided.outcome.verified);
        assert_eq!(decided.outcome.counts.unwrap().failed, 1);
        assert_eq!(decided.note, None);
    }

    #[test]
    fn failed_resources_are_noted_even_when_every_file_imported() {
        let ManifestDecision::Record(decided) = decide_manifest(
            JobStatus::Completed,
            "s3://out/x/".into(),
            ManifestRead::Found(output(0, Some(3))),
            true,
            at(),
        ) else {
            panic!()
        };
        assert_eq!(
            decided.note.as_deref(),
            Some("3 resources were not imported")
        );
    }

    #[test]
    fn a_completed_job_waits_for_its_manifest_while_it_is_required() {
        for status in [JobStatus::Completed, JobStatus::CompletedWithErrors] {
            assert_eq!(
                decide_manifest(status, "s3://out/x/".into(), missing(), true, at()),
                ManifestDecision::WaitForManifest {
                    uri: "s3://out/x/manifest.json".into()
                }
            );
        }
    }

    #[test]
    fn a_manifest_that_never_appeared_is_recorded_as_missing_with_a_note() {
        let ManifestDecision::Record(decided) = decide_manifest(
            JobStatus::Completed,
            "s3://out/x/".into(),
            missing(),
            false,
            at(),
        ) else {
            panic!()
        };
        assert_eq!(decided.manifest_found, Some(false));
        assert_eq!(decided.outcome.counts, None);
        assert!(
            !decided.outcome.verified,
            "counts never read are not verified"
        );
        assert_eq!(
            decided.outcome.output_location.as_deref(),
            Some("s3://out/x/")
        );
        assert!(decided.note.unwrap().contains("did not appear"));
    }

    #[test]
    fn a_failed_job_never_waits_for_a_manifest() {
        for status in [JobStatus::Failed, JobStatus::CancelCompleted] {
            let ManifestDecision::Record(decided) =
                decide_manifest(status, "s3://out/x/".into(), missing(), true, at())
            else {
                panic!("{status} is never waited for")
            };
            assert_eq!(decided.manifest_found, Some(false));
            assert_eq!(decided.note, None);
        }
    }
}

#[cfg(test)]
mod member_tests {
    use super::*;
    use crate::domain::batch::{BatchFill, BatchFolder};
    use crate::domain::job::MessageChange;

    fn batch(service: Service, status: JobStatus, verified: Option<bool>) -> Job {
        let at = Timestamp::from_unix_seconds(1_800_000_000).unwrap();
        let folder = BatchFolder {
            service,
            datastore_id: "d".repeat(32),
            bucket: "ingest".into(),
            folder: "dicom/s/".into(),
        };
        let mut job = Job::open_batch(
            &folder,
            0,
            BatchFill::first(1, at),
            "s3://out/",
            "s3://ingest/staging/b/".into(),
        );
        job.status = status;
        job.outcome_verified = verified;
        job.message = Some("boom".into());
        job
    }

    fn at() -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_100).unwrap()
    }

    #[test]
    fn a_checked_batch_gives_each_file_its_own_result() {
        let done = batch(Service::HealthImaging, JobStatus::Completed, Some(true));
        assert_eq!(member_result(&done, None, at()).to, JobStatus::Completed);
        let failed = member_result(&done, Some("InvalidDicomFile: no preamble"), at());
        assert_eq!(failed.to, JobStatus::Failed);
        assert_eq!(
            failed.fields.message,
            MessageChange::Set("InvalidDicomFile: no preamble".into())
        );
        let fhir = batch(
            Service::HealthLake,
            JobStatus::CompletedWithErrors,
            Some(true),
        );
        assert_eq!(
            member_result(&fhir, Some("bad resource"), at()).to,
            JobStatus::CompletedWithErrors
        );
    }

    #[test]
    fn an_unchecked_or_failed_batch_never_makes_a_file_look_clean() {
        let unread = batch(Service::HealthImaging, JobStatus::Completed, Some(false));
        let result = member_result(&unread, None, at());
        assert_eq!(result.to, JobStatus::Completed);
        assert!(matches!(result.fields.message, MessageChange::Set(m) if m.contains("not known")));
        for status in [
            JobStatus::Failed,
            JobStatus::StartFailed,
            JobStatus::TrackingStopped,
        ] {
            let ended = batch(Service::HealthLake, status, Some(true));
            let result = member_result(&ended, None, at());
            assert_eq!(result.to, status);
            assert!(matches!(result.fields.message, MessageChange::Set(m) if m.contains("boom")));
        }
    }
}
