//! A HealthLake + HealthImaging service double over HTTP, for tests that use the unmodified
//! `aws-sdk-healthlake` and `aws-sdk-medicalimaging` clients (AWS is never reachable here and no
//! public emulator offers these services).
//!
//! One server on one port serves both protocols; point the SDKs at [`ServiceDouble::endpoint_url`]
//! (`.endpoint_url(..)` on the client config, or `AWS_ENDPOINT_URL_HEALTHLAKE` /
//! `AWS_ENDPOINT_URL_MEDICAL_IMAGING`). With `signing_credentials` set (the standalone binary's
//! default: `testing` / `testing`, the local stack's credentials), every request must be SigV4-signed
//! with them and is refused as AWS refuses it otherwise ([`sigv4`]).
//!
//! # Operations
//! - HealthLake (awsJson1.0, `POST /`, `X-Amz-Target: HealthLake.<Op>`): StartFHIRImportJob,
//!   DescribeFHIRImportJob, ListFHIRImportJobs, StartFHIRExportJob, DescribeFHIRExportJob,
//!   ListFHIRExportJobs, CreateFHIRDatastore, DescribeFHIRDatastore, ListFHIRDatastores.
//!   Errors: `{"__type", "message"}`, HTTP 400 (500 for InternalServerException).
//! - HealthImaging (restJson1): `POST /startDICOMImportJob/datastore/{id}`,
//!   `GET /getDICOMImportJob/datastore/{id}/job/{jobId}`, `GET /listDICOMImportJobs/datastore/{id}`,
//!   `POST /datastore` (CreateDatastore), `GET /datastore` (ListDatastores),
//!   `GET /datastore/{id}` (GetDatastore). Errors: `x-amzn-ErrorType` header and
//!   `{"message"}`; Validation 400, ResourceNotFound 404, Conflict 409, Throttling 429,
//!   ServiceQuotaExceeded 402, InternalServer 500.
//! - Anything else: UnknownOperationException (HealthLake shape when an `X-Amz-Target` header is
//!   present, HealthImaging shape otherwise).
//!
//! # Behaviour
//! - Every request's input is checked against the service's own botocore model
//!   ([`service_model`], `DOUBLE_SERVICE_MODELS`, default the repository's `.venv`): required
//!   members, lengths, patterns, enums and ranges, answered with one ValidationException naming
//!   every violating member as AWS does. HealthImaging's paths and methods are the model's `http`
//!   bindings; its URI labels and query members are bound as the model locates them.
//! - Every response carries a fresh `x-amzn-RequestId` (a random UUID), errors and the FHIR
//!   REST endpoint included.
//! - FHIR REST `$export` requires the Bulk Data kick-off headers `Accept: application/fhir+json`
//!   and `Prefer: respond-async` (400 with an OperationOutcome when one is missing, 406 for an
//!   `Accept` that does not name `application/fhir+json`).
//! - Nothing is pre-seeded: a data store exists once CreateFHIRDatastore / CreateDatastore made
//!   it. It is CREATING for `datastore_create_delay` (default 200 ms), then ACTIVE; a job start
//!   into a data store that is not ACTIVE is refused (HealthLake ValidationException,
//!   HealthImaging ConflictException; see `State::active_datastore`). The same ClientToken
//!   creates nothing new and returns the first data store. Ids (data stores, jobs, image sets)
//!   are 32 lowercase hex characters, inside both models' id patterns.
//! - Jobs: SUBMITTED for `submit_delay`, then IN_PROGRESS for `run_overhead + per_file * files`
//!   ([`JobTimings::run_time`]; `files` = the objects listed under the input prefix when the job
//!   turns IN_PROGRESS, for an export the NDJSON files it writes), then terminal. The defaults
//!   are accelerated (50 ms, 300 ms + 1 ms a file); [`JobTimings`] cites the real figures (a
//!   one-file HealthLake import takes 83 s in AWS's own example; no per-file time is documented).
//!   A running job's DescribeFHIRImportJob carries a `JobProgressReport` whose counters grow with
//!   the elapsed share of its run time.
//! - HealthLake throughput: ONE job runs at a time per account and Region (the double serves
//!   one of each), imports and exports of every data store sharing that lane; the rest wait FIFO
//!   (QUEUED once their submit delay has passed; a job that has shown QUEUED goes straight to
//!   IN_PROGRESS when the lane frees). At most `healthlake_max_queued_jobs_per_datastore` jobs
//!   (default 25, an unconfirmed third-party figure) wait per data store: a start beyond that is
//!   refused with ThrottlingException (the documented Start error meaning "try again later";
//!   see `State::start_fhir_job`), creates no job and is counted in
//!   [`DoubleStats::fhir_queue_refusals`]. A replayed ClientToken is answered before that check.
//! - HealthImaging throughput: StartDICOMImportJob's token bucket and running-jobs quota (below);
//!   a job over more than `imaging_max_files_per_job` files (5,000) or more than
//!   `imaging_max_bytes_per_job` bytes in total (10 GB) ends FAILED with a message.
//! - [`ideal_drain`] / [`ideal_drain_with_bytes`]: the time a perfectly packed workload takes
//!   under these rules, the yardstick for a batching pipeline's measured drain time.
//! - The input is read from S3 (the `aws_sdk_s3::Client` given to [`ServiceDouble::start`]) when
//!   the job turns IN_PROGRESS: every object under the prefix except keys ending in `/`
//!   (HealthLake: an input naming one object exactly imports that object alone). A DICOM file
//!   without `DICM` at byte 128 fails with exceptionType `InvalidDicomFile`; an NDJSON line that
//!   is not a JSON object with a string `resourceType` fails that resource only. HealthImaging
//!   ends COMPLETED even with per-file failures (the manifest is the truth); HealthLake ends
//!   COMPLETED_WITH_ERRORS when anything failed. A job ends FAILED with a `Message` when the input
//!   holds no files (`No files found under s3://…`), has more files than a job may
//!   (5,000 / 10,000) or, HealthImaging, more bytes (10 GB), cannot be listed or its output cannot be written (the S3 error), or by
//!   `job_failure_share`. FAILED jobs write no output. A job drawn by `stall_share` stays
//!   IN_PROGRESS for good.
//! - StartFHIRImportJob `ValidationLevel`: `strict`, `structure-only` or `minimal` (else
//!   ValidationException); kept on the job and returned by Describe/List as `ValidationLevel`.
//! - StartDICOMImportJob `inputOwnerAccountId`: 12 digits (else ValidationException), and the
//!   double's own `account_id`, the owner of every bucket it reads (else AccessDeniedException,
//!   403); kept on the job (GetDICOMImportJob does not return it: see `GET /_double/jobs/{id}`).
//! - StartDICOMImportJob: token bucket (1/s, burst 2 by default) → ThrottlingException 429;
//!   more than `imaging_max_running_jobs_per_datastore` unfinished jobs →
//!   ServiceQuotaExceededException 402. A refused start creates no job. Order of checks:
//!   fault injection, validation, data store, throttle, ClientToken replay, quota.
//! - Idempotency: per data store, a ClientToken seen before returns the same job with its
//!   current status. The same token with another input or output is refused
//!   (HealthImaging ConflictException, HealthLake ValidationException).
//! - Fault injection ([`Faults`]): shares of calls answered ThrottlingException or
//!   InternalServerException, on all operations or on the starts only, from an RNG seeded by
//!   `DoubleConfig::rng_seed`.
//! - Job events: with an EventBridge client ([`DoubleClients`]; not when
//!   `DoubleConfig::emit_events` is `Some(false)`) the double puts the services' own job events
//!   on the default event bus of that client's account and Region, one per status change, at the
//!   moment the job reaches it: SUBMITTED when the job is created (a replayed start announces
//!   nothing), QUEUED when a HealthLake job still waits for the account's lane once its submit
//!   delay has passed, IN_PROGRESS when it starts running, the terminal status when it ends
//!   (after the manifest is written when `manifest_delay` is zero; a stalled job never ends).
//!   HealthImaging: source `aws.medical-imaging`, detail-type `Import Job <Status>`,
//!   `detail{imagingVersion "1.0", datastoreId, jobId, jobName, jobStatus, inputS3Uri,
//!   outputS3Uri}`. HealthLake: source `aws.healthlake`, detail-type `Import Job <Status>` or
//!   `Export Job <Status>` (`Submitted`, `Queued`, `In Progress`, `Completed`, `Completed With
//!   Errors`, `Failed`), `detail{jobId, submitTime, datastoreId, inputDataConfig{s3Uri}}` (an
//!   export: `outputDataConfig{s3Uri}`), no status, message or progress. `resources` holds the
//!   data store's ARN; `time` is when the status changed. A job's events are put in the order
//!   of its changes, up to ten per PutEvents call, by one emitter task: a put never delays or
//!   fails the job; a failure is logged and counted ([`DoubleStats::event_put_failures`]). The
//!   event faults ([`Faults`]: `event_drop_share`, `event_duplicate_share`, `event_delay_share`
//!   with `event_delay_ms`, `event_reorder_share`) are drawn from their own RNG seeded by
//!   `rng_seed`, in the order the events are announced, and counted in [`DoubleStats`]. Member
//!   names and spellings: see the `events` module.
//!
//! # Output layout
//! HealthImaging, under `<outputS3Uri>/<datastoreId>-DicomImport-<jobId>/`:
//! `job-output-manifest.json` = `{"jobSummary": {jobId, datastoreId, inputS3Uri, outputS3Uri
//! (the job's own folder), successOutputS3Uri,
//! failureOutputS3Uri, warningsOutputS3Uri, numberOfScannedFiles, numberOfImportedFiles,
//! numberOfFilesWithCustomerError, numberOfFilesWithServerError, numberOfGeneratedImageSets,
//! imageSetsSummary: [{imageSetId, imageSetVersion, isPrimary, numberOfMatchedSOPInstances}]}}`,
//! `SUCCESS/success.ndjson` (`{inputFile, importResponse{imageSetId, isPrimary}}`),
//! `FAILURE/failure.ndjson` (`{inputFile, exception{exceptionType, message}}`) and
//! `WARNING/warning.ndjson` (empty). The jobSummary members and the line shapes are the ones
//! the HealthImaging developer guide ("Understanding import jobs") names; the members of an
//! `imageSetsSummary` element are not spelled out there and follow the project's fixture
//! `tests/fixtures/manifests/imaging-job-output-manifest.json`. All imported files of a job go
//! to one primary image set.
//!
//! HealthLake, under `<S3Uri>/<datastoreId>-FHIR_IMPORT-<jobId>/`: `manifest.json` =
//! `{inputDataConfig{s3Uri}, outputDataConfig{s3Uri, encryptionKeyID}, successOutput
//! {successOutputS3Uri}, failureOutput{failureOutputS3Uri}, numberOfScannedFiles,
//! numberOfFilesImported, sizeOfScannedFilesInMB, sizeOfDataImportedSuccessfullyInMB,
//! numberOfResourcesScanned, numberOfResourcesImportedSuccessfully,
//! numberOfResourcesWithCustomerError, numberOfResourcesWithServerError}`: the names of the
//! example in the HealthLake developer guide ("Manifest JSON file", import-job-manifest.html),
//! where `outputDataConfig.s3Uri` is the job's own folder. The guide does not document the files
//! in `SUCCESS/` and `FAILURE/`; this double writes `SUCCESS/success.ndjson`
//! (`{fileName, lineNumber, resourceType, id}`) and `FAILURE/failure.ndjson`
//! (`{fileName, lineNumber, statusCode, errorMessage}`; `lineNumber` is absent when the whole
//! file could not be read): consumers should list
//! the folders rather than assume the names. `numberOfFilesImported` counts files with at least
//! one imported resource.
//!
//! With `manifest_delay` zero the manifest is written before the status turns terminal;
//! otherwise that long after.
//!
//! # Admin endpoints (for the standalone binary)
//! - `GET /_double/health` → `ok`.
//! - `GET /_double/stats` → [`DoubleStats`] as JSON.
//! - `GET /_double/jobs/{jobId}` → what the job's start request gave, as recorded:
//!   `{service, jobId, datastoreId, kind, jobName, inputS3Uri, outputS3Uri, validationLevel,
//!   inputOwnerAccountId}` (null when absent); 404 for an unknown job.
//! - `GET /_double/faults` → the current [`Faults`]; `POST /_double/faults` with a [`Faults`]
//!   JSON body (`{"throttle_share": 0.3, "internal_error_share": 0.0, "job_failure_share": 0.0,
//!   "stall_share": 0.0, "scope": "all_operations" | "start_only", "event_drop_share": 0.0,
//!   "event_duplicate_share": 0.0, "event_delay_share": 0.0, "event_delay_ms": 0,
//!   "event_reorder_share": 0.0}`, missing members = 0 / all operations) replaces them: 204, or
//!   400 with a reason.

mod config;
mod engine;
mod events;
mod healthlake;
mod imaging;
mod model;
mod output;
/// Input validation from botocore's service models.
pub mod service_model;
/// SigV4 verification of every request, when the double is given credentials.
pub mod sigv4;
mod state;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, post, MethodFilter};
use axum::{Json, Router};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::{
    ConfigError, DoubleConfig, FaultScope, Faults, JobTimings, DEFAULT_BINARY_PORT, ENV_VARIABLES,
};
pub use events::{HEALTHLAKE_SOURCE, IMAGING_SOURCE};
pub use model::{ideal_drain, ideal_drain_with_bytes, jobs_needed};
pub use state::{DoubleStats, Service};

use state::{Locked, Operation};
use validate::ApiError;

/// What every handler and job task shares.
pub(crate) struct Shared {
    pub(crate) config: DoubleConfig,
    pub(crate) s3: aws_sdk_s3::Client,
    /// `http://127.0.0.1:PORT`, for the HealthLake data store endpoints.
    pub(crate) endpoint_url: String,
    pub(crate) state: Locked,
    /// Both services' botocore models, every request's input is checked against.
    pub(crate) models: Arc<service_model::ServiceModels>,
}

impl DoubleConfig {
    /// The job timings of `service`.
    pub fn timings(&self, service: Service) -> &JobTimings {
        match service {
            Service::HealthLake => &self.healthlake,
            Service::Imaging => &self.imaging,
        }
    }
}

/// Epoch seconds with millisecond precision: both protocols' timestamp format.
pub(crate) fn epoch_seconds(time: SystemTime) -> f64 {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    #[allow(clippy::cast_precision_loss)]
    let seconds = millis as f64 / 1000.0;
    seconds
}

/// The AWS clients the double works with: S3 for its jobs' input and output and, optionally,
/// EventBridge for the services' job events (events are off without it).
#[derive(Debug, Clone)]
pub struct DoubleClients {
    pub s3: aws_sdk_s3::Client,
    pub eventbridge: Option<aws_sdk_eventbridge::Client>,
}

impl DoubleClients {
    pub fn new(s3: aws_sdk_s3::Client, eventbridge: aws_sdk_eventbridge::Client) -> Self {
        Self {
            s3,
            eventbridge: Some(eventbridge),
        }
    }

    /// Both clients from one SDK configuration (the same endpoint, Region and credentials).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(
            aws_sdk_s3::Client::new(sdk),
            aws_sdk_eventbridge::Client::new(sdk),
        )
    }
}

/// S3 only: no job events.
impl From<aws_sdk_s3::Client> for DoubleClients {
    fn from(s3: aws_sdk_s3::Client) -> Self {
        Self {
            s3,
            eventbridge: None,
        }
    }
}

/// The running double. Dropping it stops the server (job tasks end on their own).
pub struct ServiceDouble {
    shared: Arc<Shared>,
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl ServiceDouble {
    /// Binds `127.0.0.1:<config.port>` (0 = any free port) and serves until dropped or
    /// [`ServiceDouble::shutdown`]. Fails on an invalid configuration, missing service models
    /// (`make venv` installs them) or a port in use.
    ///
    /// `clients`: an `aws_sdk_s3::Client` alone (no job events), or [`DoubleClients`] with an
    /// EventBridge client to put the job events with.
    pub async fn start(
        config: DoubleConfig,
        clients: impl Into<DoubleClients>,
    ) -> std::io::Result<Self> {
        let DoubleClients { s3, eventbridge } = clients.into();
        config
            .validate()
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
        let models = service_model::cached(config.service_models.as_deref())
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::NotFound, err))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let address = listener.local_addr()?;
        let endpoint_url = format!("http://{address}");
        let eventbridge = eventbridge.filter(|_| config.emit_events != Some(false));
        let shared = Arc::new(Shared {
            state: Locked::new(state::State::new(&config)),
            config,
            s3,
            endpoint_url,
            models,
        });
        let app = router(Arc::clone(&shared))?;
        let emitting = eventbridge.is_some();
        if let Some(eventbridge) = eventbridge {
            events::start_emitter(&shared, eventbridge);
        }
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                // A dropped sender means the double is gone: stop as well.
                let _ = shutdown_signal.await;
            });
            if let Err(err) = serving.await {
                warn!(error = %err, "service double server stopped with an error");
            }
        });
        info!(%address, job_events = emitting, "service double started");
        Ok(Self {
            shared,
            address,
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// A snapshot of what the double has seen and decided.
    pub fn stats(&self) -> DoubleStats {
        self.shared.state.lock().stats.clone()
    }

    /// Replaces fault injection from the next call on. Shares outside `0.0..=1.0` are clamped.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state.lock().set_faults(faults.clamped());
    }

    /// Makes every data store still CREATING ACTIVE now (see `State::finish_creating_datastores`).
    pub fn finish_creating_datastores(&self) {
        self.shared.state.lock().finish_creating_datastores();
    }

    /// Stops accepting connections and waits for the server to finish the requests in flight.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            if let Err(err) = server.await {
                warn!(error = %err, "service double server task failed");
            }
        }
    }
}

impl Drop for ServiceDouble {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> std::io::Result<Router> {
    // HealthImaging's paths and methods are its model's `http` bindings (restJson1), so a path
    // the SDKs would not send is not served either. HealthLake's awsJson1.0 is one `POST /`.
    let model = &shared.models.imaging;
    let binding = |operation: Operation| -> std::io::Result<(String, MethodFilter)> {
        let missing = || {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} has no http binding for {}",
                    model.path().display(),
                    operation.wire_name()
                ),
            )
        };
        let (method, uri) = model.http(operation.wire_name()).ok_or_else(missing)?;
        let method = axum::http::Method::from_bytes(method.as_bytes()).map_err(|_| missing())?;
        let filter = MethodFilter::try_from(method).map_err(|_| missing())?;
        Ok((uri.to_owned(), filter))
    };
    let mut app = Router::new().route("/", post(healthlake::dispatch));
    let (uri, method) = binding(Operation::StartDicomImportJob)?;
    app = app.route(&uri, on(method, imaging::start_import_job));
    let (uri, method) = binding(Operation::GetDicomImportJob)?;
    app = app.route(&uri, on(method, imaging::get_import_job));
    let (uri, method) = binding(Operation::ListDicomImportJobs)?;
    app = app.route(&uri, on(method, imaging::list_import_jobs));
    let (uri, method) = binding(Operation::CreateDatastore)?;
    app = app.route(&uri, on(method, imaging::create_datastore));
    let (uri, method) = binding(Operation::ListDatastores)?;
    app = app.route(&uri, on(method, imaging::list_datastores));
    let (uri, method) = binding(Operation::GetDatastore)?;
    app = app.route(&uri, on(method, imaging::get_datastore));
    Ok(app
        .route(
            "/datastore/{datastore_id}/r4/$export",
            post(healthlake::rest_export),
        )
        .route("/_double/health", get(|| async { "ok" }))
        .route("/_double/stats", get(admin_stats))
        .route("/_double/jobs/{job_id}", get(admin_job))
        .route(
            "/_double/faults",
            get(admin_get_faults).post(admin_set_faults),
        )
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            verify_signature,
        ))
        .with_state(shared)
        .layer(axum::middleware::map_response(with_request_id)))
}

/// The largest request body the double reads to check its signature.
const MAX_SIGNED_BODY: usize = 16 * 1024 * 1024;

/// Refuses a request that is not SigV4-signed with the configured credentials, as both services
/// do, with their error shape (HealthLake's awsJson `__type`/`Message`, HealthImaging's
/// `x-amzn-ErrorType` header and `message`). The admin endpoints are the double's own.
async fn verify_signature(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some((access_key, secret)) = shared.config.signing_credentials.clone() else {
        return next.run(request).await;
    };
    if request.uri().path().starts_with("/_double/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_SIGNED_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body: &bytes,
    };
    let credentials = |key: &str| (key == access_key).then(|| secret.clone());
    match sigv4::verify(&signed, &credentials, std::time::SystemTime::now()) {
        Ok(()) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Err(refused) => {
            let status = axum::http::StatusCode::from_u16(refused.status())
                .unwrap_or(axum::http::StatusCode::FORBIDDEN);
            let healthlake_api = parts.headers.contains_key("x-amz-target");
            if healthlake_api {
                let body = serde_json::json!({"__type": refused.error_type(), "Message": refused.message()});
                (
                    status,
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/x-amz-json-1.0",
                    )],
                    body.to_string(),
                )
                    .into_response()
            } else {
                let body = serde_json::json!({"message": refused.message()});
                (
                    status,
                    [
                        ("x-amzn-errortype", refused.error_type()),
                        ("content-type", "application/json"),
                    ],
                    body.to_string(),
                )
                    .into_response()
            }
        }
    }
}

/// The header both services put on every answer, errors included (the SDKs read it into
/// `request_id()`; awsJson1.0 and restJson1 spell it the same).
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

/// Stamps a fresh `x-amzn-RequestId` on every response: API operations, errors, the FHIR REST
/// `$export`, the admin endpoints and the fallback alike.
async fn with_request_id(mut response: Response) -> Response {
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id()) {
        response.headers_mut().insert(
            axum::http::HeaderName::from_static(REQUEST_ID_HEADER),
            value,
        );
    }
    response
}

/// A random version-4 UUID, as AWS's request ids are. Drawn from the thread's own RNG, not the
/// seeded fault RNG, so that request ids never shift which calls the faults hit.
fn request_id() -> String {
    let bits = fastrand::u128(..);
    // Version 4, variant 10xx.
    let bits = (bits & !(0xf << 76)) | (0x4 << 76);
    let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

async fn unknown_operation(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let error = ApiError::UnknownOperation(format!("No operation at {}", uri.path()));
    if headers.contains_key("x-amz-target") {
        healthlake::error_response(&error)
    } else {
        imaging::error_response(&error)
    }
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Json<DoubleStats> {
    Json(shared.state.lock().stats.clone())
}

/// What a start request gave a job, as the double recorded it (members the Describe/Get
/// operations do not return, such as `inputOwnerAccountId`, included).
async fn admin_job(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(job_id): axum::extract::Path<String>,
) -> Response {
    let state = shared.state.lock();
    let Some(job) = [Service::HealthLake, Service::Imaging]
        .into_iter()
        .find_map(|service| state.jobs.get(&(service, job_id.clone())))
    else {
        return (StatusCode::NOT_FOUND, format!("no job {job_id}")).into_response();
    };
    let request = &job.request;
    Json(serde_json::json!({
        "service": format!("{:?}", job.service),
        "jobId": job.id,
        "datastoreId": request.datastore_id,
        "kind": format!("{:?}", request.kind),
        "jobName": request.name,
        "inputS3Uri": request.input_s3_uri,
        "outputS3Uri": request.output_s3_uri,
        "validationLevel": request.validation_level,
        "inputOwnerAccountId": request.input_owner_account_id,
    }))
    .into_response()
}

async fn admin_get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.state.lock().faults.clone())
}

async fn admin_set_faults(
    State(shared): State<Arc<Shared>>,
    faults: Result<Json<Faults>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let faults = match faults {
        Ok(Json(faults)) => faults,
        Err(rejection) => return (StatusCode::BAD_REQUEST, rejection.body_text()).into_response(),
    };
    if let Err(err) = faults.validate() {
        return (StatusCode::BAD_REQUEST, err.to_string()).into_response();
    }
    info!(?faults, "fault injection changed");
    shared.state.lock().set_faults(faults);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn request_ids_are_fresh_version_4_uuids() {
        let first = request_id();
        let second = request_id();
        assert_ne!(first, second);
        for id in [first, second] {
            let groups: Vec<&str> = id.split('-').collect();
            let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(groups[2].starts_with('4'), "{id}");
            assert!(groups[3].starts_with(['8', '9', 'a', 'b']), "{id}");
        }
    }
}
