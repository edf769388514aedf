//! AWS HealthImaging adapter of the [`JobService`] port: DICOM imports (HealthImaging has no
//! export job).

use async_trait::async_trait;
use aws_sdk_medicalimaging::Client;
use healthimport::domain::job::Service;
use healthimport::ports::service_jobs::{
    JobReport, JobService, ServiceError, ServiceJob, StartRequest, StartWork, StartedJob,
};

use crate::errors::{call, job_report, of_job, started_job, with_job_identity};

#[derive(Debug, Clone)]
pub struct HealthImagingJobs {
    client: Client,
    data_access_role_arn: String,
    /// StartDICOMImportJob's `inputOwnerAccountId`: the account that must own the input bucket.
    input_owner_account_id: Option<String>,
}

impl HealthImagingJobs {
    pub fn new(client: Client, data_access_role_arn: impl Into<String>) -> Self {
        HealthImagingJobs {
            client,
            data_access_role_arn: data_access_role_arn.into(),
            input_owner_account_id: None,
        }
    }

    /// Every start names the account that must own the input bucket (the deploying account), so
    /// a look-alike bucket in another account is refused.
    pub fn with_input_owner(mut self, account_id: Option<&str>) -> Self {
        self.input_owner_account_id = account_id.map(str::to_owned);
        self
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
        let builder = with_job_identity!(
            self.client.start_dicom_import_job(),
            request,
            &self.data_access_role_arn
        );
        let input = builder
            .input_s3_uri(input_s3_uri)
            .output_s3_uri(&request.output_s3_uri)
            .set_input_owner_account_id(self.input_owner_account_id.clone());
        let started = call(SERVICE, OP, input.send()).await?;
        started_job(SERVICE, OP, started.job_id(), started.job_status().as_str())
    }

    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        const OP: &str = "GetDICOMImportJob";
        let read = of_job!(self.client.get_dicom_import_job(), job);
        let output = call(SERVICE, OP, read.send()).await?;
        let properties = output
            .job_properties()
            .ok_or_else(|| ServiceError::malformed(SERVICE, OP, "jobProperties"))?;
        // HealthImaging reports no progress while running; the output manifest has the counts.
        let (status, message) = (properties.job_status().as_str(), properties.message());
        job_report(SERVICE, OP, status, message, None, properties.ended_at())
    }
}
