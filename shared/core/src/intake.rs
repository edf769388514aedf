//! An upload's way into its batch: the one path from "this object should be imported" to an upload
//! record in an open batch whose workflow is running, and the marker's way to close its folder's
//! batch. Every step is idempotent on the upload's id: a redelivered event finds the upload's
//! record (and its batch) instead of joining another batch.

use crate::domain::batch::{Admits, BatchFill, BatchFolder, BatchPolicy, CloseReason, Staging};
use crate::domain::job::{Attempt, Job, JobId, SourceObject, Target, Timestamp};
use crate::ports::batches::{BatchStore, CloseOutcome, JoinOutcome, OpenOutcome};
use crate::ports::store::StoreError;
use crate::ports::workflow::{TrackingError, TrackingWorkflow};

/// How many batches of a folder one upload may find closed before giving up. Each step is one
/// batch that closed between the cursor read and the join: more than a few means the folder's
/// cursor is far behind, which a retry (after the cursor moved) resolves.
const MAX_GENERATION_STEPS: u32 = 64;

/// What [`join_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The upload is in `batch_id`; `opened`: it is the batch's first file.
    Joined { batch_id: JobId, opened: bool },
    /// The upload was recorded before (a redelivered event): this is its record.
    AlreadyRecorded(Box<Job>),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tracking(#[from] TrackingError),
    #[error(
        "the batches of {folder} kept closing under upload {job_id} ({steps} in a row); retry"
    )]
    Contended {
        folder: String,
        job_id: JobId,
        steps: u32,
    },
}

/// Where batches go: their policy, their staging prefix, and each service's output location.
#[derive(Debug, Clone, PartialEq)]
pub struct Batching {
    pub policy: BatchPolicy,
    pub staging: Staging,
}

/// Puts the upload `source` into the open batch of `folder` (importing into `target`): joins the
/// batch the folder's cursor names, or, when that one is closed, full or due, closes it if it is
/// due and moves on to the next, opening it if it does not exist yet. The batch's workflow is
/// started when the batch is opened, and again (a no-op) for a redelivered upload.
pub async fn join_batch(
    store: &(impl BatchStore + ?Sized),
    tracking: &(impl TrackingWorkflow + ?Sized),
    batching: &Batching,
    folder: &BatchFolder,
    source: SourceObject,
    target: &Target,
    now: Timestamp,
) -> Result<Joined, IntakeError> {
    join_batch_as(store, tracking, batching, folder, source, target, None, now).await
}

/// [`join_batch`] for a given attempt at the upload: `None` is its first (the starter's), `Some`
/// an operator's retry of an import that failed, recorded under the attempt's own id so that the
/// failed record stays. The retry takes the same path as the first attempt: the same batching
/// policy, the same batch records, the same workflow.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "join", skip_all, fields(job_id = tracing::field::Empty, batch_id = tracing::field::Empty))]
pub async fn join_batch_as(
    store: &(impl BatchStore + ?Sized),
    tracking: &(impl TrackingWorkflow + ?Sized),
    batching: &Batching,
    folder: &BatchFolder,
    source: SourceObject,
    target: &Target,
    attempt: Option<&Attempt>,
    now: Timestamp,
) -> Result<Joined, IntakeError> {
    let upload_of = |batch_id: JobId| {
        let upload = Job::batched(source.clone(), batch_id, target.clone(), now);
        match attempt {
            Some(attempt) => upload.as_attempt(attempt.clone()),
            None => upload,
        }
    };
    let upload_id = upload_of(folder.batch_id(0)).job_id;
    tracing::Span::current().record("job_id", tracing::field::display(&upload_id));
    let size = source.size;
    let rule = batching.policy.join_rule(folder.service, size, now);
    let mut generation = store.latest_generation(folder).await?;
    for _ in 0..MAX_GENERATION_STEPS {
        let batch_id = folder.batch_id(generation);
        tracing::Span::current().record("batch_id", tracing::field::display(&batch_id));
        let upload = upload_of(batch_id.clone());
        let current = match store
            .join_batch(&batch_id, &upload, size, now, &rule)
            .await?
        {
            JoinOutcome::Joined => {
                return Ok(Joined::Joined {
                    batch_id,
                    opened: false,
                })
            }
            JoinOutcome::UploadExists(existing) => {
                return redelivered(tracking, batching, existing).await
            }
            JoinOutcome::NotAdmitted(current) => current,
        };
        let Some(batch) = current else {
            let batch = Job::open_batch(
                folder,
                generation,
                BatchFill::first(size, now),
                &target.output_s3_uri,
                batching.staging.batch_uri(&folder.bucket, &batch_id),
            );
            match store.open_batch(&batch, &upload).await? {
                OpenOutcome::Opened => {
                    tracing::info!(folder = %folder.folder, generation, "batch opened");
                    tracking
                        .track(&batch_id, first_wait(&batching.policy))
                        .await?;
                    return Ok(Joined::Joined {
                        batch_id,
                        opened: true,
                    });
                }
                // Another upload opened it a moment earlier: join it.
                OpenOutcome::BatchExists => continue,
                OpenOutcome::UploadExists(existing) => {
                    return redelivered(tracking, batching, existing).await
                }
            }
        };
        if let (crate::domain::job::JobStatus::Open, Some(b)) = (batch.status, batch.batch()) {
            match batching.policy.admits(folder.service, &b.fill, size, now) {
                // It changed between the join and the read: try it again.
                Admits::Join => continue,
                Admits::CloseFirst(reason) => {
                    let if_last = (reason == CloseReason::Quiet).then_some(b.fill.last_file_at);
                    match store.close_batch(&batch_id, reason, now, if_last).await? {
                        CloseOutcome::FillChanged => continue,
                        CloseOutcome::Closed(_) => {
                            tracing::info!(%reason, files = b.fill.files, "batch closed by the next upload")
                        }
                        CloseOutcome::NotOpen(_) | CloseOutcome::NotFound => {}
                    }
                }
            }
        }
        generation += 1;
    }
    Err(IntakeError::Contended {
        folder: folder.folder.clone(),
        job_id: upload_id,
        steps: MAX_GENERATION_STEPS,
    })
}

async fn redelivered(
    tracking: &(impl TrackingWorkflow + ?Sized),
    batching: &Batching,
    existing: Box<Job>,
) -> Result<Joined, IntakeError> {
    // The first delivery may have stopped between the batch's open and its workflow's start.
    if let Some(batch_id) = existing.batch_id() {
        tracking
            .track(batch_id, first_wait(&batching.policy))
            .await?;
    }
    Ok(Joined::AlreadyRecorded(existing))
}

/// A batch's workflow first wakes when the batch could close: not before its quiet period.
fn first_wait(policy: &BatchPolicy) -> u64 {
    policy.quiet.whole_seconds().max(0) as u64
}

/// Closes the open batch of `folder` because its marker arrived; `None` when none is open (it
/// closed before, or no file arrived yet): a marker after a close is harmless.
#[tracing::instrument(name = "marker", skip_all, fields(folder = %folder.folder))]
pub async fn close_on_marker(
    store: &(impl BatchStore + ?Sized),
    folder: &BatchFolder,
    now: Timestamp,
) -> Result<Option<JobId>, StoreError> {
    let batch_id = folder.batch_id(store.latest_generation(folder).await?);
    Ok(
        match store
            .close_batch(&batch_id, CloseReason::Marker, now, None)
            .await?
        {
            CloseOutcome::Closed(batch) => {
                tracing::info!(batch_id = %batch_id, files = batch.batch().map(|b| b.fill.files), "batch closed by its marker");
                Some(batch_id)
            }
            CloseOutcome::NotOpen(_) | CloseOutcome::FillChanged | CloseOutcome::NotFound => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::job::{JobStatus, Service};
    use crate::fakes::{MemoryJobStore, RecordingTracking};
    use time::Duration;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000 + seconds).unwrap()
    }

    fn folder(path: &str) -> BatchFolder {
        BatchFolder {
            service: Service::HealthImaging,
            datastore_id: "d".repeat(32),
            bucket: "ingest".into(),
            folder: path.into(),
        }
    }

    fn target() -> Target {
        Target {
            service: Service::HealthImaging,
            datastore_id: "d".repeat(32),
            output_s3_uri: "s3://out/dicom/".into(),
        }
    }

    fn source(key: &str, size: u64) -> SourceObject {
        SourceObject {
            bucket: "ingest".into(),
            key: key.into(),
            size,
            e_tag: Some(format!("e-{key}")),
            version_id: None,
        }
    }

    fn batching(max_files: u64) -> Batching {
        let mut policy = BatchPolicy::default();
        policy.imaging.max_files = max_files;
        Batching {
            policy,
            staging: Staging::default(),
        }
    }

    struct Intake {
        store: MemoryJobStore,
        tracking: RecordingTracking,
        batching: Batching,
    }

    impl Intake {
        fn new(max_files: u64) -> Self {
            Intake {
                store: MemoryJobStore::default(),
                tracking: RecordingTracking::default(),
                batching: batching(max_files),
            }
        }

        async fn upload(&self, key: &str, now: Timestamp) -> Joined {
            let f = folder(&key[..key.rfind('/').unwrap() + 1]);
            join_batch(
                &self.store,
                &self.tracking,
                &self.batching,
                &f,
                source(key, 10),
                &target(),
                now,
            )
            .await
            .unwrap()
        }

        async fn batch_of(&self, key: &str, now: Timestamp) -> JobId {
            match self.upload(key, now).await {
                Joined::Joined { batch_id, .. } => batch_id,
                Joined::AlreadyRecorded(job) => job.batch_id().unwrap().clone(),
            }
        }
    }

    #[tokio::test]
    async fn uploads_of_one_folder_join_one_batch_and_its_workflow_starts_once() {
        let intake = Intake::new(100);
        let first = intake.batch_of("dicom/s1/a", at(0)).await;
        let second = intake.batch_of("dicom/s1/b", at(5)).await;
        let other = intake.batch_of("dicom/s2/a", at(5)).await;
        assert_eq!(first, second);
        assert_ne!(first, other);
        assert_eq!(intake.tracking.tracked(), vec![first.clone(), other]);
        let batch = intake.store.get_job(&first);
        assert_eq!(batch.status, JobStatus::Open);
        assert_eq!(batch.batch().unwrap().fill.files, 2);
        assert_eq!(batch.batch().unwrap().fill.bytes, 20);
    }

    #[tokio::test]
    async fn a_redelivered_upload_finds_its_batch_and_counts_once() {
        let intake = Intake::new(100);
        let first = intake.batch_of("dicom/s1/a", at(0)).await;
        // Redelivered after the batch closed: it must not join the next one.
        intake
            .store
            .close_batch(&first, CloseReason::Marker, at(1), None)
            .await
            .unwrap();
        assert!(matches!(
            intake.upload("dicom/s1/a", at(2)).await,
            Joined::AlreadyRecorded(_)
        ));
        assert_eq!(intake.store.get_job(&first).batch().unwrap().fill.files, 1);
        assert_eq!(intake.store.members(&first).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_file_past_the_limit_closes_the_batch_and_opens_the_next() {
        let intake = Intake::new(2);
        let a = intake.batch_of("dicom/s1/a", at(0)).await;
        let b = intake.batch_of("dicom/s1/b", at(1)).await;
        let c = intake.batch_of("dicom/s1/c", at(2)).await;
        assert_eq!(a, b);
        assert_ne!(b, c);
        let closed = intake.store.get_job(&a);
        assert_eq!(closed.status, JobStatus::Pending);
        assert_eq!(
            closed.batch().unwrap().closed.map(|c| c.reason),
            Some(CloseReason::FileLimit)
        );
        assert_eq!(intake.store.get_job(&c).batch().unwrap().fill.files, 1);
    }

    #[tokio::test]
    async fn a_file_after_the_quiet_period_opens_a_new_batch() {
        let intake = Intake::new(100);
        let a = intake.batch_of("dicom/s1/a", at(0)).await;
        let quiet = intake.batching.policy.quiet.whole_seconds();
        let late = intake.batch_of("dicom/s1/b", at(quiet + 1)).await;
        assert_ne!(a, late);
        assert_eq!(
            intake
                .store
                .get_job(&a)
                .batch()
                .unwrap()
                .closed
                .map(|c| c.reason),
            Some(CloseReason::Quiet)
        );
    }

    #[tokio::test]
    async fn a_busy_folder_still_closes_at_the_maximum_wait() {
        let intake = Intake::new(100_000);
        let max_wait = intake.batching.policy.max_wait;
        let first = intake.batch_of("dicom/s1/f0", at(0)).await;
        let mut t = 0;
        let mut n = 1;
        while Duration::seconds(t + 10) < max_wait {
            t += 10;
            assert_eq!(
                intake.batch_of(&format!("dicom/s1/f{n}"), at(t)).await,
                first
            );
            n += 1;
        }
        let next = intake
            .batch_of("dicom/s1/late", at(max_wait.whole_seconds()))
            .await;
        assert_ne!(next, first);
        assert_eq!(
            intake
                .store
                .get_job(&first)
                .batch()
                .unwrap()
                .closed
                .map(|c| c.reason),
            Some(CloseReason::MaxWait)
        );
    }

    #[tokio::test]
    async fn a_marker_closes_the_open_batch_and_a_late_marker_is_harmless() {
        let intake = Intake::new(100);
        let a = intake.batch_of("dicom/s1/a", at(0)).await;
        let f = folder("dicom/s1/");
        assert_eq!(
            close_on_marker(&intake.store, &f, at(1)).await.unwrap(),
            Some(a.clone())
        );
        assert_eq!(
            close_on_marker(&intake.store, &f, at(2)).await.unwrap(),
            None
        );
        assert_eq!(
            intake
                .store
                .get_job(&a)
                .batch()
                .unwrap()
                .closed
                .map(|c| c.reason),
            Some(CloseReason::Marker)
        );
        // A file after the marker starts the folder's next batch.
        assert_ne!(intake.batch_of("dicom/s1/late", at(3)).await, a);
        // A marker for a folder that never had a file closes nothing.
        assert_eq!(
            close_on_marker(&intake.store, &folder("dicom/none/"), at(3))
                .await
                .unwrap(),
            None
        );
    }
}
