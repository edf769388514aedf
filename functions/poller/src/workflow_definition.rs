//! Checks that `statemachine/import-job.asl.json` and the poller agree: the actions it sends, the
//! fields its Choice and Wait read, the errorTypes its Retry and Catch match, and the rules every
//! state must follow (a Default on every Choice; Retry on Lambda errors and a Catch on every
//! Task). asl-validator checks the ASL itself; this checks the contract between the two.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::ERROR_TYPES;
use crate::steps::{PollerInput, TrackingState};

const LAMBDA_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// The definition with its DefinitionSubstitutions filled as the template fills them.
fn definition() -> Value {
    let path = format!(
        "{}/../../statemachine/import-job.asl.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("${TrackingTimeoutSeconds}", "86400")
        .replace(
            "${PollerFunctionArn}",
            "arn:aws:lambda:us-east-1:123456789012:function:poller",
        )
        .replace("${JobEventsFunctionArn}", JOB_EVENTS_ARN);
    assert!(!text.contains("${"), "an unknown substitution is left");
    serde_json::from_str(&text).unwrap()
}

fn states(asl: &Value) -> Vec<(&String, &Value)> {
    asl["States"].as_object().unwrap().iter().collect()
}

const JOB_EVENTS_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:job-events";

/// Whether the Task state invokes the job-events function (the wait for a job's end) rather than
/// the poller.
fn calls_job_events(state: &Value) -> bool {
    state["Parameters"]["FunctionName"] == JOB_EVENTS_ARN
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r[key].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_choice_has_a_default_and_every_task_retries_and_catches() {
    let asl = definition();
    assert_eq!(asl["TimeoutSeconds"], 86400);
    for (name, state) in states(&asl) {
        match state["Type"].as_str().unwrap() {
            "Choice" => assert!(state["Default"].is_string(), "{name} has no Default"),
            "Task" => {
                let retried = names(&state["Retry"], "ErrorEquals");
                for error in LAMBDA_ERRORS {
                    assert!(
                        retried.iter().any(|r| r == error),
                        "{name} does not retry {error}"
                    );
                }
                let caught = names(&state["Catch"], "ErrorEquals");
                assert!(
                    caught.iter().any(|c| c == "States.ALL"),
                    "{name} has no catch-all"
                );
            }
            _ => {}
        }
    }
}

#[test]
fn the_workflow_matches_only_error_types_the_poller_raises() {
    let asl = definition();
    for (name, state) in states(&asl) {
        let known: BTreeSet<_> = if calls_job_events(state) {
            job_events::handler::ERROR_TYPES.iter().copied().collect()
        } else {
            ERROR_TYPES.iter().copied().collect()
        };
        for list in [&state["Retry"], &state["Catch"]] {
            for error in names(list, "ErrorEquals") {
                assert!(
                    error.starts_with("Lambda.")
                        || error.starts_with("States.")
                        || known.contains(error.as_str()),
                    "{name} matches {error}, which the poller never raises"
                );
            }
        }
    }
    let start_retry = names(&asl["States"]["Start"]["Retry"], "ErrorEquals");
    assert!(start_retry.contains(&"MembersNotVisible".to_owned()));
    // Waiting for a start is the workflow's loop, never a retry budget that can run out.
    assert!(!start_retry.iter().any(|e| e == "StartThrottled"));
    let finish_retry = names(&asl["States"]["Finish"]["Retry"], "ErrorEquals");
    assert!(finish_retry.contains(&"ManifestNotReady".to_owned()));
}

#[test]
fn every_payload_is_a_poller_input_and_the_loop_reads_poller_fields() {
    let asl = definition();
    let state = TrackingState {
        job_id: healthimport::domain::job::JobId::from_stored("j"),
        status: healthimport::domain::job::JobStatus::InProgress,
        terminal: false,
        waiting: true,
        await_events: true,
        await_timeout_seconds: Some(3600),
        polls: 2,
        next_wait_seconds: 240,
    };
    let state = serde_json::to_value(&state).unwrap();
    for (name, s) in states(&asl) {
        if s["Type"] != "Task" {
            continue;
        }
        if calls_job_events(s) {
            // The wait for the job's end: the job-events function's await request, with the
            // task's token; its output is what releases it (a job and its end).
            let payload = &s["Parameters"]["Payload"];
            assert_eq!(payload["action"], "await", "{name}");
            assert_eq!(payload["taskToken.$"], "$$.Task.Token", "{name}");
            assert_eq!(payload["jobId.$"], "$.jobId", "{name}");
            assert_eq!(
                s["Resource"], "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "{name}"
            );
            assert_eq!(s["TimeoutSecondsPath"], "$.awaitTimeoutSeconds", "{name}");
            assert!(state.get("awaitTimeoutSeconds").is_some());
            continue;
        }
        // Resolve the `key.$` JSONPath fields against a poller state, as Step Functions does.
        let mut payload = serde_json::Map::new();
        for (key, value) in s["Parameters"]["Payload"].as_object().unwrap() {
            match key.strip_suffix(".$") {
                Some(field) => {
                    let path = value.as_str().unwrap().trim_start_matches("$.");
                    let resolved = match path {
                        "error" => serde_json::json!({"Error": "X", "Cause": "y"}),
                        _ => state[path].clone(),
                    };
                    payload.insert(field.to_owned(), resolved);
                }
                None => {
                    payload.insert(key.clone(), value.clone());
                }
            }
        }
        serde_json::from_value::<PollerInput>(Value::Object(payload))
            .unwrap_or_else(|e| panic!("{name}'s payload is not a poller input: {e}"));
        assert_eq!(s["OutputPath"], "$.Payload", "{name}");
    }
    let choice = &asl["States"]["IsJobFinished"]["Choices"][0];
    assert!(state
        .get(
            choice["Variable"]
                .as_str()
                .unwrap()
                .trim_start_matches("$.")
        )
        .is_some());
    for choice in asl["States"]["IsJobStarted"]["Choices"].as_array().unwrap() {
        let variable = choice["Variable"].as_str().unwrap();
        assert!(
            state.get(variable.trim_start_matches("$.")).is_some(),
            "{variable}"
        );
    }
    assert_eq!(
        asl["States"]["WaitBeforeStart"]["SecondsPath"],
        "$.nextWaitSeconds"
    );
    // The execution's input (what the starter and the exporter start it with) is read by its
    // first state, the wait before the first Start.
    assert_eq!(asl["StartAt"], "WaitBeforeStart");
    let input = serde_json::to_value(healthimport::ports::workflow::TrackingInput {
        job_id: healthimport::domain::job::JobId::from_stored("j"),
        next_wait_seconds: 60,
    })
    .unwrap();
    assert_eq!(input["nextWaitSeconds"], 60);
    assert_eq!(input["jobId"], "j");
    let wait = asl["States"]["WaitBeforePoll"]["SecondsPath"]
        .as_str()
        .unwrap();
    assert_eq!(state[wait.trim_start_matches("$.")], 240);
}
