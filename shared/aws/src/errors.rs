//! The one place where SDK errors become the ports' errors. An adapter never decides on its own
//! whether a failure is worth retrying: it hands the SDK error here.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::future::Future;

use healthimport::domain::job::{JobCounts, JobStatus, Service, Timestamp};
use healthimport::ports::service_jobs::{JobReport, Retry, ServiceError, StartedJob};

/// The error codes that say "not now" rather than "never": throttling, a quota that frees up as
/// jobs finish, the service's own failures. The services document ThrottlingException and
/// ServiceQuotaExceededException for their Start calls.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ServiceQuotaExceededException",
    "InternalServerException",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Classifies an SDK error of a HealthLake or HealthImaging call. Throttling, quota, 5xx and
/// transport failures are retryable; everything the caller got wrong is not.
pub fn service_error<E>(
    service: Service,
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> ServiceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (code, message, retry) = match &err {
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("Unknown").to_owned();
            let message = e.err().message().unwrap_or("").to_owned();
            (code, message, retry_of(e.err().code(), status))
        }
        SdkError::TimeoutError(_) => transport("Timeout", "the call timed out"),
        SdkError::DispatchFailure(_) => {
            transport("DispatchFailure", "the request could not be sent")
        }
        SdkError::ResponseError(_) => transport("ResponseError", "the response could not be read"),
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

/// Whether an error answered with `code` and HTTP `status` is worth repeating.
fn retry_of(code: Option<&str>, status: Option<u16>) -> Retry {
    if code.is_some_and(|c| RETRYABLE_CODES.contains(&c)) || status.is_some_and(|s| s >= 500) {
        Retry::Later
    } else {
        Retry::Never
    }
}

fn transport(code: &str, message: &str) -> (String, String, Retry) {
    (code.to_owned(), message.to_owned(), Retry::Later)
}

/// Sends an SDK call of `service`'s `operation`, classifying its failure.
pub(crate) async fn call<T, E>(
    service: Service,
    operation: &'static str,
    request: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> Result<T, ServiceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    request
        .await
        .map_err(|e| service_error(service, operation, e))
}

/// What a Describe/Get call says of a job, as the port reports it.
pub(crate) fn job_report(
    service: Service,
    operation: &'static str,
    raw_status: &str,
    message: Option<&str>,
    progress: Option<JobCounts>,
    ended_at: Option<&aws_smithy_types::DateTime>,
) -> Result<JobReport, ServiceError> {
    Ok(JobReport {
        status: job_status(service, operation, raw_status)?,
        message: message.map(str::to_owned),
        progress,
        ended_at: ended_at.and_then(timestamp),
    })
}

/// A service's time as ours, to the millisecond.
pub(crate) fn timestamp(at: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    let nanos = i128::from(at.to_millis().ok()?) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .map(Timestamp::from_datetime)
}

/// A status string from a service response, or a malformed-response error naming the call.
pub(crate) fn job_status(
    service: Service,
    operation: &'static str,
    raw: &str,
) -> Result<JobStatus, ServiceError> {
    JobStatus::from_service(service, raw)
        .map_err(|e| ServiceError::malformed(service, operation, &e.to_string()))
}

/// What every Start call answers: the service's job id and first status.
pub(crate) fn started_job(
    service: Service,
    operation: &'static str,
    service_job_id: &str,
    raw_status: &str,
) -> Result<StartedJob, ServiceError> {
    Ok(StartedJob {
        service_job_id: service_job_id.to_owned(),
        status: job_status(service, operation, raw_status)?,
    })
}

/// Converts a service count (the SDKs use `i64`/`i32`) to ours, treating negatives as zero.
pub(crate) fn count(value: Option<i64>) -> u64 {
    value.map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// What every Start call carries: the job id as ClientToken and job name (so a retried start is
/// the same job at the service, and the job's events can be matched before the start returns),
/// the data store, and the role the service assumes. One macro because each operation has its
/// own builder type.
macro_rules! with_job_identity {
    ($builder:expr, $request:expr, $role:expr) => {
        $builder
            .client_token($request.job_id.client_token())
            .job_name($request.job_id.as_str())
            .datastore_id(&$request.datastore_id)
            .data_access_role_arn($role)
    };
}

/// Names the job a Describe/Get call asks about.
macro_rules! of_job {
    ($builder:expr, $job:expr) => {
        $builder
            .datastore_id($job.datastore_id)
            .job_id($job.service_job_id)
    };
}

pub(crate) use of_job;
pub(crate) use with_job_identity;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_s_end_time_is_kept_to_the_millisecond() {
        let ended = aws_smithy_types::DateTime::from_millis(1_764_000_000_123);
        let report = job_report(
            Service::HealthImaging,
            "GetDICOMImportJob",
            "COMPLETED",
            None,
            None,
            Some(&ended),
        )
        .unwrap();
        assert_eq!(report.status, JobStatus::Completed);
        assert_eq!(
            report.ended_at.map(Timestamp::unix_millis),
            Some(1_764_000_000_123)
        );
        let running = job_report(
            Service::HealthLake,
            "DescribeFHIRImportJob",
            "IN_PROGRESS",
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(running.ended_at, None);
    }
}
