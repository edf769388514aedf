//! HealthImaging over restJson1: one path per operation, camelCase JSON members, errors as an
//! `x-amzn-ErrorType` header plus `{"message": ...}` with each error's own HTTP status.
//! Timestamps are epoch seconds as JSON numbers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::info;

use super::engine::spawn_job;
use super::healthlake::{page_size, page_start};
use super::state::{Datastore, Job, JobKind, JobRequest, Operation, Service, Started};
use super::validate::{self, required, ApiError};
use super::{epoch_seconds, Shared};

/// The restJson1 error shape.
pub(crate) fn error_response(error: &ApiError) -> Response {
    (
        error.imaging_status(),
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static("x-amzn-errortype"),
                error.type_name(),
            ),
        ],
        json!({"message": error.to_string()}).to_string(),
    )
        .into_response()
}

/// Runs one operation: fault injection first, then the handler; renders either outcome.
fn answer(
    shared: &Shared,
    operation: Operation,
    handler: impl FnOnce() -> Result<Value, ApiError>,
) -> Response {
    // The admission's lock guard must be gone before the handler locks again.
    let admitted = shared.state.lock().admit(operation);
    let result = admitted.and_then(|()| handler());
    match result {
        Ok(value) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
        Err(error) => {
            shared.state.lock().record_error(&error);
            error_response(&error)
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|err| ApiError::Serialization(format!("Cannot read the request body: {err}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartImportJobInput {
    job_name: Option<String>,
    data_access_role_arn: Option<String>,
    client_token: Option<String>,
    input_s3_uri: Option<String>,
    output_s3_uri: Option<String>,
    input_owner_account_id: Option<String>,
}

pub(crate) async fn start_import_job(
    State(shared): State<Arc<Shared>>,
    Path(datastore_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(&shared, Operation::StartDicomImportJob, || {
        let input: StartImportJobInput = parse(&body)?;
        validate::imaging_datastore_id(&datastore_id)?;
        let role_arn = required(input.data_access_role_arn, "dataAccessRoleArn")?;
        let client_token = required(input.client_token, "clientToken")?;
        let input_s3_uri = required(input.input_s3_uri, "inputS3Uri")?;
        let output_s3_uri = required(input.output_s3_uri, "outputS3Uri")?;
        validate::role_arn("dataAccessRoleArn", &role_arn)?;
        validate::imaging_client_token("clientToken", &client_token)?;
        validate::s3_uri("inputS3Uri", &input_s3_uri)?;
        validate::s3_uri("outputS3Uri", &output_s3_uri)?;
        if let Some(name) = &input.job_name {
            validate::imaging_job_name("jobName", name)?;
        }
        if let Some(account) = &input.input_owner_account_id {
            if account.len() != 12 || !account.bytes().all(|c| c.is_ascii_digit()) {
                return Err(ApiError::Validation(format!(
                    "1 validation error detected: Value '{account}' at 'inputOwnerAccountId' failed to satisfy constraint: Member must be 12 digits"
                )));
            }
            // Every bucket the double reads is its own account's: a start that names another
            // owner is one AWS refuses before reading anything.
            if account != &shared.config.account_id {
                return Err(ApiError::AccessDenied(format!(
                    "The input bucket of {input_s3_uri} is not owned by account {account}"
                )));
            }
        }
        let request = JobRequest {
            kind: JobKind::Import,
            datastore_id: datastore_id.clone(),
            name: input.job_name,
            role_arn,
            input_s3_uri,
            output_s3_uri,
            kms_key_id: None,
            since: None,
            validation_level: None,
            input_owner_account_id: input.input_owner_account_id,
            client_token: Some(client_token),
        };
        let mut state = shared.state.lock();
        let started = state.start_imaging_job(request)?;
        let job_id = started.job_id().to_owned();
        let job = state.job(Service::Imaging, &datastore_id, &job_id)?;
        let response = json!({
            "datastoreId": datastore_id,
            "jobId": job_id,
            "jobStatus": job.status(&shared.config.imaging),
            "submittedAt": epoch_seconds(job.submitted_at),
        });
        drop(state);
        match started {
            Started::Created { .. } => {
                info!(job_id, datastore_id, "DICOM import job created");
                spawn_job(Arc::clone(&shared), Service::Imaging, job_id);
            }
            Started::Replayed { .. } => {
                info!(job_id, datastore_id, "DICOM import job start replayed")
            }
        }
        Ok(response)
    })
}

pub(crate) async fn get_import_job(
    State(shared): State<Arc<Shared>>,
    Path((datastore_id, job_id)): Path<(String, String)>,
) -> Response {
    answer(&shared, Operation::GetDicomImportJob, || {
        validate::imaging_datastore_id(&datastore_id)?;
        validate::imaging_job_id(&job_id)?;
        let state = shared.state.lock();
        let job = state.job(Service::Imaging, &datastore_id, &job_id)?;
        Ok(json!({"jobProperties": job_properties(&shared, job, true)}))
    })
}

/// `jobProperties` of GetDICOMImportJob, or (without the S3 URIs) a `jobSummaries` element.
fn job_properties(shared: &Shared, job: &Job, with_locations: bool) -> Value {
    let mut properties = Map::new();
    let mut put = |key: &str, value: Value| {
        properties.insert(key.to_owned(), value);
    };
    put("jobId", json!(job.id));
    put(
        "jobName",
        json!(job.request.name.clone().unwrap_or_default()),
    );
    put("jobStatus", json!(job.status(&shared.config.imaging)));
    put("datastoreId", json!(job.request.datastore_id));
    put("dataAccessRoleArn", json!(job.request.role_arn));
    put("submittedAt", json!(epoch_seconds(job.submitted_at)));
    if with_locations {
        put("inputS3Uri", json!(job.request.input_s3_uri));
        put("outputS3Uri", json!(job.request.output_s3_uri));
    }
    if let Some(ended_at) = job.ended_at() {
        put("endedAt", json!(epoch_seconds(ended_at)));
    }
    if let Some(message) = job.message() {
        put("message", json!(message));
    }
    Value::Object(properties)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    job_status: Option<String>,
    next_token: Option<String>,
    max_results: Option<String>,
}

pub(crate) async fn list_import_jobs(
    State(shared): State<Arc<Shared>>,
    Path(datastore_id): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    answer(&shared, Operation::ListDicomImportJobs, || {
        let Query(query) = query.map_err(|err| ApiError::Validation(err.body_text()))?;
        validate::imaging_datastore_id(&datastore_id)?;
        let max_results = query
            .max_results
            .as_deref()
            .map(|value| {
                value.parse::<i64>().map_err(|_| {
                    ApiError::Validation(format!("maxResults {value:?} is not a number"))
                })
            })
            .transpose()?;
        let page_size = page_size(max_results, 50, "maxResults")?;
        let start = page_start(query.next_token.as_deref())?;
        let state = shared.state.lock();
        state.datastore(Service::Imaging, &datastore_id)?;
        let matching: Vec<&Job> = state
            .jobs_of(Service::Imaging, &datastore_id)
            .into_iter()
            .filter(|job| {
                query
                    .job_status
                    .as_deref()
                    .is_none_or(|status| job.status(&shared.config.imaging) == status)
            })
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .skip(start)
            .take(page_size)
            .map(|job| job_properties(&shared, job, false))
            .collect();
        let mut output = json!({"jobSummaries": page});
        if start + page_size < matching.len() {
            output["nextToken"] = json!((start + page_size).to_string());
        }
        Ok(output)
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateDatastoreInput {
    datastore_name: Option<String>,
    client_token: Option<String>,
}

pub(crate) async fn create_datastore(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    answer(&shared, Operation::CreateDatastore, || {
        let input: CreateDatastoreInput = parse(&body)?;
        let client_token = required(input.client_token, "clientToken")?;
        validate::imaging_client_token("clientToken", &client_token)?;
        if let Some(name) = &input.datastore_name {
            validate::name("datastoreName", name)?;
        }
        let datastore = shared.state.lock().create_datastore(
            Service::Imaging,
            input.datastore_name,
            Some(client_token),
        );
        info!(datastore_id = datastore.id, "imaging datastore created");
        Ok(json!({"datastoreId": datastore.id, "datastoreStatus": "ACTIVE"}))
    })
}

pub(crate) async fn get_datastore(
    State(shared): State<Arc<Shared>>,
    Path(datastore_id): Path<String>,
) -> Response {
    answer(&shared, Operation::GetDatastore, || {
        validate::imaging_datastore_id(&datastore_id)?;
        let state = shared.state.lock();
        let datastore = state.datastore(Service::Imaging, &datastore_id)?;
        Ok(json!({"datastoreProperties": datastore_properties(&shared, datastore)}))
    })
}

fn datastore_properties(shared: &Shared, datastore: &Datastore) -> Value {
    let created = epoch_seconds(datastore.created_at);
    json!({
        "datastoreId": datastore.id,
        "datastoreName": datastore.name.clone().unwrap_or_else(|| datastore.id.clone()),
        "datastoreStatus": "ACTIVE",
        "datastoreArn": format!(
            "arn:aws:medical-imaging:{}:{}:datastore/{}",
            shared.config.region, shared.config.account_id, datastore.id
        ),
        "createdAt": created,
        "updatedAt": created,
    })
}
