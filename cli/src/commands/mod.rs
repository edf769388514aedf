//! The commands, each generic over the ports it uses (the same ones the functions use), so each
//! is unit-tested on the core's in-memory fakes. A command returns its report; `render` prints it.

pub mod batches;
pub mod export;
pub mod jobs;
pub mod retry;
pub mod status;
pub mod watch;

use healthimport::domain::job::{JobId, JobStatus, Timestamp};
use healthimport::domain::s3_uri::split_s3_uri;

use crate::error::CliError;

/// What a command was pointed at: an upload by its location, or a record by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Upload { bucket: String, key: String },
    Record(JobId),
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, CliError> {
        let text = text.trim();
        if text.starts_with("s3://") {
            return match split_s3_uri(text) {
                Some((bucket, key)) if !key.is_empty() => Ok(Target::Upload {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(CliError::Usage(format!(
                    "{text} names no object: give s3://bucket/key"
                ))),
            };
        }
        let is_id = !text.is_empty()
            && text.len() <= 80
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if is_id {
            Ok(Target::Record(JobId::from_stored(text)))
        } else {
            Err(CliError::Usage(format!(
                "{text:?} is neither s3://bucket/key nor a job id"
            )))
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Upload { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Target::Record(id) => write!(f, "job {id}"),
        }
    }
}

/// A status as people type it: `FAILED`, `failed`, `in-progress`, `completed_with_errors`.
pub fn parse_status(text: &str) -> Result<JobStatus, CliError> {
    let wire = text.trim().to_ascii_uppercase().replace('-', "_");
    wire.parse().map_err(|_| {
        let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        CliError::Usage(format!(
            "unknown status {text:?}; one of {}",
            known.join(", ")
        ))
    })
}

/// `--since`: an age (`30m`, `12h`, `1d`, `2w`) before `now`, or an RFC 3339 instant.
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, CliError> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let usage = || {
        CliError::Usage(format!(
            "--since {text:?}: give an age such as 30m, 12h, 1d or 2w, or an RFC 3339 time"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(usage)?;
    let (amount, unit) = text.split_at(split);
    let amount: i64 = amount.parse().map_err(|_| usage())?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(usage()),
    };
    let seconds = amount.checked_mul(unit_seconds).ok_or_else(usage)?;
    Ok(now.plus(-time::Duration::seconds(seconds)))
}

/// The statuses a service job (a batch or an export) can be in: every status but the ones only
/// an upload's own record holds.
pub fn service_job_statuses() -> impl Iterator<Item = JobStatus> {
    JobStatus::ALL
        .into_iter()
        .filter(|s| !matches!(s, JobStatus::Batched | JobStatus::Skipped))
}

/// The statuses of a job that is under way: recorded, not ended (open batches are shown apart).
pub fn running_statuses() -> impl Iterator<Item = JobStatus> {
    JobStatus::ALL
        .into_iter()
        .filter(|s| !s.is_terminal() && !matches!(s, JobStatus::Open | JobStatus::Batched))
}

#[cfg(test)]
pub(crate) mod testing {
    //! The fakes' world, as the commands see it.
    use healthimport::domain::batch::{BatchFill, BatchFolder};
    use healthimport::domain::job::{
        Job, JobId, JobStatus, Service, SourceObject, Target, Timestamp, Transition,
    };
    use healthimport::fakes::MemoryJobStore;
    use healthimport::ports::store::JobStore;

    pub const FHIR: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
    pub const IMAGING: &str = "d1c0d1c0d1c0d1c0d1c0d1c0d1c0d1c0";

    pub fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000 + seconds).unwrap()
    }

    pub fn folder(service: Service, path: &str) -> BatchFolder {
        BatchFolder {
            service,
            datastore_id: match service {
                Service::HealthLake => FHIR.into(),
                Service::HealthImaging => IMAGING.into(),
            },
            bucket: "ingest".into(),
            folder: path.into(),
        }
    }

    pub fn target(service: Service) -> Target {
        let f = folder(service, "x/");
        Target {
            service,
            datastore_id: f.datastore_id,
            output_s3_uri: "s3://out/".into(),
        }
    }

    pub fn source(key: &str) -> SourceObject {
        SourceObject {
            bucket: "ingest".into(),
            key: key.into(),
            size: 100,
            e_tag: Some(format!("e-{key}")),
            version_id: None,
        }
    }

    /// An open batch of `path` with one upload `key`, both recorded in `store`.
    pub async fn open_batch(
        store: &MemoryJobStore,
        service: Service,
        path: &str,
        key: &str,
        first: Timestamp,
    ) -> (Job, Job) {
        use healthimport::ports::batches::BatchStore;
        let f = folder(service, path);
        let batch = Job::open_batch(
            &f,
            0,
            BatchFill::first(100, first),
            "s3://out/",
            format!("s3://ingest/staging/{}/", f.batch_id(0)),
        );
        let upload = Job::batched(source(key), batch.job_id.clone(), target(service), first);
        store.open_batch(&batch, &upload).await.unwrap();
        (batch, upload)
    }

    /// Moves a record through `statuses`, as the workflow would.
    pub async fn advance(store: &MemoryJobStore, id: &JobId, statuses: &[(JobStatus, i64)]) -> Job {
        let mut job = None;
        for (status, seconds) in statuses {
            let mut change = Transition::to(*status, at(*seconds));
            if *status == JobStatus::Failed {
                change = change.with_message("InvalidDicomFile: not DICOM");
            }
            job = Some(store.transition(id, &change).await.unwrap());
        }
        let _ = job;
        store.get(id).await.unwrap().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_uploads_or_ids_and_anything_else_is_a_usage_error() {
        assert_eq!(
            Target::parse("s3://ingest/fhir/a b.ndjson").unwrap(),
            Target::Upload {
                bucket: "ingest".into(),
                key: "fhir/a b.ndjson".into()
            }
        );
        assert_eq!(
            Target::parse("b-0123abcd-2").unwrap(),
            Target::Record(JobId::from_stored("b-0123abcd-2"))
        );
        for bad in ["s3://ingest", "s3://ingest/", "fhir/a.ndjson", ""] {
            let err = Target::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
    }

    #[test]
    fn statuses_and_ages_read_as_people_write_them() {
        assert_eq!(parse_status("in-progress").unwrap(), JobStatus::InProgress);
        assert_eq!(
            parse_status("COMPLETED_WITH_ERRORS").unwrap(),
            JobStatus::CompletedWithErrors
        );
        assert!(parse_status("done")
            .unwrap_err()
            .to_string()
            .contains("FAILED"));
        let now = testing::at(1_000_000);
        assert_eq!(
            parse_since("1d", now).unwrap(),
            now.plus(-time::Duration::days(1))
        );
        assert_eq!(
            parse_since("30m", now).unwrap(),
            now.plus(-time::Duration::minutes(30))
        );
        assert_eq!(
            parse_since("2026-11-29T00:00:00Z", now)
                .unwrap()
                .to_string(),
            "2026-11-29T00:00:00.000Z"
        );
        for bad in ["", "d", "1y", "yesterday"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
