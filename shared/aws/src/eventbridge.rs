//! EventBridge adapter of the [`Announcer`] port.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use healthimport::domain::finished::{JobFinished, EVENT_SOURCE};
use healthimport::ports::announce::{AnnounceError, Announcer};

/// [`Announcer`] on an EventBridge bus (the account's default bus when no name is given).
#[derive(Debug, Clone)]
pub struct EventBridgeAnnouncer {
    client: Client,
    bus_name: Option<String>,
}

impl EventBridgeAnnouncer {
    pub fn new(client: Client, bus_name: Option<String>) -> Self {
        EventBridgeAnnouncer { client, bus_name }
    }
}

#[async_trait]
impl Announcer for EventBridgeAnnouncer {
    async fn announce(&self, finished: &JobFinished) -> Result<(), AnnounceError> {
        let detail = serde_json::to_string(finished).map_err(AnnounceError::Detail)?;
        let entry = PutEventsRequestEntry::builder()
            .source(EVENT_SOURCE)
            .detail_type(finished.detail_type())
            .detail(detail)
            .set_event_bus_name(self.bus_name.clone())
            .build();
        let output = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| AnnounceError::Put {
                source: Box::new(e),
            })?;
        // PutEvents reports a refused entry in its answer, not as an error.
        if output.failed_entry_count() > 0 {
            let failed = output.entries().iter().find(|e| e.error_code().is_some());
            return Err(AnnounceError::Refused {
                code: failed
                    .and_then(|e| e.error_code())
                    .unwrap_or("Unknown")
                    .to_owned(),
                message: failed
                    .and_then(|e| e.error_message())
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use aws_smithy_mocks::{mock, mock_client};
    use healthimport::domain::job::{
        Job, JobStatus, Service, SourceObject, Target, Timestamp, Transition,
    };

    fn finished(status: JobStatus) -> JobFinished {
        let at = Timestamp::from_unix_seconds(1_790_000_000).unwrap();
        let source = SourceObject {
            bucket: "ingest".into(),
            key: "fhir/a.ndjson".into(),
            size: 1,
            e_tag: Some("e".into()),
            version_id: None,
        };
        let target = Target {
            service: Service::HealthLake,
            datastore_id: "ds".into(),
            output_s3_uri: "s3://out/".into(),
        };
        let mut job = Job::import(source, target, "s3://ingest/fhir/a.ndjson".into(), at);
        job.apply(&Transition::to(status, at)).unwrap();
        job.outcome_verified = Some(true);
        JobFinished::from_job(&job, None)
    }

    #[tokio::test]
    async fn the_event_goes_to_the_configured_bus_with_source_and_detail_type() {
        let rule = mock!(Client::put_events)
            .match_requests(|r| {
                let entry = &r.entries()[0];
                entry.source() == Some(EVENT_SOURCE)
                    && entry.detail_type() == Some("Import Job Finished")
                    && entry.event_bus_name() == Some("imports")
                    && entry
                        .detail()
                        .is_some_and(|d| d.contains("\"hasFailures\":false"))
            })
            .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
        let announcer = EventBridgeAnnouncer::new(
            mock_client!(aws_sdk_eventbridge, [&rule]),
            Some("imports".into()),
        );
        let detail = finished(JobStatus::Completed);
        announcer.announce(&detail).await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_entry_is_an_error() {
        let rule = mock!(Client::put_events)
            .match_requests(|r| r.entries()[0].event_bus_name().is_none())
            .then_output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(1)
                    .entries(
                        PutEventsResultEntry::builder()
                            .error_code("InternalFailure")
                            .error_message("try again")
                            .build(),
                    )
                    .build()
            });
        let announcer = EventBridgeAnnouncer::new(mock_client!(aws_sdk_eventbridge, [&rule]), None);
        let detail = finished(JobStatus::Failed);
        let err = announcer.announce(&detail).await.unwrap_err();
        assert!(
            matches!(&err, AnnounceError::Refused { code, .. } if code == "InternalFailure"),
            "{err}"
        );
    }
}
