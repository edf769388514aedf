//! [`BatchStore`] and [`StartAdmission`] on the jobs table.
//!
//! - A batch is a job item (`folder`, `generation`, `batchFiles`, `batchBytes`, `firstFileAt`,
//!   `lastFileAt`, `closeReason`, `closedAt`, `stagedAt` at the top level, where a condition can
//!   read them and `ADD` can count). An upload's item names its batch in `batchId`, indexed by
//!   GSI `byBatch` (`batchId` + `createdAt`).
//! - Opening and joining are `TransactWriteItems`: the batch's conditional update (or put) and
//!   the upload's conditional put succeed or fail together. A cancelled transaction is explained by
//!   reading both items again (consistently), so the answer does not depend on whether the server
//!   returns cancellation reasons.
//! - A folder's cursor (`folder-<digest>`, attribute `generation`) is set in the opening
//!   transaction.
//! - A lane (`lane-<service>[-<datastore>]`) holds its jobs in the string set `holders` and the
//!   earliest next start in `nextStartAt` (epoch milliseconds); one conditional update takes a
//!   place and a start slot together.
//! - [`CompletionStore`]: the waiting execution's `taskToken` on the job's item, and GSI
//!   `byServiceJob` (`serviceJobId`) to find a job by the service's id (HealthLake's events).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, TransactWriteItem, Update as TransactUpdate,
};
use healthimport::domain::batch::{BatchFolder, CloseReason, JoinRule};
use healthimport::domain::job::{Job, JobId, JobStatus, Timestamp};
use healthimport::ports::admission::{Admission, Lane, StartAdmission};
use healthimport::ports::batches::{BatchStore, CloseOutcome, JoinOutcome, OpenOutcome};
use healthimport::ports::completion::CompletionStore;
use healthimport::ports::store::{JobStore, StoreError};

use super::{Conditional, DynamoJobStore, Item, Update};

pub const BY_BATCH_INDEX: &str = "byBatch";

fn s(value: impl ToString) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl DynamoJobStore {
    fn key(&self, id: &JobId) -> HashMap<String, AttributeValue> {
        HashMap::from([("jobId".to_owned(), s(id))])
    }

    fn put_new(&self, job: &Job) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(self.encode(job)?))
            .condition_expression("attribute_not_exists(jobId)")
            .build()
            .map_err(|e| self.unavailable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn transact_update(&self, id: &JobId, update: Update) -> Result<TransactWriteItem, StoreError> {
        let mut builder = TransactUpdate::builder()
            .table_name(self.table())
            .set_key(Some(self.key(id)))
            .update_expression(update.expression)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values));
        if !update.condition.is_empty() {
            builder = builder.condition_expression(update.condition);
        }
        let update = builder
            .build()
            .map_err(|e| self.unavailable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Runs the transaction; `false` when it was cancelled (a condition failed, or it conflicted
    /// with another one): the caller reads the items to learn why.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.failed("TransactWriteItems", e)),
        }
    }

    async fn get_item(&self, id: &JobId) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(self.key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", e))?;
        Ok(output.item)
    }
}

/// The join's batch update: one more file, conditional on [`JoinRule`].
fn join_update(size: u64, at: Timestamp, rule: &JoinRule) -> Update {
    let mut condition =
        "#status = :open AND #files <= :maxFiles AND #last > :quietCut AND #first > :waitCut"
            .to_owned();
    let mut values = HashMap::from([
        (":open".to_owned(), s(JobStatus::Open.as_str())),
        (":one".to_owned(), n(1)),
        (":size".to_owned(), n(size)),
        (":at".to_owned(), s(at)),
        (":maxFiles".to_owned(), n(rule.files_at_most)),
        (":quietCut".to_owned(), s(rule.last_file_after)),
        (":waitCut".to_owned(), s(rule.first_file_after)),
    ]);
    if let Some(most) = rule.bytes_at_most {
        condition.push_str(" AND #bytes <= :maxBytes");
        values.insert(":maxBytes".to_owned(), n(most));
    }
    Update {
        expression: "SET #last = :at, #updated = :at ADD #files :one, #bytes :size".to_owned(),
        condition,
        names: names(&[
            ("#status", "status"),
            ("#files", "batchFiles"),
            ("#bytes", "batchBytes"),
            ("#last", "lastFileAt"),
            ("#first", "firstFileAt"),
            ("#updated", "updatedAt"),
        ]),
        values,
    }
}

#[async_trait]
impl BatchStore for DynamoJobStore {
    async fn latest_generation(&self, folder: &BatchFolder) -> Result<u64, StoreError> {
        Ok(match self.get_item(&folder.cursor_id()).await? {
            Some(item) => match item.get("generation") {
                Some(AttributeValue::N(g)) => g.parse().unwrap_or(0),
                _ => 0,
            },
            None => 0,
        })
    }

    async fn open_batch(&self, batch: &Job, upload: &Job) -> Result<OpenOutcome, StoreError> {
        let (Some(folder), Some(b)) = (batch.batch_folder(), batch.batch()) else {
            return Err(StoreError::Malformed {
                job_id: batch.job_id.to_string(),
                table: self.table().to_owned(),
                reason: "open_batch was given a record that is not a batch".into(),
            });
        };
        let cursor = Update {
            expression: "SET #g = :g".to_owned(),
            condition: String::new(),
            names: names(&[("#g", "generation")]),
            values: HashMap::from([(":g".to_owned(), n(b.generation))]),
        };
        let items = vec![
            self.put_new(batch)?,
            self.put_new(upload)?,
            self.transact_update(&folder.cursor_id(), cursor)?,
        ];
        if self.transact(items).await? {
            return Ok(OpenOutcome::Opened);
        }
        if let Some(existing) = self.get(&upload.job_id).await? {
            return Ok(OpenOutcome::UploadExists(Box::new(existing)));
        }
        // The batch exists (another upload opened it), or the two collided: either way the
        // caller joins it next.
        Ok(OpenOutcome::BatchExists)
    }

    async fn join_batch(
        &self,
        batch_id: &JobId,
        upload: &Job,
        size: u64,
        at: Timestamp,
        rule: &JoinRule,
    ) -> Result<JoinOutcome, StoreError> {
        let items = vec![
            self.transact_update(batch_id, join_update(size, at, rule))?,
            self.put_new(upload)?,
        ];
        if self.transact(items).await? {
            return Ok(JoinOutcome::Joined);
        }
        if let Some(existing) = self.get(&upload.job_id).await? {
            return Ok(JoinOutcome::UploadExists(Box::new(existing)));
        }
        Ok(JoinOutcome::NotAdmitted(
            self.get(batch_id).await?.map(Box::new),
        ))
    }

    async fn close_batch(
        &self,
        batch_id: &JobId,
        reason: CloseReason,
        at: Timestamp,
        if_last_file_at: Option<Timestamp>,
    ) -> Result<CloseOutcome, StoreError> {
        let mut condition = "#status = :open".to_owned();
        let mut values = HashMap::from([
            (":open".to_owned(), s(JobStatus::Open.as_str())),
            (":pending".to_owned(), s(JobStatus::Pending.as_str())),
            (":reason".to_owned(), s(reason.as_str())),
            (":at".to_owned(), s(at)),
        ]);
        let mut attribute_names = names(&[
            ("#status", "status"),
            ("#reason", "closeReason"),
            ("#closedAt", "closedAt"),
            ("#updated", "updatedAt"),
            ("#history", "history"),
            ("#reached", JobStatus::Pending.as_str()),
        ]);
        // DynamoDB refuses a name or value the expressions do not use.
        if let Some(last) = if_last_file_at {
            condition.push_str(" AND #last = :last");
            values.insert(":last".to_owned(), s(last));
            attribute_names.insert("#last".to_owned(), "lastFileAt".to_owned());
        }
        let update = Update {
            expression: "SET #status = :pending, #reason = :reason, #closedAt = :at, \
                         #updated = :at, #history.#reached = if_not_exists(#history.#reached, :at)"
                .to_owned(),
            condition,
            names: attribute_names,
            values,
        };
        let current = match self.update(batch_id, update, ReturnValue::AllNew).await? {
            Conditional::Written(Some(item)) => {
                return Ok(CloseOutcome::Closed(Box::new(self.decode(item)?)))
            }
            Conditional::Written(None) | Conditional::Refused(None) => self.get(batch_id).await?,
            Conditional::Refused(Some(item)) => Some(self.decode(item)?),
        };
        Ok(match current {
            None => CloseOutcome::NotFound,
            Some(job) if job.status != JobStatus::Open => CloseOutcome::NotOpen(job.status),
            Some(job) if if_last_file_at.is_none() => {
                // Written meanwhile by someone else? Report what it is now.
                CloseOutcome::Closed(Box::new(job))
            }
            Some(_) => CloseOutcome::FillChanged,
        })
    }

    async fn mark_staged(&self, batch_id: &JobId, at: Timestamp) -> Result<(), StoreError> {
        let update = Update {
            expression: "SET #staged = if_not_exists(#staged, :at)".to_owned(),
            condition: "attribute_exists(#id)".to_owned(),
            names: names(&[("#staged", "stagedAt"), ("#id", "jobId")]),
            values: HashMap::from([(":at".to_owned(), s(at))]),
        };
        self.update(batch_id, update, ReturnValue::None).await?;
        Ok(())
    }

    async fn members(&self, batch_id: &JobId) -> Result<Vec<Job>, StoreError> {
        self.query(
            BY_BATCH_INDEX,
            "#batch = :batch",
            None,
            HashMap::from([(":batch".to_owned(), s(batch_id))]),
            names(&[("#batch", "batchId")]),
        )
        .await
    }
}

#[async_trait]
impl StartAdmission for DynamoJobStore {
    async fn admit(
        &self,
        lane: &Lane,
        job_id: &JobId,
        now: Timestamp,
    ) -> Result<Admission, StoreError> {
        let now_ms = now.unix_millis();
        let mut expression = "ADD #holders :me".to_owned();
        let mut condition =
            "(attribute_not_exists(#holders) OR size(#holders) < :capacity OR contains(#holders, :id))"
                .to_owned();
        let mut values = HashMap::from([
            (
                ":me".to_owned(),
                AttributeValue::Ss(vec![job_id.to_string()]),
            ),
            (":id".to_owned(), s(job_id)),
            (":capacity".to_owned(), n(lane.capacity)),
        ]);
        let mut attribute_names = names(&[("#holders", "holders")]);
        if let Some(interval) = lane.min_interval_ms {
            expression = format!("SET #next = :next {expression}");
            condition.push_str(" AND (attribute_not_exists(#next) OR #next <= :now)");
            values.insert(":next".to_owned(), n(now_ms + interval as i64));
            values.insert(":now".to_owned(), n(now_ms));
            attribute_names.insert("#next".to_owned(), "nextStartAt".to_owned());
        }
        let update = Update {
            expression,
            condition,
            names: attribute_names,
            values,
        };
        let lane_id = JobId::from_stored(lane.name.clone());
        let refused = match self.update(&lane_id, update, ReturnValue::None).await? {
            Conditional::Written(_) => return Ok(Admission::Granted),
            Conditional::Refused(Some(item)) => item,
            Conditional::Refused(None) => self.get_item(&lane_id).await?.unwrap_or_default(),
        };
        let holders = match refused.get("holders") {
            Some(AttributeValue::Ss(set)) => set.len(),
            _ => 0,
        };
        let next = match refused.get("nextStartAt") {
            Some(AttributeValue::N(v)) => v.parse::<i64>().unwrap_or(0),
            _ => 0,
        };
        Ok(if holders >= lane.capacity as usize {
            Admission::Wait {
                retry_after_ms: 0,
                reason: format!("{} holds {holders} of {} jobs", lane.name, lane.capacity),
            }
        } else {
            Admission::Wait {
                retry_after_ms: (next - now_ms).max(1) as u64,
                reason: format!("{} start rate", lane.name),
            }
        })
    }

    async fn release(&self, lane: &Lane, job_id: &JobId) -> Result<(), StoreError> {
        let update = Update {
            expression: "DELETE #holders :me".to_owned(),
            condition: "attribute_exists(#holders)".to_owned(),
            names: names(&[("#holders", "holders")]),
            values: HashMap::from([(
                ":me".to_owned(),
                AttributeValue::Ss(vec![job_id.to_string()]),
            )]),
        };
        self.update(
            &JobId::from_stored(lane.name.clone()),
            update,
            ReturnValue::None,
        )
        .await?;
        Ok(())
    }
}

pub const BY_SERVICE_JOB_INDEX: &str = "byServiceJob";

#[async_trait]
impl CompletionStore for DynamoJobStore {
    async fn keep_task_token(
        &self,
        job_id: &JobId,
        token: &str,
    ) -> Result<Option<Job>, StoreError> {
        let update = Update {
            expression: "SET #token = :token".to_owned(),
            condition: "attribute_exists(#id)".to_owned(),
            names: names(&[("#token", "taskToken"), ("#id", "jobId")]),
            values: HashMap::from([(":token".to_owned(), s(token))]),
        };
        match self.update(job_id, update, ReturnValue::AllNew).await? {
            Conditional::Written(Some(item)) => Ok(Some(self.decode(item)?)),
            Conditional::Written(None) => self.get(job_id).await,
            Conditional::Refused(_) => Ok(None),
        }
    }

    async fn task_token(&self, job_id: &JobId) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_item(job_id)
            .await?
            .and_then(|item| match item.get("taskToken") {
                Some(AttributeValue::S(token)) => Some(token.clone()),
                _ => None,
            }))
    }

    async fn find_by_service_job(&self, service_job_id: &str) -> Result<Option<Job>, StoreError> {
        // The index projects keys only (and is eventually consistent): the record is read itself.
        let found = self
            .client
            .query()
            .table_name(self.table())
            .index_name(BY_SERVICE_JOB_INDEX)
            .key_condition_expression("#svc = :svc")
            .expression_attribute_names("#svc", "serviceJobId")
            .expression_attribute_values(":svc", s(service_job_id))
            .limit(1)
            .send()
            .await
            .map_err(|e| self.unavailable("Query", e))?;
        let job_id = found
            .items()
            .first()
            .and_then(|item| match item.get("jobId") {
                Some(AttributeValue::S(id)) => Some(JobId::from_stored(id.clone())),
                _ => None,
            });
        match job_id {
            Some(job_id) => self.get(&job_id).await,
            None => Ok(None),
        }
    }
}
