//! Uploads at volume through the real front door (S3 → SQS → starter → batch workflow → poller),
//! against the stack's service double at AWS's documented limits (HealthLake's one-job lane and
//! finite queue, HealthImaging's 1 start/s and running-jobs quota) with its times scaled down:
//! a few hundred FHIR files dropped at once, a DICOM study of a few hundred files synced without a
//! marker, and dozens of lone DICOM files. Every upload must be imported exactly once with its own
//! result, none may end START_FAILED, and the uploads must coalesce into a handful of jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use healthimport::domain::job::{Job, JobId, JobStatus, Service};
use healthimport::ports::batches::BatchStore;
use healthimport::ports::store::JobStore;
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::provision::service_jobs_named;
use healthimport_tests::samples::dicom_p10;
use serde_json::json;

const FHIR_FILES: usize = 300;
const STUDY_FILES: usize = 300;
const LONE_FILES: usize = 40;
/// Uploads in flight at once: a bulk drop, as `aws s3 cp --recursive` or a sync does it.
const UPLOADERS: usize = 32;

#[tokio::test]
async fn a_bulk_drop_a_synced_study_and_lone_files_import_once_each_in_a_handful_of_jobs() {
    let pipeline = LocalPipeline::start().await.unwrap();
    let tag = unique_name("volume");
    let study_uid = "2.25.4242";
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..FHIR_FILES {
        let line = json!({"resourceType": "Patient", "id": format!("{tag}-p{i}")}).to_string();
        objects.push((format!("fhir/{tag}/part-{i:05}.ndjson"), line.into_bytes()));
    }
    for i in 0..STUDY_FILES {
        objects.push((
            format!("dicom/{tag}-study/IM{i:05}"),
            dicom_p10(study_uid, i as u32 + 1),
        ));
    }
    for i in 0..LONE_FILES {
        let uid = format!("2.25.{}", 9000 + i);
        objects.push((format!("dicom/{tag}-lone-{i:03}.dcm"), dicom_p10(&uid, 1)));
    }
    // Interleaved, as three uploaders working at once would send them.
    objects.sort_by_key(|(key, _)| key.rsplit('/').next().map(str::to_owned));
    stream::iter(&objects)
        .map(|(key, body)| pipeline.upload(key, body))
        .buffer_unordered(UPLOADERS)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();

    let keys: Vec<String> = objects.iter().map(|(key, _)| key.clone()).collect();
    let records = pipeline
        .wait_until_finished(&keys, Duration::from_secs(600))
        .await
        .unwrap();

    // Every upload: one record, imported, in one batch.
    let mut batches: BTreeMap<JobId, Vec<&str>> = BTreeMap::new();
    for key in &keys {
        let records = &records[key];
        assert_eq!(records.len(), 1, "{key}: one record per upload");
        let record = &records[0];
        assert_eq!(record.status, JobStatus::Completed, "{key}: {record:?}");
        let batch = record.batch_id().expect("in a batch").clone();
        batches.entry(batch).or_default().push(key);
    }

    // Every batch: its members are exactly the uploads that name it (the lone files' rolling batch
    // may hold other tests' lone files too), its job ran once, it ended checked, no START_FAILED.
    let mut jobs_by_service: BTreeMap<&str, usize> = BTreeMap::new();
    let mut batch_records: Vec<Job> = Vec::new();
    for (batch_id, keys) in &batches {
        let batch = pipeline.store.get(batch_id).await.unwrap().unwrap();
        assert_ne!(batch.status, JobStatus::StartFailed, "{batch:?}");
        assert_eq!(batch.status, JobStatus::Completed, "{batch:?}");
        assert_eq!(batch.outcome_verified, Some(true), "{batch:?}");
        let members: BTreeSet<String> = pipeline
            .store
            .members(batch_id)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| m.source().map(|s| s.key.clone()))
            .collect();
        for key in keys {
            assert!(members.contains(*key), "{key} is a member of {batch_id}");
        }
        let fill = batch.batch().unwrap().fill;
        assert_eq!(fill.files, members.len() as u64, "{batch:?}");
        let counts = batch.counts.expect("counts from the manifest");
        assert_eq!(counts.imported, fill.files, "{batch:?}");
        *jobs_by_service
            .entry(batch.service().unwrap().as_str())
            .or_default() += 1;
        batch_records.push(batch);
    }
    let names: Vec<String> = batches.keys().map(|id| id.as_str().to_owned()).collect();
    let at_service = service_jobs_named(&pipeline.sdk, &pipeline.functions, &names)
        .await
        .unwrap();
    assert!(
        at_service.values().all(|n| *n == 1),
        "one service job per batch: {at_service:?}"
    );

    let fhir_jobs = jobs_by_service
        .get(Service::HealthLake.as_str())
        .copied()
        .unwrap_or(0);
    let dicom_jobs = jobs_by_service
        .get(Service::HealthImaging.as_str())
        .copied()
        .unwrap_or(0);
    println!(
        "{} uploads → {fhir_jobs} HealthLake job(s) and {dicom_jobs} HealthImaging job(s); closed by {:?}",
        keys.len(),
        batch_records
            .iter()
            .map(|b| b.batch().unwrap().closed.map(|c| c.reason.as_str()))
            .collect::<Vec<_>>()
    );
    assert!(
        fhir_jobs <= 3,
        "{fhir_jobs} HealthLake jobs for {FHIR_FILES} files"
    );
    assert!(dicom_jobs <= 5, "{dicom_jobs} HealthImaging jobs");
}
