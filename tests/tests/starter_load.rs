//! The starter as its binary wires it (`starter::wiring`), with the real SDK clients against the
//! local stack: DynamoDB, S3 and Step Functions on moto, HealthLake and HealthImaging on the
//! stack's service double. Each test has its own table, bucket and tracking state machine (a
//! single Pass state: these tests are about starting, not tracking).
//!
//! Some tests inject faults into the shared double, so every test holds `FAULTS`: one at a time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use healthimport::domain::job::{Job, JobStatus, Timestamp};
use healthimport::launch::{start_job, StartOutcome};
use healthimport::ports::store::JobStore;
use healthimport_tests::double::{FaultScope, Faults};
use healthimport_tests::double_admin::DoubleAdmin;
use healthimport_tests::local_stack::{create_bucket, create_jobs_table, sdk_config, unique_name};
use healthimport_tests::provision::{service_jobs_named, LocalFunctions};
use healthimport_tests::request_count::{count_of, RequestCount};
use healthimport_tests::samples::dicom_p10;
use serde_json::{json, Value};
use starter::config::StarterConfig;
use starter::event::StarterEvent;
use starter::handler::StarterError;
use starter::wiring::{self, AwsStarter};
use tokio::sync::Mutex;

static FAULTS: Mutex<()> = Mutex::const_new(());

const DYNAMODB: &str = "DynamoDB_20120810.";
const WRITES: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

struct Rig {
    sdk: SdkConfig,
    table: String,
    bucket: String,
    state_machine_arn: String,
    functions: LocalFunctions,
    starter: AwsStarter,
    /// The requests the starter's clients sent (the rig's own reads go through them too).
    requests: RequestCount,
}

impl Rig {
    async fn new() -> Rig {
        let sdk = sdk_config().await;
        let table = create_jobs_table(&sdk, &unique_name("starter-jobs"))
            .await
            .unwrap();
        let bucket = unique_name("starter-ingest");
        create_bucket(&sdk, &bucket).await.unwrap();
        Rig::with(sdk, table, bucket).await
    }

    /// A starter on `table` and `bucket` with a tracking state machine of its own.
    async fn with(sdk: SdkConfig, table: String, bucket: String) -> Rig {
        let functions = LocalFunctions::from_env();
        let state_machine_arn = aws_sdk_sfn::Client::new(&sdk)
            .create_state_machine()
            .name(unique_name("tracking"))
            .definition(r#"{"StartAt":"Tracked","States":{"Tracked":{"Type":"Pass","End":true}}}"#)
            .role_arn("arn:aws:iam::123456789012:role/healthimport-local-tracking")
            .send()
            .await
            .unwrap()
            .state_machine_arn;
        let mut env: HashMap<String, String> = HashMap::new();
        for name in [
            "FHIR_DATASTORE_ID",
            "FHIR_DATA_ACCESS_ROLE_ARN",
            "FHIR_OUTPUT_S3_URI",
            "FHIR_OUTPUT_KMS_KEY_ID",
            "IMAGING_DATASTORE_ID",
            "IMAGING_DATA_ACCESS_ROLE_ARN",
            "IMAGING_OUTPUT_S3_URI",
        ] {
            env.insert(name.into(), functions.setting(name).unwrap());
        }
        env.insert("JOBS_TABLE".into(), table.clone());
        env.insert("INGEST_BUCKET".into(), bucket.clone());
        env.insert("STATE_MACHINE_ARN".into(), state_machine_arn.clone());
        let requests = RequestCount::default();
        let starter = wiring::starter(
            &requests.counting(&sdk),
            StarterConfig::from_env(&env).unwrap(),
        );
        Rig {
            sdk,
            table,
            bucket,
            state_machine_arn,
            functions,
            starter,
            requests,
        }
    }

    /// The invocation as Lambda makes it: the event and the answer as JSON.
    async fn handle(&self, event: Value) -> Result<Value, StarterError> {
        let event: StarterEvent = serde_json::from_value(event).unwrap();
        let response = self.starter.handle(event).await?;
        Ok(serde_json::to_value(response).unwrap())
    }

    /// Uploads `body` under `key` and returns the S3 event record S3 would send for it.
    async fn upload(&self, key: &str, body: &[u8]) -> Value {
        let put = aws_sdk_s3::Client::new(&self.sdk)
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-24T00:00:00.000Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": {"name": self.bucket, "arn": format!("arn:aws:s3:::{}", self.bucket)},
                "object": {
                    // S3 encodes keys in events: spaces as '+', the rest percent-encoded.
                    "key": key.replace(' ', "+"),
                    "size": body.len(),
                    "eTag": put.e_tag().unwrap_or_default().trim_matches('"'),
                    "sequencer": "0"
                }
            }
        })
    }

    async fn records(&self, key: &str) -> Vec<Job> {
        self.starter
            .store
            .find_by_source(&self.bucket, key)
            .await
            .unwrap()
    }

    /// The names of this rig's tracking executions, with how many executions each has.
    async fn executions(&self) -> BTreeMap<String, usize> {
        let mut names = BTreeMap::new();
        let mut pages = aws_sdk_sfn::Client::new(&self.sdk)
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for execution in page.unwrap().executions() {
                *names.entry(execution.name().to_owned()).or_default() += 1;
            }
        }
        names
    }

    /// Every upload in `keys` has one record, past PENDING and not START_FAILED, and one job at
    /// the service.
    async fn assert_each_started_once(&self, keys: &[String]) {
        let mut ids = Vec::new();
        for key in keys {
            let records = self.records(key).await;
            assert_eq!(records.len(), 1, "{key}: one record");
            assert!(
                !matches!(
                    records[0].status,
                    JobStatus::Pending | JobStatus::StartFailed
                ),
                "{key}: {:?}",
                records[0]
            );
            ids.push(records[0].job_id.as_str().to_owned());
        }
        let at_service = service_jobs_named(&self.sdk, &self.functions, &ids)
            .await
            .unwrap();
        let not_once: Vec<_> = at_service.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            not_once.is_empty(),
            "jobs not started exactly once: {not_once:?}"
        );
    }

    /// What the tracking workflow's Start step does for a job the starter left PENDING
    /// (`poller`'s `start` action is this call), until every job has left PENDING. Returns how
    /// many start attempts that took.
    async fn retry_pending_starts(&self, keys: &[String], deadline: Duration) -> usize {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            let mut pending = Vec::new();
            for key in keys {
                pending.extend(
                    self.records(key)
                        .await
                        .into_iter()
                        .filter(|j| j.status == JobStatus::Pending),
                );
            }
            if pending.is_empty() {
                return attempts;
            }
            assert!(
                started.elapsed() < deadline,
                "{} jobs still PENDING after {deadline:?}",
                pending.len()
            );
            for job in &pending {
                attempts += 1;
                let outcome = start_job(
                    &self.starter.store,
                    &self.starter.services,
                    job,
                    Timestamp::now,
                )
                .await
                .unwrap();
                assert!(
                    !matches!(outcome, StartOutcome::StartFailed(_)),
                    "{:?}: {outcome:?}",
                    job.job_id
                );
            }
            // The workflow's StartThrottled Retry waits between attempts too.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn ndjson(i: usize) -> Vec<u8> {
    format!(r#"{{"resourceType":"Patient","id":"load-{i}"}}"#).into_bytes()
}

#[tokio::test]
async fn an_event_delivered_three_times_concurrently_is_one_job_one_record_one_execution() {
    let _faults = FAULTS.lock().await;
    let rig = Rig::new().await;
    let key = "fhir/same event thrice.ndjson";
    let record = rig.upload(key, &ndjson(0)).await;
    let event = json!({"Records": [record]});
    let (a, b, c) = tokio::join!(
        rig.handle(event.clone()),
        rig.handle(event.clone()),
        rig.handle(event),
    );
    for outcome in [a, b, c] {
        outcome.unwrap();
    }
    let records = rig.records(key).await;
    assert_eq!(records.len(), 1);
    let id = records[0].job_id.as_str().to_owned();
    assert_ne!(records[0].status, JobStatus::Pending, "{:?}", records[0]);
    assert_eq!(
        service_jobs_of(&rig, std::slice::from_ref(&id)).await[&id],
        1
    );
    assert_eq!(rig.executions().await, BTreeMap::from([(id, 1)]));
}

#[tokio::test]
async fn a_crash_between_recording_and_starting_is_recovered_on_redelivery() {
    let _faults = FAULTS.lock().await;
    // The record the starter writes before it calls the service, left PENDING: made here by a
    // start the service throttles, whose tracking execution goes to `first`'s state machine.
    let first = Rig::new().await;
    let key = "dicom/crashed.dcm";
    let event = json!({"Records": [first.upload(key, &dicom_p10("2.25.4242", 1)).await]});
    {
        let admin = DoubleAdmin::from_env();
        admin
            .set_faults(&Faults::throttling_every_start())
            .await
            .unwrap();
        let handled = first.handle(event.clone()).await;
        admin.set_faults(&Faults::default()).await.unwrap();
        handled.unwrap();
    }
    let pending = first.records(key).await.remove(0);
    assert_eq!(pending.status, JobStatus::Pending);
    let id = pending.job_id.as_str().to_owned();
    assert_eq!(
        service_jobs_of(&first, std::slice::from_ref(&id)).await[&id],
        0
    );

    // After the crash: the same table and upload, no job at the service, and (in this starter's
    // own state machine) no execution. The event is delivered again.
    let after_crash = Rig::with(first.sdk.clone(), first.table.clone(), first.bucket.clone()).await;
    after_crash.handle(event).await.unwrap();
    let records = after_crash.records(key).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].job_id, pending.job_id);
    assert_ne!(records[0].status, JobStatus::Pending, "{:?}", records[0]);
    assert!(records[0].service_job_id.is_some());
    assert_eq!(
        service_jobs_of(&after_crash, std::slice::from_ref(&id)).await[&id],
        1
    );
    assert_eq!(after_crash.executions().await, BTreeMap::from([(id, 1)]));
}

#[tokio::test]
async fn a_malformed_record_in_a_batch_fails_alone() {
    let _faults = FAULTS.lock().await;
    let rig = Rig::new().await;
    let good = [
        rig.upload("fhir/batch-a.ndjson", &ndjson(1)).await,
        rig.upload("fhir/batch-b.ndjson", &ndjson(2)).await,
    ];
    let message = |id: &str, body: String| {
        json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {},
               "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:uploads", "awsRegion": "us-east-1"})
    };
    let event = json!({"Records": [
        message("m1", json!({"Records": [good[0]]}).to_string()),
        message("m2", r#"{"Records": [{"s3": {"bucket": "#.to_owned()),
        message("m3", json!({"Records": [good[1]]}).to_string()),
    ]});
    let response = rig.handle(event).await.unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "m2"}]})
    );
    for key in ["fhir/batch-a.ndjson", "fhir/batch-b.ndjson"] {
        let records = rig.records(key).await;
        assert_eq!(records.len(), 1, "{key}");
        assert_ne!(records[0].status, JobStatus::Pending);
    }
}

#[tokio::test]
async fn two_hundred_uploads_under_throttling_and_5xx_each_start_exactly_once() {
    let _faults = FAULTS.lock().await;
    let admin = DoubleAdmin::from_env();
    let rig = Rig::new().await;
    let mut records = Vec::new();
    let mut keys = Vec::new();
    for i in 0..200 {
        let key = format!("fhir/load/{i:03} upload.ndjson");
        records.push(rig.upload(&key, &ndjson(i)).await);
        keys.push(key);
    }
    admin
        .set_faults(&Faults {
            throttle_share: 0.15,
            internal_error_share: 0.15,
            scope: FaultScope::StartOnly,
            ..Faults::default()
        })
        .await
        .unwrap();
    // Batches of ten, four at a time, as the queue's event source delivers them.
    let batches: Vec<Value> = records
        .chunks(10)
        .map(|chunk| json!({"Records": chunk}))
        .collect();
    let before = rig.requests.snapshot();
    for group in batches.chunks(4) {
        let outcomes = futures_join_all(group.iter().map(|event| rig.handle(event.clone()))).await;
        for outcome in outcomes {
            outcome.unwrap();
        }
    }
    let writes = rig.requests.of(DYNAMODB, WRITES) - count_of(&before, DYNAMODB, WRITES);
    let dynamodb = rig.requests.of(DYNAMODB, &[]) - count_of(&before, DYNAMODB, &[]);
    let service = rig.requests.of("HealthLake.", &["StartFHIRImportJob"])
        - count_of(&before, "HealthLake.", &["StartFHIRImportJob"]);
    let tracking =
        rig.requests.of("AWSStepFunctions.", &[]) - count_of(&before, "AWSStepFunctions.", &[]);
    println!(
        "starter, per upload (200 uploads, 30% of starts faulted): {:.2} DynamoDB requests, \
         {:.2} DynamoDB writes, {:.2} StartFHIRImportJob calls (SDK retries included), \
         {:.2} Step Functions calls",
        dynamodb as f64 / 200.0,
        writes as f64 / 200.0,
        service as f64 / 200.0,
        tracking as f64 / 200.0
    );
    assert!(
        writes <= 3 * 200,
        "{writes} DynamoDB writes for 200 uploads"
    );
    let pending_after_starter: usize = {
        let mut n = 0;
        for key in &keys {
            n += rig
                .records(key)
                .await
                .iter()
                .filter(|j| j.status == JobStatus::Pending)
                .count();
        }
        n
    };
    let attempts = rig
        .retry_pending_starts(&keys, Duration::from_secs(120))
        .await;
    admin.set_faults(&Faults::default()).await.unwrap();

    rig.assert_each_started_once(&keys).await;
    let executions = rig.executions().await;
    assert_eq!(executions.len(), 200);
    assert!(executions.values().all(|n| *n == 1));
    println!(
        "200 uploads under 30% start faults: {pending_after_starter} left PENDING by the starter, \
         started by {attempts} workflow start attempts"
    );
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut outputs = Vec::with_capacity(handles.len());
    // Poll them together: a JoinSet would need 'static futures.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, future) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => done[i] = Some(output),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.extend(done.into_iter().map(|o| o.expect("every future finished")));
    outputs
}

#[tokio::test]
async fn a_burst_of_fifty_lone_dicom_files_is_started_within_the_rate_limit_without_a_start_failure(
) {
    let _faults = FAULTS.lock().await;
    let admin = DoubleAdmin::from_env();
    admin.set_faults(&Faults::default()).await.unwrap();
    let rate_limited_before = admin.stats().await.unwrap()["rate_limited_starts"]
        .as_u64()
        .unwrap();
    let rig = Rig::new().await;
    let mut records = Vec::new();
    let mut keys = Vec::new();
    for i in 0..50 {
        let key = format!("dicom/burst-{i:02}.dcm");
        records.push(rig.upload(&key, &dicom_p10("2.25.5050", i + 1)).await);
        keys.push(key);
    }
    let started = Instant::now();
    let batches: Vec<Value> = records
        .chunks(10)
        .map(|chunk| json!({"Records": chunk}))
        .collect();
    let outcomes = futures_join_all(batches.iter().map(|e| rig.handle(e.clone()))).await;
    for outcome in outcomes {
        outcome.unwrap();
    }
    let attempts = rig
        .retry_pending_starts(&keys, Duration::from_secs(180))
        .await;
    let elapsed = started.elapsed();

    rig.assert_each_started_once(&keys).await;
    let rate_limited = admin.stats().await.unwrap()["rate_limited_starts"]
        .as_u64()
        .unwrap()
        - rate_limited_before;
    assert!(rate_limited > 0, "the burst did meet the 1/s limit");
    // The double admits 1 start/s after a burst of 2: 50 starts need at least 48 s.
    let rate = 50.0 / elapsed.as_secs_f64();
    println!(
        "DICOM burst: 50 starts in {:.1} s = {rate:.2}/s ({:.0}% of the 1/s ceiling); \
         {rate_limited} starts refused by the rate limit; {attempts} workflow start attempts",
        elapsed.as_secs_f64(),
        rate * 100.0
    );
    assert!(
        rate <= 1.0 + 2.0 / elapsed.as_secs_f64(),
        "faster than the service allows?"
    );
}

async fn service_jobs_of(rig: &Rig, ids: &[String]) -> BTreeMap<String, usize> {
    service_jobs_named(&rig.sdk, &rig.functions, ids)
        .await
        .unwrap()
}
