//! The starter: every S3 `ObjectCreated` record under the FHIR or DICOM prefix becomes an upload
//! record in exactly one batch of its service, data store and folder; a batch marker closes its
//! folder's batch; anything else is recorded as skipped with its reason.
//!
//! For each record: decode the key, route the object ([`healthimport::domain::routing`]), then
//! join the folder's open batch ([`healthimport::intake`]): the upload's record is created in the
//! same atomic write that adds it to the batch, keyed by the upload's deterministic id, and the
//! first file of a batch starts the batch's workflow. The workflow closes, stages, starts and
//! tracks the batch's one job. Each step is idempotent, so a record delivered twice, concurrently,
//! or again after a crash between any two steps, makes one upload record in one batch.
//!
//! Accepts S3 event notifications directly (every record is processed; if any fails, the
//! invocation fails after processing the others so Lambda's retry redelivers it) and S3 events
//! wrapped in SQS messages (a failed message is reported in `batchItemFailures`, alone).

use aws_lambda_events::s3::S3EventRecord;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use healthimport::config::ServiceTargets;
use healthimport::domain::batch::BatchFolder;
use healthimport::domain::job::{Job, JobId, JobStatus, Service, SourceObject, Timestamp};
use healthimport::domain::routing::{
    self, decode_event_key, KeyDecodeError, Route, RoutingConfig, SkipReason, MAX_S3_KEY_BYTES,
};
use healthimport::intake::{close_on_marker, join_batch, Batching, IntakeError, Joined};
use healthimport::metrics::{MetricsSink, Observation};
use healthimport::ports::batches::BatchStore;
use healthimport::ports::store::{CreateOutcome, JobStore, StoreError};
use healthimport::ports::workflow::TrackingWorkflow;

use crate::event::{
    malformed_reason, Delivered, EventRecord, SqsBody, StarterEvent, StarterResponse,
};

/// What became of one S3 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Ignored {
        event_name: String,
    },
    Skipped {
        job_id: JobId,
        reason: String,
    },
    /// The upload is in `batch_id` (`opened`: as its first file).
    Batched {
        job_id: JobId,
        batch_id: JobId,
        opened: bool,
    },
    /// Recorded before (a redelivered event); the record holds this status.
    AlreadyRecorded {
        job_id: JobId,
        status: JobStatus,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("malformed S3 event record: {0}")]
    Malformed(String),
    #[error("object key cannot be decoded")]
    Key(#[from] KeyDecodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

#[derive(Debug, thiserror::Error)]
pub enum StarterError {
    #[error("{failed} of {total} S3 event records failed; the others were processed (see the log for each)")]
    RecordsFailed { failed: usize, total: usize },
}

impl From<StarterError> for lambda_runtime::Diagnostic {
    fn from(error: StarterError) -> Self {
        let error_type = match error {
            StarterError::RecordsFailed { .. } => "RecordsFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: error.to_string(),
        }
    }
}

pub struct Starter<S, W, M> {
    pub store: S,
    pub tracking: W,
    pub targets: ServiceTargets,
    pub routing: RoutingConfig,
    pub batching: Batching,
    pub ingest_bucket: Option<String>,
    /// Counts each upload admitted to a batch (`UploadsAdmitted`).
    pub metrics: M,
}

impl<S, W, M> Starter<S, W, M>
where
    S: JobStore + BatchStore,
    W: TrackingWorkflow,
    M: MetricsSink,
{
    pub async fn handle(&self, event: StarterEvent) -> Result<StarterResponse, StarterError> {
        if event.is_sqs_batch() {
            return Ok(StarterResponse::Batch(self.handle_sqs(event.records).await));
        }
        let total = event.records.len();
        let mut failed = 0;
        for record in event.records {
            if self.handle_record(record).await.is_err() {
                failed += 1;
            }
        }
        if failed > 0 {
            return Err(StarterError::RecordsFailed { failed, total });
        }
        Ok(StarterResponse::Processed { processed: total })
    }

    async fn handle_sqs(&self, records: Vec<EventRecord>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in records {
            let (id, ok) = match record {
                EventRecord::Delivered(Delivered::Sqs(message)) => {
                    let ok = self
                        .handle_sqs_body(message.body.as_deref().unwrap_or(""))
                        .await;
                    (message.message_id, ok)
                }
                other => {
                    tracing::error!(
                        decision = "failed",
                        reason = "not an SQS message in an SQS batch"
                    );
                    (message_id_of(&other), false)
                }
            };
            if !ok {
                // A message without an id cannot be reported alone; an empty identifier makes
                // Lambda treat the whole batch as failed, which is the safe side.
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Whether every S3 record in the message body was handled.
    async fn handle_sqs_body(&self, body: &str) -> bool {
        let records = match serde_json::from_str::<SqsBody>(body) {
            Ok(SqsBody::Notification(notification)) => notification.records,
            Ok(SqsBody::TestEvent { event }) => {
                tracing::info!(decision = "ignored", reason = %event);
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, "SQS message body is not an S3 notification");
                return false;
            }
        };
        let mut all_ok = true;
        for record in records {
            all_ok &= self.handle_record(record).await.is_ok();
        }
        all_ok
    }

    async fn handle_record(&self, record: EventRecord) -> Result<RecordOutcome, RecordError> {
        match record {
            EventRecord::Delivered(Delivered::S3(record)) => self.handle_s3_record(*record).await,
            EventRecord::Delivered(Delivered::Sqs(_)) => {
                let error = RecordError::Malformed("an SQS message among S3 records".into());
                tracing::error!(error = %error, "record failed");
                Err(error)
            }
            EventRecord::Malformed(value) => {
                let error = RecordError::Malformed(malformed_reason(&value));
                tracing::error!(error = %error, "record failed");
                Err(error)
            }
        }
    }

    /// Handles one S3 event record, logging its outcome or error. Its span carries the upload's
    /// job id once the record has been read.
    #[tracing::instrument(name = "upload", skip_all, fields(job_id = tracing::field::Empty))]
    pub async fn handle_s3_record(
        &self,
        record: S3EventRecord,
    ) -> Result<RecordOutcome, RecordError> {
        let result = self.process(record).await;
        match &result {
            Ok(outcome) => tracing::info!(?outcome, "record handled"),
            Err(error) => {
                tracing::error!(error = %error, source = ?std::error::Error::source(error), "record failed")
            }
        }
        result
    }

    async fn process(&self, record: S3EventRecord) -> Result<RecordOutcome, RecordError> {
        let event_name = record.event_name.unwrap_or_default();
        if !event_name.starts_with("ObjectCreated:") {
            return Ok(RecordOutcome::Ignored { event_name });
        }
        let object = record.s3.object;
        let bucket = record
            .s3
            .bucket
            .name
            .ok_or_else(|| RecordError::Malformed("no bucket name".into()))?;
        let raw_key = object
            .key
            .ok_or_else(|| RecordError::Malformed("no object key".into()))?;
        let source = SourceObject {
            bucket,
            key: decode_event_key(&raw_key)?,
            size: object
                .size
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| {
                    RecordError::Malformed("the record carries no object size".into())
                })?,
            e_tag: object.e_tag.filter(|e| !e.is_empty()),
            version_id: object.version_id.filter(|v| !v.is_empty() && v != "null"),
        };
        tracing::Span::current().record("job_id", tracing::field::display(source.job_id()));
        if let Some(ingest) = self.ingest_bucket.as_deref() {
            if source.bucket != ingest {
                let reason = SkipReason::NotTheIngestBucket {
                    bucket: source.bucket.clone(),
                };
                return self.record_skip(source, None, reason).await;
            }
        }

        let (service, folder, is_marker) = match routing::route(&source, &self.routing) {
            Route::Skip(reason) => return self.record_skip(source, None, reason).await,
            Route::Join { service, folder } => (service, folder, false),
            Route::CloseBatch { service, folder } => (service, folder, true),
        };
        let Some(target) = self.targets.target(service) else {
            let reason = SkipReason::ServiceNotConfigured(service);
            return self.record_skip(source, Some(service), reason).await;
        };
        let folder = BatchFolder {
            service,
            datastore_id: target.datastore_id.clone(),
            bucket: source.bucket.clone(),
            folder,
        };
        let now = Timestamp::now();
        if is_marker {
            // A redelivered marker must not close the folder's next batch. (In an unversioned
            // bucket an identical marker uploaded again has the same id: it then closes nothing,
            // and its batch closes when quiet.)
            if let Some(existing) = self.store.get(&source.job_id()).await? {
                return Ok(RecordOutcome::AlreadyRecorded {
                    job_id: existing.job_id,
                    status: existing.status,
                });
            }
            let closed_batch = close_on_marker(&self.store, &folder, now).await?;
            let reason = SkipReason::BatchMarker {
                closed_batch: closed_batch.map(|id| id.to_string()),
            };
            return self.record_skip(source, Some(service), reason).await;
        }
        // The batch's copy must be a valid key too, whichever generation the batch is.
        let staged = self.batching.staging.staged_key(
            &folder.batch_id(u64::MAX),
            &folder.folder,
            &source.key,
        );
        if staged.len() > MAX_S3_KEY_BYTES {
            let reason = SkipReason::StagingKeyTooLong {
                bytes: staged.len(),
            };
            return self.record_skip(source, Some(service), reason).await;
        }
        let job_id = source.job_id();
        Ok(
            match join_batch(
                &self.store,
                &self.tracking,
                &self.batching,
                &folder,
                source,
                &target,
                now,
            )
            .await?
            {
                Joined::Joined { batch_id, opened } => {
                    self.metrics.emit(Observation::UploadAdmitted { service });
                    RecordOutcome::Batched {
                        job_id,
                        batch_id,
                        opened,
                    }
                }
                Joined::AlreadyRecorded(existing) => RecordOutcome::AlreadyRecorded {
                    job_id,
                    status: existing.status,
                },
            },
        )
    }

    async fn record_skip(
        &self,
        source: SourceObject,
        service: Option<Service>,
        reason: SkipReason,
    ) -> Result<RecordOutcome, RecordError> {
        let job = Job::skipped(source, service, reason.to_string(), Timestamp::now());
        Ok(match self.store.create(&job).await? {
            CreateOutcome::Created => RecordOutcome::Skipped {
                job_id: job.job_id,
                reason: reason.to_string(),
            },
            CreateOutcome::AlreadyExists(existing) => RecordOutcome::AlreadyRecorded {
                job_id: job.job_id,
                status: existing.status,
            },
        })
    }
}

fn message_id_of(record: &EventRecord) -> Option<String> {
    match record {
        EventRecord::Malformed(value) => value
            .get("messageId")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        EventRecord::Delivered(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthimport::config::{FhirTarget, ImagingTarget};
    use healthimport::domain::batch::{BatchPolicy, CloseReason, Staging};
    use healthimport::fakes::{MemoryJobStore, RecordingMetrics, RecordingTracking};
    use healthimport::metrics::Metric;
    use serde_json::{json, Value};

    type TestStarter = Starter<MemoryJobStore, RecordingTracking, RecordingMetrics>;

    fn starter() -> TestStarter {
        Starter {
            store: MemoryJobStore::default(),
            tracking: RecordingTracking::default(),
            targets: ServiceTargets {
                fhir: Some(FhirTarget {
                    datastore_id: "f".repeat(32),
                    data_access_role_arn: "arn:aws:iam::123456789012:role/fhir".into(),
                    output_s3_uri: "s3://out/fhir/".into(),
                    output_kms_key_id: "alias/k".into(),
                    validation_level: None,
                    export: None,
                }),
                imaging: Some(ImagingTarget {
                    datastore_id: "d".repeat(32),
                    data_access_role_arn: "arn:aws:iam::123456789012:role/img".into(),
                    output_s3_uri: "s3://out/dicom/".into(),
                    input_owner_account_id: None,
                }),
            },
            routing: RoutingConfig::default(),
            batching: Batching {
                policy: BatchPolicy::default(),
                staging: Staging::default(),
            },
            ingest_bucket: Some("ingest-bucket".into()),
            metrics: RecordingMetrics::default(),
        }
    }

    fn record_json(event_name: &str, key: &str, size: i64, etag: &str) -> Value {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-23T10:00:00.000Z", "eventName": event_name,
            "userIdentity": { "principalId": "AWS:AIDAEXAMPLE" },
            "requestParameters": { "sourceIPAddress": "203.0.113.7" },
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "ingest",
                "bucket": { "name": "ingest-bucket", "arn": "arn:aws:s3:::ingest-bucket" },
                "object": { "key": key, "size": size, "eTag": etag, "sequencer": "00AB" }
            }
        })
    }

    fn record(event_name: &str, key: &str, size: i64, etag: &str) -> S3EventRecord {
        serde_json::from_value(record_json(event_name, key, size, etag)).unwrap()
    }

    impl TestStarter {
        async fn handle_json(&self, event: Value) -> Result<Value, StarterError> {
            let event: StarterEvent = serde_json::from_value(event).unwrap();
            let response = self.handle(event).await?;
            Ok(serde_json::to_value(response).unwrap())
        }

        async fn upload(&self, key: &str, etag: &str) -> RecordOutcome {
            self.handle_s3_record(record("ObjectCreated:Put", key, 10, etag))
                .await
                .unwrap()
        }

        fn uploads(&self) -> Vec<Job> {
            self.store
                .all()
                .into_iter()
                .filter(|j| j.source().is_some())
                .collect()
        }

        fn batches(&self) -> Vec<Job> {
            self.store
                .all()
                .into_iter()
                .filter(|j| j.batch().is_some())
                .collect()
        }
    }

    fn s3_event(records: Vec<Value>) -> Value {
        json!({ "Records": records })
    }

    #[tokio::test]
    async fn every_upload_joins_the_batch_of_its_service_and_folder() {
        let s = starter();
        let event = s3_event(vec![
            record_json("ObjectCreated:Put", "fhir/a.ndjson", 10, "e1"),
            record_json("ObjectCreated:Put", "fhir/b.ndjson", 10, "e2"),
            record_json(
                "ObjectCreated:CompleteMultipartUpload",
                "dicom/c.dcm",
                10,
                "e3",
            ),
            record_json("ObjectCreated:Put", "dicom/study-1/IM1", 10, "e4"),
        ]);
        assert_eq!(
            s.handle_json(event).await.unwrap(),
            json!({ "processed": 4 })
        );
        let uploads = s.uploads();
        assert_eq!(uploads.len(), 4);
        assert!(uploads.iter().all(|j| j.status == JobStatus::Batched));
        let batches = s.batches();
        let folders: Vec<_> = batches
            .iter()
            .map(|b| {
                (
                    b.batch().unwrap().folder.clone(),
                    b.batch().unwrap().fill.files,
                )
            })
            .collect();
        assert_eq!(folders.len(), 3, "{folders:?}");
        assert!(folders.contains(&("fhir/".into(), 2)));
        assert!(batches.iter().all(|b| b.status == JobStatus::Open));
        assert_eq!(s.tracking.tracked().len(), 3, "one workflow per batch");
    }

    #[tokio::test]
    async fn the_upload_record_points_at_its_batch_and_the_batch_at_its_staging_prefix() {
        let s = starter();
        let RecordOutcome::Batched {
            job_id, batch_id, ..
        } = s.upload("fhir/ward+7/my+file%2B1.ndjson", "e1").await
        else {
            panic!()
        };
        let upload = s.store.get_job(&job_id);
        assert_eq!(upload.subject(), "fhir/ward 7/my file+1.ndjson");
        assert_eq!(upload.batch_id(), Some(&batch_id));
        assert_eq!(upload.service(), Some(Service::HealthLake));
        let batch = s.store.get_job(&batch_id);
        assert_eq!(batch.batch().unwrap().folder, "fhir/ward 7/");
        assert_eq!(
            batch.input_s3_uri(),
            Some(format!("s3://ingest-bucket/staging/{batch_id}/").as_str())
        );
        assert_eq!(batch.target().unwrap().output_s3_uri, "s3://out/fhir/");
    }

    #[tokio::test]
    async fn deletes_and_other_events_are_ignored_without_a_record() {
        let s = starter();
        let outcome = s
            .handle_s3_record(record("ObjectRemoved:Delete", "fhir/a.ndjson", 0, ""))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            RecordOutcome::Ignored {
                event_name: "ObjectRemoved:Delete".into()
            }
        );
        assert!(s.store.all().is_empty());
    }

    #[tokio::test]
    async fn the_same_event_three_times_is_one_upload_in_one_batch() {
        let s = starter();
        let event = s3_event(vec![record_json(
            "ObjectCreated:Put",
            "fhir/a.ndjson",
            10,
            "e1",
        )]);
        for _ in 0..3 {
            s.handle_json(event.clone()).await.unwrap();
        }
        assert_eq!(s.uploads().len(), 1);
        let batches = s.batches();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].batch().unwrap().fill.files, 1);
        assert_eq!(s.tracking.tracked().len(), 1);
        assert_eq!(
            s.metrics.total(Metric::UploadsAdmitted),
            1,
            "a redelivered upload is admitted once"
        );
    }

    #[tokio::test]
    async fn each_admitted_upload_is_counted_by_service_and_skips_are_not() {
        let s = starter();
        let event = s3_event(vec![
            record_json("ObjectCreated:Put", "fhir/a.ndjson", 10, "e1"),
            record_json("ObjectCreated:Put", "dicom/s/IM1", 10, "e2"),
            record_json("ObjectCreated:Put", "dicom/s/IM2", 10, "e3"),
            record_json("ObjectCreated:Put", "other/x.ndjson", 10, "e4"),
            record_json("ObjectCreated:Put", "dicom/s/_READY", 10, "e5"),
        ]);
        s.handle_json(event).await.unwrap();
        assert_eq!(
            s.metrics.observed(),
            vec![
                Observation::UploadAdmitted {
                    service: Service::HealthLake
                },
                Observation::UploadAdmitted {
                    service: Service::HealthImaging
                },
                Observation::UploadAdmitted {
                    service: Service::HealthImaging
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_marker_closes_its_folders_batch_and_a_second_marker_is_harmless() {
        let s = starter();
        let RecordOutcome::Batched { batch_id, .. } = s.upload("dicom/study-1/IM1", "e1").await
        else {
            panic!()
        };
        let RecordOutcome::Skipped { reason, .. } = s.upload("dicom/study-1/_READY", "m1").await
        else {
            panic!()
        };
        assert!(reason.contains(batch_id.as_str()), "{reason}");
        let batch = s.store.get_job(&batch_id);
        assert_eq!(batch.status, JobStatus::Pending);
        assert_eq!(
            batch.batch().unwrap().closed.map(|c| c.reason),
            Some(CloseReason::Marker)
        );
        let RecordOutcome::Skipped { reason, .. } = s.upload("dicom/study-1/_READY", "m2").await
        else {
            panic!()
        };
        assert!(reason.contains("no open batch"), "{reason}");
        // A file after the marker opens the folder's next batch.
        let RecordOutcome::Batched { batch_id: next, .. } =
            s.upload("dicom/study-1/IM2", "e2").await
        else {
            panic!()
        };
        assert_ne!(next, batch_id);
    }

    #[tokio::test]
    async fn skips_are_recorded_with_their_reason() {
        let s = starter();
        for key in ["other/x.ndjson", "fhir/x.json", "dicom/_READY", "fhir/"] {
            let outcome = s.upload(key, "e").await;
            assert!(
                matches!(outcome, RecordOutcome::Skipped { .. }),
                "{key}: {outcome:?}"
            );
        }
        assert!(s
            .store
            .all()
            .iter()
            .all(|j| j.status == JobStatus::Skipped && j.skip_reason().is_some()));
        assert!(s.batches().is_empty());
    }

    #[tokio::test]
    async fn a_key_whose_staged_copy_would_be_too_long_is_skipped_with_the_reason() {
        let s = starter();
        let key = format!("dicom/s/{}", "a".repeat(MAX_S3_KEY_BYTES - 20));
        let RecordOutcome::Skipped { reason, .. } = s.upload(&key, "e").await else {
            panic!()
        };
        assert!(reason.contains("shorter key"), "{reason}");
    }

    #[tokio::test]
    async fn a_malformed_record_fails_alone() {
        let s = starter();
        let mut broken = record_json("ObjectCreated:Put", "fhir/b.ndjson", 10, "e");
        broken["s3"]["object"]["key"] = json!("fhir/bad%zz.ndjson");
        let event = s3_event(vec![
            record_json("ObjectCreated:Put", "fhir/a.ndjson", 10, "e"),
            broken,
            json!({"not": "a record"}),
            record_json("ObjectCreated:Put", "fhir/c.ndjson", 10, "e"),
        ]);
        let err = s.handle_json(event).await.unwrap_err();
        assert!(
            matches!(
                err,
                StarterError::RecordsFailed {
                    failed: 2,
                    total: 4
                }
            ),
            "{err}"
        );
        assert_eq!(s.uploads().len(), 2, "the good records were processed");
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "RecordsFailed");
    }

    #[tokio::test]
    async fn sqs_wrapped_events_report_only_the_failed_messages() {
        let s = starter();
        let message = |id: &str, body: String| {
            json!({ "messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1",
                    "attributes": {}, "messageAttributes": {} })
        };
        let good = s3_event(vec![record_json(
            "ObjectCreated:Put",
            "fhir/a.ndjson",
            10,
            "e",
        )])
        .to_string();
        let test_event =
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "ingest-bucket"})
                .to_string();
        let event = json!({ "Records": [
            message("m1", good),
            message("m2", "{not json".into()),
            message("m3", test_event),
        ]});
        let response = s.handle_json(event).await.unwrap();
        assert_eq!(
            response,
            json!({ "batchItemFailures": [{ "itemIdentifier": "m2" }] })
        );
        assert_eq!(s.uploads().len(), 1);
    }

    #[tokio::test]
    async fn an_upload_to_another_bucket_is_recorded_as_skipped() {
        let s = starter();
        let mut elsewhere = record_json("ObjectCreated:Put", "fhir/a.ndjson", 10, "e");
        elsewhere["s3"]["bucket"]["name"] = json!("someone-elses-bucket");
        let outcome = s
            .handle_s3_record(serde_json::from_value(elsewhere).unwrap())
            .await
            .unwrap();
        let RecordOutcome::Skipped { reason, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(reason.contains("someone-elses-bucket"), "{reason}");
        assert!(s.batches().is_empty());
        assert_eq!(s.store.all()[0].status, JobStatus::Skipped);
    }

    #[tokio::test]
    async fn a_record_without_a_size_fails_rather_than_being_skipped_as_empty() {
        let s = starter();
        let mut sizeless = record_json("ObjectCreated:Put", "fhir/a.ndjson", 10, "e");
        sizeless["s3"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("size");
        let err = s
            .handle_s3_record(serde_json::from_value(sizeless).unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no object size"), "{err}");
        assert!(s.store.all().is_empty(), "no record says it was skipped");
    }

    #[tokio::test]
    async fn an_unconfigured_service_skips_its_uploads() {
        let mut s = starter();
        s.targets.imaging = None;
        s.routing.imaging_enabled = false;
        let RecordOutcome::Skipped { reason, .. } = s.upload("dicom/a.dcm", "e").await else {
            panic!()
        };
        assert!(reason.contains("HEALTHIMAGING"), "{reason}");
    }

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_sample_events_do_what_their_names_say() {
        let mut s = starter();
        // The samples' bucket, as the template sets INGEST_BUCKET for a deployed stack.
        s.ingest_bucket = Some("healthimport-ingest-example".into());
        for name in [
            "starter-fhir-upload.json",
            "starter-dicom-batch-file.json",
            "starter-dicom-batch-marker.json",
            "starter-dicom-lone-file.json",
            "starter-key-with-spaces-and-plus.json",
            "starter-delete.json",
        ] {
            s.handle_json(sample(name)).await.unwrap();
        }
        let uploads: Vec<_> = s
            .uploads()
            .into_iter()
            .map(|j| (j.subject(), j.status))
            .collect();
        assert_eq!(
            uploads,
            vec![
                ("dicom/chest-xray-0007.dcm".to_owned(), JobStatus::Batched),
                (
                    "dicom/study-2026-0042/1.2.840.113619.2.55.3.dcm".to_owned(),
                    JobStatus::Batched
                ),
                (
                    "dicom/study-2026-0042/_READY".to_owned(),
                    JobStatus::Skipped
                ),
                (
                    "fhir/2026-11-23/patients.ndjson".to_owned(),
                    JobStatus::Batched
                ),
                (
                    "fhir/ward 7/Observations A+B été.ndjson".to_owned(),
                    JobStatus::Batched
                ),
            ],
            "the delete made no record"
        );
        let study: Vec<_> = s
            .batches()
            .into_iter()
            .filter(|b| b.batch().unwrap().folder == "dicom/study-2026-0042/")
            .collect();
        assert_eq!(study.len(), 1);
        assert_eq!(study[0].status, JobStatus::Pending, "closed by its marker");
        let response = s
            .handle_json(sample("starter-sqs-batch.json"))
            .await
            .unwrap();
        assert_eq!(response, json!({ "batchItemFailures": [] }));
        assert_eq!(s.uploads().len(), 7);
    }
}
