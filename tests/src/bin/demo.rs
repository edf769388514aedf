//! `make demo`: the whole pipeline on emulated AWS. Uploads a synthetic sample set to the ingest
//! bucket on moto (a FHIR folder, a DICOM study with its `_READY` marker, a lone DICOM file) and,
//! meanwhile, syncs a second DICOM study file by file without a marker, as a sync tool would. S3
//! notifies the upload queue, moto's event source hands each upload to the real `starter` binary
//! (under `cargo lambda watch`), which puts it into the open batch of its folder and starts one
//! batch workflow per batch; moto's Step Functions runs it against the real `poller` binary: the
//! batch closes (its marker, or the quiet period, or its maximum wait), becomes one job at the
//! service double, and every upload gets its own result. The demo only uploads and watches the
//! records: the batches (what they hold, when they close or why they closed, their job's status)
//! and the uploads. Then an export, the token decoder allowing a valid token and denying forged
//! and expired ones, and the operator's CLI: `healthimport status` of an upload and
//! `healthimport jobs`.
//!
//! Runs inside `scripts/local-stack.sh run -- ...` (the Makefile does that).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_lambda::primitives::Blob;
use healthimport::config::{self, Env};
use healthimport::domain::batch::{BatchPolicy, CloseReason};
use healthimport::domain::job::{Job, JobId, JobStatus, Timestamp};
use healthimport::ports::batches::BatchStore;
use healthimport::ports::store::JobStore;
use healthimport_auth_testing::{jwks, TestKey};
use healthimport_tests::demo::{self, BatchReport, BatchView, WorkflowCost};
use healthimport_tests::pipeline::{LocalPipeline, UPLOAD_QUEUE};
use healthimport_tests::provision::{service_jobs_named, LocalFunctions};
use healthimport_tests::samples::{dicom_p10, sample_set, ExpectedUpload, SampleObject};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Generous: the double's jobs take about a second, and a 2-core machine may be busy.
const DEADLINE: Duration = Duration::from_secs(300);
/// The study synced without a marker: this many instances, this far apart.
const SYNCED_FILES: u32 = 12;
const SYNC_INTERVAL: Duration = Duration::from_millis(300);
const REFRESH: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> ExitCode {
    let started = Instant::now();
    let outcome = run().await;
    println!("\n(demo ran {:.0} s)", started.elapsed().as_secs_f64());
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: something did not end as expected (see above)");
            ExitCode::FAILURE
        }
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

/// The functions' own settings (scripts/local-functions.env as the local stack handed it to them),
/// read through the same configuration code the functions use.
struct Settings<'a>(&'a LocalFunctions);

impl Env for Settings<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.setting(name).ok()
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
    let policy = config::batching(&Settings(functions))?.policy;
    println!(
        "  a batch closes on its _READY marker, after {} s without a new file, at the latest {} s after its first \
         (BATCH_QUIET_SECONDS, BATCH_MAX_WAIT_SECONDS)",
        policy.quiet.whole_seconds(),
        policy.max_wait.whole_seconds()
    );

    let run_at = time::OffsetDateTime::now_utc().unix_timestamp();
    let tag = format!("run-{run_at}");
    let (objects, mut expected) = sample_set("fhir/", "dicom/", "_READY", &tag);
    heading(&format!(
        "uploading {} objects (FHIR NDJSON, a DICOM study with its _READY marker, a lone DICOM file)",
        objects.len()
    ));
    for object in &objects {
        pipeline.upload(&object.key, &object.body).await?;
        println!(
            "  s3://{}/{} ({})",
            pipeline.ingest.bucket,
            object.key,
            demo::size(object.body.len() as u64)
        );
    }

    let (synced_folder, synced) = synced_study(&tag, run_at);
    heading(&format!(
        "syncing {synced_folder} file by file ({SYNCED_FILES} instances, {} ms apart, no marker) while watching",
        SYNC_INTERVAL.as_millis()
    ));
    expected.extend(synced.iter().map(|object| ExpectedUpload {
        key: object.key.clone(),
        service: "HEALTHIMAGING",
        status: JobStatus::Completed,
        batch: "synced",
    }));
    let progress = Arc::new(AtomicUsize::new(0));
    let sync = tokio::spawn(sync_folder(
        pipeline.sdk.clone(),
        pipeline.ingest.bucket.clone(),
        synced.clone(),
        progress.clone(),
    ));

    heading("batches and uploads (refreshed every second until every batch's job has ended)");
    let watched = watch(&pipeline, &policy, &expected, sync, &progress).await?;

    heading("summary");
    let uploads: Vec<Job> = watched
        .uploads
        .iter()
        .filter_map(|(_, r)| r.clone())
        .collect();
    let reports = batch_reports(&mut pipeline, &watched.batches).await?;
    print!("{}", demo::summary(&uploads, &reports));
    let mut uploads_ok = watched.complete;
    for want in &expected {
        let got = watched
            .uploads
            .iter()
            .find(|(key, _)| *key == want.key)
            .and_then(|(_, r)| r.as_ref());
        match got {
            Some(record) if record.status == want.status => {}
            Some(record) => {
                uploads_ok = false;
                println!(
                    "  unexpected: {} is {}, expected {}",
                    want.key, record.status, want.status
                );
            }
            None => {
                uploads_ok = false;
                println!("  unexpected: {} has no record", want.key);
            }
        }
    }

    heading("the study synced without a marker");
    let synced_ok = show_synced(&synced_folder, &synced, &watched, &reports);

    heading("an on-demand FHIR export of the data store, sent twice");
    let export_ok = export(&pipeline, &tag).await?;

    heading("token decoder: a valid token, a forged one, an expired one");
    let decoder_ok = token_decoder(&pipeline.sdk, &pipeline.functions).await?;

    heading("the operator's view: `healthimport status` of an upload, and `healthimport jobs`");
    let failed = expected
        .iter()
        .find(|u| u.status == JobStatus::Failed)
        .unwrap_or(&expected[0]);
    let upload = format!("s3://{}/{}", pipeline.ingest.bucket, failed.key);
    let status_ok = operator_cli(&pipeline.functions, &["status", &upload])?;
    let jobs_ok = operator_cli(&pipeline.functions, &["jobs", "--since", "1h"])?;

    Ok(uploads_ok && synced_ok && export_ok && decoder_ok && status_ok && jobs_ok)
}

/// The functions' variables the operator CLI reads, handed to it as an operator's shell would.
const CLI_VARIABLES: [&str; 7] = [
    "JOBS_TABLE",
    "STATE_MACHINE_ARN",
    "FHIR_DATASTORE_ID",
    "IMAGING_DATASTORE_ID",
    "BATCH_QUIET_SECONDS",
    "BATCH_MAX_WAIT_SECONDS",
    "STAGING_PREFIX",
];

/// Runs the `healthimport` binary built beside this one with the stack's settings, prints what it
/// says, and tells whether it succeeded.
fn operator_cli(functions: &LocalFunctions, args: &[&str]) -> Result<bool, BoxError> {
    let binary = std::env::current_exe()?.with_file_name("healthimport");
    let mut command = std::process::Command::new(&binary);
    for variable in CLI_VARIABLES {
        if let Ok(value) = functions.setting(variable) {
            command.env(variable, value);
        }
    }
    let output = command
        .env("EXPORTER_FUNCTION_NAME", "exporter")
        .args(args)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} (build it with `cargo build --workspace`): {e}",
                binary.display()
            )
        })?;
    println!("$ healthimport {}", args.join(" "));
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("  {line}");
    }
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("  {line}");
    }
    Ok(output.status.success())
}

/// A second CT study, `SYNCED_FILES` instances of generated DICOM P10.
fn synced_study(tag: &str, run_at: i64) -> (String, Vec<SampleObject>) {
    let folder = format!("dicom/{tag}-study-0002/");
    let study = format!("2.25.{run_at}0002");
    let objects = (1..=SYNCED_FILES)
        .map(|instance| SampleObject {
            key: format!("{folder}ct-{instance:04}.dcm"),
            body: dicom_p10(&study, instance),
        })
        .collect();
    (folder, objects)
}

/// Uploads `objects` one at a time, `SYNC_INTERVAL` apart, as a sync tool copying a folder would;
/// no marker at the end.
async fn sync_folder(
    sdk: SdkConfig,
    bucket: String,
    objects: Vec<SampleObject>,
    uploaded: Arc<AtomicUsize>,
) -> Result<(), BoxError> {
    let s3 = aws_sdk_s3::Client::new(&sdk);
    for (i, object) in objects.into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(SYNC_INTERVAL).await;
        }
        s3.put_object()
            .bucket(&bucket)
            .key(&object.key)
            .body(object.body.into())
            .send()
            .await?;
        uploaded.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

/// What the watch saw last: every upload's record (in upload order), every batch of the run (in
/// the order its first upload was recorded), and whether everything ended before the deadline.
struct Watched {
    uploads: Vec<(String, Option<Job>)>,
    batches: Vec<Job>,
    complete: bool,
}

/// Follows the uploads and their batches until every upload is terminal and every batch's job and
/// workflow have ended. On a terminal: one screen, redrawn in place every second. Otherwise (CI
/// logs): a line for each batch and for the uploads' tally whenever it changed, then the final
/// screen.
async fn watch(
    pipeline: &LocalPipeline,
    policy: &BatchPolicy,
    expected: &[ExpectedUpload],
    sync: JoinHandle<Result<(), BoxError>>,
    progress: &AtomicUsize,
) -> Result<Watched, BoxError> {
    let started = Instant::now();
    let live = std::io::stdout().is_terminal();
    let mut sync = Some(sync);
    let mut drawn_lines = 0;
    let mut logged: HashMap<JobId, String> = HashMap::new();
    let mut logged_uploads = String::new();

    let mut records: HashMap<String, Job> = HashMap::new();
    let mut batch_order: Vec<JobId> = Vec::new();
    let mut batches: HashMap<JobId, Job> = HashMap::new();
    let mut ended: HashSet<JobId> = HashSet::new();
    loop {
        if sync.as_ref().is_some_and(|s| s.is_finished()) {
            if let Some(handle) = sync.take() {
                handle.await??;
            }
        }
        // Uploads not recorded yet: by key. Once recorded, an upload changes only when its batch's
        // job has ended: then it is read again with the batch's members.
        for upload in expected {
            if !records.contains_key(&upload.key) {
                if let Some(record) = pipeline.records(&upload.key).await?.pop() {
                    records.insert(upload.key.clone(), record);
                }
            }
            if let Some(id) = records.get(&upload.key).and_then(|r| r.batch_id()) {
                if !batch_order.contains(id) {
                    batch_order.push(id.clone());
                }
            }
        }
        for id in &batch_order {
            let members_done = |records: &HashMap<String, Job>| {
                records
                    .values()
                    .filter(|r| r.batch_id() == Some(id))
                    .all(|r| r.status.is_terminal())
            };
            let batch_done = batches.get(id).is_some_and(|b| b.status.is_terminal());
            if batch_done && ended.contains(id) && members_done(&records) {
                continue;
            }
            let Some(batch) = pipeline.store.get(id).await? else {
                continue;
            };
            if batch.status.is_terminal() {
                for member in pipeline.store.members(id).await? {
                    let Some(key) = member.source().map(|s| s.key.clone()) else {
                        continue;
                    };
                    if records.get(&key).is_some_and(|r| r.job_id == member.job_id) {
                        records.insert(key, member);
                    }
                }
                if !ended.contains(id)
                    && pipeline
                        .execution_status(id)
                        .await?
                        .is_some_and(|status| status != "RUNNING")
                {
                    ended.insert(id.clone());
                }
            }
            batches.insert(id.clone(), batch);
        }

        let now = Timestamp::now();
        let views: Vec<BatchView> = batch_order
            .iter()
            .filter_map(|id| batches.get(id))
            .filter_map(|b| BatchView::of(b, policy, now))
            .collect();
        let uploads: Vec<(String, Option<Job>)> = expected
            .iter()
            .map(|u| (u.key.clone(), records.get(&u.key).cloned()))
            .collect();
        let synced = progress.load(Ordering::SeqCst);
        let tally = format!(
            "uploads: {}; synced {synced} of {SYNCED_FILES}",
            demo::upload_progress(&uploads)
        );
        let elapsed = started.elapsed().as_secs_f64();
        let complete = sync.is_none()
            && uploads
                .iter()
                .all(|(_, r)| r.as_ref().is_some_and(|r| r.status.is_terminal()))
            && batch_order.iter().all(|id| {
                ended.contains(id) && batches.get(id).is_some_and(|b| b.status.is_terminal())
            });
        let timed_out = !complete && started.elapsed() > DEADLINE;
        let screen = format!(
            "{}\n{}{tally}; {elapsed:.0} s\n",
            demo::batch_lines(&views),
            demo::upload_table(&uploads)
        );

        let mut out = std::io::stdout().lock();
        if live {
            if drawn_lines > 0 {
                write!(out, "\x1b[{drawn_lines}A\x1b[J")?;
            }
            write!(out, "{screen}")?;
            drawn_lines = screen.lines().count();
        } else {
            for view in &views {
                let seen = view.without_countdown();
                if logged.get(&view.id) != Some(&seen) {
                    writeln!(
                        out,
                        "[{elapsed:>5.1} s] {view}  {}",
                        demo::short_batch_id(&view.id)
                    )?;
                    logged.insert(view.id.clone(), seen);
                }
            }
            if tally != logged_uploads {
                writeln!(out, "[{elapsed:>5.1} s] {tally}")?;
                logged_uploads = tally;
            }
            if complete || timed_out {
                writeln!(out, "\nat the end:\n{screen}")?;
            }
        }
        out.flush()?;
        drop(out);

        if complete || timed_out {
            if timed_out {
                println!("not everything ended within {DEADLINE:?}; the logs are in the stack's directory");
            }
            return Ok(Watched {
                uploads,
                batches: batch_order
                    .iter()
                    .filter_map(|id| batches.get(id).cloned())
                    .collect(),
                complete,
            });
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// Per batch: its record as it ended, its workflow's state transitions, its Finished events (one
/// each is expected; waited for a little, as they travel through EventBridge and SQS) and the jobs
/// the service holds under its name.
async fn batch_reports(
    pipeline: &mut LocalPipeline,
    batches: &[Job],
) -> Result<Vec<BatchReport>, BoxError> {
    let names: Vec<String> = batches.iter().map(|b| b.job_id.to_string()).collect();
    let at_service = service_jobs_named(&pipeline.sdk, &pipeline.functions, &names).await?;
    let waited = Instant::now();
    let mut events = vec![0; batches.len()];
    loop {
        for (batch, count) in batches.iter().zip(events.iter_mut()) {
            *count = pipeline.finished_events(&batch.job_id).await?.len();
        }
        if events.iter().all(|n| *n > 0) || waited.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut reports = Vec::new();
    for (batch, finished_events) in batches.iter().zip(events) {
        reports.push(BatchReport {
            batch: batch.clone(),
            cost: workflow_cost(pipeline, &batch.job_id).await?,
            finished_events,
            service_jobs: at_service.get(batch.job_id.as_str()).copied().unwrap_or(0),
        });
    }
    Ok(reports)
}

/// The marker-less study: exactly one batch, closed by the clock (quiet, or its maximum wait),
/// one job at the service, every file imported.
fn show_synced(
    folder: &str,
    synced: &[SampleObject],
    watched: &Watched,
    reports: &[BatchReport],
) -> bool {
    let records: Vec<&Job> = watched
        .uploads
        .iter()
        .filter(|(key, _)| synced.iter().any(|o| o.key == *key))
        .filter_map(|(_, r)| r.as_ref())
        .collect();
    let batch_ids: BTreeSet<&JobId> = records.iter().filter_map(|r| r.batch_id()).collect();
    println!(
        "  {folder}: {} files uploaded {} ms apart, no marker",
        synced.len(),
        SYNC_INTERVAL.as_millis()
    );
    let statuses: Vec<String> = {
        let mut by_status: Vec<(JobStatus, usize)> = Vec::new();
        for record in &records {
            match by_status.iter_mut().find(|(s, _)| *s == record.status) {
                Some((_, n)) => *n += 1,
                None => by_status.push((record.status, 1)),
            }
        }
        by_status.iter().map(|(s, n)| format!("{n} {s}")).collect()
    };
    let all_imported =
        records.len() == synced.len() && records.iter().all(|r| r.status == JobStatus::Completed);
    let mut one_job = false;
    if let [id] = batch_ids.iter().collect::<Vec<_>>()[..] {
        let report = reports.iter().find(|r| r.batch.job_id == **id);
        if let Some((report, b)) = report.and_then(|r| r.batch.batch().map(|b| (r, b))) {
            let batch = &report.batch;
            let seconds =
                |from: Timestamp, to: Timestamp| (to.datetime() - from.datetime()).as_seconds_f64();
            match b.closed {
                Some(closed) => {
                    println!(
                        "  → 1 batch ({}) of {} files, closed by {} {:.1} s after its last file ({:.1} s after its first)",
                        demo::short_batch_id(id),
                        b.fill.files,
                        closed.reason,
                        seconds(b.fill.last_file_at, closed.at),
                        seconds(b.fill.first_file_at, closed.at),
                    );
                    one_job = matches!(closed.reason, CloseReason::Quiet | CloseReason::MaxWait)
                        && b.fill.files == synced.len() as u64
                        && report.service_jobs == 1;
                }
                None => println!("  → 1 batch ({}), never closed", demo::short_batch_id(id)),
            }
            let counts = batch.counts.unwrap_or_default();
            println!(
                "  → {} job{} at {} named {id}: {}, {} imported, {} failed",
                report.service_jobs,
                if report.service_jobs == 1 { "" } else { "s" },
                batch.service().map(|s| s.as_str()).unwrap_or("-"),
                batch.status,
                counts.imported,
                counts.failed,
            );
        }
    } else {
        let ids: Vec<String> = batch_ids
            .iter()
            .map(|id| demo::short_batch_id(id))
            .collect();
        println!(
            "  → {} batches ({}): expected exactly one",
            batch_ids.len(),
            ids.join(", ")
        );
    }
    println!("  → its uploads: {}", statuses.join(", "));
    one_job && all_imported
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

/// Polls and state transitions of one batch's workflow, from its execution's history (executions
/// are named after the batch id).
async fn workflow_cost(
    pipeline: &LocalPipeline,
    batch_id: &JobId,
) -> Result<WorkflowCost, BoxError> {
    let sfn = aws_sdk_sfn::Client::new(&pipeline.sdk);
    let mut cost = WorkflowCost::default();
    let execution_arn = pipeline.functions.execution_arn(batch_id.execution_name());
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(&execution_arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        };
        for event in page.events() {
            if event.r#type().as_str().ends_with("StateEntered") {
                cost.state_transitions += 1;
            }
            if let Some(entered) = event.state_entered_event_details() {
                if entered.name() == "Poll" {
                    cost.polls += 1;
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
