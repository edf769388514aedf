//! HealthLake's FHIR REST `$export`, for what `StartFHIRExportJob` cannot do: export only what
//! changed since an instant (`_since`). The request is SigV4-signed HTTP to the data store's own
//! endpoint, which is read from `DescribeFHIRDatastore` (so the SDK's standard endpoint variable
//! decides where it goes, locally as on AWS). The job it creates is an ordinary export job:
//! `DescribeFHIRExportJob` follows it like any other.
//!
//! The endpoint must be `https`: plain `http` is accepted only to a loopback host (the local
//! service double), since the request carries a SigV4 signature and names the output bucket and
//! role. Anything else is refused before any credential is read.
//!
//! `$export` takes no ClientToken. The job is named after our job id and looked up by that name
//! (`ListFHIRExportJobs`) before a new one is requested, so a retried start adopts the job an
//! earlier attempt created instead of starting a second one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use healthimport::domain::job::{JobStatus, Service, Timestamp};
use healthimport::ports::service_jobs::{Retry, ServiceError, StartRequest, StartedJob};

use crate::errors::{service_error, started_job};

const SERVICE: Service = Service::HealthLake;
const OPERATION: &str = "$export";
/// The signing name of HealthLake (its FHIR endpoints included).
const SIGNING_NAME: &str = "healthlake";
/// Whole-request deadline of the `$export` POST: a start, not a transfer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// An answer larger than this is not a start response.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of an error body is kept in a message.
const MAX_ERROR_CHARS: usize = 300;
/// FHIR Bulk Data: a kick-off request "SHALL" carry `Accept: application/fhir+json` and
/// `Prefer: respond-async` (https://hl7.org/fhir/uv/bulkdata/export.html#headers).
const FHIR_JSON: &str = "application/fhir+json";
const PREFER: &str = "prefer";
const RESPOND_ASYNC: &str = "respond-async";
/// What a query value keeps unencoded: RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// as SigV4's canonical query string does, so that the bytes sent are the bytes signed.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

type Https = HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Starts `$export` jobs with `_since`.
#[derive(Clone)]
pub struct RestExports {
    healthlake: aws_sdk_healthlake::Client,
    /// Built at the first `$export`, not at init: reading the TLS roots would otherwise be paid
    /// by every cold start of every function that merely could start an incremental export.
    http: Arc<OnceLock<Result<Https, String>>>,
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    /// Data store id → FHIR endpoint, read once per data store.
    endpoints: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for RestExports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestExports")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What the export request asks HealthLake to do.
#[derive(Debug, Clone, Copy)]
pub struct ExportDestination<'a> {
    pub data_access_role_arn: &'a str,
    pub kms_key_id: &'a str,
}

impl RestExports {
    /// The client, on the SDK configuration's credentials and region. No I/O: the HTTP client
    /// is built when the first `$export` is sent.
    pub fn new(aws: &aws_config::SdkConfig) -> Self {
        RestExports {
            healthlake: aws_sdk_healthlake::Client::new(aws),
            http: Arc::new(OnceLock::new()),
            credentials: aws.credentials_provider(),
            region: aws.region().map(|r| r.to_string()).unwrap_or_default(),
            endpoints: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The HTTP client; building its TLS connector reads the platform's root certificates.
    fn http(&self) -> Result<&Https, ServiceError> {
        self.http
            .get_or_init(|| {
                let https = HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| format!("the TLS root certificates cannot be read: {e}"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(HttpClient::builder(TokioExecutor::new()).build(https))
            })
            .as_ref()
            .map_err(|message| ServiceError {
                service: SERVICE,
                operation: OPERATION,
                code: "TlsRootsUnavailable".to_owned(),
                message: message.clone(),
                retry: Retry::Never,
                source: None,
            })
    }

    /// Starts (or adopts) the export of what changed in the data store since `since`.
    pub async fn start_since(
        &self,
        request: &StartRequest,
        since: Timestamp,
        destination: ExportDestination<'_>,
    ) -> Result<StartedJob, ServiceError> {
        let job_name = request.job_id.as_str();
        if let Some(existing) = self.find_named(&request.datastore_id, job_name).await? {
            tracing::info!(service_job_id = %existing.service_job_id, "an earlier $export of this job exists; adopting it");
            return Ok(existing);
        }
        let endpoint = self.endpoint(&request.datastore_id).await?;
        let url = export_url(&endpoint, since);
        let body = json!({
            "JobName": job_name,
            "OutputDataConfig": {"S3Configuration": {
                "S3Uri": request.output_s3_uri,
                "KmsKeyId": destination.kms_key_id,
            }},
            "DataAccessRoleArn": destination.data_access_role_arn,
        })
        .to_string();
        let signed = self.signed_post(&url, body).await?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http()?.request(signed))
            .await
            .map_err(|_| transport("Timeout", format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| transport("DispatchFailure", e.to_string()))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| transport("ResponseError", e.to_string()))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &answer, &bytes));
        }
        started_from_answer(&answer)
            .ok_or_else(|| ServiceError::malformed(SERVICE, OPERATION, "jobId and jobStatus"))
    }

    /// The export job an earlier attempt created under this name, if any.
    async fn find_named(
        &self,
        datastore_id: &str,
        job_name: &str,
    ) -> Result<Option<StartedJob>, ServiceError> {
        const OP: &str = "ListFHIRExportJobs";
        let listed = self
            .healthlake
            .list_fhir_export_jobs()
            .datastore_id(datastore_id)
            .job_name(job_name)
            .send()
            .await
            .map_err(|e| service_error(SERVICE, OP, e))?;
        listed
            .export_job_properties_list()
            .iter()
            .find(|job| job.job_name() == Some(job_name))
            .map(|job| started_job(SERVICE, OP, job.job_id(), job.job_status().as_str()))
            .transpose()
    }

    async fn endpoint(&self, datastore_id: &str) -> Result<String, ServiceError> {
        const OP: &str = "DescribeFHIRDatastore";
        let cached = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(datastore_id)
            .cloned();
        if let Some(endpoint) = cached {
            return Ok(endpoint);
        }
        let described = self
            .healthlake
            .describe_fhir_datastore()
            .datastore_id(datastore_id)
            .send()
            .await
            .map_err(|e| service_error(SERVICE, OP, e))?;
        let endpoint = described
            .datastore_properties()
            .map(|p| p.datastore_endpoint().to_owned())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| ServiceError::malformed(SERVICE, OP, "DatastoreEndpoint"))?;
        check_endpoint(&endpoint)?;
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(datastore_id.to_owned(), endpoint.clone());
        Ok(endpoint)
    }

    async fn signed_post(
        &self,
        url: &str,
        body: String,
    ) -> Result<Request<Full<Bytes>>, ServiceError> {
        let unsigned = |what: String| ServiceError {
            service: SERVICE,
            operation: OPERATION,
            code: "SigningFailed".to_owned(),
            message: what,
            retry: Retry::Later,
            source: None,
        };
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| unsigned("no AWS credentials are configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| unsigned(format!("loading the AWS credentials failed: {e}")))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| unsigned(e.to_string()))?
            .into();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, FHIR_JSON)
            .header(PREFER, RESPOND_ASYNC)
            .body(Full::new(Bytes::from(body.clone())))
            .map_err(|e| unsigned(e.to_string()))?;
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| unsigned(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| unsigned(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

/// Refuses a data store endpoint a signed `$export` must not go to: anything but `https`, except
/// plain `http` to 127.0.0.0/8, ::1 or localhost. Not retryable: describing the data store again
/// yields the same endpoint. (The token decoder's JWKS URL follows the same rule; this crate does
/// not depend on it, hence this small copy.)
fn check_endpoint(endpoint: &str) -> Result<(), ServiceError> {
    let refuse = |code: &str, why: &str| ServiceError {
        service: SERVICE,
        operation: OPERATION,
        code: code.to_owned(),
        message: format!("the data store endpoint {endpoint:?} {why}"),
        retry: Retry::Never,
        source: None,
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| refuse("InvalidEndpoint", "is not a URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| refuse("InvalidEndpoint", "has no host"))?;
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => Ok(()),
        Some(scheme) if scheme.eq_ignore_ascii_case("http") && is_loopback(host) => Ok(()),
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => Err(refuse(
            "InsecureEndpoint",
            "uses plain http to a host that is not loopback; a SigV4-signed $export is sent over \
             https only (http only to 127.0.0.0/8, ::1 or localhost)",
        )),
        _ => Err(refuse("InvalidEndpoint", "is not an https URL")),
    }
}

/// `localhost`, or an IPv4 address in 127.0.0.0/8, or `::1` (bracketed, as a URL host is).
fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `<endpoint>$export?_since=<instant>`: the system-level export of the data store. The instant is
/// encoded as SigV4 canonicalises a query (RFC 3986 unreserved characters kept, the rest `%XX`
/// in upper case), and this one string is both sent and signed ([`RestExports::signed_post`]).
pub fn export_url(datastore_endpoint: &str, since: Timestamp) -> String {
    let base = if datastore_endpoint.ends_with('/') {
        datastore_endpoint.to_owned()
    } else {
        format!("{datastore_endpoint}/")
    };
    let since = since.to_string();
    let since = percent_encoding::utf8_percent_encode(&since, QUERY_VALUE);
    format!("{base}$export?_since={since}")
}

/// The started job in a `$export` answer. The member names are read case-insensitively: the
/// FHIR endpoint answers in camelCase where the API answers in PascalCase.
fn started_from_answer(answer: &Value) -> Option<StartedJob> {
    let member = |name: &str| {
        answer.as_object()?.iter().find_map(|(key, value)| {
            key.eq_ignore_ascii_case(name)
                .then(|| value.as_str())
                .flatten()
        })
    };
    Some(StartedJob {
        service_job_id: member("jobId")?.to_owned(),
        status: JobStatus::from_service(SERVICE, member("jobStatus")?).ok()?,
    })
}

/// A refused `$export`: throttling and server errors are worth a retry, the rest is not.
fn refusal(status: u16, answer: &Value, raw: &[u8]) -> ServiceError {
    let code = answer
        .get("__type")
        .or_else(|| answer.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP{status}"));
    // An OperationOutcome says why in its first issue; an API error in `message`.
    let message = answer
        .get("message")
        .or_else(|| answer.pointer("/issue/0/diagnostics"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(raw)
                .chars()
                .take(MAX_ERROR_CHARS)
                .collect()
        });
    let retry = if status == 429 || status >= 500 || code.contains("Throttling") {
        Retry::Later
    } else {
        Retry::Never
    };
    ServiceError {
        service: SERVICE,
        operation: OPERATION,
        code,
        message,
        retry,
        source: None,
    }
}

fn transport(code: &str, message: String) -> ServiceError {
    ServiceError {
        service: SERVICE,
        operation: OPERATION,
        code: code.to_owned(),
        message,
        retry: Retry::Later,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_the_system_export_of_the_endpoint_with_an_encoded_instant() {
        let since: Timestamp = "2026-11-27T02:00:00Z".parse().unwrap();
        let url = export_url(
            "https://healthlake.eu-west-1.amazonaws.com/datastore/abc/r4/",
            since,
        );
        assert_eq!(
            url,
            "https://healthlake.eu-west-1.amazonaws.com/datastore/abc/r4/$export?_since=2026-11-27T02%3A00%3A00.000Z"
        );
        assert!(export_url("http://127.0.0.1:5156/datastore/abc/r4", since)
            .starts_with("http://127.0.0.1:5156/datastore/abc/r4/$export?"));
    }

    #[test]
    fn the_query_keeps_unreserved_characters_and_encodes_the_rest() {
        let since: Timestamp = "2026-11-30T06:00:00.123Z".parse().unwrap();
        let url = export_url("https://h.example/datastore/abc/r4/", since);
        let (_, query) = url.split_once('?').unwrap();
        assert_eq!(query, "_since=2026-11-30T06%3A00%3A00.123Z");
        let raw: String = (0u8..128).map(char::from).collect();
        let encoded = percent_encoding::utf8_percent_encode(&raw, QUERY_VALUE).to_string();
        for c in raw.chars() {
            let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
            let literal = c.to_string();
            let escaped = format!("%{:02X}", u32::from(c));
            if unreserved {
                assert!(encoded.contains(&literal), "{c:?} kept");
            } else {
                assert!(encoded.contains(&escaped), "{c:?} encoded as {escaped}");
            }
        }
    }

    #[tokio::test]
    async fn the_request_sends_the_signed_query_and_both_bulk_data_headers() {
        let credentials =
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let sdk = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let exports = RestExports::new(&sdk);
        let since: Timestamp = "2026-11-30T06:00:00.123Z".parse().unwrap();
        let url = export_url("http://127.0.0.1:1/datastore/abc/r4/", since);
        let request = exports.signed_post(&url, "{}".into()).await.unwrap();
        // What goes on the wire is the URL that was signed, byte for byte.
        assert_eq!(request.uri().to_string(), url);
        assert_eq!(
            request.uri().query(),
            Some("_since=2026-11-30T06%3A00%3A00.123Z")
        );
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("accept"), "application/fhir+json");
        assert_eq!(header("prefer"), "respond-async");
        let authorization = header("authorization");
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential="),
            "{authorization}"
        );
        // Both headers are covered by the signature.
        let signed = authorization
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_default();
        let signed: Vec<&str> = signed.split(';').collect();
        assert!(signed.contains(&"accept"), "{authorization}");
        assert!(signed.contains(&"prefer"), "{authorization}");
    }

    #[test]
    fn plain_http_endpoints_are_refused_except_on_loopback() {
        for ok in [
            "https://healthlake.eu-west-1.amazonaws.com/datastore/abc/r4/",
            "HTTPS://healthlake.eu-west-1.amazonaws.com/datastore/abc/r4/",
            "http://127.0.0.1:5156/datastore/abc/r4/",
            "http://127.10.20.30/datastore/abc/r4/",
            "http://[::1]:5156/datastore/abc/r4/",
            "http://localhost:5156/datastore/abc/r4/",
            "http://LocalHost/datastore/abc/r4/",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for (insecure, code) in [
            (
                "http://healthlake.eu-west-1.amazonaws.com/datastore/abc/r4/",
                "InsecureEndpoint",
            ),
            ("http://10.0.0.5/datastore/abc/r4/", "InsecureEndpoint"),
            ("http://128.0.0.1/datastore/abc/r4/", "InsecureEndpoint"),
            ("http://127.0.0.1.evil.example/r4/", "InsecureEndpoint"),
            ("http://localhost.evil.example/r4/", "InsecureEndpoint"),
            ("http://[::2]/datastore/abc/r4/", "InsecureEndpoint"),
            ("http://[::ffff:8.8.8.8]/r4/", "InsecureEndpoint"),
            ("ftp://127.0.0.1/datastore/abc/r4/", "InvalidEndpoint"),
            (
                "healthlake.eu-west-1.amazonaws.com/datastore/abc/r4/",
                "InvalidEndpoint",
            ),
            ("/datastore/abc/r4/", "InvalidEndpoint"),
            ("not a url", "InvalidEndpoint"),
        ] {
            let error = check_endpoint(insecure).expect_err(insecure);
            assert_eq!(error.code, code, "{insecure}");
            assert_eq!(error.retry, Retry::Never, "{insecure}");
            assert_eq!(error.operation, OPERATION);
            assert!(error.message.contains(insecure), "{}", error.message);
        }
        let refused = check_endpoint("http://healthlake.example.com/r4/").unwrap_err();
        assert!(
            refused.message.contains("plain http"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn the_started_job_is_read_in_either_case() {
        let camel = json!({"jobId": "j1", "jobStatus": "SUBMITTED", "datastoreId": "d"});
        let pascal = json!({"JobId": "j1", "JobStatus": "SUBMITTED"});
        for answer in [camel, pascal] {
            let job = started_from_answer(&answer).unwrap();
            assert_eq!(job.service_job_id, "j1");
            assert_eq!(job.status, JobStatus::Submitted);
        }
        assert!(started_from_answer(&json!({"jobId": "j1", "jobStatus": "DONE"})).is_none());
        assert!(started_from_answer(&json!([])).is_none());
    }

    #[test]
    fn throttling_and_server_errors_are_retried_the_rest_is_not() {
        let throttled = refusal(
            429,
            &json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
            b"",
        );
        assert_eq!(throttled.retry, Retry::Later);
        assert_eq!(throttled.code, "ThrottlingException");
        assert_eq!(throttled.message, "Rate exceeded");
        assert_eq!(
            refusal(503, &Value::Null, b"unavailable").retry,
            Retry::Later
        );
        let outcome = json!({"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": "_since is not a valid instant"}]});
        let invalid = refusal(400, &outcome, b"");
        assert_eq!(invalid.retry, Retry::Never);
        assert_eq!(invalid.code, "HTTP400");
        assert_eq!(invalid.message, "_since is not a valid instant");
        let long = "x".repeat(5000);
        assert_eq!(
            refusal(403, &Value::Null, long.as_bytes()).message.len(),
            MAX_ERROR_CHARS
        );
    }
}
