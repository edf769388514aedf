//! The starter: every S3 `ObjectCreated` record becomes exactly one import job, recorded, started
//! and tracked.
//!
//! For each record: decode the key, route the object ([`healthimport::domain::routing`]), record the
//! decision with a conditional put keyed by the upload's deterministic id, start the job at its
//! service with that id as ClientToken ([`healthimport::launch`]), and start the tracking
//! execution named after it. Each step is idempotent, so a record delivered twice, concurrently,
//! or again after a crash between any two steps, makes one record, one job and one execution.
//!
//! Accepts S3 event notifications directly (every record is processed; if any fails, the
//! invocation fails after processing the others so Lambda's retry redelivers it) and S3 events
//! wrapped in SQS messages (a failed message is reported in `batchItemFailures`, alone).

use std::borrow::Cow;

use aws_lambda_events::s3::S3EventRecord;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use healthimport::config::ServiceTargets;
use healthimport::domain::job::{Job, JobId, JobStatus, Service, SourceObject, Target, Timestamp};
use healthimport::domain::routing::{
    self, check_batch, decode_event_key, BatchFile, ImportScope, KeyDecodeError, Route,
    RoutingConfig, SkipReason, IMAGING_MAX_JOB_FILES,
};
use healthimport::launch::{launch, LaunchError, Launched};
use healthimport::ports::objects::{ListError, ObjectLister};
use healthimport::ports::service_jobs::JobService;
use healthimport::ports::store::{JobStore, StoreError};
use healthimport::ports::workflow::TrackingWorkflow;

use crate::event::{
    malformed_reason, Delivered, EventRecord, SqsBody, StarterEvent, StarterResponse,
};

/// What became of one S3 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Not an `ObjectCreated` event (a delete, a restore, ...).
    Ignored {
        event_name: String,
    },
    /// A file inside a DICOM batch folder: its batch's marker imports it.
    PartOfBatch {
        prefix: String,
    },
    Skipped {
        job_id: JobId,
        reason: String,
    },
    Started {
        job_id: JobId,
    },
    /// The service refused the start for now; the tracking workflow retries it.
    StartPending {
        job_id: JobId,
    },
    StartFailed {
        job_id: JobId,
    },
    /// A redelivered event: the job was recorded and started before.
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
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Listing(#[from] ListError),
}

/// The invocation failed as a whole (direct S3 invocations only; SQS failures are per message).
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

pub struct Starter<S, I, W, L> {
    pub store: S,
    pub services: I,
    pub tracking: W,
    pub lister: L,
    pub targets: ServiceTargets,
    pub routing: RoutingConfig,
    /// The bucket uploads come from; `None` accepts every bucket.
    pub ingest_bucket: Option<String>,
}

impl<S, I, W, L> Starter<S, I, W, L>
where
    S: JobStore,
    I: JobService,
    W: TrackingWorkflow,
    L: ObjectLister,
{
    /// Handles one invocation: an S3 event, or an SQS batch of S3 events.
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
            // Never read as a zero-byte file (which is skipped): a record without its size fails.
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

        let request = match routing::route(&source, &self.routing) {
            Route::PartOfBatch { prefix } => return Ok(RecordOutcome::PartOfBatch { prefix }),
            Route::Skip(reason) => return self.record_skip(source, None, reason).await,
            Route::Import(request) => request,
        };
        if let ImportScope::Batch { prefix } = &request.scope {
            // One more than the limit is enough to refuse; a folder that big is not listed whole.
            let listed = self
                .lister
                .list(&source.bucket, prefix, IMAGING_MAX_JOB_FILES as usize + 16)
                .await?;
            let files = listed.iter().map(|o| BatchFile {
                key: Cow::Borrowed(o.key.as_str()),
                size: o.size,
            });
            if let Err(reason) = check_batch(files, &self.routing) {
                return self
                    .record_skip(source, Some(request.service), reason)
                    .await;
            }
        }
        let Some(target) = self.target(request.service) else {
            return self
                .record_skip(
                    source,
                    Some(request.service),
                    SkipReason::ServiceNotConfigured(request.service),
                )
                .await;
        };

        let job = Job::import(source, target, request.input_s3_uri, Timestamp::now());
        let job_id = job.job_id.clone();
        Ok(
            match launch(&self.store, &self.services, &self.tracking, job).await? {
                Launched::Started => RecordOutcome::Started { job_id },
                Launched::StartPending => RecordOutcome::StartPending { job_id },
                Launched::StartFailed => RecordOutcome::StartFailed { job_id },
                Launched::AlreadyRecorded(status) => {
                    RecordOutcome::AlreadyRecorded { job_id, status }
                }
            },
        )
    }

    fn target(&self, service: Service) -> Option<Target> {
        self.targets.target(service)
    }

    async fn record_skip(
        &self,
        source: SourceObject,
        service: Option<Service>,
        reason: SkipReason,
    ) -> Result<RecordOutcome, RecordError> {
        let job = Job::skipped(source, service, reason.to_string(), Timestamp::now());
        self.store.create(&job).await?;
        Ok(RecordOutcome::Skipped {
            job_id: job.job_id,
            reason: reason.to_string(),
        })
    }
}

/// The `messageId` of an entry that did not read as an SQS message, so that it can still be
/// reported alone.
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
    use healthimport::fakes::{
        MemoryJobStore, RecordingTracking, ScriptedJobService, StaticLister,
    };
    use healthimport::ports::objects::ListedObject;
    use healthimport::ports::service_jobs::Retry;
    use serde_json::{json, Value};

    type TestStarter = Starter<MemoryJobStore, ScriptedJobService, RecordingTracking, StaticLister>;

    fn starter_with(objects: Vec<ListedObject>) -> TestStarter {
        Starter {
            store: MemoryJobStore::default(),
            services: ScriptedJobService::default(),
            tracking: RecordingTracking::default(),
            lister: StaticLister { objects },
            targets: ServiceTargets {
                fhir: Some(FhirTarget {
                    datastore_id: "f".repeat(32),
                    data_access_role_arn: "arn:aws:iam::123456789012:role/fhir".into(),
                    output_s3_uri: "s3://out/fhir/".into(),
                    output_kms_key_id: "alias/k".into(),
                    export: None,
                }),
                imaging: Some(ImagingTarget {
                    datastore_id: "d".repeat(32),
                    data_access_role_arn: "arn:aws:iam::123456789012:role/img".into(),
                    output_s3_uri: "s3://out/dicom/".into(),
                }),
            },
            routing: RoutingConfig::default(),
            ingest_bucket: Some("ingest-bucket".into()),
        }
    }

    fn starter() -> TestStarter {
        starter_with(Vec::new())
    }

    /// One S3 event record as S3 sends it.
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
        /// The invocation as Lambda makes it: the event and the answer as JSON.
        async fn handle_json(&self, event: Value) -> Result<Value, StarterError> {
            let event: StarterEvent = serde_json::from_value(event).unwrap();
            let response = self.handle(event).await?;
            Ok(serde_json::to_value(response).unwrap())
        }
    }

    fn s3_event(records: Vec<Value>) -> Value {
        json!({ "Records": records })
    }

    #[tokio::test]
    async fn every_record_of_an_event_is_processed() {
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
        ]);
        assert_eq!(
            s.handle_json(event).await.unwrap(),
            json!({ "processed": 3 })
        );
        let jobs = s.store.all();
        assert_eq!(jobs.len(), 3);
        assert!(
            jobs.iter().all(|j| j.status == JobStatus::Submitted),
            "{jobs:#?}"
        );
        assert_eq!(s.services.jobs_started(), 3);
        assert_eq!(s.tracking.tracked().len(), 3);
    }

    #[tokio::test]
    async fn the_record_holds_what_was_started_where() {
        let s = starter();
        s.handle_json(s3_event(vec![record_json(
            "ObjectCreated:Put",
            "fhir/my+file%2B1.ndjson",
            10,
            "e1",
        )]))
        .await
        .unwrap();
        let job = &s.store.all()[0];
        assert_eq!(job.subject(), "fhir/my file+1.ndjson");
        assert_eq!(job.service(), Some(Service::HealthLake));
        assert_eq!(job.datastore_id(), Some("f".repeat(32).as_str()));
        assert_eq!(
            job.input_s3_uri(),
            Some("s3://ingest-bucket/fhir/my file+1.ndjson")
        );
        assert_eq!(
            job.target().map(|t| t.output_s3_uri.as_str()),
            Some("s3://out/fhir/")
        );
        assert_eq!(job.service_job_id.as_deref(), Some("svc-0"));
        let call = &s.services.start_calls.lock().unwrap()[0];
        assert_eq!(call.job_id, job.job_id, "the client token is the job id");
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
    async fn the_same_event_three_times_is_one_job() {
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
        assert_eq!(s.store.all().len(), 1);
        assert_eq!(s.services.jobs_started(), 1);
        assert_eq!(
            s.services.start_call_count(),
            1,
            "a started job is not started again"
        );
        assert_eq!(s.tracking.tracked().len(), 1);
    }

    #[tokio::test]
    async fn a_throttled_start_stays_pending_and_is_tracked_for_retry() {
        let s = starter();
        s.services.fail_next("ThrottlingException", Retry::Later);
        let outcome = s
            .handle_s3_record(record("ObjectCreated:Put", "dicom/x.dcm", 10, "e"))
            .await
            .unwrap();
        assert!(matches!(outcome, RecordOutcome::StartPending { .. }));
        let job = &s.store.all()[0];
        assert_eq!(job.status, JobStatus::Pending);
        assert!(
            job.message
                .as_deref()
                .unwrap()
                .contains("ThrottlingException"),
            "{job:?}"
        );
        assert_eq!(s.tracking.tracked(), vec![job.job_id.clone()]);

        // A redelivery starts it (same token: still one job at the service).
        let again = s
            .handle_s3_record(record("ObjectCreated:Put", "dicom/x.dcm", 10, "e"))
            .await
            .unwrap();
        assert!(matches!(again, RecordOutcome::Started { .. }));
        assert_eq!(s.services.jobs_started(), 1);
    }

    #[tokio::test]
    async fn a_validation_error_is_start_failed_at_once() {
        let s = starter();
        s.services.fail_next("ValidationException", Retry::Never);
        let outcome = s
            .handle_s3_record(record("ObjectCreated:Put", "fhir/a.ndjson", 10, "e"))
            .await
            .unwrap();
        assert!(matches!(outcome, RecordOutcome::StartFailed { .. }));
        let job = &s.store.all()[0];
        assert_eq!(job.status, JobStatus::StartFailed);
        assert!(job
            .message
            .as_deref()
            .unwrap()
            .contains("ValidationException"));
    }

    #[tokio::test]
    async fn a_crash_between_recording_and_starting_is_recovered_on_redelivery() {
        let s = starter();
        // The first delivery recorded the job and died before the service call.
        let job = Job::import(
            SourceObject {
                bucket: "ingest-bucket".into(),
                key: "fhir/a.ndjson".into(),
                size: 10,
                e_tag: Some("e".into()),
                version_id: None,
            },
            Target {
                service: Service::HealthLake,
                datastore_id: "f".repeat(32),
                output_s3_uri: "s3://out/fhir/".into(),
            },
            "s3://ingest-bucket/fhir/a.ndjson".into(),
            Timestamp::now(),
        );
        s.store.create(&job).await.unwrap();

        let outcome = s
            .handle_s3_record(record("ObjectCreated:Put", "fhir/a.ndjson", 10, "e"))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            RecordOutcome::Started {
                job_id: job.job_id.clone()
            }
        );
        assert_eq!(s.store.all().len(), 1);
        assert_eq!(s.store.all()[0].status, JobStatus::Submitted);
    }

    #[tokio::test]
    async fn skips_are_recorded_with_their_reason() {
        let s = starter();
        for (key, size) in [
            ("fhir/notes.txt", 5),
            ("fhir/empty.ndjson", 0),
            ("elsewhere/a.ndjson", 5),
            ("dicom/_READY", 0),
        ] {
            let outcome = s
                .handle_s3_record(record("ObjectCreated:Put", key, size, "e"))
                .await
                .unwrap();
            assert!(
                matches!(outcome, RecordOutcome::Skipped { .. }),
                "{key}: {outcome:?}"
            );
        }
        let jobs = s.store.all();
        assert_eq!(jobs.len(), 4);
        assert!(jobs
            .iter()
            .all(|j| j.status == JobStatus::Skipped && j.skip_reason().is_some()));
        assert_eq!(s.services.start_call_count(), 0);
        assert!(s.tracking.tracked().is_empty());
    }

    #[tokio::test]
    async fn a_batch_is_one_job_started_by_its_marker() {
        let files = (0..3)
            .map(|i| ListedObject {
                key: format!("dicom/study/{i}.dcm"),
                size: 100,
            })
            .chain([ListedObject {
                key: "dicom/study/_READY".into(),
                size: 0,
            }])
            .collect();
        let s = starter_with(files);
        let member = s
            .handle_s3_record(record("ObjectCreated:Put", "dicom/study/0.dcm", 100, "e"))
            .await
            .unwrap();
        assert_eq!(
            member,
            RecordOutcome::PartOfBatch {
                prefix: "dicom/study/".into()
            }
        );
        let marker = s
            .handle_s3_record(record("ObjectCreated:Put", "dicom/study/_READY", 0, "m"))
            .await
            .unwrap();
        assert!(matches!(marker, RecordOutcome::Started { .. }));
        let jobs = s.store.all();
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            jobs[0].input_s3_uri(),
            Some("s3://ingest-bucket/dicom/study/")
        );
    }

    #[tokio::test]
    async fn an_oversized_batch_is_refused_whole_with_a_reason() {
        let files = (0..=IMAGING_MAX_JOB_FILES)
            .map(|i| ListedObject {
                key: format!("dicom/big/{i}.dcm"),
                size: 1,
            })
            .collect();
        let s = starter_with(files);
        let outcome = s
            .handle_s3_record(record("ObjectCreated:Put", "dicom/big/_READY", 0, "m"))
            .await
            .unwrap();
        let RecordOutcome::Skipped { reason, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(reason.contains("5001 files"), "{reason}");
        assert_eq!(s.services.start_call_count(), 0);
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
        assert_eq!(s.store.all().len(), 2, "the good records were processed");
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
        assert_eq!(s.store.all().len(), 1);
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
        assert_eq!(s.services.start_call_count(), 0);
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
        let outcome = s
            .handle_s3_record(record("ObjectCreated:Put", "dicom/a.dcm", 10, "e"))
            .await
            .unwrap();
        let RecordOutcome::Skipped { reason, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(reason.contains("HEALTHIMAGING"), "{reason}");
    }

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_sample_events_do_what_their_names_say() {
        let batch = vec![
            ListedObject {
                key: "dicom/study-2026-0042/1.dcm".into(),
                size: 10,
            },
            ListedObject {
                key: "dicom/study-2026-0042/_READY".into(),
                size: 0,
            },
        ];
        let mut s = starter_with(batch);
        // The samples' bucket, as the template sets INGEST_BUCKET for a deployed stack.
        s.ingest_bucket = Some("healthimport-ingest-example".into());
        for name in [
            "starter-fhir-upload.json",
            "starter-dicom-batch-marker.json",
            "starter-dicom-lone-file.json",
            "starter-key-with-spaces-and-plus.json",
            "starter-delete.json",
        ] {
            s.handle_json(sample(name)).await.unwrap();
        }
        let keys: Vec<_> = s
            .store
            .all()
            .into_iter()
            .map(|j| (j.subject(), j.status))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dicom/chest-xray-0007.dcm".to_owned(), JobStatus::Submitted),
                (
                    "dicom/study-2026-0042/_READY".to_owned(),
                    JobStatus::Submitted
                ),
                (
                    "fhir/2026-11-23/patients.ndjson".to_owned(),
                    JobStatus::Submitted
                ),
                (
                    "fhir/ward 7/Observations A+B été.ndjson".to_owned(),
                    JobStatus::Submitted
                ),
            ],
            "the delete made no record"
        );
        let response = s
            .handle_json(sample("starter-sqs-batch.json"))
            .await
            .unwrap();
        assert_eq!(response, json!({ "batchItemFailures": [] }));
        assert_eq!(s.store.all().len(), 6);
    }
}
