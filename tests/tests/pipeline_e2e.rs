//! The whole pipeline on the local stack, unattended, as `make demo` runs it: uploads to the
//! versioned ingest bucket on moto → S3 notification → upload queue → moto's event source → the
//! real `starter` binary → job records in DynamoDB, jobs at the service double, one Step Functions
//! execution per job → moto runs the tracking workflow against the real `poller` binary → outcome
//! from the output manifest, `Import Job Finished` on EventBridge.

use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use healthimport::domain::job::{JobId, JobStatus};
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::provision::service_jobs_named;
use healthimport_tests::samples::sample_set;
use serde_json::json;

#[tokio::test]
async fn every_upload_becomes_one_finished_job_recorded_and_announced_once() {
    let mut pipeline = LocalPipeline::start().await.unwrap();
    let tag = unique_name("e2e");
    let (objects, expected) = sample_set("fhir/", "dicom/", "_READY", &tag);
    for object in &objects {
        pipeline.upload(&object.key, &object.body).await.unwrap();
    }

    // The same notification again, as SQS may redeliver it: straight to the starter this time.
    let redelivered = &expected[0].trigger_key;
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

    let keys: Vec<String> = expected.iter().map(|j| j.trigger_key.clone()).collect();
    let jobs = pipeline
        .wait_until_finished(&keys, Duration::from_secs(240))
        .await
        .unwrap();

    for job in &expected {
        let records = &jobs[&job.trigger_key];
        assert_eq!(
            records.len(),
            1,
            "{}: one record per upload",
            job.trigger_key
        );
        let record = &records[0];
        assert_eq!(record.service().map(|s| s.as_str()), Some(job.service));
        let want = match (job.service, job.has_failures) {
            ("HEALTHLAKE", true) => JobStatus::CompletedWithErrors,
            _ => JobStatus::Completed,
        };
        assert_eq!(record.status, want, "{}: {record:?}", job.trigger_key);
        let counts = record.counts.expect("counts from the output manifest");
        assert_eq!(record.has_failures(), job.has_failures, "{record:?}");
        // HealthLake counts files (a file with a bad line still counts as imported) and lists the
        // failed resources; HealthImaging counts and lists failed files.
        assert_eq!(
            !record.failed_files.is_empty(),
            job.has_failures,
            "{record:?}"
        );
        if !job.has_failures {
            assert_eq!(counts.failed, 0, "{record:?}");
        }
        assert!(counts.imported >= 1, "{record:?}");
        assert!(record.output_location.is_some(), "{record:?}");
        assert!(record.history.contains_key(&JobStatus::Pending));
        assert_eq!(
            pipeline
                .execution_status(&record.job_id)
                .await
                .unwrap()
                .as_deref(),
            Some("SUCCEEDED")
        );
    }

    // One job at the service per upload: jobs are named after the job id.
    let ids: Vec<JobId> = jobs.values().map(|r| r[0].job_id.clone()).collect();
    let names: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
    let at_service = service_jobs_named(&pipeline.sdk, &pipeline.functions, &names)
        .await
        .unwrap();
    assert!(at_service.values().all(|n| *n == 1), "{at_service:?}");

    // Every execution has ended, so every event has been put: exactly one per job.
    let events = pipeline
        .wait_for_events(&ids, Duration::from_secs(30))
        .await
        .unwrap();
    for records in jobs.values() {
        let record = &records[0];
        let events = &events[&record.job_id];
        assert_eq!(events.len(), 1, "Finished events of {:?}", record.job_id);
        let detail = &events[0]["detail"];
        assert_eq!(detail["status"], record.status.as_str());
        assert_eq!(detail["hasFailures"], record.has_failures());
        assert_eq!(
            detail["counts"]["imported"],
            record.counts.map(|c| c.imported).unwrap_or_default()
        );
    }
}
