//! `healthimport retry <s3://… | job id>`: re-drives a START_FAILED or FAILED import as a new
//! attempt. The upload joins its folder's open batch again through the starter's own intake path
//! (the same batching policy, batch records and workflow), under a record of its own that names
//! its attempt and the record it retries; the failed record stays as it was. A failed batch's id
//! retries each of its uploads that failed.

use healthimport::domain::job::{Job, JobId, Timestamp};
use healthimport::domain::retry::{batch_failed, not_an_upload, plan_retry, RetryRefused};
use healthimport::intake::{join_batch_as, Batching, Joined};
use healthimport::ports::batches::BatchStore;
use healthimport::ports::store::JobStore;
use healthimport::ports::workflow::TrackingWorkflow;
use serde::Serialize;

use super::Target;
use crate::error::CliError;

/// One upload re-driven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retried {
    pub upload: String,
    /// The new attempt's record.
    pub job_id: JobId,
    pub attempt: u32,
    /// The record of the attempt it retries.
    pub retries: JobId,
    pub batch_id: JobId,
    /// Whether the retry opened its batch (and started its workflow).
    pub opened_batch: bool,
}

/// What a retry did: the uploads re-driven and, for a batch, those that were not, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryReport {
    pub retried: Vec<Retried>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_retried: Vec<NotRetried>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotRetried {
    pub upload: String,
    pub reason: String,
}

pub async fn retry<S, W>(
    store: &S,
    tracking: &W,
    batching: &Batching,
    target: &Target,
    now: Timestamp,
) -> Result<RetryReport, CliError>
where
    S: JobStore + BatchStore,
    W: TrackingWorkflow,
{
    let refused = |reason| CliError::Refused {
        target: target.to_string(),
        reason,
    };
    let job = match target {
        Target::Upload { bucket, key } => {
            let retried = retry_upload(store, tracking, batching, bucket, key, now)
                .await?
                .map_err(refused)?;
            return Ok(RetryReport {
                retried: vec![retried],
                not_retried: Vec::new(),
            });
        }
        Target::Record(id) => store.get(id).await?.ok_or_else(|| CliError::NotFound {
            what: format!(
                "no record with id {id}: give the upload's s3://bucket/key, or an id from `healthimport status` or `healthimport jobs`"
            ),
        })?,
    };
    if let Some(source) = job.source() {
        let retried = retry_upload(store, tracking, batching, &source.bucket, &source.key, now)
            .await?
            .map_err(refused)?;
        return Ok(RetryReport {
            retried: vec![retried],
            not_retried: Vec::new(),
        });
    }
    if job.batch().is_none() {
        return Err(refused(
            not_an_upload(&job).unwrap_or(RetryRefused::NoRecord),
        ));
    }
    batch_failed(&job).map_err(refused)?;
    retry_batch(store, tracking, batching, &job, now)
        .await?
        .map_err(refused)
}

/// Retries each upload of the failed batch `batch` whose latest attempt failed.
#[tracing::instrument(skip_all, fields(batch_id = %batch.job_id))]
async fn retry_batch<S, W>(
    store: &S,
    tracking: &W,
    batching: &Batching,
    batch: &Job,
    now: Timestamp,
) -> Result<Result<RetryReport, RetryRefused>, CliError>
where
    S: JobStore + BatchStore,
    W: TrackingWorkflow,
{
    let mut members = store.members(&batch.job_id).await?;
    members.sort_by_key(Job::subject);
    let mut report = RetryReport {
        retried: Vec::new(),
        not_retried: Vec::new(),
    };
    for member in &members {
        let Some(source) = member.source() else {
            continue;
        };
        match retry_upload(store, tracking, batching, &source.bucket, &source.key, now).await? {
            Ok(retried) => report.retried.push(retried),
            Err(reason) => report.not_retried.push(NotRetried {
                upload: source.uri(),
                reason: reason.to_string(),
            }),
        }
    }
    if report.retried.is_empty() {
        return Ok(Err(RetryRefused::NothingToRetry {
            job_id: batch.job_id.clone(),
        }));
    }
    Ok(Ok(report))
}

/// Retries the upload `s3://bucket/key` if its latest attempt failed; the refusal otherwise.
#[tracing::instrument(skip_all, fields(job_id = tracing::field::Empty, batch_id = tracing::field::Empty))]
async fn retry_upload<S, W>(
    store: &S,
    tracking: &W,
    batching: &Batching,
    bucket: &str,
    key: &str,
    now: Timestamp,
) -> Result<Result<Retried, RetryRefused>, CliError>
where
    S: JobStore + BatchStore,
    W: TrackingWorkflow,
{
    let records = store.find_by_source(bucket, key).await?;
    let plan = match plan_retry(&records) {
        Ok(plan) => plan,
        Err(refused) => return Ok(Err(refused)),
    };
    let upload = plan.source.uri();
    let first_id = plan.source.job_id();
    let attempt = plan.attempt.clone();
    let joined = join_batch_as(
        store,
        tracking,
        batching,
        &plan.folder,
        plan.source,
        &plan.target,
        Some(&plan.attempt),
        now,
    )
    .await?;
    let (job_id, batch_id, opened_batch) = match joined {
        Joined::Joined { batch_id, opened } => {
            let job_id = JobId::for_attempt(&first_id, attempt.number);
            (job_id, batch_id, opened)
        }
        // The same retry ran a moment ago (the attempt's id is the same): report it.
        Joined::AlreadyRecorded(existing) => {
            let batch_id = existing
                .batch_id()
                .cloned()
                .unwrap_or_else(|| existing.job_id.clone());
            (existing.job_id.clone(), batch_id, false)
        }
    };
    let span = tracing::Span::current();
    span.record("job_id", tracing::field::display(&job_id));
    span.record("batch_id", tracing::field::display(&batch_id));
    tracing::info!(attempt = attempt.number, retries = %attempt.retries, "upload re-driven");
    Ok(Ok(Retried {
        upload,
        job_id,
        attempt: attempt.number,
        retries: attempt.retries,
        batch_id,
        opened_batch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::*;
    use healthimport::domain::batch::BatchPolicy;
    use healthimport::domain::batch::Staging;
    use healthimport::domain::job::{JobStatus, Service};
    use healthimport::fakes::{MemoryJobStore, RecordingTracking};

    fn batching() -> Batching {
        Batching {
            policy: BatchPolicy::default(),
            staging: Staging::new("staging/"),
        }
    }

    fn upload(key: &str) -> Target {
        Target::Upload {
            bucket: "ingest".into(),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn a_failed_upload_joins_a_new_batch_as_attempt_two_and_the_old_record_stays() {
        let store = MemoryJobStore::default();
        let tracking = RecordingTracking::default();
        let (batch, first) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s1/",
            "dicom/s1/IM1",
            at(0),
        )
        .await;
        advance(
            &store,
            &batch.job_id,
            &[(JobStatus::Pending, 60), (JobStatus::Failed, 90)],
        )
        .await;
        advance(&store, &first.job_id, &[(JobStatus::Failed, 90)]).await;

        let report = retry(
            &store,
            &tracking,
            &batching(),
            &upload("dicom/s1/IM1"),
            at(1000),
        )
        .await
        .unwrap();
        let [retried] = report.retried.as_slice() else {
            panic!("{report:?}")
        };
        assert_eq!(retried.attempt, 2);
        assert_eq!(retried.retries, first.job_id);
        assert_ne!(
            retried.batch_id, batch.job_id,
            "a new batch of the same folder"
        );
        assert!(retried.opened_batch);
        assert_eq!(
            tracking.tracked(),
            vec![retried.batch_id.clone()],
            "its workflow started"
        );

        let records = store
            .find_by_source("ingest", "dicom/s1/IM1")
            .await
            .unwrap();
        assert_eq!(records.len(), 2);
        let old = records.iter().find(|r| r.job_id == first.job_id).unwrap();
        assert_eq!(old.status, JobStatus::Failed, "the failed record stays");
        let new = records.iter().find(|r| r.job_id == retried.job_id).unwrap();
        assert_eq!(new.status, JobStatus::Batched);
        assert_eq!(new.attempt_number(), 2);
        assert_eq!(new.batch_id(), Some(&retried.batch_id));
        let new_batch = store.get_job(&retried.batch_id);
        assert_eq!(new_batch.batch().unwrap().folder, "dicom/s1/");

        // The retry is under way now: a second one is refused until it ends.
        let err = retry(
            &store,
            &tracking,
            &batching(),
            &upload("dicom/s1/IM1"),
            at(1001),
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("still BATCHED"), "{err}");
    }

    #[tokio::test]
    async fn a_completed_upload_and_a_running_batch_are_refused_with_exit_code_1() {
        let store = MemoryJobStore::default();
        let tracking = RecordingTracking::default();
        let (batch, done) =
            open_batch(&store, Service::HealthLake, "fhir/", "fhir/a.ndjson", at(0)).await;
        advance(&store, &done.job_id, &[(JobStatus::Completed, 90)]).await;
        let err = retry(
            &store,
            &tracking,
            &batching(),
            &upload("fhir/a.ndjson"),
            at(100),
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string().contains("COMPLETED: nothing to retry"),
            "{err}"
        );

        let err = retry(
            &store,
            &tracking,
            &batching(),
            &Target::Record(batch.job_id.clone()),
            at(100),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("is OPEN"), "{err}");
        let err = retry(
            &store,
            &tracking,
            &batching(),
            &upload("fhir/none.ndjson"),
            at(100),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no record"), "{err}");
        assert!(tracking.tracked().is_empty(), "nothing was re-driven");
    }

    #[tokio::test]
    async fn an_export_is_not_retried_but_requested_again() {
        use healthimport::domain::export::{ExportMode, ExportRequest, ExportTrigger};
        let store = MemoryJobStore::default();
        let request = ExportRequest::new(
            ExportTrigger::OnDemand {
                request_id: "r1".into(),
            },
            ExportMode::Full,
            None,
            at(0),
        );
        let export = Job::export(request, FHIR, "s3://out/exports/", at(0));
        store.create(&export).await.unwrap();
        advance(&store, &export.job_id, &[(JobStatus::Failed, 10)]).await;
        let err = retry(
            &store,
            &RecordingTracking::default(),
            &batching(),
            &Target::Record(export.job_id.clone()),
            at(20),
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let reason = err.to_string();
        assert!(reason.contains("is an export"), "{reason}");
    }

    #[tokio::test]
    async fn a_start_failed_batch_retries_each_of_its_uploads() {
        let store = MemoryJobStore::default();
        let tracking = RecordingTracking::default();
        let (batch, first) =
            open_batch(&store, Service::HealthLake, "fhir/", "fhir/a.ndjson", at(0)).await;
        use healthimport::ports::batches::BatchStore;
        let rule = BatchPolicy::default().join_rule(Service::HealthLake, 100, at(1));
        let second = Job::batched(
            source("fhir/b.ndjson"),
            batch.job_id.clone(),
            target(Service::HealthLake),
            at(1),
        );
        store
            .join_batch(&batch.job_id, &second, 100, at(1), &rule)
            .await
            .unwrap();
        advance(&store, &batch.job_id, &[(JobStatus::StartFailed, 90)]).await;
        for id in [&first.job_id, &second.job_id] {
            advance(&store, id, &[(JobStatus::StartFailed, 90)]).await;
        }
        let report = retry(
            &store,
            &tracking,
            &batching(),
            &Target::Record(batch.job_id.clone()),
            at(500),
        )
        .await
        .unwrap();
        assert_eq!(
            report
                .retried
                .iter()
                .map(|r| r.upload.as_str())
                .collect::<Vec<_>>(),
            vec!["s3://ingest/fhir/a.ndjson", "s3://ingest/fhir/b.ndjson"]
        );
        assert_eq!(
            report.retried[0].batch_id, report.retried[1].batch_id,
            "one new batch"
        );
        assert!(report.not_retried.is_empty());
    }
}
