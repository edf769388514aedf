//! [`JobQueries`] on the jobs table: GSI `byDatastoreStatus` (data store + status), without the
//! upload records (they carry `sourceUri`; batches and exports do not) and, when asked, only the
//! jobs created since an instant. Both are filters on the index's query, so an operator's listing
//! costs one query per status, never a scan of the table.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use healthimport::domain::job::{Job, JobStatus, Timestamp};
use healthimport::ports::queries::JobQueries;
use healthimport::ports::store::StoreError;

use super::{DynamoJobStore, BY_DATASTORE_STATUS_INDEX};

#[async_trait]
impl JobQueries for DynamoJobStore {
    async fn service_jobs(
        &self,
        datastore_id: &str,
        status: JobStatus,
        since: Option<Timestamp>,
    ) -> Result<Vec<Job>, StoreError> {
        let mut names = HashMap::from([
            ("#ds".to_owned(), "datastoreId".to_owned()),
            ("#status".to_owned(), "status".to_owned()),
            ("#source".to_owned(), "sourceUri".to_owned()),
        ]);
        let mut values = HashMap::from([
            (":ds".to_owned(), AttributeValue::S(datastore_id.to_owned())),
            (
                ":status".to_owned(),
                AttributeValue::S(status.as_str().to_owned()),
            ),
        ]);
        let mut filter = "attribute_not_exists(#source)".to_owned();
        if let Some(since) = since {
            // Stored timestamps have one fixed width, so they compare as strings.
            filter.push_str(" AND #created >= :since");
            names.insert("#created".to_owned(), "createdAt".to_owned());
            values.insert(":since".to_owned(), AttributeValue::S(since.to_string()));
        }
        let mut jobs = self
            .query(
                BY_DATASTORE_STATUS_INDEX,
                "#ds = :ds AND #status = :status",
                Some(&filter),
                values,
                names,
            )
            .await?;
        jobs.sort_by_key(|job| job.created_at);
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client};

    #[tokio::test]
    async fn the_query_leaves_uploads_out_and_filters_by_creation() {
        let rule = mock!(Client::query)
            .match_requests(|r| {
                r.index_name() == Some(BY_DATASTORE_STATUS_INDEX)
                    && r.filter_expression()
                        == Some("attribute_not_exists(#source) AND #created >= :since")
                    && r.expression_attribute_values().is_some_and(|v| {
                        v.get(":since")
                            == Some(&AttributeValue::S("2026-11-29T00:00:00.000Z".into()))
                            && v.get(":status") == Some(&AttributeValue::S("FAILED".into()))
                    })
            })
            .then_output(|| QueryOutput::builder().build());
        let store = DynamoJobStore::new(
            mock_client!(aws_sdk_dynamodb, [&rule]),
            "jobs",
            time::Duration::days(1),
        );
        let since = "2026-11-29T00:00:00Z".parse().unwrap();
        let jobs = store
            .service_jobs("ds", JobStatus::Failed, Some(since))
            .await
            .unwrap();
        assert!(jobs.is_empty());
        assert_eq!(rule.num_calls(), 1);
    }
}
