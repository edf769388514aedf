//! The whole pipeline on the local stack, unattended, as `make demo` runs it: uploads to the
//! versioned ingest bucket on moto → S3 notification → upload queue → moto's event source → the
//! real `starter` binary → upload records in their folder's batch in DynamoDB, one Step Functions
//! execution per batch → moto runs the batch workflow against the real `poller` binary: close,
//! staged copies, one job at the service double, outcome from the output manifest onto each
//! upload, `Import Job Finished` on EventBridge.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use healthimport::domain::job::{JobId, JobStatus};
use healthimport::ports::store::JobStore;
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::provision::service_jobs_named;
use healthimport_tests::samples::sample_set;
use serde_json::json;

#[tokio::test]
async fn every_upload_is_imported_once_through_its_batch_with_its_own_result() {
    let mut pipeline = LocalPipeline::start().await.unwrap();
    let tag = unique_name("e2e");
    let (objects, expected) = sample_set("fhir/", "dicom/", "_READY", &tag);
    for object in &objects {
        pipeline.upload(&object.key, &object.body).await.unwrap();
    }

    // The same notification again, as SQS may redeliver it: straight to the starter this time.
    let redelivered = &expected[0].key;
    let bucket = pipeline.ingest.bucket.clone();
    let head = aws_sdk_s3::Client::new(&pipeline.sdk)
        .head_object()
        .bucket(&bucket)
        .key(redelivered)
        .send()
        .await
        .unwrap();
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {
                "key": redelivered, "size": head.content_length().unwrap_or_default(),
                "eTag": head.e_tag().unwrap_or_default().trim_matches('"'),
                "versionId": head.version_id().unwrap_or_default(),
                "sequencer": "0"
            }
        }
    }]});
    let response = aws_sdk_lambda::Client::new(&pipeline.sdk)
        .invoke()
        .function_name("starter")
        .payload(Blob::new(serde_json::to_vec(&event).unwrap()))
        .send()
        .await
        .unwrap();
    assert!(
        response.function_error().is_none(),
        "the redelivered event failed: {:?}",
        response.payload()
    );

    let keys: Vec<String> = expected.iter().map(|u| u.key.clone()).collect();
    let records = pipeline
        .wait_until_finished(&keys, Duration::from_secs(240))
        .await
        .unwrap();

    // Every upload has one record, with its own result; the imported ones point at their batch.
    let mut batch_of_label: BTreeMap<&str, JobId> = BTreeMap::new();
    for upload in &expected {
        let records = &records[&upload.key];
        assert_eq!(records.len(), 1, "{}: one record per upload", upload.key);
        let record = &records[0];
        assert_eq!(record.service().map(|s| s.as_str()), Some(upload.service));
        assert_eq!(record.status, upload.status, "{}: {record:?}", upload.key);
        if !upload.is_imported() {
            continue;
        }
        let batch_id = record
            .batch_id()
            .expect("an imported upload names its batch");
        let same = batch_of_label
            .entry(upload.batch)
            .or_insert_with(|| batch_id.clone());
        assert_eq!(
            same, batch_id,
            "{}: uploads of one folder share a batch",
            upload.key
        );
        if upload.status == JobStatus::Failed {
            assert!(
                record
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("InvalidDicomFile")),
                "the service's message for this file: {record:?}"
            );
        }
    }

    // Each batch: one job, its counts from the manifest, one execution that succeeded, one event
    // naming its uploads.
    let batch_ids: Vec<JobId> = batch_of_label.values().cloned().collect();
    for (label, batch_id) in &batch_of_label {
        let batch = pipeline.store.get(batch_id).await.unwrap().unwrap();
        let members: Vec<_> = expected
            .iter()
            .filter(|u| u.batch == *label && u.is_imported())
            .collect();
        let held = batch.batch().unwrap().fill.files;
        // The lone file shares the rolling batch of the prefix with any other lone upload.
        if *label == "lone" {
            assert!(held >= 1);
        } else {
            assert_eq!(held, members.len() as u64, "{label}: {batch:?}");
        }
        assert!(batch.status.is_terminal(), "{batch:?}");
        assert_eq!(batch.outcome_verified, Some(true), "{batch:?}");
        assert!(batch.output_location.is_some(), "{batch:?}");
        assert_eq!(
            pipeline
                .execution_status(batch_id)
                .await
                .unwrap()
                .as_deref(),
            Some("SUCCEEDED")
        );
        if *label == "study" {
            assert_eq!(
                batch.batch().unwrap().closed.map(|c| c.reason.as_str()),
                Some("MARKER")
            );
        }
    }
    let names: Vec<String> = batch_ids.iter().map(|id| id.as_str().to_owned()).collect();
    let at_service = service_jobs_named(&pipeline.sdk, &pipeline.functions, &names)
        .await
        .unwrap();
    assert!(
        at_service.values().all(|n| *n == 1),
        "one job per batch: {at_service:?}"
    );

    let events = pipeline
        .wait_for_events(&batch_ids, Duration::from_secs(30))
        .await
        .unwrap();
    for (label, batch_id) in &batch_of_label {
        let events = &events[batch_id];
        assert_eq!(events.len(), 1, "Finished events of the {label} batch");
        let detail = &events[0]["detail"];
        let named: Vec<&str> = detail["batch"]["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k.as_str())
            .collect();
        for upload in expected
            .iter()
            .filter(|u| u.batch == *label && u.is_imported())
        {
            assert!(named.contains(&upload.key.as_str()), "{label}: {named:?}");
        }
        assert_eq!(
            detail["batch"]["uploadCount"].as_u64(),
            Some(named.len() as u64)
        );
    }

    // The staged copies are gone once the outcomes are recorded.
    let staged = aws_sdk_s3::Client::new(&pipeline.sdk)
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("staging/{}/", batch_of_label["study"]))
        .send()
        .await
        .unwrap();
    assert_eq!(staged.key_count(), Some(0), "{staged:?}");
}
