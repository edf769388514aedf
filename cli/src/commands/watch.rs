//! `healthimport watch`: the open batches and the running jobs, redrawn in place every interval
//! until interrupted (or for a number of redraws, which is what makes it testable).

use std::time::Duration;

use healthimport::domain::batch::BatchPolicy;
use healthimport::domain::job::{Job, Timestamp};
use healthimport::ports::queries::JobQueries;
use serde::Serialize;

use super::batches::{open_batches, OpenBatch};
use super::jobs::{jobs, JobFilter};
use crate::config::Datastores;
use crate::error::CliError;

/// One redraw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    pub at: Timestamp,
    pub open_batches: Vec<OpenBatch>,
    /// Jobs recorded and not ended (pending a start, submitted, queued, in progress), newest first.
    pub running: Vec<Job>,
}

pub async fn frame(
    queries: &impl JobQueries,
    datastores: &Datastores,
    policy: &BatchPolicy,
    now: Timestamp,
) -> Result<Frame, CliError> {
    let mut running = Vec::new();
    for status in super::running_statuses() {
        let filter = JobFilter {
            status: Some(status),
            ..JobFilter::default()
        };
        running.extend(jobs(queries, datastores, &filter).await?);
    }
    running.sort_by_key(|job| std::cmp::Reverse(job.created_at));
    Ok(Frame {
        at: now,
        open_batches: open_batches(queries, datastores, policy, now).await?,
        running,
    })
}

/// How long and how often to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    /// `None`: until interrupted.
    pub iterations: Option<u32>,
}

/// Draws a frame every `schedule.interval` with `draw`, `schedule.iterations` times (or until
/// interrupted).
pub async fn watch(
    queries: &impl JobQueries,
    datastores: &Datastores,
    policy: &BatchPolicy,
    schedule: Schedule,
    mut draw: impl FnMut(&Frame) -> Result<(), CliError>,
) -> Result<u32, CliError> {
    let mut drawn = 0;
    let mut ticks = tokio::time::interval(schedule.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while schedule.iterations.is_none_or(|n| drawn < n) {
        ticks.tick().await;
        let frame = frame(queries, datastores, policy, Timestamp::now()).await?;
        draw(&frame)?;
        drawn += 1;
    }
    Ok(drawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::*;
    use healthimport::domain::job::{JobStatus, Service};
    use healthimport::fakes::MemoryJobStore;

    #[tokio::test]
    async fn a_frame_holds_the_open_batches_and_only_the_running_jobs() {
        let store = MemoryJobStore::default();
        let datastores = Datastores {
            fhir: Some(FHIR.into()),
            imaging: Some(IMAGING.into()),
        };
        let (open, _) =
            open_batch(&store, Service::HealthLake, "fhir/", "fhir/a.ndjson", at(0)).await;
        let (running, _) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s1/",
            "dicom/s1/IM1",
            at(0),
        )
        .await;
        advance(
            &store,
            &running.job_id,
            &[(JobStatus::Pending, 10), (JobStatus::InProgress, 20)],
        )
        .await;
        let (ended, _) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s2/",
            "dicom/s2/IM1",
            at(0),
        )
        .await;
        advance(
            &store,
            &ended.job_id,
            &[(JobStatus::Pending, 10), (JobStatus::Completed, 20)],
        )
        .await;

        let frame = frame(&store, &datastores, &BatchPolicy::default(), at(30))
            .await
            .unwrap();
        assert_eq!(
            frame
                .open_batches
                .iter()
                .map(|b| b.batch.job_id.clone())
                .collect::<Vec<_>>(),
            vec![open.job_id]
        );
        assert_eq!(
            frame
                .running
                .iter()
                .map(|j| j.job_id.clone())
                .collect::<Vec<_>>(),
            vec![running.job_id]
        );
    }

    #[tokio::test]
    async fn it_redraws_the_number_of_times_asked() {
        let store = MemoryJobStore::default();
        let datastores = Datastores {
            fhir: Some(FHIR.into()),
            imaging: None,
        };
        let mut frames = 0;
        let schedule = Schedule {
            interval: Duration::from_millis(1),
            iterations: Some(3),
        };
        let drawn = watch(
            &store,
            &datastores,
            &BatchPolicy::default(),
            schedule,
            |_| {
                frames += 1;
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!((drawn, frames), (3, 3));
    }
}
