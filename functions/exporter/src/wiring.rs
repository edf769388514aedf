//! The exporter on AWS: the SDK adapters behind its ports, built once from one `SdkConfig`. The
//! binary and the integration tests both build it here, so they run the same wiring.

use aws_config::SdkConfig;
use healthimport::metrics::EmfLines;
use healthimport_aws::dynamodb::DynamoJobStore;
use healthimport_aws::sfn::StepFunctionsTracking;
use healthimport_aws::AwsServiceJobs;

use crate::config::ExporterConfig;
use crate::handler::Exporter;

pub type AwsExporter =
    Exporter<DynamoJobStore, AwsServiceJobs, StepFunctionsTracking, EmfLines<std::io::Stdout>>;

pub fn exporter(aws: &SdkConfig, config: ExporterConfig) -> AwsExporter {
    Exporter {
        store: healthimport_aws::job_store(aws, &config.jobs_table, config.record_retention_days),
        services: healthimport_aws::service_jobs(aws, &config.targets),
        tracking: healthimport_aws::tracking(aws, &config.state_machine_arn),
        datastore_id: config.datastore_id,
        output_s3_uri: config.output_s3_uri,
        mode: config.mode,
        pace: config.pace,
        metrics: EmfLines::stdout(config.metrics_namespace),
    }
}
