//! The starter on AWS: the SDK adapters behind its ports, built once from one `SdkConfig`. The
//! binary and the integration tests both build it here, so they run the same wiring.

use aws_config::SdkConfig;
use healthimport::metrics::EmfLines;
use healthimport_aws::dynamodb::DynamoJobStore;
use healthimport_aws::sfn::StepFunctionsTracking;

use crate::config::StarterConfig;
use crate::handler::Starter;

pub type AwsStarter = Starter<DynamoJobStore, StepFunctionsTracking, EmfLines<std::io::Stdout>>;

pub fn starter(aws: &SdkConfig, config: StarterConfig) -> AwsStarter {
    Starter {
        store: healthimport_aws::job_store(aws, &config.jobs_table, config.record_retention_days),
        tracking: healthimport_aws::tracking(aws, &config.state_machine_arn),
        targets: config.targets,
        routing: config.routing,
        batching: config.batching,
        ingest_bucket: config.ingest_bucket,
        metrics: EmfLines::stdout(config.metrics_namespace),
    }
}
