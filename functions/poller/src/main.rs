//! Lambda entry point of the poller: wiring only. The behaviour is in `handler.rs`.

use aws_config::BehaviorVersion;
use healthimport::announce::EventBridgeAnnouncer;
use healthimport::config::ProcessEnv;
use healthimport::imports::aws_imports;
use healthimport::manifest::S3OutputReader;
use healthimport::store::DynamoJobStore;
use healthimport::store_outcome::DynamoOutcomeStore;
use healthimport::telemetry;
use lambda_runtime::{run, service_fn, LambdaEvent};
use serde_json::Value;

use poller::handler::{Poller, PollerConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = PollerConfig::from_env(&ProcessEnv)?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;

    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let jobs = DynamoJobStore::new(
        dynamodb.clone(),
        &config.jobs_table,
        time::Duration::days(config.record_retention_days.into()),
    );
    let poller = Poller {
        store: DynamoOutcomeStore::new(jobs, dynamodb),
        imports: aws_imports(&aws, &config.targets),
        outputs: S3OutputReader::new(aws_sdk_s3::Client::new(&aws)),
        announcer: EventBridgeAnnouncer::new(
            aws_sdk_eventbridge::Client::new(&aws),
            config.event_bus_name.clone(),
        ),
        schedule: config.schedule,
    };
    let poller = &poller;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        poller.handle(event.payload).await
    }))
    .await
}
