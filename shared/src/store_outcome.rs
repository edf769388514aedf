//! The end of a job's record: its outcome (counts, failed files, output location from the output
//! manifest) and the fact that its `Import Job Finished` event was put.
//!
//! Both are written after the job's status turned terminal, which [`JobStore::transition`]
//! refuses by design (terminal is final). So they are separate, narrow writes, each conditional:
//! - the outcome only on a terminal record and only once (`attribute_not_exists(outcomeAt)`);
//! - the announcement marker only once (`attribute_not_exists(announcedAt)`).
//!
//! `OutcomeStore` is an extension of the [`JobStore`] port, kept in its own file until it is
//! folded into `JobStore` and [`DynamoJobStore`]; [`DynamoOutcomeStore`] wraps a
//! `DynamoJobStore` (whose client is private to `store.rs`) and delegates the port to it.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use crate::job::{FailedFile, ImportJob, JobCounts, JobId, JobStatus, Timestamp, Transition};
use crate::store::{CreateOutcome, DynamoJobStore, JobStore, StoreError, TransitionOutcome};

/// What the output manifest says of a finished job. `None` fields keep what the record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub counts: Option<JobCounts>,
    /// Bounded by [`crate::job::MAX_FAILED_FILES`] on write.
    pub failed_files: Vec<FailedFile>,
    pub output_location: Option<String>,
    pub at: Timestamp,
}

/// What an outcome write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeWrite {
    Recorded,
    /// An outcome was recorded before (a retried finish step): it stands, unchanged.
    AlreadyRecorded,
    /// The job is not finished: an outcome cannot be recorded yet.
    NotTerminal(JobStatus),
    NotFound,
}

/// Whether a finished job's outcome was recorded and its event put, and when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeMarkers {
    pub outcome_at: Option<Timestamp>,
    pub announced_at: Option<Timestamp>,
}

#[async_trait]
pub trait OutcomeStore: Send + Sync {
    /// Records the outcome of a terminal job, once.
    async fn record_outcome(
        &self,
        job_id: &JobId,
        outcome: &JobOutcome,
    ) -> Result<OutcomeWrite, StoreError>;
    async fn markers(&self, job_id: &JobId) -> Result<OutcomeMarkers, StoreError>;
    /// Notes that the job's `Import Job Finished` event was put; `false` when it was noted before.
    async fn mark_announced(&self, job_id: &JobId, at: Timestamp) -> Result<bool, StoreError>;
}

/// [`JobStore`] + [`OutcomeStore`] on the jobs table.
#[derive(Debug, Clone)]
pub struct DynamoOutcomeStore {
    jobs: DynamoJobStore,
    client: Client,
}

impl DynamoOutcomeStore {
    /// `client` must reach the same table as `jobs` (build both from one `aws_config`).
    pub fn new(jobs: DynamoJobStore, client: Client) -> Self {
        DynamoOutcomeStore { jobs, client }
    }

    fn table(&self) -> &str {
        self.jobs.table()
    }

    fn error(
        &self,
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Dynamo {
            operation,
            table: self.table().to_owned(),
            source: Box::new(source),
        }
    }
}

const TERMINAL: [JobStatus; 7] = [
    JobStatus::Completed,
    JobStatus::CompletedWithErrors,
    JobStatus::Failed,
    JobStatus::CancelCompleted,
    JobStatus::CancelFailed,
    JobStatus::StartFailed,
    JobStatus::Skipped,
];

/// The UpdateItem of an outcome: expression, condition, names, values.
fn outcome_update(
    outcome: &JobOutcome,
) -> (
    String,
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    let mut sets = vec!["#outcomeAt = :at".to_owned(), "#updatedAt = :at".to_owned()];
    let mut names = HashMap::from([
        ("#outcomeAt".to_owned(), "outcomeAt".to_owned()),
        ("#updatedAt".to_owned(), "updatedAt".to_owned()),
        ("#status".to_owned(), "status".to_owned()),
        ("#jobId".to_owned(), "jobId".to_owned()),
    ]);
    let mut values = HashMap::from([(":at".to_owned(), AttributeValue::S(outcome.at.to_string()))]);
    if let Some(counts) = outcome.counts {
        sets.push("#counts = :counts".into());
        names.insert("#counts".into(), "counts".into());
        values.insert(":counts".into(), counts_attribute(counts));
    }
    if !outcome.failed_files.is_empty() {
        sets.push("#failedFiles = :failedFiles".into());
        names.insert("#failedFiles".into(), "failedFiles".into());
        values.insert(
            ":failedFiles".into(),
            failed_files_attribute(&outcome.failed_files),
        );
    }
    if let Some(location) = &outcome.output_location {
        sets.push("#outputLocation = :outputLocation".into());
        names.insert("#outputLocation".into(), "outputLocation".into());
        values.insert(
            ":outputLocation".into(),
            AttributeValue::S(location.clone()),
        );
    }
    let mut terminal = Vec::new();
    for (i, status) in TERMINAL.iter().enumerate() {
        let placeholder = format!(":t{i}");
        values.insert(
            placeholder.clone(),
            AttributeValue::S(status.as_str().to_owned()),
        );
        terminal.push(placeholder);
    }
    let condition = format!(
        "attribute_exists(#jobId) AND #status IN ({}) AND attribute_not_exists(#outcomeAt)",
        terminal.join(", ")
    );
    (format!("SET {}", sets.join(", ")), condition, names, values)
}

/// The same shapes serde gives [`ImportJob`]'s fields, so the job store reads them back.
fn counts_attribute(counts: JobCounts) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        (
            "scanned".into(),
            AttributeValue::N(counts.scanned.to_string()),
        ),
        (
            "imported".into(),
            AttributeValue::N(counts.imported.to_string()),
        ),
        (
            "failed".into(),
            AttributeValue::N(counts.failed.to_string()),
        ),
    ]))
}

fn failed_files_attribute(files: &[FailedFile]) -> AttributeValue {
    AttributeValue::L(
        files
            .iter()
            .take(crate::job::MAX_FAILED_FILES)
            .map(|f| {
                AttributeValue::M(HashMap::from([
                    ("inputFile".into(), AttributeValue::S(f.input_file.clone())),
                    ("message".into(), AttributeValue::S(f.message.clone())),
                ]))
            })
            .collect(),
    )
}

fn timestamp_attribute(item: &HashMap<String, AttributeValue>, name: &str) -> Option<Timestamp> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => text.parse().ok(),
        _ => None,
    }
}

#[async_trait]
impl OutcomeStore for DynamoOutcomeStore {
    async fn record_outcome(
        &self,
        job_id: &JobId,
        outcome: &JobOutcome,
    ) -> Result<OutcomeWrite, StoreError> {
        let (expression, condition, names, values) = outcome_update(outcome);
        let result = self
            .client
            .update_item()
            .table_name(self.table())
            .key("jobId", AttributeValue::S(job_id.to_string()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(OutcomeWrite::Recorded),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let old = match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                };
                // Older DynamoDB-compatible servers do not return the item with the failure.
                let (status, recorded) = match old {
                    Some(item) => (
                        match item.get("status") {
                            Some(AttributeValue::S(s)) => s.parse().ok(),
                            _ => None,
                        },
                        item.contains_key("outcomeAt"),
                    ),
                    None => match self.jobs.get(job_id).await? {
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
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }

    async fn markers(&self, job_id: &JobId) -> Result<OutcomeMarkers, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(self.table())
            .key("jobId", AttributeValue::S(job_id.to_string()))
            .projection_expression("#o, #a")
            .expression_attribute_names("#o", "outcomeAt")
            .expression_attribute_names("#a", "announcedAt")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        let item = output.item.unwrap_or_default();
        Ok(OutcomeMarkers {
            outcome_at: timestamp_attribute(&item, "outcomeAt"),
            announced_at: timestamp_attribute(&item, "announcedAt"),
        })
    }

    async fn mark_announced(&self, job_id: &JobId, at: Timestamp) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(self.table())
            .key("jobId", AttributeValue::S(job_id.to_string()))
            .update_expression("SET #a = :at")
            .condition_expression("attribute_exists(#id) AND attribute_not_exists(#a)")
            .expression_attribute_names("#a", "announcedAt")
            .expression_attribute_names("#id", "jobId")
            .expression_attribute_values(":at", AttributeValue::S(at.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl JobStore for DynamoOutcomeStore {
    async fn create(&self, job: &ImportJob) -> Result<CreateOutcome, StoreError> {
        self.jobs.create(job).await
    }

    async fn transition(
        &self,
        job_id: &JobId,
        change: &Transition,
    ) -> Result<TransitionOutcome, StoreError> {
        self.jobs.transition(job_id, change).await
    }

    async fn get(&self, job_id: &JobId) -> Result<Option<ImportJob>, StoreError> {
        self.jobs.get(job_id).await
    }

    async fn find_by_source(&self, bucket: &str, key: &str) -> Result<Vec<ImportJob>, StoreError> {
        self.jobs.find_by_source(bucket, key).await
    }

    async fn list_by_datastore_status(
        &self,
        datastore_id: &str,
        status: JobStatus,
    ) -> Result<Vec<ImportJob>, StoreError> {
        self.jobs
            .list_by_datastore_status(datastore_id, status)
            .await
    }

    async fn exports_of(&self, datastore_id: &str) -> Result<Vec<ImportJob>, StoreError> {
        self.jobs.exports_of(datastore_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn store(client: Client) -> DynamoOutcomeStore {
        DynamoOutcomeStore::new(
            DynamoJobStore::new(client.clone(), "jobs", time::Duration::days(30)),
            client,
        )
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
            at: Timestamp::from_unix_seconds(1_790_000_000).unwrap(),
        }
    }

    fn job_id() -> JobId {
        JobId::from_stored("0123456789abcdef0123456789abcdef")
    }

    fn conditional_failure(item: Option<HashMap<String, AttributeValue>>) -> UpdateItemError {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .set_item(item)
                .build(),
        )
    }

    #[test]
    fn the_outcome_is_written_once_and_only_on_a_terminal_record() {
        let (expression, condition, names, values) = outcome_update(&outcome());
        assert!(
            condition.contains("attribute_not_exists(#outcomeAt)"),
            "{condition}"
        );
        assert!(condition.contains("#status IN (:t0, :t1, :t2, :t3, :t4, :t5, :t6)"));
        assert_eq!(values[":t0"], AttributeValue::S("COMPLETED".into()));
        for field in ["counts", "failedFiles", "outputLocation", "outcomeAt"] {
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
        let (expression, _, _, _) = outcome_update(&bare);
        assert!(!expression.contains("#counts"), "progress counts are kept");
    }

    #[tokio::test]
    async fn a_second_outcome_is_already_recorded() {
        let rule = mock!(Client::update_item).then_error(|| {
            conditional_failure(Some(HashMap::from([
                ("status".into(), AttributeValue::S("COMPLETED".into())),
                (
                    "outcomeAt".into(),
                    AttributeValue::S("2026-11-23T10:00:00.000Z".into()),
                ),
            ])))
        });
        let s = store(mock_client!(aws_sdk_dynamodb, [&rule]));
        assert_eq!(
            s.record_outcome(&job_id(), &outcome()).await.unwrap(),
            OutcomeWrite::AlreadyRecorded
        );
    }

    #[tokio::test]
    async fn an_outcome_for_a_running_job_is_refused() {
        let rule = mock!(Client::update_item).then_error(|| {
            conditional_failure(Some(HashMap::from([(
                "status".into(),
                AttributeValue::S("IN_PROGRESS".into()),
            )])))
        });
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
