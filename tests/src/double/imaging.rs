//! HealthImaging over restJson1: one path per operation, camelCase JSON members, errors as an
//! `x-amzn-ErrorType` header plus `{"message": ...}` with each error's own HTTP status.
//! Timestamps are epoch seconds as JSON numbers.

use std::collections::HashMap;
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
use super::healthlake::{page_size, page_start, typed};
use super::state::{Datastore, Job, JobKind, JobRequest, Operation, Service, Started};
use super::validate::{required, ApiError};
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

/// The operation's input bound from the URI labels, the query string and the body as its model
/// says, checked against the model, then read as the operation's own struct.
fn modelled_input<T: DeserializeOwned>(
    shared: &Shared,
    operation: Operation,
    labels: &[(&str, &str)],
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<T, ApiError> {
    let model = &shared.models.imaging;
    let input = model.rest_input(operation.wire_name(), labels, query, parse(body)?)?;
    model.validate(operation.wire_name(), &input)?;
    typed(input)
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
    datastore_id: Option<String>,
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
        let input: StartImportJobInput = modelled_input(
            &shared,
            Operation::StartDicomImportJob,
            &[("datastoreId", &datastore_id)],
            &HashMap::new(),
            &body,
        )?;
        let datastore_id = required(input.datastore_id, "datastoreId")?;
        let role_arn = required(input.data_access_role_arn, "dataAccessRoleArn")?;
        let client_token = required(input.client_token, "clientToken")?;
        let input_s3_uri = required(input.input_s3_uri, "inputS3Uri")?;
        let output_s3_uri = required(input.output_s3_uri, "outputS3Uri")?;
        if let Some(account) = &input.input_owner_account_id {
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
        let _: Value = modelled_input(
            &shared,
            Operation::GetDicomImportJob,
            &[("datastoreId", &datastore_id), ("jobId", &job_id)],
            &HashMap::new(),
            &[],
        )?;
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
    max_results: Option<i64>,
}

pub(crate) async fn list_import_jobs(
    State(shared): State<Arc<Shared>>,
    Path(datastore_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    answer(&shared, Operation::ListDicomImportJobs, || {
        let query: ListQuery = modelled_input(
            &shared,
            Operation::ListDicomImportJobs,
            &[("datastoreId", &datastore_id)],
            &query,
            &[],
        )?;
        let page_size = page_size(query.max_results, 50, "maxResults")?;
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
    kms_key_arn: Option<String>,
    lambda_authorizer_arn: Option<String>,
    lossless_storage_format: Option<String>,
}

pub(crate) async fn create_datastore(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    answer(&shared, Operation::CreateDatastore, || {
        let input: CreateDatastoreInput = modelled_input(
            &shared,
            Operation::CreateDatastore,
            &[],
            &HashMap::new(),
            &body,
        )?;
        let client_token = required(input.client_token, "clientToken")?;
        let described: Map<String, Value> = [
            ("kmsKeyArn", input.kms_key_arn),
            ("lambdaAuthorizerArn", input.lambda_authorizer_arn),
            ("losslessStorageFormat", input.lossless_storage_format),
        ]
        .into_iter()
        .filter_map(|(member, value)| Some((member.to_owned(), json!(value?))))
        .collect();
        let datastore = shared.state.lock().create_datastore(
            Service::Imaging,
            input.datastore_name,
            Some(client_token),
            described,
        );
        info!(datastore_id = datastore.id, "imaging datastore created");
        Ok(json!({"datastoreId": datastore.id, "datastoreStatus": datastore.status()}))
    })
}

pub(crate) async fn get_datastore(
    State(shared): State<Arc<Shared>>,
    Path(datastore_id): Path<String>,
) -> Response {
    answer(&shared, Operation::GetDatastore, || {
        let _: Value = modelled_input(
            &shared,
            Operation::GetDatastore,
            &[("datastoreId", &datastore_id)],
            &HashMap::new(),
            &[],
        )?;
        let state = shared.state.lock();
        let datastore = state.datastore(Service::Imaging, &datastore_id)?;
        Ok(json!({"datastoreProperties": datastore_properties(&shared, datastore, true)}))
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListDatastoresQuery {
    datastore_status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListDatastores: every data store of the account, oldest first, as `datastoreSummaries`.
pub(crate) async fn list_datastores(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    answer(&shared, Operation::ListDatastores, || {
        let query: ListDatastoresQuery =
            modelled_input(&shared, Operation::ListDatastores, &[], &query, &[])?;
        let page_size = page_size(query.max_results, 50, "maxResults")?;
        let start = page_start(query.next_token.as_deref())?;
        let state = shared.state.lock();
        let matching: Vec<&Datastore> = state
            .datastores_of(Service::Imaging)
            .into_iter()
            .filter(|datastore| {
                query
                    .datastore_status
                    .as_deref()
                    .is_none_or(|status| datastore.status() == status)
            })
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .skip(start)
            .take(page_size)
            .map(|datastore| datastore_properties(&shared, datastore, false))
            .collect();
        let mut output = json!({"datastoreSummaries": page});
        if start + page_size < matching.len() {
            output["nextToken"] = json!((start + page_size).to_string());
        }
        Ok(output)
    })
}

/// `datastoreProperties` of GetDatastore, or (without the create request's settings) a
/// `datastoreSummaries` element.
fn datastore_properties(shared: &Shared, datastore: &Datastore, with_settings: bool) -> Value {
    let created = epoch_seconds(datastore.created_at);
    let mut properties = if with_settings {
        datastore.described_members.clone()
    } else {
        Map::new()
    };
    let mut put = |key: &str, value: Value| {
        properties.insert(key.to_owned(), value);
    };
    put("datastoreId", json!(datastore.id));
    put(
        "datastoreName",
        json!(datastore
            .name
            .clone()
            .unwrap_or_else(|| datastore.id.clone())),
    );
    put("datastoreStatus", json!(datastore.status()));
    put(
        "datastoreArn",
        json!(format!(
            "arn:aws:medical-imaging:{}:{}:datastore/{}",
            shared.config.region, shared.config.account_id, datastore.id
        )),
    );
    put("createdAt", json!(created));
    put("updatedAt", json!(created));
    Value::Object(properties)
}
