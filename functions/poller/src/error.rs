//! The poller's errors and the Lambda errorType each maps to: the names the workflow's Retry and
//! Catch match on ([`ERROR_TYPES`]).

use healthimport::domain::job::{JobId, JobStatus};
use healthimport::job_output::ManifestError;
use healthimport::ports::announce::AnnounceError;
use healthimport::ports::objects::ObjectError;
use healthimport::ports::service_jobs::ServiceError;
use healthimport::ports::store::StoreError;
use healthimport::telemetry::with_sources;

#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    #[error("invalid poller input")]
    InvalidInput(#[source] serde_json::Error),
    #[error("job {0} has no record")]
    JobNotFound(JobId),
    /// A poll for a job that its service never accepted: nothing to ask the service about.
    #[error("job {job_id} was never started at its service: there is nothing to poll")]
    NotStarted { job_id: JobId },
    /// The batch's index shows fewer uploads than the batch counted: it lags for a moment.
    #[error("batch {job_id} counts {expected} uploads but {found} are visible yet")]
    MembersNotVisible {
        job_id: JobId,
        expected: u64,
        found: u64,
    },
    #[error("the files of batch {job_id} could not be staged")]
    Staging {
        job_id: JobId,
        #[source]
        source: ObjectError,
    },
    #[error("the status of job {job_id} could not be read")]
    Service {
        job_id: JobId,
        #[source]
        source: ServiceError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the output manifest of job {job_id} is not there yet ({uri})")]
    ManifestNotReady { job_id: JobId, uri: String },
    #[error("the output of job {job_id} cannot be read")]
    Manifest {
        job_id: JobId,
        #[source]
        source: ManifestError,
    },
    #[error("job {job_id} was not finished when its tracking time ({timeout_seconds} s) ran out")]
    TrackingTimedOut { job_id: JobId, timeout_seconds: u64 },
    #[error("job {job_id} is {status}, not finished")]
    NotTerminal { job_id: JobId, status: JobStatus },
    #[error("the Finished event of job {job_id} could not be put")]
    Announce {
        job_id: JobId,
        #[source]
        source: AnnounceError,
    },
}

/// Every errorType the poller fails with (see [`PollerError::error_type`]).
pub const ERROR_TYPES: &[&str] = &[
    "InvalidInput",
    "JobNotFound",
    "JobNotStarted",
    "MembersNotVisible",
    "StagingUnavailable",
    "UnexpectedServiceResponse",
    "ServiceUnavailable",
    "ServiceRejected",
    "StoreUnavailable",
    "RecordMalformed",
    "RecordRejected",
    "ManifestNotReady",
    "OutputUnavailable",
    "ManifestUnreadable",
    "NotTerminal",
    "TrackingTimedOut",
    "AnnounceFailed",
];

impl PollerError {
    /// The Lambda errorType: what the workflow's Retry and Catch match on.
    pub fn error_type(&self) -> &'static str {
        match self {
            PollerError::InvalidInput(_) => "InvalidInput",
            PollerError::JobNotFound(_) => "JobNotFound",
            PollerError::NotStarted { .. } => "JobNotStarted",
            PollerError::MembersNotVisible { .. } => "MembersNotVisible",
            PollerError::Staging { .. } => "StagingUnavailable",
            PollerError::Service { source, .. } if source.code == "MalformedResponse" => {
                "UnexpectedServiceResponse"
            }
            PollerError::Service { source, .. } if source.is_retryable() => "ServiceUnavailable",
            PollerError::Service { .. } => "ServiceRejected",
            PollerError::Store(StoreError::Unavailable { .. }) => "StoreUnavailable",
            PollerError::Store(StoreError::Malformed { .. }) => "RecordMalformed",
            PollerError::Store(StoreError::Rejected { .. }) => "RecordRejected",
            PollerError::ManifestNotReady { .. } => "ManifestNotReady",
            PollerError::Manifest {
                source: ManifestError::Read(_),
                ..
            } => "OutputUnavailable",
            PollerError::Manifest { .. } => "ManifestUnreadable",
            PollerError::NotTerminal { .. } => "NotTerminal",
            PollerError::TrackingTimedOut { .. } => "TrackingTimedOut",
            PollerError::Announce { .. } => "AnnounceFailed",
        }
    }
}

impl From<PollerError> for lambda_runtime::Diagnostic {
    fn from(error: PollerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: with_sources(&error),
        }
    }
}
