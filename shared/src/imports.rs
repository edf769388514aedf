//! The `ImportService` port: starting an import (or a HealthLake export) job at HealthLake or
//! HealthImaging and reading its status. The adapters are [`crate::fhir::HealthLakeImports`] and
//! [`crate::imaging::HealthImagingImports`]; [`Imports`] dispatches between the two.

use async_trait::async_trait;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::ImportTargets;
use crate::fhir::HealthLakeImports;
use crate::fhir_rest::RestExports;
use crate::imaging::HealthImagingImports;
use crate::job::{JobCounts, JobId, JobKind, JobStatus, Service, Timestamp};

/// Everything a Start call needs. The client token is the job id, so a retried start (a
/// redelivered event, a crash between "recorded" and "started", the workflow's retry) is the same
/// job at the service, never a second one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    pub job_id: JobId,
    pub service: Service,
    pub datastore_id: String,
    pub work: StartWork,
    pub output_s3_uri: String,
}

/// What the job does: import an S3 location, or export the data store (all of it, or what
/// changed since an instant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartWork {
    Import { input_s3_uri: String },
    Export { since: Option<Timestamp> },
}

/// Where a started job can be asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceJob<'a> {
    pub kind: JobKind,
    pub service: Service,
    pub datastore_id: &'a str,
    pub service_job_id: &'a str,
}

/// The service accepted the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedJob {
    pub service_job_id: String,
    pub status: JobStatus,
}

/// What the service says of a running or finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub status: JobStatus,
    pub message: Option<String>,
    pub progress: Option<JobCounts>,
}

/// Whether a failed call is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, a quota that frees up as jobs finish, a 5xx or a network failure: try again
    /// later, the upload must not be lost.
    Later,
    /// Validation, access, a missing data store: trying again changes nothing.
    Never,
}

#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} failed ({code}): {message}")]
pub struct ServiceError {
    pub service: Service,
    pub operation: &'static str,
    /// The service's error code (`ThrottlingException`, ...) or the kind of transport failure.
    pub code: String,
    pub message: String,
    pub retry: Retry,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ServiceError {
    pub fn is_retryable(&self) -> bool {
        self.retry == Retry::Later
    }

    /// Classifies an SDK error. Throttling, quota and server-side errors are retryable (the
    /// service documents ThrottlingException and ServiceQuotaExceededException for starts);
    /// everything the caller got wrong is not.
    pub fn from_sdk<E>(
        service: Service,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (code, message, retry) = match &err {
            SdkError::ServiceError(e) => {
                let code = e.err().code().unwrap_or("Unknown").to_owned();
                let message = e.err().message().unwrap_or("").to_owned();
                let retry = if RETRYABLE_CODES.contains(&code.as_str())
                    || status.is_some_and(|s| s >= 500)
                {
                    Retry::Later
                } else {
                    Retry::Never
                };
                (code, message, retry)
            }
            SdkError::TimeoutError(_) => (
                "Timeout".to_owned(),
                "the call timed out".to_owned(),
                Retry::Later,
            ),
            SdkError::DispatchFailure(_) => (
                "DispatchFailure".to_owned(),
                "the request could not be sent".to_owned(),
                Retry::Later,
            ),
            SdkError::ResponseError(_) => (
                "ResponseError".to_owned(),
                "the response could not be read".to_owned(),
                Retry::Later,
            ),
            // Construction failures are our bug, not the service's state: retrying cannot help.
            _ => (
                "ConstructionFailure".to_owned(),
                "the request could not be built".to_owned(),
                Retry::Never,
            ),
        };
        ServiceError {
            service,
            operation,
            code,
            message,
            retry,
            source: Some(Box::new(err)),
        }
    }

    /// A request this service cannot serve (an export at HealthImaging, an export without
    /// export settings): a configuration error, never worth a retry.
    pub fn unsupported(service: Service, operation: &'static str, message: String) -> Self {
        ServiceError {
            service,
            operation,
            code: "NotConfigured".to_owned(),
            message,
            retry: Retry::Never,
            source: None,
        }
    }

    /// A required field missing from a service response.
    pub fn malformed(service: Service, operation: &'static str, what: &str) -> Self {
        ServiceError {
            service,
            operation,
            code: "MalformedResponse".to_owned(),
            message: format!("the response has no {what}"),
            retry: Retry::Later,
            source: None,
        }
    }
}

const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ServiceQuotaExceededException",
    "InternalServerException",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Starting and reading import jobs at one or both services.
#[async_trait]
pub trait ImportService: Send + Sync {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError>;
    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError>;
}

/// Dispatches each call to the adapter of its service. A service that is not configured answers
/// with a non-retryable error (routing records such uploads as skipped before they get here).
pub struct Imports<F, D> {
    pub healthlake: Option<F>,
    pub imaging: Option<D>,
}

impl<F: ImportService, D: ImportService> Imports<F, D> {
    fn pick(&self, service: Service) -> Result<&dyn ImportService, ServiceError> {
        let picked: Option<&dyn ImportService> = match service {
            Service::HealthLake => self.healthlake.as_ref().map(|s| s as &dyn ImportService),
            Service::HealthImaging => self.imaging.as_ref().map(|s| s as &dyn ImportService),
        };
        picked.ok_or_else(|| {
            ServiceError::unsupported(
                service,
                "dispatch",
                format!("no {service} data store is configured"),
            )
        })
    }
}

#[async_trait]
impl<F: ImportService, D: ImportService> ImportService for Imports<F, D> {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError> {
        self.pick(request.service)?.start(request).await
    }

    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        self.pick(job.service)?.describe(job).await
    }
}

/// The SDK adapters of every configured service, on one `SdkConfig`: the wiring every function
/// that starts or polls jobs shares.
pub fn aws_imports(
    aws: &aws_config::SdkConfig,
    targets: &ImportTargets,
) -> Imports<HealthLakeImports, HealthImagingImports> {
    Imports {
        healthlake: targets.fhir.as_ref().map(|t| {
            let imports = HealthLakeImports::new(
                aws_sdk_healthlake::Client::new(aws),
                &t.data_access_role_arn,
                &t.output_kms_key_id,
            );
            match &t.export {
                Some(export) => imports.with_export(
                    &export.data_access_role_arn,
                    &export.kms_key_id,
                    RestExports::new(aws),
                ),
                None => imports,
            }
        }),
        imaging: targets.imaging.as_ref().map(|t| {
            HealthImagingImports::new(
                aws_sdk_medicalimaging::Client::new(aws),
                &t.data_access_role_arn,
            )
        }),
    }
}

/// Converts a service count (the SDKs use `i64`/`i32`) to ours, treating negatives as zero.
pub(crate) fn count(value: Option<i64>) -> u64 {
    value.map_or(0, |v| u64::try_from(v).unwrap_or(0))
}
