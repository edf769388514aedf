//! The tracking workflow's other endings, on the local stack with the real binaries (moto runs the
//! state machine, its tasks run the `poller`): a job the service fails, and a start the service
//! throttles, which the starter leaves `PENDING` and the workflow's Start retry starts later.
//! Both change the stack double's fault injection, so they run one after the other in one test
//! (test binaries run one at a time, so no other test sees the faults).

use std::time::Duration;

use healthimport::domain::job::{JobStatus, Service};
use healthimport_tests::double::Faults;
use healthimport_tests::double_admin::DoubleAdmin;
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::provision::eventually;
use healthimport_tests::samples::dicom_p10;

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
    let record = &finished[&failing][0];
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

    // --- every start throttled: the starter leaves the job PENDING, the workflow retries ---
    admin
        .set_faults(&Faults::throttling_every_start())
        .await
        .unwrap();
    let throttled = format!("dicom/{tag}-throttled.dcm");
    pipeline
        .upload(&throttled, &dicom_p10("2.25.777", 1))
        .await
        .unwrap();
    let pending = eventually(Duration::from_secs(60), || async {
        let Some(record) = pipeline.records(&throttled).await?.pop() else {
            return Ok(None);
        };
        let tracked = pipeline.execution_status(&record.job_id).await?;
        Ok(
            (record.status == JobStatus::Pending && tracked.as_deref() == Some("RUNNING"))
                .then_some(record),
        )
    })
    .await
    .unwrap();
    assert!(
        pending
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Throttling")),
        "why it is pending is recorded: {pending:?}"
    );
    assert_eq!(pending.service(), Some(Service::HealthImaging));
    admin.set_faults(&Faults::default()).await.unwrap();

    // The workflow's Start retry (StartThrottled: 15 s, doubling, full jitter) starts it.
    let finished = pipeline
        .wait_until_finished(std::slice::from_ref(&throttled), Duration::from_secs(180))
        .await
        .unwrap();
    let records = &finished[&throttled];
    assert_eq!(records.len(), 1, "one record for the upload");
    let record = &records[0];
    assert_eq!(record.job_id, pending.job_id);
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
}

async fn injected_failures(admin: &DoubleAdmin) -> u64 {
    admin.stats().await.unwrap()["injected_job_failures"]
        .as_u64()
        .expect("the double counts injected failures")
}
