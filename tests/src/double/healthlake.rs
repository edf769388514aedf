//! HealthLake over awsJson1.0: `POST /` with `X-Amz-Target: HealthLake.<Operation>`, JSON in and
//! out, errors as `{"__type": ..., "Message": ...}`. Member names follow the SDK's
//! `protocol_serde` (PascalCase); timestamps are epoch seconds as JSON numbers. Also the one FHIR
//! REST operation the functions use: `POST <datastore endpoint>$export` ([`rest_export`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::info;

use super::engine::{spawn_job, watch_queued};
use super::output::megabytes;
use super::state::{Datastore, Job, JobKind, JobRequest, Operation, Service, Started};
use super::validate::{required, ApiError};
use super::{epoch_seconds, Shared};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
const TARGET_PREFIX: &str = "HealthLake.";

pub(crate) async fn dispatch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let Some(operation) = target
        .strip_prefix(TARGET_PREFIX)
        .and_then(Operation::from_healthlake_name)
    else {
        return error_response(&ApiError::UnknownOperation(format!(
            "Unknown operation {target:?}"
        )));
    };
    match handle(&shared, operation, &body) {
        Ok(value) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            value.to_string(),
        )
            .into_response(),
        Err(error) => {
            shared.state.lock().record_error(&error);
            error_response(&error)
        }
    }
}

/// The awsJson1.0 error shape, its member spelled as HealthLake's model spells it (`Message`;
/// botocore drops a `message` it does not know).
pub(crate) fn error_response(error: &ApiError) -> Response {
    let body = json!({"__type": error.type_name(), "Message": error.to_string()});
    (
        error.healthlake_status(),
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn handle(shared: &Arc<Shared>, operation: Operation, body: &[u8]) -> Result<Value, ApiError> {
    shared.state.lock().admit(operation)?;
    let input: Value = parse(body)?;
    // Patterns, lengths, enums and required members: the model's, before anything else.
    shared
        .models
        .healthlake
        .validate(operation.wire_name(), &input)?;
    match operation {
        Operation::StartFhirImportJob => start_import_job(shared, typed(input)?),
        Operation::DescribeFhirImportJob => describe_job(shared, typed(input)?, JobKind::Import),
        Operation::ListFhirImportJobs => list_jobs(shared, typed(input)?, JobKind::Import),
        Operation::ListFhirExportJobs => list_jobs(shared, typed(input)?, JobKind::Export),
        Operation::StartFhirExportJob => start_export_job(shared, typed(input)?),
        Operation::DescribeFhirExportJob => describe_job(shared, typed(input)?, JobKind::Export),
        Operation::CreateFhirDatastore => create_datastore(shared, typed(input)?),
        Operation::DescribeFhirDatastore => describe_datastore(shared, typed(input)?),
        Operation::ListFhirDatastores => list_datastores(shared, typed(input)?),
        _ => Err(ApiError::UnknownOperation(format!(
            "{} is not a HealthLake operation",
            operation.wire_name()
        ))),
    }
}

/// The validated input as the operation's own struct.
pub(crate) fn typed<T: DeserializeOwned>(input: Value) -> Result<T, ApiError> {
    serde_json::from_value(input)
        .map_err(|err| ApiError::Serialization(format!("Cannot read the request body: {err}")))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // The SDK sends `{}` for an input without members; tolerate a bare empty body too.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|err| ApiError::Serialization(format!("Cannot read the request body: {err}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartImportJobInput {
    job_name: Option<String>,
    input_data_config: Option<InputDataConfig>,
    job_output_data_config: Option<OutputDataConfig>,
    datastore_id: Option<String>,
    data_access_role_arn: Option<String>,
    client_token: Option<String>,
    validation_level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InputDataConfig {
    s3_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OutputDataConfig {
    s3_configuration: Option<S3Configuration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Configuration {
    s3_uri: Option<String>,
    kms_key_id: Option<String>,
}

fn start_import_job(shared: &Arc<Shared>, input: StartImportJobInput) -> Result<Value, ApiError> {
    let input_s3_uri = required(
        required(input.input_data_config, "InputDataConfig")?.s3_uri,
        "InputDataConfig.S3Uri",
    )?;
    let (output_s3_uri, kms_key_id) =
        output_location(input.job_output_data_config, "JobOutputDataConfig")?;
    let datastore_id = required(input.datastore_id, "DatastoreId")?;
    let role_arn = required(input.data_access_role_arn, "DataAccessRoleArn")?;
    let request = JobRequest {
        kind: JobKind::Import,
        datastore_id: datastore_id.clone(),
        name: input.job_name,
        role_arn,
        input_s3_uri,
        output_s3_uri,
        kms_key_id: Some(kms_key_id),
        since: None,
        validation_level: input.validation_level,
        input_owner_account_id: None,
        client_token: input.client_token,
    };
    submit_fhir_job(shared, request)
}

/// Queues (or replays) a validated import or export and answers as both Start operations do.
fn submit_fhir_job(shared: &Arc<Shared>, request: JobRequest) -> Result<Value, ApiError> {
    let kind = request.kind;
    let datastore_id = request.datastore_id.clone();
    let mut state = shared.state.lock();
    let started = state.start_fhir_job(request)?;
    let job_id = started.job_id().to_owned();
    let status = state
        .job(Service::HealthLake, &datastore_id, &job_id)?
        .status(&shared.config.healthlake);
    drop(state);
    match &started {
        Started::Created { run_now, .. } => {
            info!(
                job_id,
                datastore_id,
                ?kind,
                queued = !run_now,
                "FHIR job created"
            );
            if *run_now {
                spawn_job(Arc::clone(shared), Service::HealthLake, job_id.clone());
            } else {
                watch_queued(Arc::clone(shared), job_id.clone());
            }
        }
        Started::Replayed { .. } => info!(job_id, datastore_id, ?kind, "FHIR job start replayed"),
    }
    Ok(json!({"JobId": job_id, "JobStatus": status, "DatastoreId": datastore_id}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartExportJobInput {
    job_name: Option<String>,
    output_data_config: Option<OutputDataConfig>,
    datastore_id: Option<String>,
    data_access_role_arn: Option<String>,
    client_token: Option<String>,
}

fn start_export_job(shared: &Arc<Shared>, input: StartExportJobInput) -> Result<Value, ApiError> {
    let datastore_id = required(input.datastore_id.clone(), "DatastoreId")?;
    submit_fhir_job(shared, export_request(input, datastore_id, None)?)
}

/// The validated export of StartFHIRExportJob and of `$export` (whose data store is in the path
/// and whose `_since` is in the query).
fn export_request(
    input: StartExportJobInput,
    datastore_id: String,
    since: Option<SystemTime>,
) -> Result<JobRequest, ApiError> {
    let (output_s3_uri, kms_key_id) =
        output_location(input.output_data_config, "OutputDataConfig")?;
    let role_arn = required(input.data_access_role_arn, "DataAccessRoleArn")?;
    Ok(JobRequest {
        kind: JobKind::Export,
        datastore_id,
        name: input.job_name,
        role_arn,
        input_s3_uri: String::new(),
        output_s3_uri,
        kms_key_id: Some(kms_key_id),
        since,
        validation_level: None,
        input_owner_account_id: None,
        client_token: input.client_token,
    })
}

/// The output S3 location and KMS key of a start request's `<member>.S3Configuration`, validated.
fn output_location(
    config: Option<OutputDataConfig>,
    member: &str,
) -> Result<(String, String), ApiError> {
    let s3_configuration = required(
        required(config, member)?.s3_configuration,
        &format!("{member}.S3Configuration"),
    )?;
    let uri_member = format!("{member}.S3Configuration.S3Uri");
    let output_s3_uri = required(s3_configuration.s3_uri, &uri_member)?;
    let kms_key_id = required(
        s3_configuration.kms_key_id,
        &format!("{member}.S3Configuration.KmsKeyId"),
    )?;
    Ok((output_s3_uri, kms_key_id))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeImportJobInput {
    datastore_id: Option<String>,
    job_id: Option<String>,
}

/// DescribeFHIRImportJob and DescribeFHIRExportJob.
fn describe_job(
    shared: &Shared,
    input: DescribeImportJobInput,
    kind: JobKind,
) -> Result<Value, ApiError> {
    let datastore_id = required(input.datastore_id, "DatastoreId")?;
    let job_id = required(input.job_id, "JobId")?;
    let state = shared.state.lock();
    let job = state.fhir_job(kind, &datastore_id, &job_id)?;
    let member = match kind {
        JobKind::Import => "ImportJobProperties",
        JobKind::Export => "ExportJobProperties",
    };
    Ok(json!({ member: job_properties(shared, job) }))
}

/// An import or export job as the Describe and List operations answer it.
fn job_properties(shared: &Shared, job: &Job) -> Value {
    let timings = &shared.config.healthlake;
    let mut properties = Map::new();
    let mut put = |key: &str, value: Value| {
        properties.insert(key.to_owned(), value);
    };
    put("JobId", json!(job.id));
    put("JobStatus", json!(job.status(timings)));
    put("SubmitTime", json!(epoch_seconds(job.submitted_at)));
    put("DatastoreId", json!(job.request.datastore_id));
    let is_import = job.request.kind == JobKind::Import;
    if is_import {
        put(
            "InputDataConfig",
            json!({"S3Uri": job.request.input_s3_uri}),
        );
    }
    put(
        if is_import {
            "JobOutputDataConfig"
        } else {
            "OutputDataConfig"
        },
        json!({"S3Configuration": {
            "S3Uri": job.request.output_s3_uri,
            "KmsKeyId": job.request.kms_key_id,
        }}),
    );
    put("DataAccessRoleArn", json!(job.request.role_arn));
    if let Some(name) = &job.request.name {
        put("JobName", json!(name));
    }
    if let Some(level) = &job.request.validation_level {
        put("ValidationLevel", json!(level));
    }
    if let Some(ended_at) = job.ended_at() {
        put("EndTime", json!(epoch_seconds(ended_at)));
    }
    if let Some(message) = job.message() {
        put("Message", json!(message));
    }
    // Only imports report progress.
    if let Some(counts) = job.progress().filter(|_| is_import) {
        let elapsed = job.submitted_instant.elapsed().as_secs_f64().max(0.001);
        #[allow(clippy::cast_precision_loss)]
        let throughput = counts.resources_imported as f64 / elapsed;
        put(
            "JobProgressReport",
            json!({
                "TotalNumberOfScannedFiles": counts.scanned_files,
                "TotalSizeOfScannedFilesInMB": megabytes(counts.scanned_bytes),
                "TotalNumberOfImportedFiles": counts.imported_files,
                "TotalNumberOfResourcesScanned": counts.resources_scanned,
                "TotalNumberOfResourcesImported": counts.resources_imported,
                "TotalNumberOfResourcesWithCustomerError": counts.resources_with_customer_error,
                "TotalNumberOfFilesReadWithCustomerError": counts.files_with_customer_error,
                "Throughput": throughput,
            }),
        );
    }
    Value::Object(properties)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListImportJobsInput {
    datastore_id: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    job_name: Option<String>,
    job_status: Option<String>,
    submitted_before: Option<f64>,
    submitted_after: Option<f64>,
}

/// ListFHIRImportJobs and ListFHIRExportJobs: the same filters over one kind of job.
fn list_jobs(
    shared: &Shared,
    input: ListImportJobsInput,
    kind: JobKind,
) -> Result<Value, ApiError> {
    let datastore_id = required(input.datastore_id, "DatastoreId")?;
    let page_size = page_size(input.max_results, 500, "MaxResults")?;
    let start = page_start(input.next_token.as_deref())?;
    let timings = &shared.config.healthlake;
    let state = shared.state.lock();
    state.datastore(Service::HealthLake, &datastore_id)?;
    let matching: Vec<&Job> = state
        .jobs_of(Service::HealthLake, &datastore_id)
        .into_iter()
        .filter(|job| job.request.kind == kind)
        .filter(|job| {
            input
                .job_status
                .as_deref()
                .is_none_or(|status| job.status(timings) == status)
        })
        .filter(|job| {
            input
                .job_name
                .as_deref()
                .is_none_or(|name| job.request.name.as_deref() == Some(name))
        })
        .filter(|job| {
            let submitted = epoch_seconds(job.submitted_at);
            input
                .submitted_before
                .is_none_or(|before| submitted < before)
                && input.submitted_after.is_none_or(|after| submitted > after)
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .map(|job| job_properties(shared, job))
        .collect();
    let list = match kind {
        JobKind::Import => "ImportJobPropertiesList",
        JobKind::Export => "ExportJobPropertiesList",
    };
    let mut output = json!({ list: page });
    if start + page_size < matching.len() {
        output["NextToken"] = json!((start + page_size).to_string());
    }
    Ok(output)
}

/// MaxResults within the model's bounds.
pub(crate) fn page_size(
    max_results: Option<i64>,
    limit: usize,
    member: &str,
) -> Result<usize, ApiError> {
    match max_results {
        None => Ok(limit),
        Some(value) => usize::try_from(value)
            .ok()
            .filter(|size| (1..=limit).contains(size))
            .ok_or_else(|| {
                ApiError::Validation(format!(
                    "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must be between 1 and {limit}"
                ))
            }),
    }
}

/// This double's NextToken is the index of the first job of the page.
pub(crate) fn page_start(next_token: Option<&str>) -> Result<usize, ApiError> {
    next_token.map_or(Ok(0), |token| {
        token
            .parse()
            .map_err(|_| ApiError::Validation(format!("Invalid pagination token {token:?}")))
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateDatastoreInput {
    datastore_name: Option<String>,
    datastore_type_version: Option<String>,
    client_token: Option<String>,
    sse_configuration: Option<Value>,
    preload_data_config: Option<Value>,
    identity_provider_configuration: Option<Value>,
}

fn create_datastore(shared: &Shared, input: CreateDatastoreInput) -> Result<Value, ApiError> {
    // The model's enum allows R4 only, the one version every data store reports.
    required(input.datastore_type_version, "DatastoreTypeVersion")?;
    let mut described = Map::new();
    // What HealthLake reports for a data store created without them: encrypted with an AWS
    // owned key, and AWS_AUTH (SigV4) as its authorization strategy.
    described.insert(
        "SseConfiguration".to_owned(),
        input
            .sse_configuration
            .unwrap_or_else(|| json!({"KmsEncryptionConfig": {"CmkType": "AWS_OWNED_KMS_KEY"}})),
    );
    described.insert(
        "IdentityProviderConfiguration".to_owned(),
        input.identity_provider_configuration.unwrap_or_else(
            || json!({"AuthorizationStrategy": "AWS_AUTH", "FineGrainedAuthorizationEnabled": false}),
        ),
    );
    if let Some(preload) = input.preload_data_config {
        described.insert("PreloadDataConfig".to_owned(), preload);
    }
    let datastore = shared.state.lock().create_datastore(
        Service::HealthLake,
        input.datastore_name,
        input.client_token,
        described,
    );
    info!(datastore_id = datastore.id, "FHIR datastore created");
    Ok(json!({
        "DatastoreId": datastore.id,
        "DatastoreArn": datastore_arn(shared, &datastore),
        "DatastoreStatus": datastore.status(),
        "DatastoreEndpoint": datastore_endpoint(shared, &datastore),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeDatastoreInput {
    datastore_id: Option<String>,
}

fn describe_datastore(shared: &Shared, input: DescribeDatastoreInput) -> Result<Value, ApiError> {
    let datastore_id = required(input.datastore_id, "DatastoreId")?;
    let state = shared.state.lock();
    let datastore = state.datastore(Service::HealthLake, &datastore_id)?;
    Ok(json!({"DatastoreProperties": datastore_properties(shared, datastore)}))
}

/// `DatastoreProperties` as DescribeFHIRDatastore and ListFHIRDatastores answer it.
fn datastore_properties(shared: &Shared, datastore: &Datastore) -> Value {
    let mut properties = datastore.described_members.clone();
    let mut put = |key: &str, value: Value| {
        properties.insert(key.to_owned(), value);
    };
    put("DatastoreId", json!(datastore.id));
    put("DatastoreArn", json!(datastore_arn(shared, datastore)));
    put("DatastoreStatus", json!(datastore.status()));
    put("CreatedAt", json!(epoch_seconds(datastore.created_at)));
    put("DatastoreTypeVersion", json!("R4"));
    put(
        "DatastoreEndpoint",
        json!(datastore_endpoint(shared, datastore)),
    );
    if let Some(name) = &datastore.name {
        put("DatastoreName", json!(name));
    }
    Value::Object(properties)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DatastoreFilter {
    datastore_name: Option<String>,
    datastore_status: Option<String>,
    created_before: Option<f64>,
    created_after: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListDatastoresInput {
    #[serde(default)]
    filter: Option<DatastoreFilter>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListFHIRDatastores: every data store of the account, oldest first, through the filter.
fn list_datastores(shared: &Shared, input: ListDatastoresInput) -> Result<Value, ApiError> {
    let page_size = page_size(input.max_results, 500, "MaxResults")?;
    let start = page_start(input.next_token.as_deref())?;
    let filter = input.filter.unwrap_or_default();
    let state = shared.state.lock();
    let matching: Vec<&Datastore> = state
        .datastores_of(Service::HealthLake)
        .into_iter()
        .filter(|datastore| {
            filter
                .datastore_name
                .as_deref()
                .is_none_or(|name| datastore.name.as_deref() == Some(name))
        })
        .filter(|datastore| {
            filter
                .datastore_status
                .as_deref()
                .is_none_or(|status| datastore.status() == status)
        })
        .filter(|datastore| {
            let created = epoch_seconds(datastore.created_at);
            filter.created_before.is_none_or(|before| created < before)
                && filter.created_after.is_none_or(|after| created > after)
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .map(|datastore| datastore_properties(shared, datastore))
        .collect();
    let mut output = json!({"DatastorePropertiesList": page});
    if start + page_size < matching.len() {
        output["NextToken"] = json!((start + page_size).to_string());
    }
    Ok(output)
}

fn datastore_arn(shared: &Shared, datastore: &Datastore) -> String {
    format!(
        "arn:aws:healthlake:{}:{}:datastore/fhir/{}",
        shared.config.region, shared.config.account_id, datastore.id
    )
}

/// The double does not serve FHIR; the endpoint only has the documented shape.
fn datastore_endpoint(shared: &Shared, datastore: &Datastore) -> String {
    format!("{}/datastore/{}/r4/", shared.endpoint_url, datastore.id)
}

/// The FHIR REST `POST <datastore endpoint>$export[?_since=<instant>]`: an export job like
/// StartFHIRExportJob's (same queue, same Describe/List), without a ClientToken. It answers
/// `202 Accepted` with the job and its status location. The request must carry a SigV4
/// `Authorization` header (its signature is verified before, by the router, when the double has
/// credentials).
pub(crate) async fn rest_export(
    State(shared): State<Arc<Shared>>,
    Path(datastore_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 Credential="))
        && headers.contains_key("x-amz-date");
    if !signed {
        return operation_outcome(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Missing Authentication Token",
        );
    }
    if let Some(refusal) = bulk_data_refusal(&headers) {
        return refusal;
    }
    let admitted = shared.state.lock().admit(Operation::FhirRestExport);
    let result = admitted.and_then(|()| start_rest_export(&shared, &datastore_id, &query, &body));
    match result {
        Ok((job_id, status)) => {
            let endpoint = format!("{}/datastore/{datastore_id}/r4/", shared.endpoint_url);
            (
                StatusCode::ACCEPTED,
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (
                        header::CONTENT_LOCATION,
                        format!("{endpoint}export/{job_id}"),
                    ),
                ],
                json!({"datastoreId": datastore_id, "jobStatus": status, "jobId": job_id})
                    .to_string(),
            )
                .into_response()
        }
        Err(error) => {
            shared.state.lock().record_error(&error);
            let status = match &error {
                ApiError::Throttling(_) => StatusCode::TOO_MANY_REQUESTS,
                other => other.imaging_status(),
            };
            operation_outcome(status, error.type_name(), &error.to_string())
        }
    }
}

/// The Bulk Data kick-off headers, checked as a strict FHIR server does. The FHIR Bulk Data
/// Access IG (v2.0.0, "Bulk Data Kick-off Request", Headers:
/// https://hl7.org/fhir/uv/bulkdata/export.html#headers) asks clients for
/// `Accept: application/fhir+json` ("Currently, only application/fhir+json is supported") and
/// `Prefer: respond-async` ("Currently, only a value of respond-async is supported"), and lets a
/// server that misses either "return an error"; its "Response - Error" is "HTTP status code of
/// 4XX or 5XX" whose body "SHALL be a FHIR OperationOutcome resource in JSON format". It names no
/// exact status, so: 400 Bad Request for a missing header (the request is incomplete), and 406
/// Not Acceptable (RFC 9110 §15.5.7) for an `Accept` that is present but does not name
/// `application/fhir+json` (wildcards are not taken as naming it: the double is there to catch a
/// client that forgets the header). `Prefer` may carry other preferences besides
/// `respond-async` (`respond-async, handling=lenient`), in one header or several.
fn bulk_data_refusal(headers: &HeaderMap) -> Option<Response> {
    let values = |name: header::HeaderName| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    };
    let accept = values(header::ACCEPT);
    if accept.is_empty() {
        return Some(operation_outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "The Accept header is required on a Bulk Data kick-off request: Accept: application/fhir+json",
        ));
    }
    let media_type = |item: &String| item.split(';').next().unwrap_or_default().trim().to_owned();
    if !accept
        .iter()
        .any(|item| media_type(item) == "application/fhir+json")
    {
        return Some(operation_outcome(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            &format!(
                "Accept {:?} is not supported: only application/fhir+json is",
                accept.join(", ")
            ),
        ));
    }
    let prefer = values(header::HeaderName::from_static("prefer"));
    if !prefer.iter().any(|item| item == "respond-async") {
        return Some(operation_outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "A Bulk Data kick-off request requires the header Prefer: respond-async",
        ));
    }
    None
}

fn start_rest_export(
    shared: &Arc<Shared>,
    datastore_id: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(String, &'static str), ApiError> {
    // `$export` is not in HealthLake's API model; its body carries StartFHIRExportJob's members,
    // which are checked as that operation's, with the data store of the path.
    let mut input: Value = parse(body)?;
    if let Value::Object(members) = &mut input {
        members.insert("DatastoreId".to_owned(), json!(datastore_id));
    }
    shared
        .models
        .healthlake
        .validate(Operation::StartFhirExportJob.wire_name(), &input)?;
    let input: StartExportJobInput = typed(input)?;
    let since = query
        .get("_since")
        .map(|raw| {
            time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
                .map(SystemTime::from)
                .map_err(|_| ApiError::Validation(format!("_since {raw:?} is not a valid instant")))
        })
        .transpose()?;
    // `$export` takes no ClientToken: a retry is recognised by its JobName, if at all.
    let request = export_request(
        StartExportJobInput {
            client_token: None,
            ..input
        },
        datastore_id.to_owned(),
        since,
    )?;
    let mut state = shared.state.lock();
    let started = state.start_fhir_job(request)?;
    state.stats.fhir_rest_exports_created += 1;
    let job_id = started.job_id().to_owned();
    let status = state
        .job(Service::HealthLake, datastore_id, &job_id)?
        .status(&shared.config.healthlake);
    drop(state);
    match started {
        Started::Created { run_now: true, .. } => {
            spawn_job(Arc::clone(shared), Service::HealthLake, job_id.clone());
        }
        Started::Created { run_now: false, .. } => {
            watch_queued(Arc::clone(shared), job_id.clone());
        }
        Started::Replayed { .. } => {}
    }
    info!(
        job_id,
        datastore_id,
        since = since.is_some(),
        "FHIR $export job created"
    );
    Ok((job_id, status))
}

/// A FHIR OperationOutcome: how the FHIR endpoints answer an error.
fn operation_outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}
