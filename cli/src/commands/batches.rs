//! `healthimport batches`: the open batches, with their files, bytes, and when each closes by the
//! clock (the batching policy's quiet and maximum waits from its first and last file; a marker or
//! a per-job limit can close it sooner).

use healthimport::domain::batch::{BatchPolicy, CloseDue, CloseReason};
use healthimport::domain::job::{Job, JobStatus, Timestamp};
use healthimport::ports::queries::JobQueries;
use serde::Serialize;

use crate::config::Datastores;
use crate::error::CliError;

/// An open batch and when it closes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenBatch {
    pub batch: Job,
    pub closes: Closes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "when")]
pub enum Closes {
    /// At `at`, `in_seconds` from now, for `reason` (the quiet or the maximum wait).
    Later {
        at: Timestamp,
        in_seconds: i64,
        reason: CloseReason,
    },
    /// Due now: its workflow (or the next file) closes it at its next step.
    Due { reason: CloseReason },
}

impl Closes {
    pub fn of(policy: &BatchPolicy, batch: &Job, now: Timestamp) -> Option<Closes> {
        let fill = batch.batch()?.fill;
        Some(match policy.close_due(&fill, now) {
            CloseDue::Now(reason) => Closes::Due { reason },
            CloseDue::At(at) => {
                let max_wait_at = fill.first_file_at.plus(policy.max_wait);
                Closes::Later {
                    at,
                    in_seconds: (at.unix_millis() - now.unix_millis() + 999) / 1000,
                    reason: if at == max_wait_at {
                        CloseReason::MaxWait
                    } else {
                        CloseReason::Quiet
                    },
                }
            }
        })
    }
}

/// The open batches of every configured data store, the soonest to close first.
#[tracing::instrument(skip_all)]
pub async fn open_batches(
    queries: &impl JobQueries,
    datastores: &Datastores,
    policy: &BatchPolicy,
    now: Timestamp,
) -> Result<Vec<OpenBatch>, CliError> {
    let mut open = Vec::new();
    for (_, datastore_id) in datastores.of(None) {
        for batch in queries
            .service_jobs(datastore_id, JobStatus::Open, None)
            .await?
        {
            if let Some(closes) = Closes::of(policy, &batch, now) {
                open.push(OpenBatch { batch, closes });
            }
        }
    }
    open.sort_by_key(|b| match b.closes {
        Closes::Due { .. } => i64::MIN,
        Closes::Later { in_seconds, .. } => in_seconds,
    });
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::*;
    use healthimport::domain::job::Service;
    use healthimport::fakes::MemoryJobStore;
    use time::Duration;

    fn policy() -> BatchPolicy {
        BatchPolicy {
            quiet: Duration::seconds(60),
            max_wait: Duration::seconds(300),
            ..BatchPolicy::default()
        }
    }

    #[tokio::test]
    async fn each_open_batch_closes_at_its_quiet_or_maximum_wait_whichever_is_first() {
        let store = MemoryJobStore::default();
        let datastores = Datastores {
            fhir: Some(FHIR.into()),
            imaging: Some(IMAGING.into()),
        };
        // Quiet for 20 s: closes when quiet, 40 s from now.
        let (quiet, _) =
            open_batch(&store, Service::HealthLake, "fhir/", "fhir/a.ndjson", at(0)).await;
        // Opened long ago and busy: its maximum wait comes first.
        let (busy, _) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s1/",
            "dicom/s1/IM1",
            at(-270),
        )
        .await;
        use healthimport::ports::batches::BatchStore;
        // A file every 50 s keeps it from going quiet.
        for (n, seconds) in [-220, -170, -120, -70, -20, 15].into_iter().enumerate() {
            let rule = policy().join_rule(Service::HealthImaging, 100, at(seconds));
            let join = Job::batched(
                source(&format!("dicom/s1/IM{}", n + 2)),
                busy.job_id.clone(),
                target(Service::HealthImaging),
                at(seconds),
            );
            let joined = store
                .join_batch(&busy.job_id, &join, 100, at(seconds), &rule)
                .await
                .unwrap();
            assert_eq!(joined, healthimport::ports::batches::JoinOutcome::Joined);
        }
        // Quiet long ago: due.
        let (due, _) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s2/",
            "dicom/s2/IM1",
            at(-100),
        )
        .await;

        let open = open_batches(&store, &datastores, &policy(), at(20))
            .await
            .unwrap();
        let seen: Vec<_> = open
            .iter()
            .map(|b| (b.batch.job_id.clone(), b.closes))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    due.job_id,
                    Closes::Due {
                        reason: CloseReason::Quiet
                    }
                ),
                (
                    busy.job_id.clone(),
                    Closes::Later {
                        at: at(30),
                        in_seconds: 10,
                        reason: CloseReason::MaxWait
                    }
                ),
                (
                    quiet.job_id,
                    Closes::Later {
                        at: at(60),
                        in_seconds: 40,
                        reason: CloseReason::Quiet
                    }
                ),
            ]
        );
        let busy_fill = open[1].batch.batch().unwrap().fill;
        assert_eq!((busy_fill.files, busy_fill.bytes), (7, 700));
    }
}
