//! The `JobService` port: starting an import or export job at HealthLake or HealthImaging and
//! reading its status. One adapter per service lives in `healthimport-aws`; [`ServiceJobs`]
//! dispatches between them.

use async_trait::async_trait;

use crate::domain::job::{Job, JobCounts, JobId, JobKind, JobStatus, Service, Timestamp};

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

impl<'a> ServiceJob<'a> {
    /// Where `job` can be asked about; `None` until its service accepted it.
    pub fn of(job: &'a Job) -> Option<ServiceJob<'a>> {
        let target = job.target()?;
        Some(ServiceJob {
            kind: job.kind(),
            service: target.service,
            datastore_id: &target.datastore_id,
            service_job_id: job.service_job_id.as_deref()?,
        })
    }
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
    /// When the service ended the job (HealthLake's `EndTime`, HealthImaging's `endedAt`), once
    /// it has.
    pub ended_at: Option<Timestamp>,
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

/// Starting and reading jobs at one or both services.
#[async_trait]
pub trait JobService: Send + Sync {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError>;
    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError>;
}

/// Dispatches each call to the adapter of its service. A service that is not configured answers
/// with a non-retryable error (routing records such uploads as skipped before they get here).
pub struct ServiceJobs<F, D> {
    pub healthlake: Option<F>,
    pub imaging: Option<D>,
}

impl<F: JobService, D: JobService> ServiceJobs<F, D> {
    fn pick(&self, service: Service) -> Result<&dyn JobService, ServiceError> {
        let picked: Option<&dyn JobService> = match service {
            Service::HealthLake => self.healthlake.as_ref().map(|s| s as &dyn JobService),
            Service::HealthImaging => self.imaging.as_ref().map(|s| s as &dyn JobService),
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
impl<F: JobService, D: JobService> JobService for ServiceJobs<F, D> {
    async fn start(&self, request: &StartRequest) -> Result<StartedJob, ServiceError> {
        self.pick(request.service)?.start(request).await
    }

    async fn describe(&self, job: &ServiceJob<'_>) -> Result<JobReport, ServiceError> {
        self.pick(job.service)?.describe(job).await
    }
}
