//! Lambda entry point of the starter: wiring only. The behaviour is in `handler.rs`, the adapters
//! in `wiring.rs`.

use aws_config::BehaviorVersion;
use healthimport::config::ProcessEnv;
use healthimport::telemetry;
use lambda_runtime::{run, service_fn, LambdaEvent};
use starter::event::StarterEvent;

use starter::config::StarterConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = StarterConfig::from_env(&ProcessEnv)?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let starter = starter::wiring::starter(&aws, config);
    let starter = &starter;
    run(service_fn(
        move |event: LambdaEvent<StarterEvent>| async move { starter.handle(event.payload).await },
    ))
    .await
}
