//! The batch store, start admission and staged copies in memory, under the adapters' rules: a
//! join or an open is one atomic step with the upload's record, a close only from `OPEN`.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::{lock, MemoryJobStore};
use crate::domain::batch::{BatchFill, BatchFolder, CloseReason, JoinRule};
use crate::domain::job::{BatchClosed, Job, JobId, JobStatus, SourceObject, Timestamp, Work};
use crate::domain::s3_uri::s3_uri;
use crate::ports::admission::{Admission, Lane, StartAdmission};
use crate::ports::batches::{BatchStore, CloseOutcome, JoinOutcome, OpenOutcome};
use crate::ports::objects::{ObjectError, StagedCopies};
use crate::ports::store::StoreError;

#[derive(Debug, Default)]
pub(super) struct LaneState {
    holders: BTreeSet<JobId>,
    next_start_ms: i64,
}

fn fill_mut(job: &mut Job) -> Option<&mut crate::domain::job::Batch> {
    match &mut job.work {
        Work::Batch { batch, .. } => Some(batch),
        _ => None,
    }
}

#[async_trait]
impl BatchStore for MemoryJobStore {
    async fn latest_generation(&self, folder: &BatchFolder) -> Result<u64, StoreError> {
        Ok(lock(&self.cursors)
            .get(&folder.cursor_id())
            .copied()
            .unwrap_or(0))
    }

    async fn open_batch(&self, batch: &Job, upload: &Job) -> Result<OpenOutcome, StoreError> {
        let mut jobs = lock(&self.jobs);
        if let Some(existing) = jobs.get(&upload.job_id) {
            return Ok(OpenOutcome::UploadExists(Box::new(existing.clone())));
        }
        if jobs.contains_key(&batch.job_id) {
            return Ok(OpenOutcome::BatchExists);
        }
        jobs.insert(batch.job_id.clone(), batch.clone());
        jobs.insert(upload.job_id.clone(), upload.clone());
        if let (Some(folder), Some(b)) = (batch.batch_folder(), batch.batch()) {
            let mut cursors = lock(&self.cursors);
            let cursor = cursors.entry(folder.cursor_id()).or_default();
            *cursor = (*cursor).max(b.generation);
        }
        Ok(OpenOutcome::Opened)
    }

    async fn join_batch(
        &self,
        batch_id: &JobId,
        upload: &Job,
        size: u64,
        at: Timestamp,
        rule: &JoinRule,
    ) -> Result<JoinOutcome, StoreError> {
        let mut jobs = lock(&self.jobs);
        if let Some(existing) = jobs.get(&upload.job_id) {
            return Ok(JoinOutcome::UploadExists(Box::new(existing.clone())));
        }
        let Some(batch_job) = jobs.get_mut(batch_id) else {
            return Ok(JoinOutcome::NotAdmitted(None));
        };
        let status = batch_job.status;
        let snapshot = batch_job.clone();
        let Some(batch) = fill_mut(batch_job) else {
            return Ok(JoinOutcome::NotAdmitted(Some(Box::new(snapshot))));
        };
        let f = batch.fill;
        let admitted = status == JobStatus::Open && rule.holds_for(&f);
        if !admitted {
            return Ok(JoinOutcome::NotAdmitted(Some(Box::new(snapshot))));
        }
        batch.fill = BatchFill {
            files: f.files + 1,
            bytes: f.bytes.saturating_add(size),
            first_file_at: f.first_file_at,
            last_file_at: at.max(f.last_file_at),
        };
        jobs.insert(upload.job_id.clone(), upload.clone());
        Ok(JoinOutcome::Joined)
    }

    async fn close_batch(
        &self,
        batch_id: &JobId,
        reason: CloseReason,
        at: Timestamp,
        if_last_file_at: Option<Timestamp>,
    ) -> Result<CloseOutcome, StoreError> {
        let mut jobs = lock(&self.jobs);
        let Some(job) = jobs.get_mut(batch_id) else {
            return Ok(CloseOutcome::NotFound);
        };
        if job.status != JobStatus::Open {
            return Ok(CloseOutcome::NotOpen(job.status));
        }
        let Some(batch) = fill_mut(job) else {
            return Ok(CloseOutcome::NotOpen(JobStatus::Open));
        };
        if if_last_file_at.is_some_and(|last| last != batch.fill.last_file_at) {
            return Ok(CloseOutcome::FillChanged);
        }
        batch.closed = Some(BatchClosed { reason, at });
        job.status = JobStatus::Pending;
        job.updated_at = at;
        job.history.entry(JobStatus::Pending).or_insert(at);
        Ok(CloseOutcome::Closed(Box::new(job.clone())))
    }

    async fn mark_staged(&self, batch_id: &JobId, at: Timestamp) -> Result<(), StoreError> {
        if let Some(batch) = lock(&self.jobs).get_mut(batch_id).and_then(fill_mut) {
            batch.staged_at.get_or_insert(at);
        }
        Ok(())
    }

    async fn members(&self, batch_id: &JobId) -> Result<Vec<Job>, StoreError> {
        let mut members: Vec<_> = lock(&self.jobs)
            .values()
            .filter(|j| j.batch_id() == Some(batch_id))
            .cloned()
            .collect();
        members.sort_by_key(Job::subject);
        Ok(members)
    }
}

#[async_trait]
impl StartAdmission for MemoryJobStore {
    async fn admit(
        &self,
        lane: &Lane,
        job_id: &JobId,
        now: Timestamp,
    ) -> Result<Admission, StoreError> {
        let mut lanes = lock(&self.lanes);
        let state = lanes.entry(lane.name.clone()).or_default();
        let now_ms = now.unix_millis();
        if !state.holders.contains(job_id) && state.holders.len() >= lane.capacity as usize {
            return Ok(Admission::Wait {
                retry_after_ms: 0,
                reason: format!("{} holds {} jobs", lane.name, state.holders.len()),
            });
        }
        if let Some(interval) = lane.min_interval_ms {
            if now_ms < state.next_start_ms {
                return Ok(Admission::Wait {
                    retry_after_ms: (state.next_start_ms - now_ms) as u64,
                    reason: format!("{} start rate", lane.name),
                });
            }
            state.next_start_ms = now_ms + interval as i64;
        }
        state.holders.insert(job_id.clone());
        Ok(Admission::Granted)
    }

    async fn release(&self, lane: &Lane, job_id: &JobId) -> Result<(), StoreError> {
        if let Some(state) = lock(&self.lanes).get_mut(&lane.name) {
            state.holders.remove(job_id);
        }
        Ok(())
    }
}

impl MemoryJobStore {
    /// The record `job_id`, which the test knows exists.
    pub fn get_job(&self, job_id: &JobId) -> Job {
        lock(&self.jobs)
            .get(job_id)
            .cloned()
            .unwrap_or_else(|| panic!("no record {job_id}"))
    }

    /// The jobs holding a place in `lane`.
    pub fn lane_holders(&self, lane: &str) -> Vec<JobId> {
        lock(&self.lanes)
            .get(lane)
            .map(|s| s.holders.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Copies between the output files the fake holds (by `s3://` URI): a copy of a missing object is
/// [`ObjectError::Gone`], as S3's NoSuchKey is.
#[async_trait]
impl StagedCopies for super::MemoryOutputs {
    async fn copy(&self, source: &SourceObject, to_key: &str) -> Result<(), ObjectError> {
        let mut objects = lock(&self.objects);
        let Some(text) = objects.get(&source.uri()).cloned() else {
            return Err(ObjectError::Gone {
                bucket: source.bucket.clone(),
                key: source.key.clone(),
            });
        };
        objects.insert(s3_uri(&source.bucket, to_key), text);
        Ok(())
    }

    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<u64, ObjectError> {
        let mut objects = lock(&self.objects);
        let before = objects.len();
        let under = s3_uri(bucket, prefix);
        objects.retain(|uri, _| !uri.starts_with(&under));
        Ok((before - objects.len()) as u64)
    }
}
