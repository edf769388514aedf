//! FHIR exports end to end on the local stack, with the real binaries: the `exporter` is invoked
//! through the Lambda Invoke API (as Scheduler and an operator would), HealthLake's export runs on
//! the service double, moto runs the tracking workflow and its tasks run the `poller`.
//!
//! One test, in order, because its later steps change the double's fault injection (test
//! binaries run one at a time, so no other test sees the faults):
//! 1. an import then an on-demand export, sent twice: one export, queued behind the import on the
//!    same data store, so it writes out what the import stored;
//! 2. a schedule tick delivered twice: one export; then an incremental export, which writes only
//!    what changed since the tick's export (FHIR REST `$export` with `_since`), and a retried
//!    `$export` start, which adopts the job the first attempt created;
//! 3. every start throttled: the export stays PENDING, the workflow's Start loop starts it later;
//! 4. the service fails the export: recorded FAILED and announced as such.

use std::time::Duration;

use healthimport::domain::job::{JobId, JobKind, JobStatus, Service};
use healthimport::ports::service_jobs::{StartRequest, StartWork};
use healthimport::ports::store::JobStore;
use healthimport_aws::healthlake_rest::{ExportDestination, RestExports};
use healthimport_tests::double::Faults;
use healthimport_tests::double_admin::DoubleAdmin;
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::provision::eventually;
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test]
async fn exports_start_once_per_request_or_tick_queue_behind_imports_and_end_recorded() {
    let admin = DoubleAdmin::from_env();
    let mut pipeline = LocalPipeline::start().await.unwrap();
    let tag = unique_name("export");
    let exports_before = stat(&admin, "fhir_export_jobs_created").await;

    // --- 1. an import, then an on-demand export sent twice ---
    let patient_id = format!("{tag}-patient");
    let upload = format!("fhir/{tag}.ndjson");
    let line = json!({"resourceType": "Patient", "id": patient_id}).to_string();
    pipeline.upload(&upload, line.as_bytes()).await.unwrap();
    // Its batch started at the service (or done): the export submitted next queues behind it,
    // in HealthLake's one lane.
    eventually(Duration::from_secs(60), || async {
        let records = pipeline.records(&upload).await?;
        let Some(batch_id) = records.first().and_then(|r| r.batch_id()) else {
            return Ok(None);
        };
        let batch = pipeline.store.get(batch_id).await?;
        Ok(batch
            .is_some_and(|b| b.service_job_id.is_some())
            .then_some(()))
    })
    .await
    .unwrap();
    let request = json!({"requestId": format!("{tag}-on-demand")});
    let first = pipeline.invoke_exporter(&request).await.unwrap();
    let again = pipeline.invoke_exporter(&request).await.unwrap();
    assert_eq!(first["outcome"], "STARTED", "{first}");
    assert_eq!(again["outcome"], "ALREADY_RECORDED", "{again}");
    assert_eq!(again["jobId"], first["jobId"]);
    let on_demand = job_id(&first);

    // --- 2. one schedule tick, delivered twice ---
    // Sent once the import has finished: a tick's window ends when it is recorded, and windows
    // overlap rather than leave a gap, so a resource the import writes after that instant would
    // rightly be exported again by the incremental export below (part 2b), which checks that
    // what did not change is not.
    pipeline
        .wait_until_finished(std::slice::from_ref(&upload), EXPORT_DEADLINE)
        .await
        .unwrap();
    let tick = json!({"scheduledTime": time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()});
    let scheduled = pipeline.invoke_exporter(&tick).await.unwrap();
    let redelivered = pipeline.invoke_exporter(&tick).await.unwrap();
    assert_eq!(redelivered["jobId"], scheduled["jobId"]);
    assert_eq!(redelivered["outcome"], "ALREADY_RECORDED");
    let scheduled = job_id(&scheduled);

    for id in [&on_demand, &scheduled] {
        let record = pipeline.wait_for_job(id, EXPORT_DEADLINE).await.unwrap();
        assert_eq!(record.kind(), JobKind::Export);
        assert_eq!(record.service(), Some(Service::HealthLake));
        assert_eq!(record.status, JobStatus::Completed, "{record:?}");
        let location = record.output_location.clone().expect("output location");
        assert!(
            location.contains("-FHIR_EXPORT-"),
            "the documented layout: {location}"
        );
        let counts = record.counts.expect("counts of the files written");
        assert!(counts.imported >= 1 && counts.failed == 0, "{counts:?}");
        // The import ran first (one job at a time per data store, FIFO): its patient is exported.
        let patients = read_s3(&pipeline, &format!("{location}Patient/Patient-0.ndjson"))
            .await
            .unwrap();
        assert!(
            patients.contains(&patient_id),
            "the export holds what the import before it stored"
        );
    }
    let events = pipeline
        .wait_for_events(
            &[on_demand.clone(), scheduled.clone()],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    for (id, events) in &events {
        assert_eq!(events.len(), 1, "one Finished event for {id}");
        assert_eq!(events[0]["detail-type"], "Export Job Finished");
        assert_eq!(events[0]["detail"]["kind"], "EXPORT");
        assert_eq!(events[0]["detail"]["status"], "COMPLETED");
        assert_eq!(events[0]["detail"]["succeeded"], true);
    }
    assert_eq!(
        events[&scheduled][0]["detail"]["export"]["trigger"],
        "schedule"
    );
    assert_eq!(
        stat(&admin, "fhir_export_jobs_created").await - exports_before,
        2,
        "one export at HealthLake per request and per tick"
    );

    // --- 2b. incremental: what changed since the last export that completed (the tick's) ---
    let tick_until = pipeline
        .store
        .get(&scheduled)
        .await
        .unwrap()
        .and_then(|r| r.export_request().cloned())
        .expect("the tick's export window")
        .until;
    let later_patient = format!("{tag}-later");
    let later_upload = format!("fhir/{tag}-later.ndjson");
    let line = json!({"resourceType": "Patient", "id": later_patient}).to_string();
    pipeline
        .upload(&later_upload, line.as_bytes())
        .await
        .unwrap();
    pipeline
        .wait_until_finished(std::slice::from_ref(&later_upload), EXPORT_DEADLINE)
        .await
        .unwrap();
    let rest_before = stat(&admin, "fhir_rest_exports_created").await;
    let incremental = json!({"requestId": format!("{tag}-incremental"), "mode": "incremental"});
    let first = pipeline.invoke_exporter(&incremental).await.unwrap();
    let again = pipeline.invoke_exporter(&incremental).await.unwrap();
    assert_eq!(again["outcome"], "ALREADY_RECORDED", "{again}");
    let incremental = job_id(&first);
    let record = pipeline
        .wait_for_job(&incremental, EXPORT_DEADLINE)
        .await
        .unwrap();
    assert_eq!(record.status, JobStatus::Completed, "{record:?}");
    assert_eq!(
        record.export_request().and_then(|e| e.since),
        Some(tick_until),
        "the window starts where the last completed export ended"
    );
    let location = record.output_location.clone().expect("output location");
    let patients = read_s3(&pipeline, &format!("{location}Patient/Patient-0.ndjson"))
        .await
        .unwrap();
    assert!(patients.contains(&later_patient), "the change is exported");
    assert!(
        !patients.contains(&format!("\"{patient_id}\"")),
        "what did not change since is not exported again"
    );
    assert_eq!(
        stat(&admin, "fhir_rest_exports_created").await - rest_before,
        1,
        "one $export for the request sent twice"
    );

    // --- 2c. a retried $export start adopts the job the first attempt created ---
    let rest = RestExports::new(&pipeline.sdk);
    let setting = |name: &str| pipeline.functions.setting(name).unwrap();
    let retried = StartRequest {
        job_id: JobId::from_stored(unique_name("adopt")),
        service: Service::HealthLake,
        datastore_id: setting("FHIR_DATASTORE_ID"),
        work: StartWork::Export {
            since: Some(tick_until),
        },
        output_s3_uri: setting("FHIR_EXPORT_S3_URI"),
    };
    let role = setting("FHIR_EXPORT_ROLE_ARN");
    let key = setting("FHIR_EXPORT_KMS_KEY_ID");
    let destination = ExportDestination {
        data_access_role_arn: &role,
        kms_key_id: &key,
    };
    let first = rest
        .start_since(&retried, tick_until, destination)
        .await
        .unwrap();
    let again = rest
        .start_since(&retried, tick_until, destination)
        .await
        .unwrap();
    assert_eq!(again.service_job_id, first.service_job_id);
    let named = aws_sdk_healthlake::Client::new(&pipeline.sdk)
        .list_fhir_export_jobs()
        .datastore_id(setting("FHIR_DATASTORE_ID"))
        .job_name(retried.job_id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(named.export_job_properties_list().len(), 1);

    // --- 3. every start throttled: PENDING, then started by the workflow's retry ---
    admin
        .set_faults(&Faults::throttling_every_start())
        .await
        .unwrap();
    let throttled = pipeline
        .invoke_exporter(&json!({"requestId": format!("{tag}-throttled")}))
        .await
        .unwrap();
    assert_eq!(throttled["outcome"], "START_PENDING", "{throttled}");
    let throttled = job_id(&throttled);
    let pending = pipeline.store.get(&throttled).await.unwrap().unwrap();
    assert_eq!(pending.status, JobStatus::Pending);
    assert!(pending
        .message
        .as_deref()
        .is_some_and(|m| m.contains("Throttling")));
    admin.set_faults(&Faults::default()).await.unwrap();
    let record = pipeline
        .wait_for_job(&throttled, EXPORT_DEADLINE)
        .await
        .unwrap();
    assert_eq!(record.status, JobStatus::Completed, "{record:?}");
    assert!(record.history.contains_key(&JobStatus::Pending));

    // --- 4. the service fails the export ---
    let failures_before = stat(&admin, "injected_job_failures").await;
    admin
        .set_faults(&Faults::failing_every_job())
        .await
        .unwrap();
    let failing = pipeline
        .invoke_exporter(&json!({"requestId": format!("{tag}-fails")}))
        .await
        .unwrap();
    let failing = job_id(&failing);
    eventually(Duration::from_secs(60), || async {
        Ok((stat(&admin, "injected_job_failures").await > failures_before).then_some(()))
    })
    .await
    .unwrap();
    admin.set_faults(&Faults::default()).await.unwrap();
    let record = pipeline
        .wait_for_job(&failing, EXPORT_DEADLINE)
        .await
        .unwrap();
    assert_eq!(record.status, JobStatus::Failed, "{record:?}");
    assert_eq!(record.counts, None);
    assert!(record
        .message
        .as_deref()
        .is_some_and(|m| m.contains("export job failed")));
    let events = pipeline
        .wait_for_events(std::slice::from_ref(&failing), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(events[&failing].len(), 1);
    assert_eq!(events[&failing][0]["detail"]["status"], "FAILED");
    assert_eq!(events[&failing][0]["detail"]["hasFailures"], true);
}

#[tokio::test]
async fn a_malformed_export_request_is_refused_with_its_reason() {
    let pipeline = LocalPipeline::start().await.unwrap();
    let error = pipeline
        .invoke_exporter(&json!({"requestId": "has spaces"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(r#""errorType":"InvalidExportEvent""#),
        "{error}"
    );
    assert!(error.contains("requestId"), "{error}");
}

fn job_id(response: &Value) -> JobId {
    JobId::from_stored(response["jobId"].as_str().expect("a jobId"))
}

/// Exports run behind every earlier HealthLake job of the data store (other tests' imports too).
const EXPORT_DEADLINE: Duration = Duration::from_secs(180);

async fn read_s3(pipeline: &LocalPipeline, uri: &str) -> Result<String, BoxError> {
    let (bucket, key) =
        healthimport::domain::s3_uri::split_s3_uri(uri).ok_or_else(|| format!("not s3: {uri}"))?;
    let object = aws_sdk_s3::Client::new(&pipeline.sdk)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await?;
    let bytes = object.body.collect().await?.into_bytes();
    Ok(String::from_utf8(bytes.to_vec())?)
}

async fn stat(admin: &DoubleAdmin, name: &str) -> u64 {
    admin.stats().await.unwrap()[name]
        .as_u64()
        .unwrap_or_else(|| panic!("the double counts {name}"))
}
