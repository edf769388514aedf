//! The whole pipeline on the local stack, unattended, as `make demo` runs it: uploads to the
//! versioned ingest bucket on moto → S3 notification → upload queue → moto's event source → the
//! real `starter` binary → job records in DynamoDB, jobs at the service double, one Step Functions
//! execution per job → moto runs the tracking workflow against the real `poller` binary → outcome
//! from the output manifest, `Import Job Finished` on EventBridge.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use healthimport::job::{ImportJob, JobStatus};
use healthimport::store::{DynamoJobStore, JobStore};
use healthimport_tests::ingest::{self, IngestDefinition};
use healthimport_tests::local_stack::{sdk_config, template_path, unique_name};
use healthimport_tests::provision::{eventually, FinishedEvents, LocalFunctions};
use healthimport_tests::samples::sample_set;
use serde_json::{json, Value};

const INGEST_BUCKET: &str = "healthimport-local-ingest";
const UPLOAD_QUEUE: &str = "healthimport-local-uploads";

#[tokio::test]
async fn every_upload_becomes_one_finished_job_recorded_and_announced_once() {
    let sdk = sdk_config().await;
    let functions = LocalFunctions::from_env();
    functions.provision(&sdk).await.unwrap();
    let definition = IngestDefinition::from_template(&template_path()).unwrap();
    let ingest = ingest::wire(&sdk, &definition, INGEST_BUCKET, UPLOAD_QUEUE, "starter")
        .await
        .unwrap();
    let finished = FinishedEvents::subscribe(&sdk, &functions, &unique_name("finished"))
        .await
        .unwrap();

    let tag = unique_name("e2e");
    let (objects, expected) = sample_set("fhir/", "dicom/", "_READY", &tag);
    let s3 = aws_sdk_s3::Client::new(&sdk);
    for object in &objects {
        s3.put_object()
            .bucket(&ingest.bucket)
            .key(&object.key)
            .body(object.body.clone().into())
            .send()
            .await
            .unwrap();
    }

    // The same notification again, as SQS may redeliver it: straight to the starter this time.
    let redelivered = &expected[0].trigger_key;
    let head = s3
        .head_object()
        .bucket(&ingest.bucket)
        .key(redelivered)
        .send()
        .await
        .unwrap();
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": ingest.bucket, "arn": format!("arn:aws:s3:::{}", ingest.bucket)},
            "object": {
                "key": redelivered, "size": head.content_length().unwrap_or_default(),
                "eTag": head.e_tag().unwrap_or_default().trim_matches('"'),
                "versionId": head.version_id().unwrap_or_default(),
                "sequencer": "0"
            }
        }
    }]});
    let response = aws_sdk_lambda::Client::new(&sdk)
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

    let store = DynamoJobStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &functions.jobs_table,
        time::Duration::days(1),
    );
    let jobs: BTreeMap<String, Vec<ImportJob>> = eventually(Duration::from_secs(240), || async {
        let mut jobs = BTreeMap::new();
        for job in &expected {
            let records = store
                .find_by_source(&ingest.bucket, &job.trigger_key)
                .await?;
            if records.is_empty() || records.iter().any(|r| !r.status.is_terminal()) {
                return Ok(None);
            }
            jobs.insert(job.trigger_key.clone(), records);
        }
        Ok(Some(jobs))
    })
    .await
    .unwrap();

    // One execution per job, succeeded. Once it has ended, the outcome is recorded: read again.
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    for records in jobs.values() {
        let arn = functions.execution_arn(records[0].job_id.as_str());
        let status =
            eventually(Duration::from_secs(60), || async {
                match sfn.describe_execution().execution_arn(&arn).send().await {
                    Ok(execution) => Ok((execution.status().as_str() != "RUNNING")
                        .then(|| execution.status().clone())),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_execution_does_not_exist()) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await
            .unwrap();
        assert_eq!(status.as_str(), "SUCCEEDED", "{arn}");
    }
    let mut jobs = jobs;
    for (key, records) in jobs.iter_mut() {
        *records = store.find_by_source(&ingest.bucket, key).await.unwrap();
    }

    for job in &expected {
        let records = &jobs[&job.trigger_key];
        assert_eq!(
            records.len(),
            1,
            "{}: one record per upload: {:?}",
            job.trigger_key,
            records.iter().map(|r| &r.source).collect::<Vec<_>>()
        );
        let record = &records[0];
        assert_eq!(record.service.map(|s| s.as_str()), Some(job.service));
        let want = match (job.service, job.has_failures) {
            ("HEALTHLAKE", true) => JobStatus::CompletedWithErrors,
            _ => JobStatus::Completed,
        };
        assert_eq!(record.status, want, "{}: {record:?}", job.trigger_key);
        let counts = record.counts.expect("counts from the output manifest");
        assert_eq!(
            record.has_failures(),
            job.has_failures,
            "{}: {record:?}",
            job.trigger_key
        );
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
        assert!(
            record.history.contains_key(&JobStatus::Submitted)
                || record.history.contains_key(&JobStatus::InProgress)
        );
    }

    // One job at the service per upload: jobs are named after the job id.
    let mut service_jobs: BTreeMap<String, usize> = BTreeMap::new();
    let healthlake = aws_sdk_healthlake::Client::new(&sdk);
    let mut pages = healthlake
        .list_fhir_import_jobs()
        .datastore_id(functions.setting("FHIR_DATASTORE_ID").unwrap())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for job in page.unwrap().import_job_properties_list() {
            *service_jobs
                .entry(job.job_name().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    let imaging = aws_sdk_medicalimaging::Client::new(&sdk);
    let mut pages = imaging
        .list_dicom_import_jobs()
        .datastore_id(functions.setting("IMAGING_DATASTORE_ID").unwrap())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for job in page.unwrap().job_summaries() {
            *service_jobs.entry(job.job_name().to_owned()).or_default() += 1;
        }
    }
    for records in jobs.values() {
        let id = records[0].job_id.as_str();
        assert_eq!(service_jobs.get(id), Some(&1), "service jobs named {id}");
    }

    // Every execution has ended, so every event has been put; drain until the queue is empty.
    let collected = std::cell::RefCell::new(Vec::<Value>::new());
    eventually(Duration::from_secs(30), || async {
        let drained = finished.drain(&sdk).await?;
        let mut announced = collected.borrow_mut();
        announced.extend(drained);
        let all = jobs.values().all(|records| {
            announced
                .iter()
                .any(|e| e["detail"]["jobId"] == records[0].job_id.as_str())
        });
        Ok(all.then_some(()))
    })
    .await
    .unwrap();
    let mut announced = collected.into_inner();
    announced.extend(finished.drain(&sdk).await.unwrap());
    for records in jobs.values() {
        let record = &records[0];
        let events: Vec<_> = announced
            .iter()
            .filter(|e| e["detail"]["jobId"] == record.job_id.as_str())
            .collect();
        assert_eq!(events.len(), 1, "Finished events of {}", record.job_id);
        let detail = &events[0]["detail"];
        assert_eq!(detail["status"], record.status.as_str());
        assert_eq!(detail["hasFailures"], record.has_failures());
        assert_eq!(
            detail["counts"]["imported"],
            record.counts.map(|c| c.imported).unwrap_or_default()
        );
    }
}
