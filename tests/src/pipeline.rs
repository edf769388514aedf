//! The deployed pipeline on the local stack, as the demo and the end-to-end tests use it:
//! provisioned from `template.yaml` (`crate::provision`, `crate::ingest`), fed by uploads to the
//! ingest bucket, observed through the job records, the tracking executions and the Finished
//! events. Everything in between is the real function binaries.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use healthimport::domain::job::{Job, JobId};
use healthimport::ports::store::JobStore;
use healthimport_aws::dynamodb::DynamoJobStore;
use serde_json::Value;

use crate::ingest::{self, Ingest, IngestDefinition};
use crate::local_stack::{sdk_config, template_path, unique_name};
use crate::provision::{eventually, FinishedEvents, LocalFunctions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const INGEST_BUCKET: &str = "healthimport-local-ingest";
pub const UPLOAD_QUEUE: &str = "healthimport-local-uploads";

pub struct LocalPipeline {
    pub sdk: SdkConfig,
    pub functions: LocalFunctions,
    pub ingest: Ingest,
    pub store: DynamoJobStore,
    finished: FinishedEvents,
    announced: Vec<Value>,
}

impl LocalPipeline {
    /// Provisions (once per process) and subscribes a queue of this caller's own to the Finished
    /// events.
    pub async fn start() -> Result<LocalPipeline, BoxError> {
        let sdk = sdk_config().await;
        let functions = LocalFunctions::from_env();
        functions.provision(&sdk).await?;
        let definition = IngestDefinition::from_template(&template_path())?;
        let ingest =
            ingest::wire(&sdk, &definition, INGEST_BUCKET, UPLOAD_QUEUE, "starter").await?;
        let finished =
            FinishedEvents::subscribe(&sdk, &functions, &unique_name("finished")).await?;
        let store = DynamoJobStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &functions.jobs_table,
            time::Duration::days(1),
        );
        Ok(LocalPipeline {
            sdk,
            functions,
            ingest,
            store,
            finished,
            announced: Vec::new(),
        })
    }

    pub async fn upload(&self, key: &str, body: &[u8]) -> Result<(), BoxError> {
        aws_sdk_s3::Client::new(&self.sdk)
            .put_object()
            .bucket(&self.ingest.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await?;
        Ok(())
    }

    /// The records of the upload `key`, oldest first.
    pub async fn records(&self, key: &str) -> Result<Vec<Job>, BoxError> {
        Ok(self.store.find_by_source(&self.ingest.bucket, key).await?)
    }

    /// The status of the tracking execution of `job_id`, `None` while it does not exist.
    pub async fn execution_status(&self, job_id: &JobId) -> Result<Option<String>, BoxError> {
        let described = aws_sdk_sfn::Client::new(&self.sdk)
            .describe_execution()
            .execution_arn(self.functions.execution_arn(job_id.as_str()))
            .send()
            .await;
        match described {
            Ok(execution) => Ok(Some(execution.status().as_str().to_owned())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until every upload in `keys` has records, all terminal, whose executions have ended
    /// (so their outcome is recorded and announced), and returns the records, read again then.
    pub async fn wait_until_finished(
        &self,
        keys: &[String],
        deadline: Duration,
    ) -> Result<BTreeMap<String, Vec<Job>>, BoxError> {
        eventually(deadline, || async {
            let mut finished = BTreeMap::new();
            for key in keys {
                let records = self.records(key).await?;
                if records.is_empty() {
                    return Ok(None);
                }
                for record in &records {
                    if !self.has_finished(record).await? {
                        return Ok(None);
                    }
                }
                finished.insert(key.clone(), records);
            }
            Ok(Some(finished))
        })
        .await?;
        let mut records = BTreeMap::new();
        for key in keys {
            records.insert(key.clone(), self.records(key).await?);
        }
        Ok(records)
    }

    /// Invokes the real `exporter` binary (through the Lambda Invoke API, as Scheduler or an
    /// operator would) and returns its answer; a function error is an `Err` with its payload.
    pub async fn invoke_exporter(&self, event: &Value) -> Result<Value, BoxError> {
        let response = aws_sdk_lambda::Client::new(&self.sdk)
            .invoke()
            .function_name("exporter")
            .payload(aws_sdk_lambda::primitives::Blob::new(serde_json::to_vec(
                event,
            )?))
            .send()
            .await?;
        let payload: Value =
            serde_json::from_slice(response.payload().ok_or("no payload")?.as_ref())?;
        if response.function_error().is_some() {
            return Err(format!("the exporter failed: {payload}").into());
        }
        Ok(payload)
    }

    /// Waits until the record `id` is terminal and its tracking execution has ended (so its
    /// outcome is recorded and announced), then returns the record as it is then.
    pub async fn wait_for_job(&self, id: &JobId, deadline: Duration) -> Result<Job, BoxError> {
        eventually(deadline, || async {
            let Some(record) = self.store.get(id).await? else {
                return Ok(None);
            };
            Ok(self.has_finished(&record).await?.then_some(()))
        })
        .await?;
        self.store
            .get(id)
            .await?
            .ok_or_else(|| format!("the record of {id} vanished").into())
    }

    /// Whether the record is terminal and, unless it was never tracked (a skipped upload), its
    /// tracking execution (its batch's, for an upload) has ended, so its outcome is recorded and
    /// announced.
    async fn has_finished(&self, record: &Job) -> Result<bool, BoxError> {
        if !record.status.is_terminal() {
            return Ok(false);
        }
        if record.skip_reason().is_some() {
            return Ok(true);
        }
        let tracked = record.batch_id().unwrap_or(&record.job_id);
        let execution = self.execution_status(tracked).await?;
        Ok(!matches!(execution.as_deref(), None | Some("RUNNING")))
    }

    /// The Finished events of `job_id` received so far by this pipeline's queue.
    pub async fn finished_events(&mut self, job_id: &JobId) -> Result<Vec<Value>, BoxError> {
        self.announced.extend(self.finished.drain(&self.sdk).await?);
        Ok(self
            .announced
            .iter()
            .filter(|e| e["detail"]["jobId"] == job_id.as_str())
            .cloned()
            .collect())
    }

    /// Waits until each of `job_ids` has been announced, then returns every event per job (a
    /// duplicate would show as a second entry).
    pub async fn wait_for_events(
        &mut self,
        job_ids: &[JobId],
        deadline: Duration,
    ) -> Result<BTreeMap<JobId, Vec<Value>>, BoxError> {
        let started = tokio::time::Instant::now();
        loop {
            let mut events = BTreeMap::new();
            for id in job_ids {
                events.insert(id.clone(), self.finished_events(id).await?);
            }
            if events.values().all(|e| !e.is_empty()) {
                return Ok(events);
            }
            if started.elapsed() > deadline {
                return Err(format!("not every job was announced within {deadline:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
