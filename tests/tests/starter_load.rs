//! The starter as its binary wires it (`starter::wiring`), with the real SDK clients against the
//! local stack: DynamoDB, S3 and Step Functions on moto. The starter calls no service: every
//! upload joins the open batch of its service, data store and folder (a conditional
//! `TransactWriteItems` on the jobs table), and the first file of a batch starts the batch's
//! workflow. Each test has its own table, bucket and tracking state machine (a single Pass state:
//! these tests are about joining batches, not about what the workflow does with them).
//!
//! Concurrency here is real: several `handle()` calls run at once on one starter, as Lambda's
//! concurrent instances do, and moto serves DynamoDB one request at a time (scripts/moto_stack.py),
//! which is what makes its conditional writes behave as DynamoDB's do.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use aws_config::SdkConfig;
use healthimport::domain::batch::{BatchFolder, CloseReason};
use healthimport::domain::job::{Job, JobId, JobStatus, Service};
use healthimport::ports::batches::BatchStore;
use healthimport::ports::store::JobStore;
use healthimport_tests::local_stack::{create_bucket, create_jobs_table, sdk_config, unique_name};
use healthimport_tests::provision::LocalFunctions;
use healthimport_tests::request_count::{count_of, RequestCount};
use healthimport_tests::samples::dicom_p10;
use serde_json::{json, Value};
use starter::config::StarterConfig;
use starter::event::StarterEvent;
use starter::handler::StarterError;
use starter::wiring::{self, AwsStarter};

const DYNAMODB: &str = "DynamoDB_20120810.";
const READS: &[&str] = &["GetItem", "Query", "BatchGetItem", "Scan"];
const WRITES: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];
const TRANSACTIONS: &[&str] = &["TransactWriteItems"];
const SFN: &str = "AWSStepFunctions.";

/// Batch timers no test outlasts: only a marker or a per-job limit closes a batch here, never the
/// clock (the functions' env file has 2 s and 10 s, which a loaded 2-core machine can pass
/// between two uploads of one test).
const STILL_CLOCK: &[(&str, &str)] = &[
    ("BATCH_QUIET_SECONDS", "600"),
    ("BATCH_MAX_WAIT_SECONDS", "600"),
];

/// An object uploaded to the rig's bucket, and the S3 event record S3 sends for it.
#[derive(Debug, Clone)]
struct Upload {
    key: String,
    bytes: u64,
    record: Value,
}

impl Upload {
    /// An S3 notification of this upload alone.
    fn event(&self) -> Value {
        s3_event(std::slice::from_ref(&self.record))
    }
}

struct Rig {
    sdk: SdkConfig,
    bucket: String,
    state_machine_arn: String,
    functions: LocalFunctions,
    starter: AwsStarter,
    /// The requests the starter's clients sent (the rig's own reads go through them too).
    requests: RequestCount,
}

impl Rig {
    /// A starter on a table, bucket and tracking state machine of its own, configured as
    /// `scripts/local-functions.env` configures the local functions, with `overrides` on top.
    async fn new(overrides: &[(&str, &str)]) -> Rig {
        let sdk = sdk_config().await;
        let table = create_jobs_table(&sdk, &unique_name("starter-jobs"))
            .await
            .unwrap();
        let bucket = unique_name("starter-ingest");
        create_bucket(&sdk, &bucket).await.unwrap();
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
            "BATCH_QUIET_SECONDS",
            "BATCH_MAX_WAIT_SECONDS",
            "STAGING_PREFIX",
        ] {
            env.insert(name.into(), functions.setting(name).unwrap());
        }
        env.insert("JOBS_TABLE".into(), table);
        env.insert("INGEST_BUCKET".into(), bucket.clone());
        env.insert("STATE_MACHINE_ARN".into(), state_machine_arn.clone());
        for (name, value) in overrides {
            env.insert((*name).into(), (*value).into());
        }
        let config = StarterConfig::from_env(&env).unwrap();
        let requests = RequestCount::default();
        let starter = wiring::starter(&requests.counting(&sdk), config);
        Rig {
            sdk,
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

    /// Uploads `body` under `key` and returns it with the S3 event record S3 would send for it.
    async fn upload(&self, key: &str, body: &[u8]) -> Upload {
        let put = aws_sdk_s3::Client::new(&self.sdk)
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
        let record = json!({
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
        });
        Upload {
            key: key.to_owned(),
            bytes: body.len() as u64,
            record,
        }
    }

    /// Uploads every `(key, body)`, a few at a time.
    async fn upload_all(&self, objects: Vec<(String, Vec<u8>)>) -> Vec<Upload> {
        let mut uploads = Vec::with_capacity(objects.len());
        for chunk in objects.chunks(16) {
            uploads.extend(
                futures_join_all(chunk.iter().map(|(key, body)| self.upload(key, body))).await,
            );
        }
        uploads
    }

    /// Delivers `events` through `workers` concurrent `handle()` calls, each taking the next event
    /// off one queue, as Lambda's concurrent instances take batches off the upload queue. Every
    /// event must be processed whole.
    async fn deliver_concurrently(&self, events: Vec<Value>, workers: usize) {
        let queue = std::sync::Mutex::new(events.into_iter());
        let queue = &queue;
        futures_join_all((0..workers).map(|_| async move {
            loop {
                let next = queue.lock().unwrap().next();
                let Some(event) = next else { break };
                let records = event["Records"].as_array().unwrap().len();
                assert_eq!(
                    self.handle(event).await.unwrap(),
                    json!({"processed": records})
                );
            }
        }))
        .await;
    }

    async fn records(&self, key: &str) -> Vec<Job> {
        self.starter
            .store
            .find_by_source(&self.bucket, key)
            .await
            .unwrap()
    }

    /// The one record of the upload `key`.
    async fn record(&self, key: &str) -> Job {
        let mut records = self.records(key).await;
        assert_eq!(records.len(), 1, "{key}: one record, got {records:?}");
        records.remove(0)
    }

    async fn job(&self, id: &JobId) -> Option<Job> {
        self.starter.store.get(id).await.unwrap()
    }

    async fn members(&self, batch_id: &JobId) -> Vec<Job> {
        self.starter.store.members(batch_id).await.unwrap()
    }

    /// `folder` (a key prefix ending in '/') of this rig's bucket, for `service`'s data store.
    fn folder(&self, service: Service, folder: &str) -> BatchFolder {
        let datastore = match service {
            Service::HealthLake => "FHIR_DATASTORE_ID",
            Service::HealthImaging => "IMAGING_DATASTORE_ID",
        };
        BatchFolder {
            service,
            datastore_id: self.functions.setting(datastore).unwrap(),
            bucket: self.bucket.clone(),
            folder: folder.to_owned(),
        }
    }

    /// The batches of `folder`, generation 0 on, up to the first generation with no batch; checks
    /// that the folder's cursor names the last of them.
    async fn batches(&self, folder: &BatchFolder) -> Vec<Job> {
        let mut batches = Vec::new();
        while let Some(batch) = self.job(&folder.batch_id(batches.len() as u64)).await {
            let b = batch.batch().expect("a batch record");
            assert_eq!(b.generation, batches.len() as u64, "{batch:?}");
            assert_eq!(b.folder, folder.folder);
            batches.push(batch);
        }
        if !batches.is_empty() {
            assert_eq!(
                self.starter.store.latest_generation(folder).await.unwrap(),
                batches.len() as u64 - 1,
                "the folder's cursor names its latest batch"
            );
        }
        batches
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

    /// Every upload has exactly one record, `BATCHED` in one of `folder`'s batches; each batch's
    /// counters are its members' (by the `byBatch` index), its members are exactly the uploads
    /// that name it, and each batch has one execution, named after it. Returns the batches.
    async fn assert_each_upload_in_exactly_one_batch(
        &self,
        folder: &BatchFolder,
        uploads: &[Upload],
    ) -> Vec<Job> {
        let mut named: BTreeMap<JobId, BTreeSet<JobId>> = BTreeMap::new();
        let mut sizes: HashMap<JobId, u64> = HashMap::new();
        for upload in uploads {
            let record = self.record(&upload.key).await;
            assert_eq!(record.status, JobStatus::Batched, "{record:?}");
            let batch_id = record
                .batch_id()
                .expect("an upload names its batch")
                .clone();
            assert!(
                named
                    .entry(batch_id)
                    .or_default()
                    .insert(record.job_id.clone()),
                "{}: recorded twice",
                upload.key
            );
            sizes.insert(record.job_id, upload.bytes);
        }
        let batches = self.batches(folder).await;
        let ids: BTreeSet<JobId> = batches.iter().map(|b| b.job_id.clone()).collect();
        assert_eq!(
            named.keys().cloned().collect::<BTreeSet<_>>(),
            ids,
            "the uploads name exactly the folder's batches"
        );
        let mut in_some_batch = BTreeSet::new();
        for batch in &batches {
            let fill = batch.batch().unwrap().fill;
            let members = self.members(&batch.job_id).await;
            let member_ids: BTreeSet<JobId> = members.iter().map(|m| m.job_id.clone()).collect();
            assert_eq!(
                members.len(),
                member_ids.len(),
                "{}: no member twice",
                batch.job_id
            );
            assert_eq!(
                member_ids, named[&batch.job_id],
                "{}: its members are the uploads that name it",
                batch.job_id
            );
            assert_eq!(
                fill.files,
                members.len() as u64,
                "{}: fill.files",
                batch.job_id
            );
            assert_eq!(
                fill.bytes,
                member_ids.iter().map(|id| sizes[id]).sum::<u64>(),
                "{}: fill.bytes",
                batch.job_id
            );
            for id in member_ids {
                assert!(in_some_batch.insert(id.clone()), "{id} in two batches");
            }
        }
        assert_eq!(in_some_batch.len(), uploads.len());
        assert_eq!(
            self.executions().await,
            ids.iter().map(|id| (id.to_string(), 1)).collect(),
            "one execution per batch, named after it"
        );
        batches
    }
}

fn ndjson(i: usize) -> Vec<u8> {
    // Lengths differ from upload to upload, so that a byte sum off by one file shows.
    format!(
        r#"{{"resourceType":"Patient","id":"load-{i}","name":[{{"text":"{}"}}]}}"#,
        "x".repeat(i % 17)
    )
    .into_bytes()
}

fn s3_event(records: &[Value]) -> Value {
    json!({"Records": records})
}

/// Every upload's record once, `twice` of them a second time, in a shuffled order, in events of up
/// to `per_event` records.
fn shuffled_deliveries(
    uploads: &[Upload],
    twice: usize,
    per_event: usize,
    rng: &mut fastrand::Rng,
) -> Vec<Value> {
    let mut records: Vec<Value> = uploads.iter().map(|u| u.record.clone()).collect();
    let mut again = uploads.to_vec();
    rng.shuffle(&mut again);
    records.extend(again.into_iter().take(twice).map(|u| u.record));
    rng.shuffle(&mut records);
    records.chunks(per_event).map(s3_event).collect()
}

/// DynamoDB and Step Functions requests since `before`, per upload, printed; returns the writes.
fn requests_per_upload(
    rig: &Rig,
    before: &BTreeMap<String, u64>,
    what: &str,
    uploads: usize,
) -> u64 {
    let now = rig.requests.snapshot();
    let since = |prefix: &str, operations: &[&str]| {
        count_of(&now, prefix, operations) - count_of(before, prefix, operations)
    };
    let (reads, writes, transactions, all, executions) = (
        since(DYNAMODB, READS),
        since(DYNAMODB, WRITES),
        since(DYNAMODB, TRANSACTIONS),
        since(DYNAMODB, &[]),
        since(SFN, &["StartExecution"]),
    );
    let per = |n: u64| n as f64 / uploads as f64;
    println!(
        "starter, {what}: per upload {:.2} DynamoDB requests = {:.2} reads + {:.2} writes \
         ({:.2} TransactWriteItems); {:.2} StartExecution calls. Totals: {all} DynamoDB \
         ({reads} reads, {writes} writes, {transactions} transactions), {executions} StartExecution",
        per(all),
        per(reads),
        per(writes),
        per(transactions),
        per(executions),
    );
    writes
}

#[tokio::test]
async fn an_event_delivered_three_times_concurrently_is_one_upload_in_one_batch_with_one_execution()
{
    let rig = Rig::new(STILL_CLOCK).await;
    let key = "fhir/same event thrice.ndjson";
    let upload = rig.upload(key, &ndjson(0)).await;
    let event = upload.event();
    let (a, b, c) = tokio::join!(
        rig.handle(event.clone()),
        rig.handle(event.clone()),
        rig.handle(event),
    );
    for outcome in [a, b, c] {
        assert_eq!(outcome.unwrap(), json!({"processed": 1}));
    }

    let folder = rig.folder(Service::HealthLake, "fhir/");
    let record = rig.record(key).await;
    assert_eq!(record.status, JobStatus::Batched);
    assert_eq!(record.batch_id(), Some(&folder.batch_id(0)));
    let batches = rig.batches(&folder).await;
    assert_eq!(batches.len(), 1, "{batches:?}");
    let batch = &batches[0];
    assert_eq!(batch.status, JobStatus::Open);
    let fill = batch.batch().unwrap().fill;
    assert_eq!((fill.files, fill.bytes), (1, upload.bytes));
    let members = rig.members(&batch.job_id).await;
    assert_eq!(
        members.iter().map(|m| &m.job_id).collect::<Vec<_>>(),
        vec![&record.job_id]
    );
    assert_eq!(
        rig.executions().await,
        BTreeMap::from([(batch.job_id.to_string(), 1)])
    );
}

#[tokio::test]
async fn two_hundred_uploads_into_one_folder_concurrently_join_one_batch_exactly_once() {
    const UPLOADS: usize = 200;
    let rig = Rig::new(STILL_CLOCK).await;
    let uploads = rig
        .upload_all(
            (0..UPLOADS)
                .map(|i| (format!("fhir/load/{i:03} upload.ndjson"), ndjson(i)))
                .collect(),
        )
        .await;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    // 20 of the uploads' records delivered twice (SQS delivers at least once), five records an
    // event, eight invocations at a time.
    let events = shuffled_deliveries(&uploads, 20, 5, &mut rng);
    println!("seed {seed}: {} events", events.len());

    let before = rig.requests.snapshot();
    let started = Instant::now();
    rig.deliver_concurrently(events, 8).await;
    let elapsed = started.elapsed();
    let writes = requests_per_upload(
        &rig,
        &before,
        "200 uploads into one quiet folder, 20 redelivered, 8 concurrent invocations",
        UPLOADS,
    );
    println!(
        "(handled in {:.1} s on the shared local stack: not a measure of anything)",
        elapsed.as_secs_f64()
    );

    let folder = rig.folder(Service::HealthLake, "fhir/load/");
    let batches = rig
        .assert_each_upload_in_exactly_one_batch(&folder, &uploads)
        .await;
    assert_eq!(batches.len(), 1, "one batch: nothing closed it");
    let batch = &batches[0];
    assert_eq!(batch.status, JobStatus::Open);
    let fill = batch.batch().unwrap().fill;
    assert_eq!(fill.files, UPLOADS as u64);
    assert_eq!(fill.bytes, uploads.iter().map(|u| u.bytes).sum::<u64>());
    // On a quiet folder an upload costs one join transaction (a redelivery's is refused); only
    // the few that race to open the batch take more (a refused join, a refused open, a join).
    assert!(
        writes <= 2 * UPLOADS as u64,
        "{writes} DynamoDB writes for {UPLOADS} uploads (seed {seed})"
    );
}

/// `count` uploads into one folder of `service`, whose jobs take at most `limit` files, handled
/// concurrently: the folder fills `ceil(count / limit)` batches, each full one closed at the limit.
async fn fill_batches_at_the_file_limit(service: Service, count: usize, limit: u64) {
    let (variable, folder_path) = match service {
        Service::HealthLake => ("HEALTHLAKE_MAX_FILES_PER_JOB", "fhir/limited/"),
        Service::HealthImaging => ("IMAGING_MAX_FILES_PER_JOB", "dicom/study-limited/"),
    };
    let limit_text = limit.to_string();
    let mut overrides: Vec<(&str, &str)> = STILL_CLOCK.to_vec();
    overrides.push((variable, limit_text.as_str()));
    let rig = Rig::new(&overrides).await;
    let objects = (0..count)
        .map(|i| match service {
            Service::HealthLake => (format!("{folder_path}{i:03}.ndjson"), ndjson(i)),
            Service::HealthImaging => (
                format!("{folder_path}IM{i:04}"),
                dicom_p10("2.25.777", i as u32 + 1),
            ),
        })
        .collect();
    let uploads = rig.upload_all(objects).await;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let events = shuffled_deliveries(&uploads, count / 10, 5, &mut rng);
    println!("seed {seed}: {} events", events.len());
    let before = rig.requests.snapshot();
    rig.deliver_concurrently(events, 8).await;
    requests_per_upload(
        &rig,
        &before,
        &format!(
            "{count} {} uploads into one folder at {limit} files per job",
            service.as_str()
        ),
        count,
    );

    let folder = rig.folder(service, folder_path);
    let batches = rig
        .assert_each_upload_in_exactly_one_batch(&folder, &uploads)
        .await;
    let expected = count.div_ceil(limit as usize);
    let fills: Vec<_> = batches
        .iter()
        .map(|b| (b.batch().unwrap().fill.files, b.status))
        .collect();
    assert_eq!(batches.len(), expected, "{fills:?} (seed {seed})");
    let (last, full) = batches.split_last().unwrap();
    for batch in full {
        let b = batch.batch().unwrap();
        assert_eq!(batch.status, JobStatus::Pending, "{batch:?}");
        assert_eq!(
            b.closed.map(|c| c.reason),
            Some(CloseReason::FileLimit),
            "{batch:?}"
        );
        assert_eq!(b.fill.files, limit, "a batch closes full: {fills:?}");
    }
    // Nothing came after the last batch's files to close it.
    assert_eq!(last.status, JobStatus::Open, "{last:?}");
    assert!(last.batch().unwrap().closed.is_none());
    assert_eq!(
        last.batch().unwrap().fill.files,
        count as u64 - limit * (expected as u64 - 1)
    );
}

#[tokio::test]
async fn a_dicom_folder_of_180_files_at_50_files_per_job_fills_four_batches_exactly() {
    fill_batches_at_the_file_limit(Service::HealthImaging, 180, 50).await;
}

#[tokio::test]
async fn a_fhir_folder_of_45_files_at_10_files_per_job_fills_five_batches_exactly() {
    fill_batches_at_the_file_limit(Service::HealthLake, 45, 10).await;
}

#[tokio::test]
async fn a_marker_closes_its_folders_batch_the_next_file_opens_the_next_and_a_late_marker_is_harmless(
) {
    let rig = Rig::new(STILL_CLOCK).await;
    let folder = rig.folder(Service::HealthImaging, "dicom/study-marked/");
    let first = rig
        .upload("dicom/study-marked/IM1", &dicom_p10("2.25.31", 1))
        .await;
    let marker = rig.upload("dicom/study-marked/_READY", b"done").await;
    let late_marker = rig.upload("dicom/study-marked/_READY", b"done again").await;
    let next = rig
        .upload("dicom/study-marked/IM2", &dicom_p10("2.25.31", 2))
        .await;

    rig.handle(first.event()).await.unwrap();
    let gen0 = folder.batch_id(0);
    assert_eq!(rig.job(&gen0).await.unwrap().status, JobStatus::Open);

    rig.handle(marker.event()).await.unwrap();
    let closed = rig.job(&gen0).await.unwrap();
    assert_eq!(closed.status, JobStatus::Pending, "{closed:?}");
    let closing = closed.batch().unwrap().closed.expect("closed");
    assert_eq!(closing.reason, CloseReason::Marker);
    let marker_record = rig.record(&marker.key).await;
    assert_eq!(marker_record.status, JobStatus::Skipped);
    assert_eq!(marker_record.service(), Some(Service::HealthImaging));
    let reason = marker_record.skip_reason().unwrap();
    assert!(reason.contains(gen0.as_str()), "{reason}");

    // A second marker finds no open batch: recorded as skipped, and the closed batch is as it was.
    rig.handle(late_marker.event()).await.unwrap();
    let records = rig.records(&late_marker.key).await;
    assert_eq!(records.len(), 2, "each marker upload has its record");
    let late_record = records
        .iter()
        .find(|r| r.job_id != marker_record.job_id)
        .unwrap();
    assert_eq!(late_record.status, JobStatus::Skipped);
    let reason = late_record.skip_reason().unwrap();
    assert!(reason.contains("no open batch"), "{reason}");
    assert_eq!(rig.job(&gen0).await.unwrap(), closed);
    assert!(rig.job(&folder.batch_id(1)).await.is_none());

    // The next file opens the folder's next batch.
    rig.handle(next.event()).await.unwrap();
    let record = rig.record(&next.key).await;
    assert_eq!(record.batch_id(), Some(&folder.batch_id(1)));
    let batches = rig.batches(&folder).await;
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0], closed, "the closed batch took no file");
    let opened = batches[1].batch().unwrap();
    assert_eq!(batches[1].status, JobStatus::Open);
    assert_eq!(opened.generation, 1);
    assert_eq!((opened.fill.files, opened.fill.bytes), (1, next.bytes));
    for (batch, key) in batches.iter().zip([&first.key, &next.key]) {
        let subjects: Vec<String> = rig
            .members(&batch.job_id)
            .await
            .iter()
            .map(Job::subject)
            .collect();
        assert_eq!(subjects, vec![key.clone()], "{}", batch.job_id);
    }
    assert_eq!(
        rig.executions().await,
        BTreeMap::from([(gen0.to_string(), 1), (folder.batch_id(1).to_string(), 1)])
    );
}

#[tokio::test]
async fn a_malformed_record_fails_alone() {
    let rig = Rig::new(STILL_CLOCK).await;
    let good = rig
        .upload_all(
            ["a", "b", "c", "d"]
                .into_iter()
                .enumerate()
                .map(|(i, name)| (format!("fhir/mixed/{name}.ndjson"), ndjson(i)))
                .collect(),
        )
        .await;

    // Wrapped in SQS messages: the malformed message is reported alone.
    let message = |id: &str, body: String| {
        json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {},
               "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:uploads", "awsRegion": "us-east-1"})
    };
    let event = json!({"Records": [
        message("m1", good[0].event().to_string()),
        message("m2", r#"{"Records": [{"s3": {"bucket": "#.to_owned()),
        message("m3", good[1].event().to_string()),
    ]});
    assert_eq!(
        rig.handle(event).await.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "m2"}]})
    );

    // S3 notifications directly: the invocation fails (so Lambda retries it) after the others
    // were recorded.
    let mut bad_key = good[2].record.clone();
    bad_key["s3"]["object"]["key"] = json!("fhir/mixed/bad%zz.ndjson");
    let event = s3_event(&[
        good[2].record.clone(),
        bad_key,
        json!({"not": "a record"}),
        good[3].record.clone(),
    ]);
    let error = rig.handle(event).await.unwrap_err();
    assert!(
        matches!(
            error,
            StarterError::RecordsFailed {
                failed: 2,
                total: 4
            }
        ),
        "{error}"
    );

    let folder = rig.folder(Service::HealthLake, "fhir/mixed/");
    let batches = rig
        .assert_each_upload_in_exactly_one_batch(&folder, &good)
        .await;
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].batch().unwrap().fill.files, 4);
    assert!(rig.records("fhir/mixed/bad%zz.ndjson").await.is_empty());
}

/// A marker event delivered again (SQS delivers at least once; a direct S3 invocation is retried
/// whole when any of its records failed) after the folder's next batch opened: the redelivery
/// finds its record, so it should close nothing.
#[tokio::test]
async fn a_redelivered_marker_does_not_close_the_folders_next_batch() {
    let rig = Rig::new(STILL_CLOCK).await;
    let folder = rig.folder(Service::HealthImaging, "dicom/study-redelivered/");
    let first = rig
        .upload("dicom/study-redelivered/IM1", &dicom_p10("2.25.32", 1))
        .await;
    let marker = rig.upload("dicom/study-redelivered/_READY", b"done").await;
    let next = rig
        .upload("dicom/study-redelivered/IM2", &dicom_p10("2.25.32", 2))
        .await;
    for upload in [&first, &marker, &next] {
        rig.handle(upload.event()).await.unwrap();
    }
    let gen1 = folder.batch_id(1);
    assert_eq!(rig.job(&gen1).await.unwrap().status, JobStatus::Open);

    rig.handle(marker.event()).await.unwrap();
    assert_eq!(rig.records(&marker.key).await.len(), 1);
    let after = rig.job(&gen1).await.unwrap();
    assert_eq!(
        (
            after.status,
            after.batch().unwrap().closed.map(|c| c.reason)
        ),
        (JobStatus::Open, None),
        "the redelivered marker closed {gen1}"
    );
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    // Poll them together: a JoinSet would need 'static futures.
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
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
    done.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
