//! The `healthimport` binary against the local stack, after uploads flowed through the whole
//! pipeline (the real starter and poller, the service double): every command, its exit code, and
//! `--stack` resolution from a CloudFormation stack on moto.
//!
//! Run inside the local stack: `scripts/local-stack.sh run -- cargo test --workspace --test cli`.

use std::process::{Command, Output};
use std::time::Duration;

use healthimport::domain::batch::{BatchFolder, BatchPolicy, Staging};
use healthimport::domain::job::{JobId, JobStatus, Service, SourceObject, Target, Timestamp};
use healthimport::fakes::RecordingTracking;
use healthimport::intake::{join_batch, Batching, Joined};
use healthimport_tests::local_stack::unique_name;
use healthimport_tests::pipeline::LocalPipeline;
use healthimport_tests::samples::sample_set;
use serde_json::Value;

/// The functions' variables the CLI reads, as the local stack gives them to the functions.
const VARIABLES: [&str; 8] = [
    "JOBS_TABLE",
    "STATE_MACHINE_ARN",
    "FHIR_DATASTORE_ID",
    "IMAGING_DATASTORE_ID",
    "BATCH_QUIET_SECONDS",
    "BATCH_MAX_WAIT_SECONDS",
    "STAGING_PREFIX",
    "INGEST_BUCKET",
];

/// The local exporter's function name (the local stack registers each function by its name).
const EXPORTER_FUNCTION: &str = "exporter";

struct Cli<'a> {
    pipeline: &'a LocalPipeline,
}

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Cli<'_> {
    /// The binary with no resources in its environment but the local stack's AWS settings.
    fn bare(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_healthimport"));
        for variable in VARIABLES {
            command.env_remove(variable);
        }
        command.env_remove("EXPORTER_FUNCTION_NAME");
        command.env("RUST_LOG", "warn");
        command
    }

    /// The binary with the functions' variables, as an operator on the local stack has them.
    fn run(&self, args: &[&str]) -> Run {
        let mut command = self.bare();
        for variable in VARIABLES {
            if let Ok(value) = self.pipeline.functions.setting(variable) {
                command.env(variable, value);
            }
        }
        command.env("EXPORTER_FUNCTION_NAME", EXPORTER_FUNCTION);
        let run: Run = command
            .args(args)
            .output()
            .expect("run healthimport")
            .into();
        println!(
            "$ healthimport {}\n{}{}(exit {})\n",
            args.join(" "),
            run.stdout,
            run.stderr,
            run.code
        );
        run
    }
}

#[tokio::test]
async fn every_command_answers_from_the_local_stack_after_uploads_ran_through_the_pipeline() {
    let pipeline = LocalPipeline::start().await.unwrap();
    let cli = Cli {
        pipeline: &pipeline,
    };
    let tag = unique_name("cli");
    let (objects, expected) = sample_set("fhir/", "dicom/", "_READY", &tag);
    // One FHIR file and the DICOM study (a good file, a file that is not DICOM, its marker).
    let wanted = |key: &str| {
        key.ends_with("/patients.ndjson")
            || key.ends_with("ct-0001.dcm")
            || key.ends_with("ct-0005.dcm")
            || key.ends_with("_READY")
    };
    for object in objects.iter().filter(|o| wanted(&o.key)) {
        pipeline.upload(&object.key, &object.body).await.unwrap();
    }
    let keys: Vec<String> = expected
        .iter()
        .filter(|u| wanted(&u.key))
        .map(|u| u.key.clone())
        .collect();
    let records = pipeline
        .wait_until_finished(&keys, Duration::from_secs(240))
        .await
        .unwrap();
    let bucket = &pipeline.ingest.bucket;
    let failed_key = keys.iter().find(|k| k.ends_with("ct-0005.dcm")).unwrap();
    let imported_key = keys.iter().find(|k| k.ends_with("ct-0001.dcm")).unwrap();
    let failed_uri = format!("s3://{bucket}/{failed_key}");
    let imported_uri = format!("s3://{bucket}/{imported_key}");
    let study_batch = records[imported_key][0].batch_id().unwrap().clone();
    assert_eq!(records[failed_key][0].status, JobStatus::Failed);

    // status: the upload's record, its batch and job, its own result.
    let status = cli.run(&["status", &imported_uri]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("result   COMPLETED: imported"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains(study_batch.as_str()));
    let status = cli.run(&["status", &failed_uri, "--json"]).json();
    assert_eq!(status["kind"], "upload");
    assert_eq!(status["result"]["status"], "FAILED");
    assert!(status["result"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("InvalidDicomFile")));
    assert_eq!(status["batch"]["jobId"], study_batch.as_str());
    assert!(status["batch"]["serviceJobId"].is_string(), "{status}");
    let missing = cli.run(&["status", &format!("s3://{bucket}/elsewhere/{tag}.ndjson")]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("was it uploaded under fhir/ or dicom/?"),
        "{}",
        missing.stderr
    );

    // jobs: the study's batch among the DICOM jobs, and not among the FHIR ones.
    let jobs = cli
        .run(&["jobs", "--since", "1h", "--service", "dicom", "--json"])
        .json();
    let ids: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["jobId"].as_str())
        .collect();
    assert!(ids.contains(&study_batch.as_str()), "{ids:?}");
    assert!(jobs
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["service"] == "HEALTHIMAGING"));
    let fhir = cli.run(&["jobs", "--service", "fhir", "--json"]).json();
    assert!(!fhir.to_string().contains(study_batch.as_str()));
    let table = cli.run(&["jobs", "--since", "1h"]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.starts_with("JOB "), "{}", table.stdout);
    assert_eq!(cli.run(&["jobs", "--status", "finished"]).code, 2);

    // retry: a completed upload is refused; the failed one runs again as attempt 2.
    let refused = cli.run(&["retry", &imported_uri]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("nothing to retry"),
        "{}",
        refused.stderr
    );
    let retried = cli.run(&["retry", &failed_uri, "--json"]);
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    let retried = retried.json();
    assert_eq!(retried["retried"][0]["attempt"], 2);
    assert_eq!(
        retried["retried"][0]["retries"],
        records[failed_key][0].job_id.as_str()
    );
    let retry_batch = retried["retried"][0]["batchId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(retry_batch, study_batch.as_str());

    // batches: a batch opened through the starter's intake with no workflow started, so nothing
    // closes it while the test looks (the retry's own batch may close at any moment).
    let held = hold_open_batch(&pipeline, &tag).await;
    let open = cli.run(&["batches", "--json"]);
    assert_eq!(open.code, 0, "{}", open.stderr);
    let open = open.json();
    let listed = open
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["batch"]["jobId"] == held.as_str())
        .unwrap_or_else(|| panic!("{held} not listed: {open}"));
    assert_eq!(listed["closes"]["reason"], "QUIET", "{listed}");
    let table = cli.run(&["batches"]);
    assert_eq!(table.code, 0);
    let row = table
        .stdout
        .lines()
        .find(|line| line.starts_with(held.as_str()))
        .unwrap_or_else(|| panic!("{held} not in the table:\n{}", table.stdout));
    assert!(row.contains(" fhir "), "{row}");
    assert!(row.contains(&format!("fhir/{tag}-held/")), "{row}");

    // watch: two frames, then it stops; each shows the held batch.
    let watch = cli.run(&["watch", "--iterations", "2", "--interval", "1"]);
    assert_eq!(watch.code, 0, "{}", watch.stderr);
    assert_eq!(
        watch.stdout.matches("OPEN BATCHES").count(),
        2,
        "{}",
        watch.stdout
    );
    assert_eq!(
        watch.stdout.matches(held.as_str()).count(),
        2,
        "{}",
        watch.stdout
    );

    // The retry runs through the same workflow: the file is still not DICOM, so attempt 2 fails
    // on its own record, and the first attempt's record is unchanged.
    let attempts = pipeline
        .wait_until_finished(std::slice::from_ref(failed_key), Duration::from_secs(240))
        .await
        .unwrap();
    let attempts = &attempts[failed_key];
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.iter().all(|a| a.status == JobStatus::Failed));
    let status = cli.run(&["status", &failed_uri, "--json"]).json();
    let numbers: Vec<u64> = status["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap_or(1))
        .collect();
    assert_eq!(numbers, vec![2, 1], "newest first");
    assert_eq!(status["batch"]["jobId"], retry_batch.as_str());
    cli.run(&["status", &failed_uri]);

    // export: through the exporter function; the same request id is the same request.
    let request = unique_name("cli-export");
    let export = cli.run(&["export", "--request-id", &request, "--json"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let export = export.json();
    assert!(export["jobId"].is_string(), "{export}");
    let again = cli
        .run(&["export", "--request-id", &request, "--json"])
        .json();
    assert_eq!(again["jobId"], export["jobId"]);
    assert_eq!(again["outcome"], "ALREADY_RECORDED");
}

/// Opens a FHIR batch of one file through the starter's own intake, but records its workflow's
/// start instead of making it, so the batch stays OPEN: what `batches` and `watch` must list.
async fn hold_open_batch(pipeline: &LocalPipeline, tag: &str) -> JobId {
    let functions = &pipeline.functions;
    let store = healthimport_aws::job_store(&pipeline.sdk, &functions.jobs_table, 30);
    let tracking = RecordingTracking::default();
    let batching = Batching {
        policy: BatchPolicy::default(),
        staging: Staging::new("staging/"),
    };
    let datastore_id = functions.setting("FHIR_DATASTORE_ID").unwrap();
    let folder = BatchFolder {
        service: Service::HealthLake,
        datastore_id: datastore_id.clone(),
        bucket: pipeline.ingest.bucket.clone(),
        folder: format!("fhir/{tag}-held/"),
    };
    let source = SourceObject {
        bucket: pipeline.ingest.bucket.clone(),
        key: format!("fhir/{tag}-held/a.ndjson"),
        size: 2048,
        e_tag: Some("held".into()),
        version_id: None,
    };
    let target = Target {
        service: Service::HealthLake,
        datastore_id,
        output_s3_uri: "s3://healthimport-local-output/fhir/".into(),
    };
    match join_batch(
        &store,
        &tracking,
        &batching,
        &folder,
        source,
        &target,
        Timestamp::now(),
    )
    .await
    .unwrap()
    {
        Joined::Joined {
            batch_id,
            opened: true,
        } => batch_id,
        other => panic!("expected a new batch, got {other:?}"),
    }
}

#[tokio::test]
async fn resources_come_from_a_stacks_outputs_and_parameters_and_a_missing_one_is_named() {
    let pipeline = LocalPipeline::start().await.unwrap();
    let cli = Cli {
        pipeline: &pipeline,
    };
    let functions = &pipeline.functions;
    // Without resources, a command names the variable it needs.
    let bare = Run::from(
        cli.bare()
            .args(["status", "s3://b/fhir/a.ndjson"])
            .output()
            .unwrap(),
    );
    assert_eq!(bare.code, 2);
    assert!(
        bare.stderr.contains("JOBS_TABLE is not set"),
        "{}",
        bare.stderr
    );
    let bare = Run::from(cli.bare().args(["jobs"]).output().unwrap());
    assert_eq!(bare.code, 2);
    assert!(
        bare.stderr
            .contains("neither FHIR_DATASTORE_ID nor IMAGING_DATASTORE_ID"),
        "{}",
        bare.stderr
    );

    // A stack whose Outputs point at the local resources, as a deployed stack's do.
    let stack = unique_name("healthimport-cli");
    let template = serde_json::json!({
        "Parameters": {"BatchQuietSeconds": {"Type": "String", "Default": "60"}},
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": stack}}},
        "Outputs": {
            "JobsTableName": {"Value": functions.jobs_table},
            "FhirDatastoreId": {"Value": functions.setting("FHIR_DATASTORE_ID").unwrap()},
            "ImagingDatastoreId": {"Value": functions.setting("IMAGING_DATASTORE_ID").unwrap()},
        }
    });
    aws_sdk_cloudformation::Client::new(&pipeline.sdk)
        .create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("BatchQuietSeconds")
                .parameter_value("7")
                .build(),
        )
        .send()
        .await
        .unwrap();

    let jobs = Run::from(
        cli.bare()
            .args(["--stack", &stack, "jobs", "--since", "1d", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(jobs.code, 0, "{}", jobs.stderr);
    assert!(jobs.json().is_array());
    let batches = Run::from(
        cli.bare()
            .args(["batches", "--stack", &stack, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(batches.code, 0, "{}", batches.stderr);

    // What the stack does not give is named, with the output that would.
    let retry = Run::from(
        cli.bare()
            .args(["--stack", &stack, "retry", "s3://b/dicom/x.dcm"])
            .output()
            .unwrap(),
    );
    assert_eq!(retry.code, 2, "{}", retry.stderr);
    assert!(
        retry.stderr.contains(&format!(
            "stack {stack} has no output ImportJobStateMachineArn"
        )),
        "{}",
        retry.stderr
    );
    let none = Run::from(
        cli.bare()
            .args(["--stack", &unique_name("no-such-stack"), "jobs"])
            .output()
            .unwrap(),
    );
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(none.stderr.contains("does not exist"), "{}", none.stderr);
}
