//! The poller on AWS: the SDK adapters behind its ports, built once from one `SdkConfig`.

use aws_config::SdkConfig;
use healthimport::metrics::EmfLines;
use healthimport_aws::dynamodb::DynamoJobStore;
use healthimport_aws::eventbridge::EventBridgeAnnouncer;
use healthimport_aws::s3::S3Objects;
use healthimport_aws::AwsServiceJobs;

use crate::config::PollerConfig;
use crate::handler::Poller;

pub type AwsPoller = Poller<
    DynamoJobStore,
    AwsServiceJobs,
    S3Objects,
    EventBridgeAnnouncer,
    EmfLines<std::io::Stdout>,
>;

pub fn poller(aws: &SdkConfig, config: PollerConfig) -> AwsPoller {
    Poller {
        store: healthimport_aws::job_store(aws, &config.jobs_table, config.record_retention_days),
        services: healthimport_aws::service_jobs(aws, &config.targets),
        outputs: healthimport_aws::s3_objects(aws),
        announcer: healthimport_aws::announcer(aws, config.event_bus_name),
        schedule: config.schedule,
        starting: config.starting,
        tracking_mode: config.tracking_mode,
        metrics: EmfLines::stdout(config.metrics_namespace),
    }
}
