//! Helpers for tests that run against the local AWS stack: moto's server for DynamoDB, S3, Step
//! Functions and EventBridge, started by `make test` (scripts/local-stack.sh) on 127.0.0.1.
//!
//! The SDK clients are configured only through the SDK's standard environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_REGION`, credentials), exactly as a
//! deployed function is. A test that needs the stack and does not find it fails: it never passes
//! against nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde::Deserialize;

/// The variable that says where moto's server runs.
pub const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL";

/// The SDK configuration of the local stack, from the environment.
///
/// # Panics
/// When `AWS_ENDPOINT_URL` is unset: the test would otherwise talk to real AWS (or to nothing).
pub async fn sdk_config() -> SdkConfig {
    require_endpoint();
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

fn require_endpoint() {
    match std::env::var(ENDPOINT_VARIABLE) {
        Ok(url) if url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost") => {}
        Ok(url) => panic!("{ENDPOINT_VARIABLE}={url} is not a loopback endpoint; tests only run against the local stack"),
        Err(_) => panic!(
            "{ENDPOINT_VARIABLE} is not set: these tests need the local stack. Run them with `make test` \
             (or `scripts/local-stack.sh run -- cargo test ...`)"
        ),
    }
}

/// A name no other test in this run (or an earlier run against the same server) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// The repository's `template.yaml`.
pub fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("template.yaml")
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template is not valid YAML")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template has no resource {0}")]
    MissingResource(String),
    #[error("resource {resource}: {reason}")]
    Unsupported { resource: String, reason: String },
}

/// The parts of an `AWS::DynamoDB::Table` resource that decide its shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDef>,
    #[serde(default)]
    pub time_to_live_specification: Option<TtlDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDef {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDef {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: ProjectionDef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDef {
    pub projection_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlDef {
    pub attribute_name: String,
    pub enabled: bool,
}

/// Reads the definition of the table resource `logical_id` from the template at `path`.
pub fn table_definition(path: &Path, logical_id: &str) -> Result<TableDefinition, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.to_owned(),
        source,
    })?;
    let template: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let resource = template
        .get("Resources")
        .and_then(|r| r.get(logical_id))
        .ok_or_else(|| TemplateError::MissingResource(logical_id.to_owned()))?;
    let kind = resource.get("Type").and_then(|t| t.as_str());
    if kind != Some("AWS::DynamoDB::Table") {
        return Err(TemplateError::Unsupported {
            resource: logical_id.to_owned(),
            reason: format!("is {kind:?}, not an AWS::DynamoDB::Table"),
        });
    }
    let properties =
        resource
            .get("Properties")
            .cloned()
            .ok_or_else(|| TemplateError::Unsupported {
                resource: logical_id.to_owned(),
                reason: "has no Properties".into(),
            })?;
    Ok(serde_yaml::from_value(properties)?)
}

/// Creates table `name` with the shape of the template's `JobsTable`, and waits until it is
/// active. Returns the table name.
pub async fn create_jobs_table(
    config: &SdkConfig,
    name: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let definition = table_definition(&template_path(), "JobsTable")?;
    create_table(&aws_sdk_dynamodb::Client::new(config), name, &definition).await?;
    Ok(name.to_owned())
}

pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    definition: &TableDefinition,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let key = |k: &KeyElement| {
        KeySchemaElement::builder()
            .attribute_name(&k.attribute_name)
            .key_type(KeyType::from(k.key_type.as_str()))
            .build()
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for attribute in &definition.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&attribute.attribute_name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                .build()?,
        );
    }
    for k in &definition.key_schema {
        request = request.key_schema(key(k)?);
    }
    for index in &definition.global_secondary_indexes {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(&index.index_name)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(
                        index.projection.projection_type.as_str(),
                    ))
                    .build(),
            );
        for k in &index.key_schema {
            gsi = gsi.key_schema(key(k)?);
        }
        request = request.global_secondary_indexes(gsi.build()?);
    }
    request.send().await?;
    if let Some(ttl) = &definition.time_to_live_specification {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(&ttl.attribute_name)
                    .enabled(ttl.enabled)
                    .build()?,
            )
            .send()
            .await?;
    }
    Ok(())
}

/// Creates an S3 bucket (the local stack's region is us-east-1, which takes no location
/// constraint).
pub async fn create_bucket(config: &SdkConfig, name: &str) -> Result<(), aws_sdk_s3::Error> {
    aws_sdk_s3::Client::new(config)
        .create_bucket()
        .bucket(name)
        .send()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_table_definition_is_read_from_the_template() {
        let table = table_definition(&template_path(), "JobsTable").unwrap();
        assert_eq!(table.key_schema.len(), 1);
        assert_eq!(table.key_schema[0].attribute_name, "jobId");
        let indexes: Vec<_> = table
            .global_secondary_indexes
            .iter()
            .map(|i| i.index_name.as_str())
            .collect();
        assert_eq!(
            indexes,
            vec![
                healthimport_aws::dynamodb::BY_SOURCE_INDEX,
                healthimport_aws::dynamodb::BY_DATASTORE_STATUS_INDEX,
                healthimport_aws::dynamodb::BY_SERVICE_JOB_INDEX,
                healthimport_aws::dynamodb::BY_BATCH_INDEX,
                healthimport_aws::dynamodb::BY_EXPORT_INDEX,
            ]
        );
        assert_eq!(
            table.time_to_live_specification.unwrap().attribute_name,
            "expiresAt"
        );
    }

    #[test]
    fn a_missing_or_wrong_resource_is_reported() {
        assert!(matches!(
            table_definition(&template_path(), "NoSuchTable"),
            Err(TemplateError::MissingResource(_))
        ));
    }
}
