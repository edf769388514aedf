//! The starter on AWS: the SDK adapters behind its ports, built once from one `SdkConfig`. The
//! binary and the integration tests both build it here, so they run the same wiring.

use aws_config::SdkConfig;
use healthimport::fhir::HealthLakeImports;
use healthimport::imaging::HealthImagingImports;
use healthimport::imports::{aws_imports, Imports};
use healthimport::objects::S3ObjectLister;
use healthimport::store::DynamoJobStore;
use healthimport::workflow::StepFunctionsTracking;

use crate::handler::{Starter, StarterConfig};

pub type AwsStarter = Starter<
    DynamoJobStore,
    Imports<HealthLakeImports, HealthImagingImports>,
    StepFunctionsTracking,
    S3ObjectLister,
>;

pub fn starter(aws: &SdkConfig, config: StarterConfig) -> AwsStarter {
    Starter {
        store: DynamoJobStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            &config.jobs_table,
            time::Duration::days(config.record_retention_days.into()),
        ),
        imports: aws_imports(aws, &config.targets),
        tracking: StepFunctionsTracking::new(
            aws_sdk_sfn::Client::new(aws),
            &config.state_machine_arn,
        ),
        lister: S3ObjectLister::new(aws_sdk_s3::Client::new(aws)),
        targets: config.targets,
        routing: config.routing,
    }
}
