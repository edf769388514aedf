//! AWS HealthImaging adapter of the [`JobService`] port: DICOM imports (HealthImaging has no
//! export job).

use async_trait::async_trait;
use aws_sdk_medicalimaging::Client;
use healthimport::domain::job::Service;
use healthimport::ports::service_jobs::{
    JobReport, JobService, ServiceError, ServiceJob, StartRequest, StartWork, StartedJob,
};

use crate::errors::{job_status, service_error, started_job};

#[derive(Debug, Clone)]
pub struct HealthImagingJobs {
    client: Client,
    data_access_role_arn: String,
}

impl HealthImagingJobs {
    pub fn new(client: Client, data_access_role_arn: impl Into<String>) -> Self {
        HealthImagingJobs {
            client,
            data_access_role_arn: data_access_role_arn.into(),
        }
    }
}

const SERVICE: Service = Service::HealthImaging;

#[async_trait]
impl JobService for HealthImagingJobs {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError> {
        const OP: &str = "StartDICOMImportJob";
        let StartWork::Import { input_s3_uri } = &request.work else {
            return Err(ServiceError::unsupported(
                SERVICE,
                OP,
                "HealthImaging has no export job".to_owned(),
            ));
        };
        let started = self
            .client
            .start_dicom_import_job()
            .job_name(request.job_id.as_str())
            .datastore_id(&request.datastore_id)
            .input_s3_uri(input_s3_uri)
            .output_s3_uri(&request.output_s3_uri)
            .data_access_role_arn(&self.data_access_role_arn)
            .client_token(request.job_id.client_token())
            .send()
            .await
            .map_err(|e| service_error(SERVICE, OP, e))?;
        started_job(SERVICE, OP, started.job_id(), started.job_status().as_str())
    }

    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        const OP: &str = "GetDICOMImportJob";
        let output = self
            .client
            .get_dicom_import_job()
            .datastore_id(job.datastore_id)
            .job_id(job.service_job_id)
            .send()
            .await
            .map_err(|e| service_error(SERVICE, OP, e))?;
        let properties = output
            .job_properties()
            .ok_or_else(|| ServiceError::malformed(SERVICE, OP, "jobProperties"))?;
        Ok(JobReport {
            status: job_status(SERVICE, OP, properties.job_status().as_str())?,
            message: properties.message().map(str::to_owned),
            // HealthImaging reports no progress while running; the output manifest has the counts.
            progress: None,
        })
    }
}
