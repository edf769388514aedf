//! `healthimport status s3://bucket/key | JOB_ID`: what happened to an upload. Its records (every
//! attempt, newest first), the batch it joined (which holds the service job), and its own result
//! from that job's output.

use healthimport::domain::job::{Job, JobStatus};
use healthimport::ports::store::JobStore;
use serde::Serialize;

use super::Target;
use crate::error::CliError;

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum StatusReport {
    /// An upload: its attempts, newest first; the latest attempt's batch; its own result.
    Upload {
        upload: String,
        attempts: Vec<Job>,
        batch: Option<Job>,
        result: FileResult,
    },
    /// A batch or an export, asked for by its id.
    Job { job: Job },
}

/// The upload's own result, from its latest attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileResult {
    pub status: JobStatus,
    pub summary: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl FileResult {
    fn of(latest: &Job) -> FileResult {
        let summary = match latest.status {
            JobStatus::Completed => "imported",
            JobStatus::CompletedWithErrors => "imported, with errors the service reported",
            JobStatus::Failed => {
                "not imported; once the cause below is fixed, `healthimport retry` re-drives it"
            }
            JobStatus::StartFailed => {
                "its batch's job never started; `healthimport retry` re-drives it"
            }
            JobStatus::Skipped => "not imported: not importable as uploaded (why below)",
            JobStatus::TrackingStopped => "unknown: nothing follows its job any more",
            JobStatus::Batched => "waiting for its batch's job",
            s if s.is_terminal() => "ended",
            _ => "in progress",
        };
        FileResult {
            status: latest.status,
            summary,
            message: latest
                .skip_reason()
                .map(str::to_owned)
                .or_else(|| latest.message.clone()),
        }
    }
}

/// Reads what `target` names. `prefixes`: the watched prefixes, for the hint when an upload has no
/// record.
#[tracing::instrument(skip_all, fields(target = %target))]
pub async fn status(
    store: &impl JobStore,
    target: &Target,
    prefixes: &(String, String),
) -> Result<StatusReport, CliError> {
    match target {
        Target::Upload { bucket, key } => {
            let mut attempts = store.find_by_source(bucket, key).await?;
            if attempts.is_empty() {
                return Err(CliError::NotFound {
                    what: format!(
                        "no record for {target}: was it uploaded under {} or {}? An upload elsewhere is not imported",
                        prefixes.0, prefixes.1
                    ),
                });
            }
            attempts.sort_by_key(|job| std::cmp::Reverse((job.attempt_number(), job.created_at)));
            let latest = &attempts[0];
            let batch = match latest.batch_id() {
                Some(id) => store.get(id).await?,
                None => None,
            };
            Ok(StatusReport::Upload {
                upload: target.to_string(),
                result: FileResult::of(latest),
                batch,
                attempts,
            })
        }
        Target::Record(id) => {
            let job = store.get(id).await?.ok_or_else(|| CliError::NotFound {
                what: format!(
                    "no record with id {id}: give the upload's s3://bucket/key, or an id from `healthimport jobs`"
                ),
            })?;
            if let Some(source) = job.source() {
                // An upload's id: the same answer as its location, every attempt included.
                let upload = Target::Upload {
                    bucket: source.bucket.clone(),
                    key: source.key.clone(),
                };
                return Box::pin(status(store, &upload, prefixes)).await;
            }
            Ok(StatusReport::Job { job })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::*;
    use healthimport::domain::job::{Attempt, Service};
    use healthimport::fakes::MemoryJobStore;
    use healthimport::ports::batches::BatchStore;

    fn prefixes() -> (String, String) {
        ("fhir/".into(), "dicom/".into())
    }

    fn upload_target(key: &str) -> Target {
        Target::Upload {
            bucket: "ingest".into(),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn an_upload_shows_every_attempt_newest_first_its_batch_and_its_own_result() {
        let store = MemoryJobStore::default();
        let (batch, first) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s1/",
            "dicom/s1/IM1",
            at(0),
        )
        .await;
        advance(&store, &first.job_id, &[(JobStatus::Failed, 60)]).await;
        // A retry in the folder's next batch, still waiting.
        let f = folder(Service::HealthImaging, "dicom/s1/");
        let retry = Job::batched(
            source("dicom/s1/IM1"),
            f.batch_id(1),
            target(Service::HealthImaging),
            at(90),
        )
        .as_attempt(Attempt {
            number: 2,
            retries: first.job_id.clone(),
        });
        let next = Job::open_batch(
            &f,
            1,
            healthimport::domain::batch::BatchFill::first(100, at(90)),
            "s3://out/",
            "s3://ingest/staging/x/".into(),
        );
        store.open_batch(&next, &retry).await.unwrap();

        let report = status(&store, &upload_target("dicom/s1/IM1"), &prefixes())
            .await
            .unwrap();
        let StatusReport::Upload {
            attempts,
            batch: shown,
            result,
            ..
        } = report
        else {
            panic!("{report:?}")
        };
        assert_eq!(
            attempts
                .iter()
                .map(|a| a.attempt_number())
                .collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(attempts[1].status, JobStatus::Failed);
        assert_eq!(
            shown.unwrap().job_id,
            next.job_id,
            "the latest attempt's batch"
        );
        assert_ne!(next.job_id, batch.job_id);
        assert_eq!(result.status, JobStatus::Batched);

        // Asked by the first attempt's id: the same upload.
        let by_id = status(&store, &Target::Record(first.job_id.clone()), &prefixes())
            .await
            .unwrap();
        assert!(matches!(by_id, StatusReport::Upload { attempts, .. } if attempts.len() == 2));
    }

    #[tokio::test]
    async fn a_failed_upload_carries_the_services_message() {
        let store = MemoryJobStore::default();
        let (_, upload) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s1/",
            "dicom/s1/IM1",
            at(0),
        )
        .await;
        advance(&store, &upload.job_id, &[(JobStatus::Failed, 60)]).await;
        let StatusReport::Upload { result, .. } =
            status(&store, &upload_target("dicom/s1/IM1"), &prefixes())
                .await
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(result.status, JobStatus::Failed);
        assert!(result.message.unwrap().contains("InvalidDicomFile"));
    }

    #[tokio::test]
    async fn an_unknown_upload_says_where_uploads_go_and_exits_1() {
        let store = MemoryJobStore::default();
        let err = status(&store, &upload_target("elsewhere/a.ndjson"), &prefixes())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.to_string(),
            "no record for s3://ingest/elsewhere/a.ndjson: was it uploaded under fhir/ or dicom/? An upload elsewhere is not imported"
        );
        let err = status(
            &store,
            &Target::Record(healthimport::domain::job::JobId::from_stored("nope")),
            &prefixes(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
    }

    #[tokio::test]
    async fn a_batch_id_shows_the_batch() {
        let store = MemoryJobStore::default();
        let (batch, _) =
            open_batch(&store, Service::HealthLake, "fhir/", "fhir/a.ndjson", at(0)).await;
        let report = status(&store, &Target::Record(batch.job_id.clone()), &prefixes())
            .await
            .unwrap();
        assert!(matches!(report, StatusReport::Job { job } if job.job_id == batch.job_id));
    }
}
