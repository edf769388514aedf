//! Lambda entry point of the exporter: wiring only. The behaviour is in `handler.rs`, the adapters
//! in `wiring.rs`.

use aws_config::BehaviorVersion;
use exporter::event::ExporterEvent;
use healthimport::config::ProcessEnv;
use healthimport::telemetry;
use lambda_runtime::{run, service_fn, LambdaEvent};

use exporter::config::ExporterConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = ExporterConfig::from_env(&ProcessEnv)?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let exporter = exporter::wiring::exporter(&aws, config);
    let exporter = &exporter;
    run(service_fn(move |event: LambdaEvent<ExporterEvent>| async move {
        exporter.handle(event.payload).await
    }))
    .await
}
