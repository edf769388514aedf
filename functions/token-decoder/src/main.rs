//! Lambda entry point of the token decoder: wiring only. The behaviour is in `handler.rs`, the
//! decoder's construction in `wiring.rs`, init failures in `config.rs`.

use healthimport::config::ProcessEnv;
use healthimport::metrics::{EmfLines, Namespace};
use healthimport::telemetry;
use lambda_runtime::{run, service_fn, LambdaEvent};
use serde_json::Value;
use token_decoder::{config, handler, wiring};

// One thread: Lambda sends one request at a time, and a single-threaded runtime starts faster
// and uses less memory, which is the whole cold-start budget.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let decoder = match wiring::init(&ProcessEnv).await {
        Ok(decoder) => decoder,
        Err(error) => return Err(config::init_failed(error).await),
    };
    let metrics = match Namespace::from_env(&ProcessEnv) {
        Ok(namespace) => EmfLines::stdout(namespace),
        Err(error) => return Err(config::init_failed(error.into()).await),
    };
    let (decoder, metrics) = (&decoder, &metrics);
    run(service_fn(move |event: LambdaEvent<Value>| {
        handler::handle(decoder, metrics, event.payload)
    }))
    .await
}
