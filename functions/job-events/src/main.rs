//! Lambda entry point of the job-events function: wiring only. The behaviour is in `handler.rs`,
//! the adapters in `wiring.rs`.

use aws_config::BehaviorVersion;
use healthimport::config::ProcessEnv;
use healthimport::telemetry;
use job_events::config::JobEventsConfig;
use job_events::event::JobEventsEvent;
use lambda_runtime::{run, service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = JobEventsConfig::from_env(&ProcessEnv)?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let handler = job_events::wiring::job_events(&aws, config);
    let handler = &handler;
    run(service_fn(
        move |event: LambdaEvent<JobEventsEvent>| async move { handler.handle(event.payload).await },
    ))
    .await
}
