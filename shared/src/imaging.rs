//! AWS HealthImaging adapter of the [`ImportService`] port.

use async_trait::async_trait;
use aws_sdk_medicalimaging::Client;

use crate::imports::{
    ImportService, JobReport, ServiceError, ServiceJob, StartRequest, StartWork, StartedJob,
};
use crate::job::{JobStatus, Service};

#[derive(Debug, Clone)]
pub struct HealthImagingImports {
    client: Client,
    data_access_role_arn: String,
}

impl HealthImagingImports {
    pub fn new(client: Client, data_access_role_arn: impl Into<String>) -> Self {
        HealthImagingImports {
            client,
            data_access_role_arn: data_access_role_arn.into(),
        }
    }
}

const SERVICE: Service = Service::HealthImaging;

#[async_trait]
impl ImportService for HealthImagingImports {
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
            .map_err(|e| ServiceError::from_sdk(SERVICE, OP, e))?;
        Ok(StartedJob {
            service_job_id: started.job_id().to_owned(),
            status: status(OP, started.job_status().as_str())?,
        })
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
            .map_err(|e| ServiceError::from_sdk(SERVICE, OP, e))?;
        let properties = output
            .job_properties()
            .ok_or_else(|| ServiceError::malformed(SERVICE, OP, "jobProperties"))?;
        Ok(JobReport {
            status: status(OP, properties.job_status().as_str())?,
            message: properties.message().map(str::to_owned),
            // HealthImaging reports no progress while running; the output manifest has the counts.
            progress: None,
        })
    }
}

fn status(operation: &'static str, raw: &str) -> Result<JobStatus, ServiceError> {
    JobStatus::from_service(SERVICE, raw)
        .map_err(|e| ServiceError::malformed(SERVICE, operation, &e.to_string()))
}
