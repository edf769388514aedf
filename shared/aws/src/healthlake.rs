//! Amazon HealthLake adapter of the [`JobService`] port: FHIR imports and whole-data-store
//! exports, which HealthLake runs one at a time per data store, in one FIFO queue. Incremental
//! exports go through [`crate::healthlake_rest`].

use async_trait::async_trait;
use aws_sdk_healthlake::types::{
    InputDataConfig, OutputDataConfig, S3Configuration, ValidationLevel,
};
use aws_sdk_healthlake::Client;
use healthimport::domain::job::{JobCounts, JobKind, Service, Timestamp};
use healthimport::ports::service_jobs::{
    JobReport, JobService, ServiceError, ServiceJob, StartRequest, StartWork, StartedJob,
};

use crate::errors::{call, count, job_report, of_job, started_job, with_job_identity};
use crate::healthlake_rest::{ExportDestination, RestExports};

#[derive(Debug, Clone)]
pub struct HealthLakeJobs {
    client: Client,
    data_access_role_arn: String,
    /// HealthLake requires a KMS key for the output location.
    output_kms_key_id: String,
    /// StartFHIRImportJob's `ValidationLevel`; `None`: the service's default.
    validation_level: Option<ValidationLevel>,
    export: Option<ExportSettings>,
}

/// The role HealthLake assumes to write an export, the key it encrypts the export with, and the
/// `$export` client that incremental exports go through.
#[derive(Debug, Clone)]
struct ExportSettings {
    data_access_role_arn: String,
    kms_key_id: String,
    rest: RestExports,
}

impl HealthLakeJobs {
    pub fn new(
        client: Client,
        data_access_role_arn: impl Into<String>,
        output_kms_key_id: impl Into<String>,
    ) -> Self {
        HealthLakeJobs {
            client,
            data_access_role_arn: data_access_role_arn.into(),
            output_kms_key_id: output_kms_key_id.into(),
            validation_level: None,
            export: None,
        }
    }

    /// Imports validate at `level` (`strict`, `structure-only`, `minimal`; checked by the
    /// configuration); `None` leaves it to the service.
    pub fn with_validation_level(mut self, level: Option<&str>) -> Self {
        self.validation_level = level.map(ValidationLevel::from);
        self
    }

    /// Enables exports with their own data-access role and KMS key; `rest` serves incremental
    /// exports.
    pub fn with_export(
        mut self,
        data_access_role_arn: impl Into<String>,
        kms_key_id: impl Into<String>,
        rest: RestExports,
    ) -> Self {
        self.export = Some(ExportSettings {
            data_access_role_arn: data_access_role_arn.into(),
            kms_key_id: kms_key_id.into(),
            rest,
        });
        self
    }

    async fn start_export(
        &self,
        request: &StartRequest,
        since: Option<Timestamp>,
    ) -> Result<StartedJob, ServiceError> {
        const OP: &str = "StartFHIRExportJob";
        let settings = self.export.as_ref().ok_or_else(|| {
            ServiceError::unsupported(SERVICE, OP, "no FHIR export location is configured".into())
        })?;
        if let Some(since) = since {
            // Only the FHIR REST $export takes a `_since`; the API exports everything.
            let destination = ExportDestination {
                data_access_role_arn: &settings.data_access_role_arn,
                kms_key_id: &settings.kms_key_id,
            };
            return settings.rest.start_since(request, since, destination).await;
        }
        let output = output_config(OP, &request.output_s3_uri, &settings.kms_key_id)?;
        let builder = with_job_identity!(
            self.client.start_fhir_export_job(),
            request,
            &settings.data_access_role_arn
        );
        let started = call(SERVICE, OP, builder.output_data_config(output).send()).await?;
        started_job(SERVICE, OP, started.job_id(), started.job_status().as_str())
    }

    async fn describe_export(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        const OP: &str = "DescribeFHIRExportJob";
        let read = of_job!(self.client.describe_fhir_export_job(), job);
        let output = call(SERVICE, OP, read.send()).await?;
        let properties = output
            .export_job_properties()
            .ok_or_else(|| ServiceError::malformed(SERVICE, OP, "ExportJobProperties"))?;
        // An export reports no progress; its files are counted when it ends.
        let (status, message) = (properties.job_status().as_str(), properties.message());
        job_report(SERVICE, OP, status, message, None, properties.end_time())
    }
}

const SERVICE: Service = Service::HealthLake;

#[async_trait]
impl JobService for HealthLakeJobs {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError> {
        const OP: &str = "StartFHIRImportJob";
        let input_s3_uri = match &request.work {
            StartWork::Import { input_s3_uri } => input_s3_uri,
            StartWork::Export { since } => return self.start_export(request, *since).await,
        };
        let output = output_config(OP, &request.output_s3_uri, &self.output_kms_key_id)?;
        let builder = with_job_identity!(
            self.client.start_fhir_import_job(),
            request,
            &self.data_access_role_arn
        );
        let input = builder
            .input_data_config(InputDataConfig::S3Uri(input_s3_uri.clone()))
            .job_output_data_config(output)
            .set_validation_level(self.validation_level.clone());
        let started = call(SERVICE, OP, input.send()).await?;
        started_job(SERVICE, OP, started.job_id(), started.job_status().as_str())
    }

    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        const OP: &str = "DescribeFHIRImportJob";
        if job.kind == JobKind::Export {
            return self.describe_export(job).await;
        }
        let read = of_job!(self.client.describe_fhir_import_job(), job);
        let output = call(SERVICE, OP, read.send()).await?;
        let properties = output
            .import_job_properties()
            .ok_or_else(|| ServiceError::malformed(SERVICE, OP, "ImportJobProperties"))?;
        let progress = properties.job_progress_report().map(|p| JobCounts {
            scanned: count(p.total_number_of_scanned_files()),
            imported: count(p.total_number_of_imported_files()),
            failed: count(p.total_number_of_files_read_with_customer_error()),
        });
        let (status, message) = (properties.job_status().as_str(), properties.message());
        job_report(
            SERVICE,
            OP,
            status,
            message,
            progress,
            properties.end_time(),
        )
    }
}

/// Where a job writes, encrypted with `kms_key_id` (HealthLake requires a key for both kinds).
fn output_config(
    operation: &'static str,
    s3_uri: &str,
    kms_key_id: &str,
) -> Result<OutputDataConfig, ServiceError> {
    S3Configuration::builder()
        .s3_uri(s3_uri)
        .kms_key_id(kms_key_id)
        .build()
        .map(OutputDataConfig::S3Configuration)
        .map_err(|_| ServiceError::malformed(SERVICE, operation, "output S3 configuration"))
}
