//! The exporter on AWS: the SDK adapters behind its ports, built once from one `SdkConfig`. The
//! binary and the integration tests both build it here, so they run the same wiring.

use aws_config::SdkConfig;
use healthimport::fhir::HealthLakeImports;
use healthimport::imaging::HealthImagingImports;
use healthimport::imports::{aws_imports, Imports};
use healthimport::store::DynamoJobStore;
use healthimport::workflow::StepFunctionsTracking;

use crate::handler::{Exporter, ExporterConfig};

pub type AwsExporter = Exporter<
    DynamoJobStore,
    Imports<HealthLakeImports, HealthImagingImports>,
    StepFunctionsTracking,
>;

pub fn exporter(aws: &SdkConfig, config: ExporterConfig) -> AwsExporter {
    Exporter {
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
        datastore_id: config.datastore_id,
        output_s3_uri: config.output_s3_uri,
        mode: config.mode,
    }
}
