//! [`JobStore`] on DynamoDB: one item per job, every write a conditional write.
//!
//! Table layout (defined once, in `template.yaml`'s `JobsTable`; the tests create their table from
//! that definition):
//! - partition key `jobId`;
//! - GSI `bySource`: `sourceUri` (`s3://bucket/key`) + `createdAt`, to find the jobs of an upload;
//! - GSI `byDatastoreStatus`: `datastoreId` + `status`, to list a data store's jobs in a status;
//! - GSI `byBatch`: `batchId` + `createdAt`, the uploads of a batch (see `batches`);
//! - GSI `byExport`: `exportOf` (the data store id, set on export records only) + `createdAt`, so
//!   that an incremental export finds where the last one ended without reading any import;
//! - TTL attribute `expiresAt` (epoch seconds), set only once a job is terminal so that a record
//!   never expires while its job may still change;
//! - `outcomeAt` and `announcedAt`: when the outcome was recorded and the Finished event put.
//!
//! The record's schema lives in one place, serde on [`Job`]; items are its JSON form mapped onto
//! DynamoDB types. The check and the write of every conditional write are one DynamoDB operation.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use healthimport::domain::job::{
    bounded_failed_files, Job, JobId, JobKind, JobStatus, MessageChange, Timestamp, Transition,
};
use healthimport::domain::s3_uri::s3_uri;
use healthimport::ports::store::{
    CreateOutcome, JobOutcome, JobStore, OutcomeMarkers, OutcomeWrite, StoreError,
    TransitionOutcome,
};
use serde_json::{Map, Number, Value};
use time::Duration;

mod batches;
mod queries;
pub use batches::{BY_BATCH_INDEX, BY_SERVICE_JOB_INDEX};

pub const BY_SOURCE_INDEX: &str = "bySource";
pub const BY_DATASTORE_STATUS_INDEX: &str = "byDatastoreStatus";
pub const BY_EXPORT_INDEX: &str = "byExport";

/// [`JobStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoJobStore {
    client: Client,
    table: String,
    /// How long a terminal record is kept before DynamoDB's TTL removes it.
    retention: Duration,
}

impl DynamoJobStore {
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        DynamoJobStore {
            client,
            table: table.into(),
            retention,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A conditional write's answer: written, refused by its condition, or failed.
    fn conditional<T, E>(
        &self,
        operation: &'static str,
        result: Result<T, SdkError<E>>,
    ) -> Result<Conditional<T>, StoreError>
    where
        E: ConditionFailure + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match result {
            Ok(output) => Ok(Conditional::Written(output)),
            Err(SdkError::ServiceError(e)) => match e.into_err().refused_item() {
                Ok(item) => Ok(Conditional::Refused(item)),
                Err(other) => Err(self.failed(operation, other)),
            },
            Err(e) => Err(self.failed(operation, e)),
        }
    }

    /// A failed request: refused for good when DynamoDB says the item is too large (retrying the
    /// same write cannot help), else unavailable (throttling, access, network).
    fn failed<E>(&self, operation: &'static str, error: E) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let too_large = error.code() == Some("ValidationException")
            && error
                .message()
                .is_some_and(|m| m.to_ascii_lowercase().contains("size"));
        if too_large {
            return StoreError::Rejected {
                operation,
                table: self.table.clone(),
                reason: error.message().unwrap_or_default().to_owned(),
            };
        }
        self.unavailable(operation, error)
    }

    fn unavailable(&self, operation: &'static str, source: impl Into<BoxError>) -> StoreError {
        StoreError::Unavailable {
            operation,
            table: self.table.clone(),
            source: source.into(),
        }
    }

    /// A conditional UpdateItem of the job's item; `returned` says which attributes a written
    /// update answers with.
    async fn update(
        &self,
        job_id: &JobId,
        update: Update,
        returned: ReturnValue,
    ) -> Result<Conditional<Option<Item>>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", AttributeValue::S(job_id.to_string()))
            .update_expression(update.expression)
            .condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(returned)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        Ok(match self.conditional("UpdateItem", result)? {
            Conditional::Written(output) => Conditional::Written(output.attributes),
            Conditional::Refused(item) => Conditional::Refused(item),
        })
    }

    fn decode(&self, item: HashMap<String, AttributeValue>) -> Result<Job, StoreError> {
        let job_id = match item.get("jobId") {
            Some(AttributeValue::S(id)) => id.clone(),
            _ => "<no jobId>".to_owned(),
        };
        let malformed = |reason: String| StoreError::Malformed {
            job_id: job_id.clone(),
            table: self.table.clone(),
            reason,
        };
        let json = item_to_json(item).map_err(malformed)?;
        serde_json::from_value(json).map_err(|e| malformed(e.to_string()))
    }

    fn encode(&self, job: &Job) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let json = serde_json::to_value(job).map_err(|e| StoreError::Malformed {
            job_id: job.job_id.to_string(),
            table: self.table.clone(),
            reason: e.to_string(),
        })?;
        let Value::Object(map) = json else {
            unreachable!("Job serialises to a JSON object")
        };
        let mut item: HashMap<String, AttributeValue> = map
            .into_iter()
            .map(|(k, v)| (k, json_to_attribute(v)))
            .collect();
        // Index keys, kept at the top level where DynamoDB can index them.
        // An export has no source object: it stays out of the sparse bySource index.
        if let Some(source) = job.source() {
            item.insert("sourceUri".into(), AttributeValue::S(source.uri()));
        }
        if let (JobKind::Export, Some(datastore_id)) = (job.kind(), job.datastore_id()) {
            item.insert(
                "exportOf".into(),
                AttributeValue::S(datastore_id.to_owned()),
            );
        }
        if job.status.is_terminal() {
            item.insert(
                "expiresAt".into(),
                self.expires_at(job.updated_at.unix_seconds()),
            );
        }
        Ok(item)
    }

    fn expires_at(&self, terminal_at: i64) -> AttributeValue {
        AttributeValue::N((terminal_at + self.retention.whole_seconds()).to_string())
    }

    /// Every record of `index` under `key_condition` (and `filter`, when given), page by page.
    async fn query(
        &self,
        index: &'static str,
        key_condition: &str,
        filter: Option<&str>,
        values: HashMap<String, AttributeValue>,
        names: HashMap<String, String>,
    ) -> Result<Vec<Job>, StoreError> {
        let mut jobs = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(key_condition)
                .set_filter_expression(filter.map(str::to_owned))
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| self.unavailable("Query", e))?;
            for item in page.items.unwrap_or_default() {
                jobs.push(self.decode(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => return Ok(jobs),
            }
        }
    }
}

#[async_trait]
impl JobStore for DynamoJobStore {
    async fn create(&self, job: &Job) -> Result<CreateOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.encode(job)?))
            .condition_expression("attribute_not_exists(jobId)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let existing = match self.conditional("PutItem", result)? {
            Conditional::Written(_) => return Ok(CreateOutcome::Created),
            Conditional::Refused(Some(item)) => self.decode(item)?,
            Conditional::Refused(None) => {
                self.get(&job.job_id)
                    .await?
                    .ok_or_else(|| StoreError::Malformed {
                        job_id: job.job_id.to_string(),
                        table: self.table.clone(),
                        reason: "create was refused as a duplicate but no record exists".into(),
                    })?
            }
        };
        Ok(CreateOutcome::AlreadyExists(Box::new(existing)))
    }

    async fn transition(
        &self,
        job_id: &JobId,
        change: &Transition,
    ) -> Result<TransitionOutcome, StoreError> {
        let allowed = JobStatus::allowed_predecessors(change.to);
        let current = if allowed.is_empty() {
            // Nothing may move here (e.g. SKIPPED, which exists only at creation): report the
            // record's status without writing.
            self.get(job_id).await?
        } else {
            let update = UpdateBuilder::transition(change, &allowed, |at| self.expires_at(at));
            match self.update(job_id, update, ReturnValue::AllNew).await? {
                Conditional::Written(attributes) => {
                    let item = attributes.ok_or_else(|| StoreError::Malformed {
                        job_id: job_id.to_string(),
                        table: self.table.clone(),
                        reason: "UpdateItem returned no attributes".into(),
                    })?;
                    return Ok(TransitionOutcome::Applied(Box::new(self.decode(item)?)));
                }
                Conditional::Refused(Some(item)) => Some(self.decode(item)?),
                Conditional::Refused(None) => self.get(job_id).await?,
            }
        };
        Ok(match current {
            Some(job) => TransitionOutcome::Rejected {
                current: job.status,
            },
            None => TransitionOutcome::NotFound,
        })
    }

    async fn get(&self, job_id: &JobId) -> Result<Option<Job>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", AttributeValue::S(job_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", e))?;
        output.item.map(|item| self.decode(item)).transpose()
    }

    async fn find_by_source(&self, bucket: &str, key: &str) -> Result<Vec<Job>, StoreError> {
        self.query(
            BY_SOURCE_INDEX,
            "#uri = :uri",
            None,
            HashMap::from([(":uri".to_owned(), AttributeValue::S(s3_uri(bucket, key)))]),
            HashMap::from([("#uri".to_owned(), "sourceUri".to_owned())]),
        )
        .await
    }

    async fn list_by_datastore_status(
        &self,
        datastore_id: &str,
        status: JobStatus,
    ) -> Result<Vec<Job>, StoreError> {
        self.query(
            BY_DATASTORE_STATUS_INDEX,
            "#ds = :ds AND #status = :status",
            None,
            HashMap::from([
                (":ds".to_owned(), AttributeValue::S(datastore_id.to_owned())),
                (
                    ":status".to_owned(),
                    AttributeValue::S(status.as_str().to_owned()),
                ),
            ]),
            HashMap::from([
                ("#ds".to_owned(), "datastoreId".to_owned()),
                ("#status".to_owned(), "status".to_owned()),
            ]),
        )
        .await
    }

    async fn exports_of(&self, datastore_id: &str) -> Result<Vec<Job>, StoreError> {
        self.query(
            BY_EXPORT_INDEX,
            "#of = :ds",
            None,
            HashMap::from([(":ds".to_owned(), AttributeValue::S(datastore_id.to_owned()))]),
            HashMap::from([("#of".to_owned(), "exportOf".to_owned())]),
        )
        .await
    }

    async fn record_outcome(
        &self,
        job_id: &JobId,
        outcome: &JobOutcome,
    ) -> Result<OutcomeWrite, StoreError> {
        let update = UpdateBuilder::outcome(outcome);
        let (status, recorded) = match self.update(job_id, update, ReturnValue::None).await? {
            Conditional::Written(_) => return Ok(OutcomeWrite::Recorded),
            Conditional::Refused(Some(item)) => (
                match item.get("status") {
                    Some(AttributeValue::S(s)) => s.parse().ok(),
                    _ => None,
                },
                item.contains_key("outcomeAt"),
            ),
            Conditional::Refused(None) => match self.get(job_id).await? {
                Some(job) => (
                    Some(job.status),
                    self.markers(job_id).await?.outcome_at.is_some(),
                ),
                None => (None, false),
            },
        };
        Ok(match status {
            None => OutcomeWrite::NotFound,
            Some(_) if recorded => OutcomeWrite::AlreadyRecorded,
            Some(status) if !status.is_terminal() => OutcomeWrite::NotTerminal(status),
            Some(_) => OutcomeWrite::AlreadyRecorded,
        })
    }

    async fn markers(&self, job_id: &JobId) -> Result<OutcomeMarkers, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", AttributeValue::S(job_id.to_string()))
            .projection_expression("#o, #a")
            .expression_attribute_names("#o", "outcomeAt")
            .expression_attribute_names("#a", "announcedAt")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", e))?;
        let item = output.item.unwrap_or_default();
        Ok(OutcomeMarkers {
            outcome_at: timestamp_attribute(&item, "outcomeAt"),
            announced_at: timestamp_attribute(&item, "announcedAt"),
        })
    }

    async fn mark_announced(&self, job_id: &JobId, at: Timestamp) -> Result<bool, StoreError> {
        let update = Update {
            expression: "SET #a = :at".into(),
            condition: "attribute_exists(#id) AND attribute_not_exists(#a)".into(),
            names: HashMap::from([
                ("#a".to_owned(), "announcedAt".to_owned()),
                ("#id".to_owned(), "jobId".to_owned()),
            ]),
            values: HashMap::from([(":at".to_owned(), AttributeValue::S(at.to_string()))]),
        };
        Ok(matches!(
            self.update(job_id, update, ReturnValue::None).await?,
            Conditional::Written(_)
        ))
    }
}

/// An UpdateItem's expression, its condition, and their placeholders.
struct Update {
    expression: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// What a conditional write did.
enum Conditional<T> {
    Written(T),
    /// Its condition failed; the item as it was, when the server returns it (older
    /// DynamoDB-compatible servers do not).
    Refused(Option<Item>),
}

type Item = HashMap<String, AttributeValue>;

/// The operation errors whose condition can fail.
trait ConditionFailure: Sized {
    /// The item a failed condition returned, or the error itself when it is another one.
    fn refused_item(self) -> Result<Option<Item>, Self>;
}

impl ConditionFailure for PutItemError {
    fn refused_item(self) -> Result<Option<Item>, Self> {
        match self {
            PutItemError::ConditionalCheckFailedException(c) => Ok(c.item),
            other => Err(other),
        }
    }
}

impl ConditionFailure for UpdateItemError {
    fn refused_item(self) -> Result<Option<Item>, Self> {
        match self {
            UpdateItemError::ConditionalCheckFailedException(c) => Ok(c.item),
            other => Err(other),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The UpdateItem of an outcome: expression, condition, names, values.
/// The same shapes serde gives [`Job`]'s fields, so the job store reads them back.
fn timestamp_attribute(item: &HashMap<String, AttributeValue>, name: &str) -> Option<Timestamp> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => text.parse().ok(),
        _ => None,
    }
}

/// Builds an UpdateItem: the attributes it sets, and the names and values its expression and
/// condition use.
#[derive(Default)]
struct UpdateBuilder {
    sets: Vec<String>,
    removes: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl UpdateBuilder {
    /// A transition: the status, the fields learned with it, the history entry (only when the
    /// status is reached for the first time), conditional on the allowed from-statuses.
    fn transition(
        change: &Transition,
        allowed: &[JobStatus],
        expires_at: impl Fn(i64) -> AttributeValue,
    ) -> Update {
        let mut b = UpdateBuilder::default();
        b.set("status", AttributeValue::S(change.to.as_str().to_owned()));
        // The first time a status is reached is kept; a repeated write of it adds nothing.
        b.sets
            .push("#history.#reached = if_not_exists(#history.#reached, :updatedAt)".to_owned());
        b.names.insert("#history".into(), "history".into());
        b.names
            .insert("#reached".into(), change.to.as_str().to_owned());
        b.set("updatedAt", AttributeValue::S(change.at.to_string()));
        let fields = &change.fields;
        if let Some(id) = &fields.service_job_id {
            b.set("serviceJobId", AttributeValue::S(id.clone()));
        }
        match &fields.message {
            MessageChange::Keep => {}
            MessageChange::Set(message) => b.set("message", AttributeValue::S(message.clone())),
            MessageChange::Clear => b.remove("message"),
        }
        if let Some(counts) = &fields.counts {
            b.set("counts", to_attribute(counts));
        }
        if let Some(files) = &fields.failed_files {
            b.set("failedFiles", to_attribute(files));
        }
        if let Some(location) = &fields.output_location {
            b.set("outputLocation", AttributeValue::S(location.clone()));
        }
        if change.to.is_terminal() {
            b.set("expiresAt", expires_at(change.at.unix_seconds()));
        }
        let condition = b.status_in(":from", allowed.iter().copied());
        b.build(condition)
    }

    /// A finished job's outcome: written once, and only on a terminal record. `None` fields keep
    /// what the record holds (a running job's last progress counts, say).
    fn outcome(outcome: &JobOutcome) -> Update {
        let mut b = UpdateBuilder::default();
        b.set("outcomeAt", AttributeValue::S(outcome.at.to_string()));
        b.set("outcomeVerified", AttributeValue::Bool(outcome.verified));
        b.set("updatedAt", AttributeValue::S(outcome.at.to_string()));
        if let Some(counts) = outcome.counts {
            b.set("counts", to_attribute(&counts));
        }
        if !outcome.failed_files.is_empty() {
            b.set(
                "failedFiles",
                to_attribute(&bounded_failed_files(&outcome.failed_files)),
            );
        }
        if let Some(location) = &outcome.output_location {
            b.set("outputLocation", AttributeValue::S(location.clone()));
        }
        b.names.insert("#jobId".into(), "jobId".into());
        let terminal = JobStatus::ALL.into_iter().filter(|s| s.is_terminal());
        let condition = format!(
            "attribute_exists(#jobId) AND {} AND attribute_not_exists(#outcomeAt)",
            b.status_in(":t", terminal)
        );
        b.build(condition)
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) {
        let (name, placeholder) = (format!("#{attribute}"), format!(":{attribute}"));
        self.sets.push(format!("{name} = {placeholder}"));
        self.names.insert(name, attribute.to_owned());
        self.values.insert(placeholder, value);
    }

    fn remove(&mut self, attribute: &str) {
        let name = format!("#{attribute}");
        self.removes.push(name.clone());
        self.names.insert(name, attribute.to_owned());
    }

    /// `#status IN (...)` over `statuses`, as placeholders named `prefix0`, `prefix1`, ...
    fn status_in(&mut self, prefix: &str, statuses: impl Iterator<Item = JobStatus>) -> String {
        self.names.insert("#status".into(), "status".into());
        let placeholders: Vec<String> = statuses
            .enumerate()
            .map(|(i, status)| {
                let placeholder = format!("{prefix}{i}");
                self.values.insert(
                    placeholder.clone(),
                    AttributeValue::S(status.as_str().to_owned()),
                );
                placeholder
            })
            .collect();
        format!("#status IN ({})", placeholders.join(", "))
    }

    fn build(self, condition: String) -> Update {
        let mut expression = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        Update {
            expression,
            condition,
            names: self.names,
            values: self.values,
        }
    }
}

fn to_attribute(value: &impl serde::Serialize) -> AttributeValue {
    json_to_attribute(serde_json::to_value(value).unwrap_or(Value::Null))
}

/// JSON → DynamoDB attribute. The record's schema lives in one place (serde on [`Job`]);
/// this maps it onto DynamoDB types without a second hand-written schema.
fn json_to_attribute(value: Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s),
        Value::Array(items) => {
            AttributeValue::L(items.into_iter().map(json_to_attribute).collect())
        }
        Value::Object(map) => AttributeValue::M(
            map.into_iter()
                .map(|(k, v)| (k, json_to_attribute(v)))
                .collect(),
        ),
    }
}

fn item_to_json(item: HashMap<String, AttributeValue>) -> Result<Value, String> {
    let mut map = Map::new();
    for (k, v) in item {
        map.insert(k, attribute_to_json(v)?);
    }
    Ok(Value::Object(map))
}

fn attribute_to_json(value: AttributeValue) -> Result<Value, String> {
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(b),
        AttributeValue::S(s) => Value::String(s),
        AttributeValue::N(n) => {
            let number = n
                .parse::<u64>()
                .map(Number::from)
                .or_else(|_| n.parse::<i64>().map(Number::from))
                .ok()
                .or_else(|| n.parse::<f64>().ok().and_then(Number::from_f64))
                .ok_or_else(|| format!("number attribute {n:?} is not a number"))?;
            Value::Number(number)
        }
        AttributeValue::L(items) => Value::Array(
            items
                .into_iter()
                .map(attribute_to_json)
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(map) => item_to_json(map)?,
        other => return Err(format!("unexpected attribute type {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use healthimport::domain::job::{FailedFile, JobCounts, Service, SourceObject, Target};

    fn job() -> Job {
        let target = Target {
            service: Service::HealthLake,
            datastore_id: "ds".into(),
            output_s3_uri: "s3://out/".into(),
        };
        Job::import(
            SourceObject {
                bucket: "ingest".into(),
                key: "fhir/a.ndjson".into(),
                size: 3,
                e_tag: Some("\"e\"".into()),
                version_id: None,
            },
            target,
            "s3://ingest/fhir/a.ndjson".into(),
            Timestamp::from_unix_seconds(1_790_000_000).unwrap(),
        )
    }

    fn store(client: Client) -> DynamoJobStore {
        DynamoJobStore::new(client, "jobs", Duration::days(30))
    }

    #[test]
    fn record_round_trips_through_attributes() {
        let s = store(mock_client!(aws_sdk_dynamodb, []));
        let mut original = job();
        original.counts = Some(JobCounts {
            scanned: 3,
            imported: 2,
            failed: 1,
        });
        let item = s.encode(&original).unwrap();
        assert_eq!(
            item["sourceUri"],
            AttributeValue::S("s3://ingest/fhir/a.ndjson".into())
        );
        assert!(!item.contains_key("expiresAt"), "a live job never expires");
        assert_eq!(s.decode(item).unwrap(), original);
    }

    #[test]
    fn terminal_records_carry_their_expiry() {
        let s = store(mock_client!(aws_sdk_dynamodb, []));
        let mut skipped = job();
        skipped.status = JobStatus::Skipped;
        let item = s.encode(&skipped).unwrap();
        let expected = 1_790_000_000 + 30 * 86_400;
        assert_eq!(item["expiresAt"], AttributeValue::N(expected.to_string()));
    }

    #[test]
    fn transition_condition_lists_the_allowed_from_statuses() {
        let change =
            Transition::to(JobStatus::StartFailed, Timestamp::now()).with_message("denied");
        let update =
            UpdateBuilder::transition(&change, &JobStatus::allowed_predecessors(change.to), |_| {
                AttributeValue::N("0".into())
            });
        assert_eq!(update.condition, "#status IN (:from0, :from1, :from2)");
        assert_eq!(update.values[":from0"], AttributeValue::S("OPEN".into()));
        assert_eq!(update.values[":from1"], AttributeValue::S("BATCHED".into()));
        assert_eq!(update.values[":from2"], AttributeValue::S("PENDING".into()));
        assert!(update.expression.contains("#message = :message"));
        assert!(update.expression.contains("#expiresAt = :expiresAt"));

        let started = Transition::to(JobStatus::Submitted, Timestamp::now()).clearing_message();
        let update = UpdateBuilder::transition(
            &started,
            &JobStatus::allowed_predecessors(started.to),
            |_| AttributeValue::N("0".into()),
        );
        assert!(
            update.expression.ends_with(" REMOVE #message"),
            "{}",
            update.expression
        );
        assert_eq!(update.names["#message"], "message");
    }

    #[tokio::test]
    async fn duplicate_create_reports_the_existing_record() {
        let existing = store(mock_client!(aws_sdk_dynamodb, []))
            .encode(&job())
            .unwrap();
        let rule = mock!(Client::put_item).then_error(move || {
            PutItemError::ConditionalCheckFailedException(condition_failed(Some(existing.clone())))
        });
        let s = store(mock_client!(aws_sdk_dynamodb, [&rule]));
        assert_eq!(
            s.create(&job()).await.unwrap(),
            CreateOutcome::AlreadyExists(Box::new(job()))
        );
    }

    #[tokio::test]
    async fn throttled_create_is_an_error_that_names_table_and_operation() {
        let rule = mock!(Client::put_item).then_error(|| {
            PutItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder()
                    .message("slow down")
                    .build(),
            )
        });
        let s = store(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]));
        let err = s.create(&job()).await.unwrap_err();
        assert_eq!(err.to_string(), "job store PutItem on table jobs failed");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the SDK error is kept as the source"
        );
    }

    #[tokio::test]
    async fn an_item_over_the_size_limit_is_refused_for_good_not_unavailable() {
        let rule = mock!(Client::update_item).then_error(|| {
            UpdateItemError::generic(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("Item size has exceeded the maximum allowed size")
                    .build(),
            )
        });
        let s = store(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]));
        let change = Transition::to(JobStatus::Completed, Timestamp::now());
        let err = s.transition(&job().job_id, &change).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Rejected { operation: "UpdateItem", reason, .. }
                if reason.contains("maximum allowed size")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn rejected_transition_reports_the_current_status() {
        let mut completed = job();
        completed.status = JobStatus::Completed;
        let old = store(mock_client!(aws_sdk_dynamodb, []))
            .encode(&completed)
            .unwrap();
        let rule =
            mock!(Client::update_item).then_error(move || conditional_failure(Some(old.clone())));
        let s = store(mock_client!(aws_sdk_dynamodb, [&rule]));
        let outcome = s
            .transition(
                &completed.job_id,
                &Transition::to(JobStatus::Failed, Timestamp::now()),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            TransitionOutcome::Rejected {
                current: JobStatus::Completed
            }
        );
    }

    #[tokio::test]
    async fn applied_transition_returns_the_new_record() {
        let mut submitted = job();
        submitted.status = JobStatus::Submitted;
        let new = store(mock_client!(aws_sdk_dynamodb, []))
            .encode(&submitted)
            .unwrap();
        let rule = mock!(Client::update_item)
            .match_requests(|r| {
                r.condition_expression() == Some("#status IN (:from0, :from1, :from2, :from3)")
            })
            .then_output(move || {
                UpdateItemOutput::builder()
                    .set_attributes(Some(new.clone()))
                    .build()
            });
        let put = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
        let s = store(mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&rule, &put]
        ));
        let outcome = s
            .transition(
                &submitted.job_id,
                &Transition::to(JobStatus::Submitted, Timestamp::now()),
            )
            .await
            .unwrap();
        assert_eq!(outcome, TransitionOutcome::Applied(Box::new(submitted)));
    }

    fn outcome() -> JobOutcome {
        JobOutcome {
            counts: Some(JobCounts {
                scanned: 3,
                imported: 2,
                failed: 1,
            }),
            failed_files: vec![FailedFile {
                input_file: "s3://b/x.dcm".into(),
                message: "bad".into(),
            }],
            output_location: Some("s3://out/ds-DicomImport-j/".into()),
            verified: true,
            at: Timestamp::from_unix_seconds(1_790_000_000).unwrap(),
        }
    }

    fn job_id() -> JobId {
        JobId::from_stored("0123456789abcdef0123456789abcdef")
    }

    fn condition_failed(item: Option<Item>) -> ConditionalCheckFailedException {
        ConditionalCheckFailedException::builder()
            .set_item(item)
            .build()
    }

    /// An UpdateItem whose condition fails on an item holding `attributes` (strings).
    fn refused_update(
        attributes: &'static [(&'static str, &'static str)],
    ) -> aws_smithy_mocks::Rule {
        mock!(Client::update_item).then_error(|| {
            let item = attributes
                .iter()
                .map(|(name, value)| ((*name).to_owned(), AttributeValue::S((*value).to_owned())))
                .collect();
            conditional_failure(Some(item))
        })
    }

    fn conditional_failure(item: Option<Item>) -> UpdateItemError {
        UpdateItemError::ConditionalCheckFailedException(condition_failed(item))
    }

    #[test]
    fn the_outcome_is_written_once_and_only_on_a_terminal_record() {
        let Update {
            expression,
            condition,
            names,
            values,
        } = UpdateBuilder::outcome(&outcome());
        assert!(
            condition.contains("attribute_not_exists(#outcomeAt)"),
            "{condition}"
        );
        assert!(condition.contains("#status IN (:t0, :t1, :t2, :t3, :t4, :t5, :t6, :t7)"));
        assert_eq!(values[":t0"], AttributeValue::S("COMPLETED".into()));
        for field in [
            "counts",
            "failedFiles",
            "outputLocation",
            "outcomeAt",
            "outcomeVerified",
        ] {
            assert!(expression.contains(&format!("#{field} = ")), "{expression}");
            assert_eq!(names[&format!("#{field}")], field);
        }
        let AttributeValue::M(counts) = &values[":counts"] else {
            panic!()
        };
        assert_eq!(counts["failed"], AttributeValue::N("1".into()));

        let bare = JobOutcome {
            counts: None,
            failed_files: vec![],
            output_location: None,
            ..outcome()
        };
        let expression = UpdateBuilder::outcome(&bare).expression;
        assert!(!expression.contains("#counts"), "progress counts are kept");
    }

    #[tokio::test]
    async fn a_second_outcome_is_already_recorded() {
        let rule = refused_update(&[
            ("status", "COMPLETED"),
            ("outcomeAt", "2026-11-23T10:00:00.000Z"),
        ]);
        let s = store(mock_client!(aws_sdk_dynamodb, [&rule]));
        assert_eq!(
            s.record_outcome(&job_id(), &outcome()).await.unwrap(),
            OutcomeWrite::AlreadyRecorded
        );
    }

    #[tokio::test]
    async fn an_outcome_for_a_running_job_is_refused() {
        let rule = refused_update(&[("status", "IN_PROGRESS")]);
        let s = store(mock_client!(aws_sdk_dynamodb, [&rule]));
        assert_eq!(
            s.record_outcome(&job_id(), &outcome()).await.unwrap(),
            OutcomeWrite::NotTerminal(JobStatus::InProgress)
        );
    }

    #[tokio::test]
    async fn an_outcome_for_a_missing_record_is_not_found() {
        let update = mock!(Client::update_item).then_error(|| conditional_failure(None));
        let get = mock!(Client::get_item).then_output(|| GetItemOutput::builder().build());
        let s = store(mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&update, &get]
        ));
        assert_eq!(
            s.record_outcome(&job_id(), &outcome()).await.unwrap(),
            OutcomeWrite::NotFound
        );
    }

    #[tokio::test]
    async fn markers_are_read_and_announcing_twice_is_noticed() {
        let get = mock!(Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .item(
                    "announcedAt",
                    AttributeValue::S("2026-11-23T10:00:00.000Z".into()),
                )
                .build()
        });
        let first = mock!(Client::update_item)
            .match_requests(|r| r.condition_expression().is_some_and(|c| c.contains("#a")))
            .then_output(|| UpdateItemOutput::builder().build());
        let second = mock!(Client::update_item).then_error(|| conditional_failure(None));
        let s = store(mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&get, &first, &second]
        ));
        let markers = s.markers(&job_id()).await.unwrap();
        assert_eq!(markers.outcome_at, None);
        assert_eq!(
            markers.announced_at.unwrap().to_string(),
            "2026-11-23T10:00:00.000Z"
        );
        let at = Timestamp::now();
        assert!(s.mark_announced(&job_id(), at).await.unwrap());
        assert!(!s.mark_announced(&job_id(), at).await.unwrap());
    }
}
