//! The tracking workflow's other endings, on the local stack with the real binaries (moto runs the
//! state machine, its tasks run the `poller`): a batch's job the service fails; a start the
//! service throttles, which leaves the batch `PENDING` until the workflow's Start loop starts it;
//! and
//! tracking that gives up (a job that never ends, on a state machine with a short timeout, and a
//! job the service does not know), which leaves the record terminal and announced.
//! Both change the stack double's fault injection, so they run one after the other in one test
//! (test binaries run one at a time, so no other test sees the faults).

use std::time::Duration;

use healthimport::domain::job::{
    Job, JobId, JobStatus, Service, SourceObject, Target, Timestamp, Transition,
};
use healthimport::ports::store::JobStore;
use healthimport_tests::double::Faults;
use healthimport_tests::double_admin::DoubleAdmin;
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::provision::{eventually, tracking_definition, LOCAL_ACCOUNT, LOCAL_REGION};
use healthimport_tests::samples::dicom_p10;
use serde_json::json;

#[tokio::test]
async fn a_failed_job_and_a_throttled_start_each_end_recorded_and_announced_once() {
    let admin = DoubleAdmin::from_env();
    let mut pipeline = LocalPipeline::start().await.unwrap();
    let tag = unique_name("outcomes");

    // --- the service fails the job ---
    let failures_before = injected_failures(&admin).await;
    admin
        .set_faults(&Faults::failing_every_job())
        .await
        .unwrap();
    // A HealthImaging job: it runs as soon as it is submitted, where a HealthLake job may queue
    // behind earlier tests' imports, and the double decides the failure when a job starts running.
    let failing = format!("dicom/{tag}-fails.dcm");
    pipeline
        .upload(&failing, &dicom_p10("2.25.666", 1))
        .await
        .unwrap();
    // Clear the fault once the double has failed a job.
    eventually(Duration::from_secs(60), || async {
        Ok((injected_failures(&admin).await > failures_before).then_some(()))
    })
    .await
    .unwrap();
    admin.set_faults(&Faults::default()).await.unwrap();

    let finished = pipeline
        .wait_until_finished(std::slice::from_ref(&failing), Duration::from_secs(120))
        .await
        .unwrap();
    let upload = &finished[&failing][0];
    assert_eq!(upload.status, JobStatus::Failed, "{upload:?}");
    assert!(
        upload
            .message
            .as_deref()
            .is_some_and(|m| m.contains("job_failure_share")),
        "the upload carries its batch's end and the service's message: {upload:?}"
    );
    let batch_id = upload.batch_id().expect("the upload's batch").clone();
    let record = pipeline.store.get(&batch_id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed, "{record:?}");
    assert!(
        record
            .message
            .as_deref()
            .is_some_and(|m| m.contains("job_failure_share")),
        "the service's message is recorded: {record:?}"
    );
    assert_eq!(
        pipeline
            .execution_status(&record.job_id)
            .await
            .unwrap()
            .as_deref(),
        Some("SUCCEEDED")
    );
    let events = pipeline
        .wait_for_events(
            std::slice::from_ref(&record.job_id),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let events = &events[&record.job_id];
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["status"], "FAILED");
    assert_eq!(events[0]["detail"]["succeeded"], false);
    assert_eq!(events[0]["detail"]["hasFailures"], true);

    // --- every start throttled: the batch waits PENDING for as long as it takes, then starts ---
    admin
        .set_faults(&Faults::throttling_every_start())
        .await
        .unwrap();
    let throttled = format!("dicom/{tag}-throttled/IM0001");
    pipeline
        .upload(&throttled, &dicom_p10("2.25.777", 1))
        .await
        .unwrap();
    let pending =
        eventually(Duration::from_secs(60), || async {
            let Some(upload) = pipeline.records(&throttled).await?.pop() else {
                return Ok(None);
            };
            let Some(batch_id) = upload.batch_id() else {
                return Ok(None);
            };
            let Some(batch) = pipeline.store.get(batch_id).await? else {
                return Ok(None);
            };
            let tracked = pipeline.execution_status(batch_id).await?;
            let refused = batch
                .message
                .as_deref()
                .is_some_and(|m| m.contains("Throttling"));
            Ok((batch.status == JobStatus::Pending
                && refused
                && tracked.as_deref() == Some("RUNNING"))
            .then_some(batch))
        })
        .await
        .unwrap();
    assert_eq!(pending.service(), Some(Service::HealthImaging));
    assert_eq!(
        pipeline.records(&throttled).await.unwrap()[0].status,
        JobStatus::Batched
    );
    admin.set_faults(&Faults::default()).await.unwrap();

    // The workflow's Start loop (every START_WAIT_SECONDS, with no attempt budget) starts it.
    let finished = pipeline
        .wait_until_finished(std::slice::from_ref(&throttled), Duration::from_secs(180))
        .await
        .unwrap();
    let records = &finished[&throttled];
    assert_eq!(records.len(), 1, "one record for the upload");
    assert_eq!(records[0].status, JobStatus::Completed, "{:?}", records[0]);
    let record = pipeline.store.get(&pending.job_id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Completed, "{record:?}");
    assert!(record.service_job_id.is_some());
    assert!(record.history.contains_key(&JobStatus::Pending));
    assert!(record.history.contains_key(&JobStatus::Submitted));
    let events = pipeline
        .wait_for_events(
            std::slice::from_ref(&record.job_id),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(events[&record.job_id].len(), 1);
    assert_eq!(events[&record.job_id][0]["detail"]["status"], "COMPLETED");
    assert_eq!(
        record.message, None,
        "why the start was waiting no longer holds once it started"
    );

    // --- tracking gives up: nothing is left looking alive ---
    let short = short_tracking(&pipeline, &tag, SHORT_TIMEOUT_SECONDS).await;
    admin
        .set_faults(&Faults::stalling_every_job())
        .await
        .unwrap();
    let stalled = tracked_imaging_job(&pipeline, &short, &format!("{tag}-stalls"), None).await;
    let unknown = tracked_imaging_job(
        &pipeline,
        &short,
        &format!("{tag}-unknown"),
        Some("00000000000000000000000000000000"),
    )
    .await;
    for (id, why) in [
        (&stalled, "TrackingTimedOut"),
        (&unknown, "ServiceRejected"),
    ] {
        let record = eventually(Duration::from_secs(3 * SHORT_TIMEOUT_SECONDS), || async {
            let record = pipeline.store.get(id).await?.ok_or("no record")?;
            let execution = aws_sdk_sfn::Client::new(&pipeline.sdk)
                .describe_execution()
                .execution_arn(
                    short.replacen(":stateMachine:", ":execution:", 1) + ":" + id.as_str(),
                )
                .send()
                .await?;
            let ended = execution.status().as_str() != "RUNNING";
            Ok((record.status.is_terminal() && ended).then_some(record))
        })
        .await
        .unwrap();
        assert_eq!(record.status, JobStatus::TrackingStopped, "{record:?}");
        assert!(
            record.message.as_deref().is_some_and(|m| m.contains(why)),
            "the record says why tracking stopped: {record:?}"
        );
        let events = pipeline
            .wait_for_events(std::slice::from_ref(id), Duration::from_secs(30))
            .await
            .unwrap();
        let detail = &events[id][0]["detail"];
        assert_eq!(events[id].len(), 1);
        assert_eq!(detail["status"], "TRACKING_STOPPED");
        assert_eq!(detail["succeeded"], false);
        assert!(
            detail["message"].as_str().is_some_and(|m| m.contains(why)),
            "{detail}"
        );
    }
    admin.set_faults(&Faults::default()).await.unwrap();
}

/// The tracking timeout of the short state machine: long enough for a few polls, short enough for
/// a test.
const SHORT_TIMEOUT_SECONDS: u64 = 40;

/// A tracking state machine like the template's, with a `TrackingTimeoutSeconds` of `seconds`.
async fn short_tracking(pipeline: &LocalPipeline, tag: &str, seconds: u64) -> String {
    let definition = tracking_definition(
        &format!("arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:poller"),
        seconds as u32,
    )
    .unwrap();
    aws_sdk_sfn::Client::new(&pipeline.sdk)
        .create_state_machine()
        .name(format!("{tag}-short"))
        .definition(definition)
        .role_arn(format!(
            "arn:aws:iam::{LOCAL_ACCOUNT}:role/healthimport-local-tracking"
        ))
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

/// A recorded, started HealthImaging job tracked by the `state_machine`: started at the double
/// (which then stalls it, under the stall fault), or with a service job id the double does not
/// know when `unknown_service_job` is given.
async fn tracked_imaging_job(
    pipeline: &LocalPipeline,
    state_machine: &str,
    name: &str,
    unknown_service_job: Option<&str>,
) -> JobId {
    let setting = |name: &str| pipeline.functions.setting(name).unwrap();
    let source = SourceObject {
        bucket: pipeline.ingest.bucket.clone(),
        key: format!("elsewhere/{name}.dcm"),
        size: 1,
        e_tag: Some(format!("\"{name}\"")),
        version_id: None,
    };
    let target = Target {
        service: Service::HealthImaging,
        datastore_id: setting("IMAGING_DATASTORE_ID"),
        output_s3_uri: setting("IMAGING_OUTPUT_S3_URI"),
    };
    let input = format!("s3://{}/elsewhere/{name}/", pipeline.ingest.bucket);
    let job = Job::import(source, target.clone(), input.clone(), Timestamp::now());
    let service_job_id = match unknown_service_job {
        Some(id) => id.to_owned(),
        None => {
            let started = eventually(Duration::from_secs(30), || async {
                let answer = aws_sdk_medicalimaging::Client::new(&pipeline.sdk)
                    .start_dicom_import_job()
                    .job_name(job.job_id.as_str())
                    .client_token(job.job_id.client_token())
                    .datastore_id(&target.datastore_id)
                    .data_access_role_arn(setting("IMAGING_DATA_ACCESS_ROLE_ARN"))
                    .input_s3_uri(&input)
                    .output_s3_uri(&target.output_s3_uri)
                    .send()
                    .await;
                // The double's start rate (1/s) may throttle it: try again.
                Ok(answer.ok().map(|a| a.job_id().to_owned()))
            })
            .await
            .unwrap();
            started
        }
    };
    pipeline.store.create(&job).await.unwrap();
    pipeline
        .store
        .transition(
            &job.job_id,
            &Transition::to(JobStatus::Submitted, Timestamp::now())
                .with_service_job_id(service_job_id),
        )
        .await
        .unwrap();
    aws_sdk_sfn::Client::new(&pipeline.sdk)
        .start_execution()
        .state_machine_arn(state_machine)
        .name(job.job_id.execution_name())
        .input(json!({"jobId": job.job_id, "nextWaitSeconds": 0}).to_string())
        .send()
        .await
        .unwrap();
    job.job_id
}

async fn injected_failures(admin: &DoubleAdmin) -> u64 {
    admin.stats().await.unwrap()["injected_job_failures"]
        .as_u64()
        .expect("the double counts injected failures")
}
