//! healthimport's AWS adapters: one module per AWS service, each implementing ports of the core
//! crate (`healthimport::ports`), and [`errors`], the one place that turns SDK errors into the
//! ports' errors. Nothing here decides anything about a job: that is the core's domain.
//!
//! The functions' `wiring.rs` build their adapters with the constructors at the bottom of this
//! file, so every function configures the same store, services and workflow the same way.

pub mod dynamodb;
pub mod errors;
pub mod eventbridge;
pub mod healthlake;
pub mod healthlake_rest;
pub mod imaging;
pub mod s3;
pub mod sfn;
pub mod sqs;

use aws_config::SdkConfig;
use healthimport::config::ServiceTargets;
use healthimport::ports::service_jobs::ServiceJobs;

use crate::dynamodb::DynamoJobStore;
use crate::eventbridge::EventBridgeAnnouncer;
use crate::healthlake::HealthLakeJobs;
use crate::healthlake_rest::RestExports;
use crate::imaging::HealthImagingJobs;
use crate::s3::S3Objects;
use crate::sfn::{StepFunctionsTracking, StepFunctionsWaits};
use crate::sqs::SqsCompletionChecks;

/// Both services' adapters, as every function that starts or reads jobs uses them.
pub type AwsServiceJobs = ServiceJobs<HealthLakeJobs, HealthImagingJobs>;

/// The adapters of every configured service, on one `SdkConfig`.
pub fn service_jobs(aws: &SdkConfig, targets: &ServiceTargets) -> AwsServiceJobs {
    ServiceJobs {
        healthlake: targets.fhir.as_ref().map(|t| {
            let jobs = HealthLakeJobs::new(
                aws_sdk_healthlake::Client::new(aws),
                &t.data_access_role_arn,
                &t.output_kms_key_id,
            )
            .with_validation_level(t.validation_level.as_deref());
            match &t.export {
                Some(export) => jobs.with_export(
                    &export.data_access_role_arn,
                    &export.kms_key_id,
                    RestExports::new(aws),
                ),
                None => jobs,
            }
        }),
        imaging: targets.imaging.as_ref().map(|t| {
            HealthImagingJobs::new(
                aws_sdk_medicalimaging::Client::new(aws),
                &t.data_access_role_arn,
            )
            .with_input_owner(t.input_owner_account_id.as_deref())
        }),
    }
}

/// The jobs table; terminal records expire `retention_days` after they end.
pub fn job_store(aws: &SdkConfig, table: &str, retention_days: u32) -> DynamoJobStore {
    DynamoJobStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        table,
        time::Duration::days(retention_days.into()),
    )
}

/// The tracking state machine: one execution per job.
pub fn tracking(aws: &SdkConfig, state_machine_arn: &str) -> StepFunctionsTracking {
    StepFunctionsTracking::new(aws_sdk_sfn::Client::new(aws), state_machine_arn)
}

/// The services' output files and the ingest bucket's folders.
pub fn s3_objects(aws: &SdkConfig) -> S3Objects {
    S3Objects::new(aws_sdk_s3::Client::new(aws))
}

/// The Finished events, on `bus_name` (the account's default bus when `None`).
pub fn announcer(aws: &SdkConfig, bus_name: Option<String>) -> EventBridgeAnnouncer {
    EventBridgeAnnouncer::new(aws_sdk_eventbridge::Client::new(aws), bus_name)
}

/// The executions waiting for their job's end.
pub fn waiting_executions(aws: &SdkConfig) -> StepFunctionsWaits {
    StepFunctionsWaits::new(aws_sdk_sfn::Client::new(aws))
}

/// The backstop's per-job re-checks, on the completion-check queue.
pub fn completion_checks(aws: &SdkConfig, queue_url: &str) -> SqsCompletionChecks {
    SqsCompletionChecks::new(aws_sdk_sqs::Client::new(aws), queue_url)
}
