//! The ingest half of `template.yaml` on moto: the versioned ingest bucket, its S3 event
//! notifications to the upload queue (read from `IngestBucket`'s `NotificationConfiguration`, with
//! the prefixes' parameter defaults), and the starter behind the queue's Lambda event source
//! (`StarterFunction`'s `Uploads` event: batch size, ReportBatchItemFailures).
//!
//! moto runs the event source itself: a message on the queue is handed to the function at once,
//! and `scripts/moto_stack.py` forwards that Invoke to the real `starter` binary under
//! `cargo lambda watch`. So an upload here travels the same path it does on AWS:
//! S3 → SQS → starter → DynamoDB + HealthLake/HealthImaging + Step Functions.

use std::path::Path;

use aws_config::SdkConfig;
use aws_sdk_lambda::types::{FunctionResponseType, Runtime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the ingest wiring created.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub bucket: String,
    pub queue_url: String,
    pub queue_arn: String,
    /// The prefixes the bucket notifies on, from the template.
    pub prefixes: Vec<String>,
}

/// The template's parts the ingest wiring reads.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestDefinition {
    /// `(event, key prefix)` of each queue notification.
    pub notifications: Vec<(String, String)>,
    pub versioned: bool,
    pub visibility_timeout: Option<i64>,
    pub batch_size: i32,
    pub report_batch_item_failures: bool,
}

impl IngestDefinition {
    pub fn from_template(path: &Path) -> Result<Self, BoxError> {
        let template: Value = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
        let resource = |name: &str| {
            template
                .get("Resources")
                .and_then(|r| r.get(name))
                .and_then(|r| r.get("Properties"))
                .ok_or_else(|| format!("template.yaml has no {name} with Properties"))
        };
        let bucket = resource("IngestBucket")?;
        let mut notifications = Vec::new();
        let configurations = bucket
            .get("NotificationConfiguration")
            .and_then(|n| n.get("QueueConfigurations"))
            .and_then(Value::as_sequence)
            .ok_or("IngestBucket has no QueueConfigurations")?;
        for configuration in configurations {
            let event = configuration
                .get("Event")
                .and_then(Value::as_str)
                .ok_or("a QueueConfiguration has no Event")?;
            let rules = configuration
                .get("Filter")
                .and_then(|f| f.get("S3Key"))
                .and_then(|k| k.get("Rules"))
                .and_then(Value::as_sequence)
                .ok_or("a QueueConfiguration has no S3Key rules")?;
            for rule in rules {
                if rule.get("Name").and_then(Value::as_str) == Some("prefix") {
                    let prefix =
                        resolve(&template, rule.get("Value").ok_or("rule without Value")?)?;
                    notifications.push((event.to_owned(), prefix));
                }
            }
        }
        let versioned = bucket
            .get("VersioningConfiguration")
            .and_then(|v| v.get("Status"))
            .and_then(Value::as_str)
            == Some("Enabled");
        let visibility_timeout = resource("UploadQueue")?
            .get("VisibilityTimeout")
            .and_then(Value::as_i64);
        let uploads = resource("StarterFunction")?
            .get("Events")
            .and_then(|e| e.get("Uploads"))
            .and_then(|e| e.get("Properties"))
            .ok_or("StarterFunction has no Uploads event")?;
        let batch_size = uploads
            .get("BatchSize")
            .and_then(Value::as_i64)
            .unwrap_or(10) as i32;
        let report_batch_item_failures = uploads
            .get("FunctionResponseTypes")
            .and_then(Value::as_sequence)
            .is_some_and(|types| {
                types
                    .iter()
                    .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
            });
        Ok(IngestDefinition {
            notifications,
            versioned,
            visibility_timeout,
            batch_size,
            report_batch_item_failures,
        })
    }
}

/// A plain string, or `!Ref Parameter` resolved to the parameter's default.
fn resolve(template: &Value, value: &Value) -> Result<String, BoxError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Tagged(tagged) if tagged.tag == "Ref" => {
            let name = tagged.value.as_str().ok_or("!Ref of a non-string")?;
            template
                .get("Parameters")
                .and_then(|p| p.get(name))
                .and_then(|p| p.get("Default"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("parameter {name} has no default").into())
        }
        other => Err(format!("cannot resolve {other:?} locally").into()),
    }
}

/// Creates (or finds) the ingest bucket, the upload queue, the `starter` function record in moto
/// with its SQS event source, and the bucket's notifications. Safe to call again.
pub async fn wire(
    sdk: &SdkConfig,
    definition: &IngestDefinition,
    bucket: &str,
    queue_name: &str,
    function_name: &str,
) -> Result<Ingest, BoxError> {
    let s3 = aws_sdk_s3::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(e) => return Err(e.into()),
    }
    if definition.versioned {
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await?;
    }

    let mut queue = sqs.create_queue().queue_name(queue_name);
    if let Some(seconds) = definition.visibility_timeout {
        queue = queue.attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string());
    }
    let queue_url = queue.send().await?.queue_url.ok_or("no queue URL")?;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or("no queue ARN")?;

    register_function(sdk, function_name).await?;
    subscribe_queue(
        sdk,
        &queue_arn,
        function_name,
        definition.batch_size,
        definition.report_batch_item_failures,
    )
    .await?;

    let mut notifications = NotificationConfiguration::builder();
    for (event, prefix) in &definition.notifications {
        notifications = notifications.queue_configurations(
            QueueConfiguration::builder()
                .queue_arn(&queue_arn)
                .events(Event::from(event.as_str()))
                .filter(
                    NotificationConfigurationFilter::builder()
                        .key(
                            S3KeyFilter::builder()
                                .filter_rules(
                                    FilterRule::builder()
                                        .name(FilterRuleName::Prefix)
                                        .value(prefix)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()?,
        );
    }
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(notifications.build())
        .send()
        .await?;

    Ok(Ingest {
        bucket: bucket.to_owned(),
        queue_url,
        queue_arn,
        prefixes: definition
            .notifications
            .iter()
            .map(|(_, p)| p.clone())
            .collect(),
    })
}

/// Registers `function_name` with moto's Lambda, so that event sources and rules can name it; the
/// code that runs is the real binary behind `cargo lambda watch`, so the package is an empty zip.
/// Returns the function's ARN.
pub async fn register_function(sdk: &SdkConfig, function_name: &str) -> Result<String, BoxError> {
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let iam = aws_sdk_iam::Client::new(sdk);
    let role_name = format!("{function_name}-local");
    let role_arn = match iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
    {
        Ok(created) => created.role.map(|r| r.arn).ok_or("no role")?,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_entity_already_exists_exception()) => {
            iam.get_role()
                .role_name(&role_name)
                .send()
                .await?
                .role
                .map(|r| r.arn)
                .ok_or("no role")?
        }
        Err(e) => return Err(e.into()),
    };
    const EMPTY_ZIP: [u8; 22] = [
        0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let created = lambda
        .create_function()
        .function_name(function_name)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(&role_arn)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(EMPTY_ZIP.to_vec()))
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(created) => Ok(created.function_arn.ok_or("no function ARN")?),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_conflict_exception()) =>
        {
            Ok(lambda
                .get_function()
                .function_name(function_name)
                .send()
                .await?
                .configuration
                .and_then(|c| c.function_arn)
                .ok_or("no function ARN")?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The event source mapping from the queue `queue_arn` to `function_name` (moto polls the queue and
/// invokes the function), made once.
pub async fn subscribe_queue(
    sdk: &SdkConfig,
    queue_arn: &str,
    function_name: &str,
    batch_size: i32,
    report_batch_item_failures: bool,
) -> Result<(), BoxError> {
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let mappings = lambda
        .list_event_source_mappings()
        .function_name(function_name)
        .event_source_arn(queue_arn)
        .send()
        .await?;
    if mappings.event_source_mappings().is_empty() {
        let mut mapping = lambda
            .create_event_source_mapping()
            .function_name(function_name)
            .event_source_arn(queue_arn)
            .batch_size(batch_size);
        if report_batch_item_failures {
            mapping =
                mapping.function_response_types(FunctionResponseType::ReportBatchItemFailures);
        }
        mapping.send().await?;
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_stack::template_path;

    #[test]
    fn the_ingest_wiring_is_read_from_the_template() {
        let definition = IngestDefinition::from_template(&template_path()).unwrap();
        assert_eq!(
            definition.notifications,
            vec![
                ("s3:ObjectCreated:*".to_owned(), "fhir/".to_owned()),
                ("s3:ObjectCreated:*".to_owned(), "dicom/".to_owned()),
            ]
        );
        assert!(definition.versioned);
        assert_eq!(definition.batch_size, 10);
        assert!(definition.report_batch_item_failures);
        assert!(definition.visibility_timeout.is_some());
    }
}
