//! The job-events function on AWS: the SDK adapters behind its ports, built once from one
//! `SdkConfig`.

use aws_config::SdkConfig;
use healthimport::metrics::EmfLines;
use healthimport_aws::dynamodb::DynamoJobStore;
use healthimport_aws::sfn::StepFunctionsWaits;
use healthimport_aws::sqs::SqsCompletionChecks;
use healthimport_aws::AwsServiceJobs;

use crate::config::JobEventsConfig;
use crate::handler::JobEvents;

pub type AwsJobEvents = JobEvents<
    DynamoJobStore,
    AwsServiceJobs,
    StepFunctionsWaits,
    SqsCompletionChecks,
    EmfLines<std::io::Stdout>,
>;

pub fn job_events(aws: &SdkConfig, config: JobEventsConfig) -> AwsJobEvents {
    JobEvents {
        store: healthimport_aws::job_store(aws, &config.jobs_table, config.record_retention_days),
        services: healthimport_aws::service_jobs(aws, &config.targets),
        executions: healthimport_aws::waiting_executions(aws),
        checks: healthimport_aws::completion_checks(aws, &config.completion_check_queue_url),
        pace: config.pace,
        backstop_seconds: config.backstop_seconds,
        metrics: EmfLines::stdout(config.metrics_namespace),
    }
}
