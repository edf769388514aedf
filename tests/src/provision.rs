//! The rest of the deployment on the local stack, for the functions `cargo lambda watch` runs with
//! `scripts/local-functions.env`: the jobs table (from `template.yaml`'s `JobsTable`), the output
//! bucket, the event bus, the tracking state machine (`statemachine/import-job.asl.json`, its
//! Lambda tasks on the real `poller` and `job-events`), and event-driven completion (the services'
//! job-event rules and the completion-check queue, on `job-events`). `crate::ingest` wires the
//! upload side.
//!
//! Idempotent and safe to call from tests running in parallel: "already exists" is success.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::local_stack::{create_table, table_definition, template_path};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The account and region of the local stack (moto's defaults).
pub const LOCAL_ACCOUNT: &str = "123456789012";
pub const LOCAL_REGION: &str = "us-east-1";
/// How long a tracking execution may run locally (the template's `TrackingTimeoutSeconds`).
const LOCAL_TRACKING_TIMEOUT_SECONDS: u32 = 900;

/// `scripts/local-functions.env`, as the local stack handed it to the functions.
#[derive(Debug, Clone)]
pub struct LocalFunctions {
    settings: BTreeMap<String, String>,
    pub jobs_table: String,
    pub event_bus: String,
    pub output_bucket: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
}

impl LocalFunctions {
    /// Reads the file named by `HEALTHIMPORT_LOCAL_FUNCTIONS_ENV`, which `scripts/local-stack.sh`
    /// exports. Panics when it is missing: a test must fail, not pass, without the stack.
    pub fn from_env() -> LocalFunctions {
        let path = std::env::var_os("HEALTHIMPORT_LOCAL_FUNCTIONS_ENV").map(PathBuf::from).expect(
            "HEALTHIMPORT_LOCAL_FUNCTIONS_ENV is not set: run inside scripts/local-stack.sh (make test does)",
        );
        LocalFunctions::from_file(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    pub fn from_file(path: &Path) -> Result<LocalFunctions, BoxError> {
        let text = std::fs::read_to_string(path)?;
        let settings: BTreeMap<String, String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let get = |name: &str| {
            settings
                .get(name)
                .cloned()
                .ok_or_else(|| format!("{} has no {name}", path.display()))
        };
        let state_machine_arn = get("STATE_MACHINE_ARN")?;
        let output_uri = get("FHIR_OUTPUT_S3_URI")?;
        Ok(LocalFunctions {
            jobs_table: get("JOBS_TABLE")?,
            event_bus: get("EVENT_BUS_NAME")?,
            output_bucket: output_uri
                .strip_prefix("s3://")
                .and_then(|rest| rest.split('/').next())
                .ok_or_else(|| format!("FHIR_OUTPUT_S3_URI {output_uri} is not s3://bucket/..."))?
                .to_owned(),
            state_machine_name: state_machine_arn
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_owned(),
            state_machine_arn,
            settings,
        })
    }

    pub fn setting(&self, name: &str) -> Result<String, BoxError> {
        self.settings
            .get(name)
            .cloned()
            .ok_or_else(|| format!("scripts/local-functions.env has no {name}").into())
    }

    /// Creates what the functions expect, once per process.
    pub async fn provision(&self, sdk: &SdkConfig) -> Result<(), BoxError> {
        static DONE: OnceCell<()> = OnceCell::const_new();
        DONE.get_or_try_init(|| self.create_all(sdk)).await?;
        Ok(())
    }

    async fn create_all(&self, sdk: &SdkConfig) -> Result<(), BoxError> {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let definition = table_definition(&template_path(), "JobsTable")?;
        if let Err(error) = create_table(&dynamodb, &self.jobs_table, &definition).await {
            let exists = dynamodb
                .describe_table()
                .table_name(&self.jobs_table)
                .send()
                .await
                .is_ok();
            if !exists {
                return Err(error);
            }
        }

        let s3 = aws_sdk_s3::Client::new(sdk);
        match s3.create_bucket().bucket(&self.output_bucket).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(e.into()),
        }

        let events = aws_sdk_eventbridge::Client::new(sdk);
        match events.create_event_bus().name(&self.event_bus).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception()) => {}
            Err(e) => return Err(e.into()),
        }

        let sfn = aws_sdk_sfn::Client::new(sdk);
        let created = sfn
            .create_state_machine()
            .name(&self.state_machine_name)
            .definition(tracking_definition(
                &format!("arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:poller"),
                LOCAL_TRACKING_TIMEOUT_SECONDS,
            )?)
            .role_arn(format!(
                "arn:aws:iam::{LOCAL_ACCOUNT}:role/healthimport-local-tracking"
            ))
            .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
            .send()
            .await;
        match created {
            Ok(output) if output.state_machine_arn == self.state_machine_arn => {}
            Ok(output) => {
                return Err(format!(
                    "moto made {} where the functions expect {}",
                    output.state_machine_arn, self.state_machine_arn
                )
                .into())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_state_machine_already_exists()) => {}
            Err(e) => return Err(e.into()),
        }
        self.wire_completion(sdk).await
    }

    /// Event-driven completion, as the template's `JobEventsFunction` events wire it: rules on the
    /// default bus for both services' job events of the local data stores, targeting the
    /// `job-events` function (moto's PutEvents cannot invoke a Lambda target: the local stack's
    /// launcher delivers them), and the completion-check queue as its event source.
    async fn wire_completion(&self, sdk: &SdkConfig) -> Result<(), BoxError> {
        let function_arn = crate::ingest::register_function(sdk, "job-events").await?;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queue_name = self
            .setting("COMPLETION_CHECK_QUEUE_URL")?
            .rsplit('/')
            .next()
            .map(str::to_owned)
            .ok_or("COMPLETION_CHECK_QUEUE_URL names no queue")?;
        let queue_url = sqs
            .create_queue()
            .queue_name(&queue_name)
            .send()
            .await?
            .queue_url
            .ok_or("no queue URL")?;
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .ok_or("no queue ARN")?;
        crate::ingest::subscribe_queue(sdk, &queue_arn, "job-events", 10, true).await?;

        let events = aws_sdk_eventbridge::Client::new(sdk);
        let statuses = |kind: &str, changes: &[&str]| -> Vec<String> {
            changes.iter().map(|c| format!("{kind} Job {c}")).collect()
        };
        let healthlake = [
            "Submitted",
            "Queued",
            "In Progress",
            "Completed",
            "Completed With Errors",
            "Failed",
        ];
        let fhir_detail_types = [
            statuses("Import", &healthlake),
            statuses("Export", &healthlake),
        ]
        .concat();
        let rules = [
            (
                "healthimport-local-healthlake-jobs",
                serde_json::json!({
                    "source": ["aws.healthlake"],
                    "detail-type": fhir_detail_types,
                    "detail": {"datastoreId": [self.setting("FHIR_DATASTORE_ID")?]},
                }),
            ),
            (
                "healthimport-local-imaging-jobs",
                serde_json::json!({
                    "source": ["aws.medical-imaging"],
                    "detail-type": statuses("Import", &["Submitted", "In Progress", "Completed", "Failed"]),
                    "detail": {"datastoreId": [self.setting("IMAGING_DATASTORE_ID")?]},
                }),
            ),
        ];
        for (name, pattern) in rules {
            events
                .put_rule()
                .name(name)
                .event_pattern(pattern.to_string())
                .send()
                .await?;
            events
                .put_targets()
                .rule(name)
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id("job-events")
                        .arn(&function_arn)
                        .build()?,
                )
                .send()
                .await?;
        }
        Ok(())
    }

    /// The execution tracking `job_id` (executions are named after the job id).
    pub fn execution_arn(&self, job_id: &str) -> String {
        format!(
            "{}:{job_id}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }
}

/// How many import jobs the local data stores hold under each of `names` (the starter names jobs
/// after their job id): "started exactly once" is 1 each.
pub async fn service_jobs_named(
    sdk: &SdkConfig,
    functions: &LocalFunctions,
    names: &[String],
) -> Result<BTreeMap<String, usize>, BoxError> {
    let mut counts: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
    let mut pages = aws_sdk_healthlake::Client::new(sdk)
        .list_fhir_import_jobs()
        .datastore_id(functions.setting("FHIR_DATASTORE_ID")?)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for job in page?.import_job_properties_list() {
            if let Some(n) = counts.get_mut(job.job_name().unwrap_or_default()) {
                *n += 1;
            }
        }
    }
    let mut pages = aws_sdk_medicalimaging::Client::new(sdk)
        .list_dicom_import_jobs()
        .datastore_id(functions.setting("IMAGING_DATASTORE_ID")?)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for job in page?.job_summaries() {
            if let Some(n) = counts.get_mut(job.job_name()) {
                *n += 1;
            }
        }
    }
    Ok(counts)
}

/// The tracking workflow's definition with SAM's `DefinitionSubstitutions` filled in.
pub fn tracking_definition(poller_arn: &str, timeout_seconds: u32) -> Result<String, BoxError> {
    let path = template_path()
        .parent()
        .map(|root| root.join("statemachine/import-job.asl.json"))
        .ok_or("no repository root")?;
    let text = std::fs::read_to_string(&path)?;
    let definition = text
        .replace("${PollerFunctionArn}", poller_arn)
        // The job-events function sits next to the poller.
        .replace(
            "${JobEventsFunctionArn}",
            &poller_arn.replace(":function:poller", ":function:job-events"),
        )
        .replace("${TrackingTimeoutSeconds}", &timeout_seconds.to_string());
    // Checked here so a placeholder added to the file without a value fails loudly.
    serde_json::from_str::<Value>(&definition)
        .map_err(|e| format!("{} after substitution: {e}", path.display()))?;
    if definition.contains("${") {
        return Err(format!(
            "{} has a placeholder this code does not fill",
            path.display()
        )
        .into());
    }
    Ok(definition)
}

/// A queue subscribed to the bus's `Import Job Finished` and `Export Job Finished` events, one per caller, so parallel tests
/// each see every event.
#[derive(Debug, Clone)]
pub struct FinishedEvents {
    queue_url: String,
}

impl FinishedEvents {
    pub async fn subscribe(
        sdk: &SdkConfig,
        functions: &LocalFunctions,
        name: &str,
    ) -> Result<FinishedEvents, BoxError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queue_url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await?
            .queue_url
            .ok_or("no queue URL")?;
        let queue_arn = format!("arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}");
        let events = aws_sdk_eventbridge::Client::new(sdk);
        events
            .put_rule()
            .name(name)
            .event_bus_name(&functions.event_bus)
            .event_pattern(
                serde_json::json!({
                    "source": [healthimport::domain::finished::EVENT_SOURCE],
                    "detail-type": [
                        healthimport::domain::finished::DETAIL_TYPE_JOB_FINISHED,
                        healthimport::domain::finished::DETAIL_TYPE_EXPORT_FINISHED,
                    ],
                })
                .to_string(),
            )
            .send()
            .await?;
        events
            .put_targets()
            .rule(name)
            .event_bus_name(&functions.event_bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()?,
            )
            .send()
            .await?;
        Ok(FinishedEvents { queue_url })
    }

    /// Every event delivered so far (each returned once), as the JSON EventBridge delivers.
    pub async fn drain(&self, sdk: &SdkConfig) -> Result<Vec<Value>, BoxError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut events = Vec::new();
        loop {
            let received = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(events);
            }
            for message in messages {
                if let Some(body) = message.body() {
                    events.push(serde_json::from_str(body)?);
                }
                if let Some(handle) = message.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }
}

/// Polls `check` until it yields a value or `deadline` passes: waiting on a condition of the
/// system under test, never a fixed sleep standing in for one.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> Result<T, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BoxError>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > deadline {
            return Err(format!("condition not met within {deadline:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_functions_file_names_every_resource() {
        let path = template_path()
            .parent()
            .unwrap()
            .join("scripts/local-functions.env");
        let functions = LocalFunctions::from_file(&path).unwrap();
        assert_eq!(functions.output_bucket, "healthimport-local-output");
        assert_eq!(
            functions.state_machine_name,
            "healthimport-local-import-job"
        );
        assert!(functions
            .execution_arn("abc")
            .ends_with(":execution:healthimport-local-import-job:abc"));
    }

    #[test]
    fn the_tracking_definition_has_every_placeholder_filled() {
        let definition =
            tracking_definition("arn:aws:lambda:us-east-1:1:function:poller", 900).unwrap();
        let value: Value = serde_json::from_str(&definition).unwrap();
        assert_eq!(value["TimeoutSeconds"], 900);
        assert_eq!(
            value["States"]["Poll"]["Parameters"]["FunctionName"],
            "arn:aws:lambda:us-east-1:1:function:poller"
        );
    }
}
