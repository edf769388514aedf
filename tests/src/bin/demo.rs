//! `make demo`: the whole pipeline on emulated AWS. Uploads a synthetic sample set to the ingest
//! bucket on moto; S3 notifies the upload queue, moto's event source hands it to the real `starter`
//! binary (under `cargo lambda watch`), which records and starts the jobs at the service double and
//! starts one tracking execution per job, which moto's Step Functions runs against the real
//! `poller` binary. The demo only uploads and watches the job records; then it shows the token
//! decoder allowing a valid token and denying a forged one.
//!
//! Runs inside `scripts/local-stack.sh run -- ...` (the Makefile does that).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_lambda::primitives::Blob;
use healthimport::domain::job::{Job, JobId};
use healthimport_auth_testing::{jwks, TestKey};
use healthimport_tests::demo::{self, WorkflowCost};
use healthimport_tests::pipeline::{LocalPipeline, UPLOAD_QUEUE};
use healthimport_tests::provision::LocalFunctions;
use healthimport_tests::samples::{sample_set, ExpectedUpload};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Generous: the double's jobs take about a second, and a 2-core machine may be busy.
const DEADLINE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo failed: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, BoxError> {
    heading("provisioning the local stack from template.yaml");
    let mut pipeline = LocalPipeline::start().await?;
    let functions = &pipeline.functions;
    println!(
        "  jobs table {}, output bucket {}, state machine {} (tasks: poller)",
        functions.jobs_table, functions.output_bucket, functions.state_machine_name
    );
    println!(
        "  ingest bucket {} --(s3:ObjectCreated on {})--> queue {} --> starter",
        pipeline.ingest.bucket,
        pipeline.ingest.prefixes.join(", "),
        UPLOAD_QUEUE
    );

    let tag = format!("run-{}", time::OffsetDateTime::now_utc().unix_timestamp());
    let (objects, expected) = sample_set("fhir/", "dicom/", "_READY", &tag);
    heading(&format!(
        "uploading {} objects (FHIR NDJSON, a DICOM batch with its _READY marker, a lone DICOM file)",
        objects.len()
    ));
    for object in &objects {
        pipeline.upload(&object.key, &object.body).await?;
        println!(
            "  s3://{}/{} ({} bytes)",
            pipeline.ingest.bucket,
            object.key,
            object.body.len()
        );
    }

    heading("jobs (refreshed every second until every job is finished)");
    let jobs = watch(&pipeline, &expected).await?;

    heading("summary");
    let cost = workflow_cost(&pipeline, &jobs).await?;
    print!("{}", demo::summary(&jobs, cost));
    let mut announced = 0;
    for job in &jobs {
        if !pipeline.finished_events(&job.job_id).await?.is_empty() {
            announced += 1;
        }
    }
    println!(
        "Import Job Finished events: {announced} of {} jobs",
        jobs.len()
    );
    let pipeline_ok = demo::all_finished(&jobs) && jobs.len() == expected.len();

    heading("an on-demand FHIR export of the data store, sent twice");
    let export_ok = export(&pipeline, &tag).await?;

    heading("token decoder: a valid token, a forged one, an expired one");
    let decoder_ok = token_decoder(&pipeline.sdk, &pipeline.functions).await?;

    Ok(pipeline_ok && export_ok && decoder_ok)
}

/// Invokes the real `exporter` twice with one request id (one export), then follows the record.
async fn export(pipeline: &LocalPipeline, tag: &str) -> Result<bool, BoxError> {
    let request = serde_json::json!({"requestId": format!("demo-{tag}")});
    let first = pipeline.invoke_exporter(&request).await?;
    let again = pipeline.invoke_exporter(&request).await?;
    println!("  exporter {request}\n    → {first}\n  again\n    → {again}");
    let job_id = JobId::from_stored(first["jobId"].as_str().ok_or("no jobId")?);
    let record = pipeline.wait_for_job(&job_id, DEADLINE).await?;
    print!("{}", demo::job_table(std::slice::from_ref(&record)));
    if let Some(location) = &record.output_location {
        println!("  written to {location}");
    }
    Ok(record.status.is_success() && again["jobId"] == first["jobId"])
}

fn heading(text: &str) {
    println!("\n== {text}");
}

/// Polls the job records of the expected uploads until all are terminal, redrawing the table.
async fn watch(
    pipeline: &LocalPipeline,
    expected: &[ExpectedUpload],
) -> Result<Vec<Job>, BoxError> {
    let started = Instant::now();
    let live = std::io::stdout().is_terminal();
    let mut drawn_lines = 0;
    let mut last = String::new();
    loop {
        let mut jobs = Vec::new();
        for job in expected {
            if let Some(record) = pipeline.records(&job.key).await?.pop() {
                jobs.push(record);
            }
        }
        let table = demo::job_table(&jobs);
        let waiting = expected.len() - jobs.len();
        let text = format!(
            "{table}{} recorded, {waiting} not yet, {:.0} s\n",
            jobs.len(),
            started.elapsed().as_secs_f64()
        );
        let mut out = std::io::stdout().lock();
        if live {
            if drawn_lines > 0 {
                write!(out, "\x1b[{drawn_lines}A\x1b[J")?;
            }
            write!(out, "{text}")?;
            drawn_lines = text.lines().count();
        } else if table != last {
            write!(out, "{text}")?;
        }
        out.flush()?;
        last = table;
        if waiting == 0 && demo::all_finished(&jobs) {
            return Ok(jobs);
        }
        if started.elapsed() > DEADLINE {
            println!("not every job finished within {DEADLINE:?}; the logs are in .local/");
            return Ok(jobs);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Polls and state transitions of the jobs' executions, from their histories.
async fn workflow_cost(pipeline: &LocalPipeline, jobs: &[Job]) -> Result<WorkflowCost, BoxError> {
    let sfn = aws_sdk_sfn::Client::new(&pipeline.sdk);
    let mut cost = WorkflowCost::default();
    for job in jobs {
        let execution_arn = pipeline.functions.execution_arn(job.job_id.as_str());
        let mut pages = sfn
            .get_execution_history()
            .execution_arn(&execution_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                // A skipped upload has no execution.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_execution_does_not_exist()) =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            };
            for event in page.events() {
                let kind = event.r#type().as_str();
                if kind.ends_with("StateEntered") {
                    cost.state_transitions += 1;
                }
                if let Some(entered) = event.state_entered_event_details() {
                    if entered.name() == "Poll" {
                        cost.polls += 1;
                    }
                }
            }
        }
    }
    Ok(cost)
}

/// Serves a JWK Set on the loopback address the token decoder was given, then asks the real
/// `token-decoder` binary (through the Lambda Invoke API) about three tokens.
async fn token_decoder(sdk: &SdkConfig, functions: &LocalFunctions) -> Result<bool, BoxError> {
    let key = TestKey::rsa("healthimport-demo");
    let forger = TestKey::rsa("healthimport-demo-forger").with_kid("healthimport-demo");
    let document = jwks(&[&key]);

    let jwks_url = functions.setting("JWKS_URL")?;
    let issuer = functions.setting("TOKEN_ISSUER")?;
    // http://127.0.0.1:PORT/PATH: the decoder accepts plain http for loopback hosts only.
    let (address, path) = jwks_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(address, path)| (address.to_owned(), format!("/{path}")))
        .ok_or_else(|| format!("JWKS_URL {jwks_url} is not http://host:port/path"))?;
    let app = axum::Router::new().route(
        &path,
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("  JWK Set served at {jwks_url} (issuer {issuer})");

    let endpoint = format!(
        "https://healthlake.{}.amazonaws.com/datastore/{}/r4/",
        sdk.region().map(|r| r.as_ref()).unwrap_or("us-east-1"),
        functions.setting("FHIR_DATASTORE_ID")?
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |issued: i64| {
        json!({
            "iss": issuer,
            "sub": "demo-clinician",
            "aud": endpoint,
            "iat": issued,
            "nbf": issued,
            "exp": issued + 600,
            "jti": format!("demo-{issued}"),
            "scope": "openid fhirUser launch/patient patient/Patient.read patient/Observation.rs",
            "fhirUser": format!("{endpoint}Practitioner/demo-clinician"),
            "patient": "demo-patient-1",
        })
    };
    let cases = [
        ("valid token", key.token(&claims(now)), true),
        (
            "forged token (same kid, another key)",
            forger.token(&claims(now)),
            false,
        ),
        ("expired token", key.token(&claims(now - 3600)), false),
    ];

    let lambda = aws_sdk_lambda::Client::new(sdk);
    let mut as_expected = true;
    for (name, token, allow) in cases {
        let event = json!({
            "datastoreEndpoint": endpoint,
            "bearerToken": token,
            "operationName": "SearchWithGet",
        });
        let response = lambda
            .invoke()
            .function_name("token-decoder")
            .payload(Blob::new(serde_json::to_vec(&event)?))
            .send()
            .await?;
        let decision: Value = response
            .payload()
            .map(|p| serde_json::from_slice(p.as_ref()))
            .transpose()?
            .unwrap_or(Value::Null);
        let allowed = decision["authPayload"]["isAuthorized"] == json!(true);
        as_expected &= allowed == allow;
        println!(
            "  {name}: {}{}",
            if allowed { "ALLOWED" } else { "DENIED" },
            if allowed == allow {
                ""
            } else {
                "  (unexpected!)"
            }
        );
        println!("    {}", serde_json::to_string(&decision)?);
    }
    server.abort();
    Ok(as_expected)
}
