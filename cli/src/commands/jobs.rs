//! `healthimport jobs [--status S] [--since 1d] [--service fhir|dicom]`: the service jobs (batches
//! and exports) of the stack's data stores, newest first.

use healthimport::domain::job::{Job, JobStatus, Service, Timestamp};
use healthimport::ports::queries::JobQueries;

use crate::config::Datastores;
use crate::error::CliError;

/// Which jobs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub since: Option<Timestamp>,
    pub service: Option<Service>,
}

/// The jobs `filter` selects, newest first: one query per data store and status.
#[tracing::instrument(skip_all, fields(status = ?filter.status, service = ?filter.service))]
pub async fn jobs(
    queries: &impl JobQueries,
    datastores: &Datastores,
    filter: &JobFilter,
) -> Result<Vec<Job>, CliError> {
    let statuses: Vec<JobStatus> = match filter.status {
        Some(status) => vec![status],
        None => super::service_job_statuses().collect(),
    };
    let mut found = Vec::new();
    for (_, datastore_id) in datastores.of(filter.service) {
        for status in &statuses {
            found.extend(
                queries
                    .service_jobs(datastore_id, *status, filter.since)
                    .await?,
            );
        }
    }
    found.sort_by_key(|job| std::cmp::Reverse(job.created_at));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::*;
    use healthimport::fakes::MemoryJobStore;

    fn both() -> Datastores {
        Datastores {
            fhir: Some(FHIR.into()),
            imaging: Some(IMAGING.into()),
        }
    }

    #[tokio::test]
    async fn jobs_are_listed_newest_first_without_their_uploads_and_filtered() {
        let store = MemoryJobStore::default();
        let (fhir, _) =
            open_batch(&store, Service::HealthLake, "fhir/", "fhir/a.ndjson", at(0)).await;
        let (dicom, _) = open_batch(
            &store,
            Service::HealthImaging,
            "dicom/s1/",
            "dicom/s1/IM1",
            at(100),
        )
        .await;
        advance(
            &store,
            &dicom.job_id,
            &[
                (JobStatus::Pending, 110),
                (JobStatus::InProgress, 120),
                (JobStatus::Failed, 130),
            ],
        )
        .await;

        let all = jobs(&store, &both(), &JobFilter::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(),
            vec![dicom.job_id.clone(), fhir.job_id.clone()],
            "batches only, newest first"
        );

        let failed = JobFilter {
            status: Some(JobStatus::Failed),
            ..JobFilter::default()
        };
        assert_eq!(jobs(&store, &both(), &failed).await.unwrap().len(), 1);
        let fhir_only = JobFilter {
            service: Some(Service::HealthLake),
            ..JobFilter::default()
        };
        let listed = jobs(&store, &both(), &fhir_only).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].job_id, fhir.job_id);
        let recent = JobFilter {
            since: Some(at(50)),
            ..JobFilter::default()
        };
        let listed = jobs(&store, &both(), &recent).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].job_id, dicom.job_id);
    }
}
