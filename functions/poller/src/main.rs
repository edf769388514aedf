//! Lambda entry point of the poller: wiring only. The behaviour is in `handler.rs`, the adapters
//! in `wiring.rs`.

use aws_config::BehaviorVersion;
use healthimport::config::ProcessEnv;
use healthimport::telemetry;
use lambda_runtime::{run, service_fn, LambdaEvent};
use serde_json::Value;

use poller::config::PollerConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = PollerConfig::from_env(&ProcessEnv)?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let poller = poller::wiring::poller(&aws, config);
    let poller = &poller;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        poller.handle(event.payload).await
    }))
    .await
}
