//! The starter on AWS: the SDK adapters behind its ports, built once from one `SdkConfig`. The
//! binary and the integration tests both build it here, so they run the same wiring.

use aws_config::SdkConfig;
use healthimport_aws::dynamodb::DynamoJobStore;
use healthimport_aws::s3::S3Objects;
use healthimport_aws::sfn::StepFunctionsTracking;
use healthimport_aws::AwsServiceJobs;

use crate::config::StarterConfig;
use crate::handler::Starter;

pub type AwsStarter = Starter<DynamoJobStore, AwsServiceJobs, StepFunctionsTracking, S3Objects>;

pub fn starter(aws: &SdkConfig, config: StarterConfig) -> AwsStarter {
    Starter {
        store: healthimport_aws::job_store(aws, &config.jobs_table, config.record_retention_days),
        services: healthimport_aws::service_jobs(aws, &config.targets),
        tracking: healthimport_aws::tracking(aws, &config.state_machine_arn),
        lister: healthimport_aws::s3_objects(aws),
        targets: config.targets,
        routing: config.routing,
        ingest_bucket: config.ingest_bucket,
    }
}
