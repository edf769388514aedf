//! The `StartAdmission` port: starts admitted at each service's pace, so that none is refused for
//! a quota and dropped. A lane holds at most `capacity` of our unfinished jobs (HealthLake: the
//! few submitted or queued jobs its one-job lane and finite queue can take; HealthImaging: its
//! running-jobs quota) and, when it has a `min_interval`, admits one start per interval (the
//! service's start rate). Admission is idempotent per job: a job that holds a place keeps it until
//! it is released, however often it asks again.

use async_trait::async_trait;

use crate::domain::job::{JobId, Target, Timestamp};
use crate::domain::status::Service;
use crate::ports::store::StoreError;

/// One service lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    /// The lane's record id: unique per service lane (account-wide for HealthLake, per data store
    /// for HealthImaging, as the services' quotas are).
    pub name: String,
    pub capacity: u32,
    /// The least time between two starts, in milliseconds; `None`: no start rate.
    pub min_interval_ms: Option<u64>,
}

/// The pace of both services: `HEALTHLAKE_MAX_OUTSTANDING`, `IMAGING_MAX_RUNNING`,
/// `IMAGING_START_RATE`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub healthlake_max_outstanding: u32,
    pub imaging_max_running: u32,
    pub imaging_starts_per_second: f64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            healthlake_max_outstanding: 2,
            imaging_max_running: 100,
            imaging_starts_per_second: 1.0,
        }
    }
}

impl Pace {
    /// The lane a job at `target` is started in. HealthLake runs one job at a time per account
    /// and Region, imports and exports alike, so its lane is one for the account.
    pub fn lane(&self, target: &Target) -> Lane {
        match target.service {
            Service::HealthLake => Lane {
                name: "lane-HEALTHLAKE".to_owned(),
                capacity: self.healthlake_max_outstanding.max(1),
                min_interval_ms: None,
            },
            Service::HealthImaging => Lane {
                name: format!("lane-HEALTHIMAGING-{}", target.datastore_id),
                capacity: self.imaging_max_running.max(1),
                min_interval_ms: (self.imaging_starts_per_second > 0.0)
                    .then(|| (1000.0 / self.imaging_starts_per_second).round() as u64),
            },
        }
    }
}

/// What an admission request decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The job holds a place and may call Start now.
    Granted,
    /// Not now: ask again after `retry_after_ms` (the next start slot), or, when that is 0 (the
    /// lane is full), after the caller's own wait.
    Wait { retry_after_ms: u64, reason: String },
}

#[async_trait]
pub trait StartAdmission: Send + Sync {
    /// Takes a place in `lane` for `job_id` (kept if held already) and a start slot.
    async fn admit(
        &self,
        lane: &Lane,
        job_id: &JobId,
        now: Timestamp,
    ) -> Result<Admission, StoreError>;
    /// Gives the job's place back (a no-op when it holds none).
    async fn release(&self, lane: &Lane, job_id: &JobId) -> Result<(), StoreError>;
}
