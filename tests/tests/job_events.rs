//! Event-driven completion end to end, on the local stack with the real binaries: a DICOM file
//! uploaded into a folder of its own becomes one batch, one HealthImaging job at the double and one
//! execution that waits in `AwaitEnd` (never `Poll`) until the `job-events` function releases it.
//! Each case changes what becomes of the job's EventBridge events (the double's event faults) and
//! checks the upload, the batch's record, the execution and its one Finished event:
//!
//! 1. the events arrive as they are put;
//! 2. the job's end is recorded before the wait begins, so the wait releases itself;
//! 3. every event arrives twice;
//! 4. every non-terminal event is put after the job's next one (IN_PROGRESS after COMPLETED);
//! 5. no event arrives: the backstop's re-check finds the end within COMPLETION_BACKSTOP_SECONDS;
//! 6. the service fails the job: the batch and its upload end FAILED with the service's message.
//!
//! Case 2 cannot come through the front door: the double's jobs run for about 350 ms and the
//! workflow enters AwaitEnd some 20 ms after its Start task started the job, so the end always
//! comes after the wait began. There the job is recorded and tracked directly (as a job of its own,
//! the way workflow_outcomes.rs tracks one) by the template's workflow with one change: a Wait
//! state before AwaitEnd, which stands for a slow transition into the wait.
//!
//! The faults are the stack double's and global to it: the cases run one after the other in one
//! test (test binaries run one at a time, so no other test sees them), and the faults are put back
//! whatever happens.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::HistoryEvent;
use futures::FutureExt;
use healthimport::domain::job::{Job, JobId, JobStatus, Service, SourceObject, Target, Timestamp};
use healthimport::ports::store::JobStore;
use healthimport_tests::double::Faults;
use healthimport_tests::double_admin::DoubleAdmin;
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::provision::{
    eventually, service_jobs_named, tracking_definition, LOCAL_ACCOUNT, LOCAL_REGION,
};
use healthimport_tests::samples::dicom_p10;
use serde_json::{json, Value};
use time::OffsetDateTime;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long one case may take from its upload to its execution's end: the batch's quiet close
/// (5 s locally), the start, the job, and for a lost event the backstop (5 s locally).
const CASE_DEADLINE: Duration = Duration::from_secs(60);
/// The workflow's transitions (states entered) from the Start that starts the job, whatever
/// becomes of its events and however long the job runs. Before that Start the workflow waits for
/// its batch to close (Start, IsJobStarted, WaitBeforeStart per wait), which depends on the
/// uploads, not on the job.
const MAX_TRANSITIONS: usize = 8;
/// What the backstop may add to COMPLETION_BACKSTOP_SECONDS: the local stack polls the
/// completion-check queue every second, and one invocation reads the job and records its end.
const BACKSTOP_MARGIN: time::Duration = time::Duration::seconds(3);
/// Case 2: how long the workflow takes to go from its Start task to AwaitEnd, against the
/// double's job of about 350 ms.
const SLOW_TO_WAIT_SECONDS: u64 = 3;

#[tokio::test]
async fn each_job_s_end_releases_its_waiting_workflow_once_whatever_becomes_of_its_events() {
    let admin = DoubleAdmin::from_env();
    let mut pipeline = LocalPipeline::start().await.unwrap();
    let outcome = AssertUnwindSafe(every_case(&admin, &mut pipeline))
        .catch_unwind()
        .await;
    let restored = admin.set_faults(&Faults::default()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    restored.expect("the double's faults are put back");
}

async fn every_case(admin: &DoubleAdmin, pipeline: &mut LocalPipeline) {
    let run_started = Instant::now();
    let tag = unique_name("job-events");
    let backstop = time::Duration::seconds(
        pipeline
            .functions
            .setting("COMPLETION_BACKSTOP_SECONDS")
            .unwrap()
            .parse()
            .expect("COMPLETION_BACKSTOP_SECONDS is a number of seconds"),
    );
    let mut cases = Vec::new();

    // 1. The events arrive as they are put.
    let normal = through_the_front_door(admin, pipeline, &tag, "normal", Faults::default()).await;
    normal.assert_ended(JobStatus::Completed);
    normal.assert_released_by_its_event(backstop);
    cases.push(normal);

    // 2. The end is recorded before the wait begins: the wait finds it and releases itself.
    let early = end_before_the_wait(admin, pipeline, &tag).await;
    early.assert_ended(JobStatus::Completed);
    let awaited = early.entered("AwaitEnd");
    let recorded = early.ended_in_record();
    println!(
        "[early] end recorded {} ms before AwaitEnd was entered; AwaitEnd left {} ms after it was entered",
        (awaited - recorded).whole_milliseconds(),
        (early.exited("AwaitEnd") - awaited).whole_milliseconds()
    );
    assert!(
        recorded < awaited,
        "[early] the end ({recorded}) is recorded before the wait began ({awaited})"
    );
    assert_eq!(
        early.await_answer["released"], true,
        "[early] the wait found the end and released itself: {}",
        early.await_answer
    );
    assert!(
        early.exited("AwaitEnd") < awaited + backstop,
        "[early] released at once, not by the backstop"
    );
    cases.push(early);

    // 3. Every event arrives twice: one end, one Finished event.
    let duplicated = through_the_front_door(
        admin,
        pipeline,
        &tag,
        "duplicated",
        Faults::duplicating_every_event(),
    )
    .await;
    duplicated.assert_ended(JobStatus::Completed);
    duplicated.assert_released_by_its_event(backstop);
    assert!(
        duplicated.stat("events_duplicated") >= 3,
        "[duplicated] SUBMITTED, IN_PROGRESS and COMPLETED were each put twice: {:?}",
        duplicated.stats
    );
    cases.push(duplicated);

    // 4. IN_PROGRESS is put after COMPLETED (in the same PutEvents call): the record stays
    // COMPLETED. EventBridge delivers the two concurrently, so IN_PROGRESS is either refused after
    // COMPLETED or written just before it; either way the history never shows it after COMPLETED.
    let reordered = through_the_front_door(
        admin,
        pipeline,
        &tag,
        "reordered",
        Faults::reordering_every_event(),
    )
    .await;
    assert!(
        reordered.stat("events_reordered") >= 2,
        "[reordered] SUBMITTED and IN_PROGRESS were held back: {:?}",
        reordered.stats
    );
    println!(
        "[reordered] IN_PROGRESS {}",
        if reordered
            .record
            .history
            .contains_key(&JobStatus::InProgress)
        {
            "was written before COMPLETED (delivered concurrently, it won the race)"
        } else {
            "came after COMPLETED and was refused"
        }
    );
    reordered.assert_ended(JobStatus::Completed);
    reordered.assert_released_by_its_event(backstop);
    cases.push(reordered);

    // 5. No event arrives: the backstop's re-check finds the end, and the workflow makes no more
    // transitions for it.
    let lost = through_the_front_door(
        admin,
        pipeline,
        &tag,
        "lost",
        Faults::dropping_every_event(),
    )
    .await;
    assert!(
        lost.stat("events_dropped") >= 3 && lost.stat("events_put") == 0,
        "[lost] every event of the job was dropped: {:?}",
        lost.stats
    );
    lost.assert_ended(JobStatus::Completed);
    assert_eq!(
        lost.await_answer["waiting"], true,
        "[lost] {}",
        lost.await_answer
    );
    let late = lost.ended_in_record() - lost.ended_at_service;
    println!(
        "[lost] BACKSTOP: end recorded {} ms after the job ended at the double (COMPLETION_BACKSTOP_SECONDS {} s)",
        late.whole_milliseconds(),
        backstop.whole_seconds()
    );
    assert!(
        late <= backstop + BACKSTOP_MARGIN,
        "[lost] the re-check found the end {late} after it, more than {backstop} + {BACKSTOP_MARGIN}"
    );
    assert_eq!(
        lost.tracking(),
        cases[0].tracking(),
        "[lost] the same transitions as when the event arrives"
    );
    cases.push(lost);

    // 6. The service fails the job: released by its FAILED event.
    let failed =
        through_the_front_door(admin, pipeline, &tag, "failed", Faults::failing_every_job()).await;
    assert_eq!(
        failed.stat("injected_job_failures"),
        1,
        "[failed] {:?}",
        failed.stats
    );
    failed.assert_ended(JobStatus::Failed);
    failed.assert_released_by_its_event(backstop);
    let upload = failed.upload.as_ref().expect("[failed] the upload");
    for record in [upload, &failed.record] {
        assert!(
            record
                .message
                .as_deref()
                .is_some_and(|m| m.contains("job_failure_share")),
            "[failed] the service's message is recorded: {record:?}"
        );
    }
    cases.push(failed);

    // Whatever came late (a duplicate, IN_PROGRESS after COMPLETED, a re-check) has been handled
    // by now: no record moved and no second Finished event was put.
    for case in &cases {
        let record = pipeline
            .store
            .get(&case.record.job_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record, case.record,
            "[{}] the record is unchanged",
            case.name
        );
        let events = pipeline.finished_events(&case.record.job_id).await.unwrap();
        assert_eq!(events.len(), 1, "[{}] one Finished event", case.name);
    }
    for case in &cases {
        println!(
            "[{}] TRANSITIONS {} in all, {} from the job's start: {}",
            case.name,
            case.states.len(),
            case.tracking().len(),
            case.states.join(" → ")
        );
    }
    println!("all cases in {:.1} s", run_started.elapsed().as_secs_f64());
}

/// What became of one case's job, read once its execution had ended.
struct Observed {
    name: &'static str,
    /// The upload, for a case that came through the front door.
    upload: Option<Job>,
    /// The tracked job: the upload's batch, or case 2's job.
    record: Job,
    execution: String,
    /// The states the execution entered, in order, and when it entered and left them.
    states: Vec<String>,
    entered: Vec<(String, OffsetDateTime)>,
    exited: Vec<(String, OffsetDateTime)>,
    /// What the job-events function answered when AwaitEnd kept its token (the payload of
    /// AwaitEnd's TaskSubmitted event): `waiting`, or `released` when the end was there already.
    await_answer: Value,
    /// `endedAt` of the job at the double (GetDICOMImportJob).
    ended_at_service: OffsetDateTime,
    finished_events: Vec<Value>,
    /// Jobs at the double named after the tracked job.
    service_jobs: usize,
    /// The double's counters over the case: after less before.
    stats: BTreeMap<String, i64>,
}

/// Uploads one DICOM file into a folder of its own (one batch) under `faults`, waits until the
/// batch's execution has ended and its Finished event is out, puts the faults back and gathers
/// what happened.
async fn through_the_front_door(
    admin: &DoubleAdmin,
    pipeline: &mut LocalPipeline,
    tag: &str,
    name: &'static str,
    faults: Faults,
) -> Observed {
    let started = Instant::now();
    let before = admin.stats().await.unwrap();
    admin.set_faults(&faults).await.unwrap();
    let key = format!("dicom/{tag}-{name}/IM1");
    pipeline
        .upload(&key, &dicom_p10(&study(), 1))
        .await
        .unwrap();
    let finished = pipeline
        .wait_until_finished(std::slice::from_ref(&key), CASE_DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("[{name}] {key} did not finish: {e}"));
    let uploads = &finished[&key];
    assert_eq!(uploads.len(), 1, "[{name}] one record for the upload");
    let upload = uploads[0].clone();
    let batch_id = upload
        .batch_id()
        .unwrap_or_else(|| panic!("[{name}] the upload names its batch: {upload:?}"))
        .clone();
    let execution = pipeline.functions.execution_arn(batch_id.as_str());
    let observed = observe(admin, pipeline, name, &execution, &batch_id, &before).await;
    admin.set_faults(&Faults::default()).await.unwrap();
    println!(
        "[{name}] finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Observed {
        upload: Some(upload),
        ..observed
    }
}

/// Case 2: a job of its own, recorded PENDING with a DICOM file under its input prefix, tracked by
/// the template's workflow with a Wait of [`SLOW_TO_WAIT_SECONDS`] between Start and AwaitEnd.
/// The real Start starts it at the double; its end is recorded by its event during that Wait.
async fn end_before_the_wait(
    admin: &DoubleAdmin,
    pipeline: &mut LocalPipeline,
    tag: &str,
) -> Observed {
    let name = "early";
    let started = Instant::now();
    let before = admin.stats().await.unwrap();
    let state_machine = slow_to_wait(pipeline, tag).await.unwrap();

    let bucket = pipeline.functions.output_bucket.clone();
    let folder = format!("job-events-inputs/{tag}-{name}");
    let key = format!("{folder}/IM1");
    let s3 = aws_sdk_s3::Client::new(&pipeline.sdk);
    let body = dicom_p10(&study(), 1);
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let setting = |name: &str| pipeline.functions.setting(name).unwrap();
    let job = Job::import(
        SourceObject {
            bucket: bucket.clone(),
            key,
            size: body.len() as u64,
            e_tag: put.e_tag().map(str::to_owned),
            version_id: None,
        },
        Target {
            service: Service::HealthImaging,
            datastore_id: setting("IMAGING_DATASTORE_ID"),
            output_s3_uri: setting("IMAGING_OUTPUT_S3_URI"),
        },
        format!("s3://{bucket}/{folder}/"),
        Timestamp::now(),
    );
    pipeline.store.create(&job).await.unwrap();
    let sfn = aws_sdk_sfn::Client::new(&pipeline.sdk);
    let execution = sfn
        .start_execution()
        .state_machine_arn(&state_machine)
        .name(job.job_id.execution_name())
        .input(json!({"jobId": job.job_id, "nextWaitSeconds": 0}).to_string())
        .send()
        .await
        .unwrap()
        .execution_arn;
    eventually(CASE_DEADLINE, || async {
        let status = sfn
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await?
            .status;
        Ok((status.as_str() != "RUNNING").then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("[{name}] the execution did not end: {e}"));
    let observed = observe(admin, pipeline, name, &execution, &job.job_id, &before).await;
    println!(
        "[{name}] finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    observed
}

/// A state machine of the test's own: the template's workflow, with a Wait before AwaitEnd.
async fn slow_to_wait(pipeline: &LocalPipeline, tag: &str) -> Result<String, BoxError> {
    let definition = tracking_definition(
        &format!("arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:poller"),
        900,
    )?;
    let mut definition: Value = serde_json::from_str(&definition)?;
    let choices = definition["States"]["IsJobStarted"]["Choices"]
        .as_array_mut()
        .ok_or("IsJobStarted has no Choices")?;
    let to_wait = choices
        .iter_mut()
        .find(|choice| choice["Next"] == "AwaitEnd")
        .ok_or("no choice leads to AwaitEnd")?;
    to_wait["Next"] = json!("SlowToWait");
    definition["States"]["SlowToWait"] = json!({
        "Type": "Wait",
        "Comment": "A slow transition into the wait: the job ends meanwhile.",
        "Seconds": SLOW_TO_WAIT_SECONDS,
        "Next": "AwaitEnd",
    });
    Ok(aws_sdk_sfn::Client::new(&pipeline.sdk)
        .create_state_machine()
        .name(format!("{tag}-slow-to-wait"))
        .definition(definition.to_string())
        .role_arn(format!(
            "arn:aws:iam::{LOCAL_ACCOUNT}:role/healthimport-local-tracking"
        ))
        .send()
        .await?
        .state_machine_arn)
}

/// Reads what became of the job `record_id` tracked by the ended `execution`, once its Finished
/// event is out.
async fn observe(
    admin: &DoubleAdmin,
    pipeline: &mut LocalPipeline,
    name: &'static str,
    execution: &str,
    record_id: &JobId,
    before: &Value,
) -> Observed {
    let finished_events = pipeline
        .wait_for_events(std::slice::from_ref(record_id), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("[{name}] {e}"))
        .remove(record_id)
        .unwrap_or_default();
    let stats = counters(&admin.stats().await.unwrap(), before);
    let record = pipeline.store.get(record_id).await.unwrap().unwrap();
    let sfn = aws_sdk_sfn::Client::new(&pipeline.sdk);
    let status = sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .unwrap()
        .status;
    let history = history(&sfn, execution).await.unwrap();
    let entered: Vec<(String, OffsetDateTime)> = history
        .iter()
        .filter_map(|event| {
            let state = event.state_entered_event_details()?.name().to_owned();
            Some((state, datetime(event.timestamp())))
        })
        .collect();
    let exited = history
        .iter()
        .filter_map(|event| {
            let state = event.state_exited_event_details()?.name().to_owned();
            Some((state, datetime(event.timestamp())))
        })
        .collect();
    let service_job_id = record
        .service_job_id
        .clone()
        .unwrap_or_else(|| panic!("[{name}] the job started: {record:?}"));
    let job = aws_sdk_medicalimaging::Client::new(&pipeline.sdk)
        .get_dicom_import_job()
        .datastore_id(pipeline.functions.setting("IMAGING_DATASTORE_ID").unwrap())
        .job_id(&service_job_id)
        .send()
        .await
        .unwrap();
    let ended_at_service = datetime(
        job.job_properties()
            .and_then(|p| p.ended_at())
            .unwrap_or_else(|| panic!("[{name}] the double's job ended: {job:?}")),
    );
    let names = [record_id.as_str().to_owned()];
    let service_jobs = service_jobs_named(&pipeline.sdk, &pipeline.functions, &names)
        .await
        .unwrap()[record_id.as_str()];
    Observed {
        name,
        upload: None,
        record,
        execution: status.as_str().to_owned(),
        states: entered.iter().map(|(state, _)| state.clone()).collect(),
        entered,
        exited,
        await_answer: await_answer(&history),
        ended_at_service,
        finished_events,
        service_jobs,
        stats,
    }
}

impl Observed {
    /// What every case shows: the upload (when there is one) and the tracked job ended `status`,
    /// through one job at the service and one execution that waited in AwaitEnd, never polled
    /// and succeeded; one Finished event; a history that ends with the end.
    fn assert_ended(&self, status: JobStatus) {
        let name = self.name;
        println!(
            "[{name}] {} transitions, {} from the job's start; await answered {}; history {}",
            self.states.len(),
            self.tracking().len(),
            self.await_answer,
            self.record
                .history
                .iter()
                .map(|(status, at)| format!("{status} {at}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(upload) = &self.upload {
            assert_eq!(upload.status, status, "[{name}] the upload: {upload:?}");
        }
        assert_eq!(self.record.status, status, "[{name}] {:?}", self.record);
        assert_eq!(self.service_jobs, 1, "[{name}] the job started once");
        assert_eq!(self.execution, "SUCCEEDED", "[{name}] the execution");
        assert!(
            self.states.iter().any(|s| s == "AwaitEnd"),
            "[{name}] the execution waited for the job's end: {:?}",
            self.states
        );
        assert!(
            !self
                .states
                .iter()
                .any(|s| s == "Poll" || s == "WaitBeforePoll"),
            "[{name}] the execution never polled: {:?}",
            self.states
        );
        assert_eq!(
            self.finished_events.len(),
            1,
            "[{name}] one Finished event: {:?}",
            self.finished_events
        );
        assert_eq!(
            self.finished_events[0]["detail"]["status"],
            status.to_string(),
            "[{name}] {:?}",
            self.finished_events
        );
        // Forward only: no status reached after the end.
        let end = self.ended_in_record();
        let after_end: Vec<_> = self
            .record
            .history
            .iter()
            .filter(|(reached, at)| **reached != status && at.datetime() > end)
            .collect();
        assert!(
            after_end.is_empty(),
            "[{name}] the history has {after_end:?} after {status} ({end})"
        );
        if status != JobStatus::Failed {
            assert!(
                self.tracking().len() <= MAX_TRANSITIONS,
                "[{name}] at most {MAX_TRANSITIONS} transitions from the job's start: {:?}",
                self.states
            );
        }
    }

    /// The wait began before the end was recorded, and the end was recorded sooner than the
    /// backstop's first re-check (due COMPLETION_BACKSTOP_SECONDS after the wait began): by the
    /// job's own event.
    fn assert_released_by_its_event(&self, backstop: time::Duration) {
        let awaited = self.entered("AwaitEnd");
        let recorded = self.ended_in_record();
        println!(
            "[{}] end recorded {} ms after the job ended at the double, {} ms after AwaitEnd was entered",
            self.name,
            (recorded - self.ended_at_service).whole_milliseconds(),
            (recorded - awaited).whole_milliseconds()
        );
        assert_eq!(
            self.await_answer["waiting"], true,
            "[{}] the wait began before the end: {}",
            self.name, self.await_answer
        );
        assert!(
            recorded < awaited + backstop,
            "[{}] the end ({recorded}) was recorded before the first re-check was due ({awaited} + {backstop})",
            self.name
        );
    }

    /// The states entered from the Start that started the job on (the last Start).
    fn tracking(&self) -> &[String] {
        let start = self.states.iter().rposition(|s| s == "Start").unwrap_or(0);
        &self.states[start..]
    }

    /// When the execution first entered `state`.
    fn entered(&self, state: &str) -> OffsetDateTime {
        first(&self.entered, state)
            .unwrap_or_else(|| panic!("[{}] never entered {state}", self.name))
    }

    /// When the execution first left `state`.
    fn exited(&self, state: &str) -> OffsetDateTime {
        first(&self.exited, state).unwrap_or_else(|| panic!("[{}] never left {state}", self.name))
    }

    /// When the tracked job's record reached its terminal status.
    fn ended_in_record(&self) -> OffsetDateTime {
        self.record
            .history
            .get(&self.record.status)
            .map(|at| at.datetime())
            .unwrap_or_else(|| panic!("[{}] no end in {:?}", self.name, self.record.history))
    }

    fn stat(&self, name: &str) -> i64 {
        self.stats.get(name).copied().unwrap_or_default()
    }
}

fn first(states: &[(String, OffsetDateTime)], state: &str) -> Option<OffsetDateTime> {
    states
        .iter()
        .find(|(name, _)| name == state)
        .map(|(_, at)| *at)
}

/// A study UID of its own per case: the process id and a counter.
fn study() -> String {
    static CASES: AtomicU32 = AtomicU32::new(1);
    let case = CASES.fetch_add(1, Ordering::Relaxed);
    format!("2.25.{}{case:03}", std::process::id())
}

/// The execution's whole history, oldest first.
async fn history(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<Vec<HistoryEvent>, BoxError> {
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(execution)
        .into_paginator()
        .send();
    let mut events = Vec::new();
    while let Some(page) = pages.next().await {
        events.extend(page?.events);
    }
    Ok(events)
}

/// The job-events function's answer to AwaitEnd's `await` (its Lambda Invoke result, which the
/// TaskSubmitted event of a `.waitForTaskToken` task carries), `Null` when there is none.
fn await_answer(history: &[HistoryEvent]) -> Value {
    let Some(output) = history
        .iter()
        .filter_map(|event| event.task_submitted_event_details())
        .filter(|details| details.resource() == "invoke.waitForTaskToken")
        .filter_map(|details| details.output())
        .next_back()
    else {
        return Value::Null;
    };
    let result: Value = serde_json::from_str(output).unwrap_or(Value::Null);
    match &result["Payload"] {
        Value::String(payload) => serde_json::from_str(payload).unwrap_or(Value::Null),
        payload => payload.clone(),
    }
}

/// The double's numeric counters, `after` less `before`.
fn counters(after: &Value, before: &Value) -> BTreeMap<String, i64> {
    let Some(after) = after.as_object() else {
        return BTreeMap::new();
    };
    after
        .iter()
        .filter_map(|(name, value)| {
            let now = value.as_i64()?;
            Some((
                name.clone(),
                now - before[name].as_i64().unwrap_or_default(),
            ))
        })
        .collect()
}

fn datetime(at: &aws_sdk_sfn::primitives::DateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanos()).expect("a timestamp in range")
}
