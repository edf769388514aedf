//! Completion's ports in memory: task tokens on the fake store, executions that record how they
//! were released (a token releases once; again is "already released", as Step Functions answers),
//! and re-checks that are recorded, not run.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::{lock, MemoryJobStore};
use crate::domain::job::{Job, JobId};
use crate::ports::completion::{
    CheckError, CompletionChecks, CompletionStore, Release, ReleaseError, WaitingExecutions,
};
use crate::ports::store::StoreError;

#[async_trait]
impl CompletionStore for MemoryJobStore {
    async fn keep_task_token(
        &self,
        job_id: &JobId,
        token: &str,
    ) -> Result<Option<Job>, StoreError> {
        let jobs = lock(&self.jobs);
        let Some(job) = jobs.get(job_id) else {
            return Ok(None);
        };
        lock(&self.tokens).insert(job_id.clone(), token.to_owned());
        Ok(Some(job.clone()))
    }

    async fn task_token(&self, job_id: &JobId) -> Result<Option<String>, StoreError> {
        Ok(lock(&self.tokens).get(job_id).cloned())
    }

    async fn find_by_service_job(&self, service_job_id: &str) -> Result<Option<Job>, StoreError> {
        Ok(lock(&self.jobs)
            .values()
            .find(|j| j.service_job_id.as_deref() == Some(service_job_id))
            .cloned())
    }
}

/// How each token's wait ended: `Ok(output)` or `Err(error)`.
#[derive(Debug, Default)]
pub struct RecordingExecutions {
    released: Mutex<HashMap<String, Result<Value, String>>>,
    attempts: Mutex<usize>,
}

impl RecordingExecutions {
    pub fn released(&self, token: &str) -> Option<Result<Value, String>> {
        lock(&self.released).get(token).cloned()
    }

    /// Every release asked for, the ones answered "already released" included.
    pub fn attempts(&self) -> usize {
        *lock(&self.attempts)
    }

    fn end(&self, token: &str, how: Result<Value, String>) -> Release {
        *lock(&self.attempts) += 1;
        let mut released = lock(&self.released);
        if released.contains_key(token) {
            return Release::AlreadyReleased;
        }
        released.insert(token.to_owned(), how);
        Release::Released
    }
}

#[async_trait]
impl WaitingExecutions for RecordingExecutions {
    async fn succeed(
        &self,
        _job_id: &JobId,
        token: &str,
        output: &Value,
    ) -> Result<Release, ReleaseError> {
        Ok(self.end(token, Ok(output.clone())))
    }

    async fn fail(
        &self,
        _job_id: &JobId,
        token: &str,
        error: &str,
        _cause: &str,
    ) -> Result<Release, ReleaseError> {
        Ok(self.end(token, Err(error.to_owned())))
    }
}

/// Re-checks asked for, in order: (job, after seconds).
#[derive(Debug, Default)]
pub struct RecordingChecks {
    pub scheduled: Mutex<Vec<(JobId, u32)>>,
}

impl RecordingChecks {
    pub fn scheduled(&self) -> Vec<(JobId, u32)> {
        lock(&self.scheduled).clone()
    }
}

#[async_trait]
impl CompletionChecks for RecordingChecks {
    async fn check_later(&self, job_id: &JobId, after_seconds: u32) -> Result<(), CheckError> {
        lock(&self.scheduled).push((job_id.clone(), after_seconds));
        Ok(())
    }
}
