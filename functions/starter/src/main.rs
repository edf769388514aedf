//! Lambda entry point of the starter: wiring only. The behaviour is in `handler.rs`.

use aws_config::BehaviorVersion;
use healthimport::config::ProcessEnv;
use healthimport::fhir::HealthLakeImports;
use healthimport::imaging::HealthImagingImports;
use healthimport::imports::Imports;
use healthimport::objects::S3ObjectLister;
use healthimport::store::DynamoJobStore;
use healthimport::telemetry;
use healthimport::workflow::StepFunctionsTracking;
use lambda_runtime::{run, service_fn, LambdaEvent};
use serde_json::Value;

use starter::handler::{Starter, StarterConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = StarterConfig::from_env(&ProcessEnv)?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;

    let imports = Imports {
        healthlake: config.targets.fhir.as_ref().map(|t| {
            HealthLakeImports::new(
                aws_sdk_healthlake::Client::new(&aws),
                &t.data_access_role_arn,
                &t.output_kms_key_id,
            )
        }),
        imaging: config.targets.imaging.as_ref().map(|t| {
            HealthImagingImports::new(
                aws_sdk_medicalimaging::Client::new(&aws),
                &t.data_access_role_arn,
            )
        }),
    };
    let starter = Starter {
        store: DynamoJobStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            &config.jobs_table,
            time::Duration::days(config.record_retention_days.into()),
        ),
        imports,
        tracking: StepFunctionsTracking::new(
            aws_sdk_sfn::Client::new(&aws),
            &config.state_machine_arn,
        ),
        lister: S3ObjectLister::new(aws_sdk_s3::Client::new(&aws)),
        targets: config.targets,
        routing: config.routing,
    };
    let starter = &starter;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        starter.handle(event.payload).await
    }))
    .await
}
