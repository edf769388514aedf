//! What a finished import job wrote: the services' output manifests and failure files, parsed
//! (pure), and the `OutputReader` port that fetches them from S3.
//!
//! Where each service writes (SERVICE-FACTS.md):
//! - HealthImaging: `<outputS3Uri>/<datastoreId>-DicomImport-<jobId>/job-output-manifest.json`, with
//!   `FAILURE/failure.ndjson` (one `{inputFile, exception{exceptionType, message}}` a line).
//! - HealthLake: `<S3Uri>/<datastoreId>-FHIR_IMPORT-<jobId>/manifest.json`, with a `FAILURE/`
//!   folder of NDJSON files. Their line format is not documented, so those lines are read
//!   tolerantly (see [`parse_healthlake_failures`]).
//!
//! - HealthLake export: `<S3Uri>/<datastoreId>-FHIR_EXPORT-<jobId>/`, NDJSON files grouped by
//!   resource type. No manifest is documented for `StartFHIRExportJob`, so an export's counts are
//!   the files found there ([`read_export_output`]).
//!
//! The manifest can appear a little after the job's status turns terminal: a missing manifest is
//! [`ManifestError::NotReady`], which the caller retries, not a failure.

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::Client;
use serde::Deserialize;
use serde_json::Value;

use crate::job::{FailedFile, JobCounts, JobKind, Service};

/// HealthImaging's manifest file name inside the job's output folder.
pub const IMAGING_MANIFEST: &str = "job-output-manifest.json";
/// HealthLake's manifest file name inside the job's output folder.
pub const HEALTHLAKE_MANIFEST: &str = "manifest.json";
/// HealthImaging's failure file inside its failure folder.
const IMAGING_FAILURE_FILE: &str = "failure.ndjson";

/// How much of a failure file is read: the first [`crate::job::MAX_FAILED_FILES`] lines fit many
/// times over, and a batch of 5,000 failed files must not be pulled into a Lambda whole.
pub const FAILURE_READ_BYTES: usize = 1024 * 1024;
/// How many of HealthLake's failure files are opened (one per input file at most).
const HEALTHLAKE_FAILURE_FILES: usize = 20;
/// A failure message longer than this is cut: it ends up in a DynamoDB item and an event.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// The folder a job's output is written to (ends with `/`).
pub fn output_location(
    service: Service,
    kind: JobKind,
    output_s3_uri: &str,
    datastore_id: &str,
    service_job_id: &str,
) -> String {
    let base = output_s3_uri.trim_end_matches('/');
    let kind = match (service, kind) {
        (Service::HealthImaging, _) => "DicomImport",
        (Service::HealthLake, JobKind::Import) => "FHIR_IMPORT",
        (Service::HealthLake, JobKind::Export) => "FHIR_EXPORT",
    };
    format!("{base}/{datastore_id}-{kind}-{service_job_id}/")
}

/// The manifest's URI inside an output folder from [`output_location`].
pub fn manifest_uri(service: Service, location: &str) -> String {
    let name = match service {
        Service::HealthImaging => IMAGING_MANIFEST,
        Service::HealthLake => HEALTHLAKE_MANIFEST,
    };
    format!("{}/{name}", location.trim_end_matches('/'))
}

/// What a manifest says, reduced to what the job record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputManifest {
    pub counts: JobCounts,
    /// Where the failure file(s) are, when the manifest names it.
    pub failure_output: Option<String>,
    /// HealthLake only: resources (not files) that failed. A HealthLake job imports a file even
    /// when some of its resources fail, so file counts alone can hide failures.
    pub resources_failed: Option<u64>,
}

/// What a finished job's output says: its counts and its first failed files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput {
    pub location: String,
    pub manifest: OutputManifest,
    pub failed_files: Vec<FailedFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest is not there (yet): the service writes it shortly after the job ends.
    #[error("the output manifest {uri} does not exist (yet)")]
    NotReady { uri: String },
    #[error("the output manifest {uri} cannot be parsed")]
    Unreadable {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Read(#[from] OutputReadError),
}

#[derive(Debug, thiserror::Error)]
#[error("could not read {uri}")]
pub struct OutputReadError {
    pub uri: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Reads the services' output files.
#[async_trait]
pub trait OutputReader: Send + Sync {
    /// The object's text (its first `max_bytes` bytes when given), or `None` when it does not
    /// exist.
    async fn read(
        &self,
        uri: &str,
        max_bytes: Option<usize>,
    ) -> Result<Option<String>, OutputReadError>;
    /// Up to `limit` object URIs under the prefix `prefix_uri`, in key order.
    async fn list(&self, prefix_uri: &str, limit: usize) -> Result<Vec<String>, OutputReadError>;
}

/// Reads a finished job's manifest and its first `max_failed` failed files.
pub async fn read_job_output(
    reader: &(impl OutputReader + ?Sized),
    service: Service,
    location: &str,
    max_failed: usize,
) -> Result<JobOutput, ManifestError> {
    let uri = manifest_uri(service, location);
    let text = reader
        .read(&uri, None)
        .await?
        .ok_or_else(|| ManifestError::NotReady { uri: uri.clone() })?;
    let manifest = match service {
        Service::HealthImaging => parse_imaging_manifest(&text),
        Service::HealthLake => parse_healthlake_manifest(&text),
    }
    .map_err(|source| ManifestError::Unreadable {
        uri: uri.clone(),
        source,
    })?;
    let failed_files = if manifest_reports_failures(&manifest) {
        read_failures(reader, service, location, &manifest, max_failed).await?
    } else {
        Vec::new()
    };
    Ok(JobOutput {
        location: location.to_owned(),
        manifest,
        failed_files,
    })
}

/// How many exported files are listed at most: a data store export writes a few files per
/// resource type, so this bounds a pathological listing, not a real one.
pub const EXPORT_LIST_LIMIT: usize = 100_000;

/// What a finished export wrote: its NDJSON files under `location`, counted (scanned = imported
/// = files written). An export of an empty data store writes none, which is not an error.
pub async fn read_export_output(
    reader: &(impl OutputReader + ?Sized),
    location: &str,
) -> Result<JobOutput, ManifestError> {
    let files = reader
        .list(location, EXPORT_LIST_LIMIT)
        .await?
        .into_iter()
        .filter(|uri| uri.ends_with(".ndjson"))
        .count() as u64;
    Ok(JobOutput {
        location: location.to_owned(),
        manifest: OutputManifest {
            counts: JobCounts {
                scanned: files,
                imported: files,
                failed: 0,
            },
            failure_output: None,
            resources_failed: None,
        },
        failed_files: Vec::new(),
    })
}

fn manifest_reports_failures(manifest: &OutputManifest) -> bool {
    manifest.counts.failed > 0 || manifest.resources_failed.is_some_and(|n| n > 0)
}

async fn read_failures(
    reader: &(impl OutputReader + ?Sized),
    service: Service,
    location: &str,
    manifest: &OutputManifest,
    max_failed: usize,
) -> Result<Vec<FailedFile>, OutputReadError> {
    let folder = manifest
        .failure_output
        .clone()
        .unwrap_or_else(|| format!("{}/FAILURE/", location.trim_end_matches('/')));
    match service {
        Service::HealthImaging => {
            let uri = if folder.ends_with(".ndjson") {
                folder
            } else {
                format!("{}/{IMAGING_FAILURE_FILE}", folder.trim_end_matches('/'))
            };
            let text = reader
                .read(&uri, Some(FAILURE_READ_BYTES))
                .await?
                .unwrap_or_default();
            Ok(parse_imaging_failures(&text, max_failed))
        }
        Service::HealthLake => {
            let prefix = format!("{}/", folder.trim_end_matches('/'));
            let mut failed = Vec::new();
            for uri in reader.list(&prefix, HEALTHLAKE_FAILURE_FILES).await? {
                if failed.len() >= max_failed {
                    break;
                }
                let text = reader
                    .read(&uri, Some(FAILURE_READ_BYTES))
                    .await?
                    .unwrap_or_default();
                failed.extend(parse_healthlake_failures(
                    &text,
                    &uri,
                    max_failed - failed.len(),
                ));
            }
            Ok(failed)
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImagingManifest {
    job_summary: ImagingJobSummary,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImagingJobSummary {
    #[serde(default)]
    failure_output_s3_uri: Option<String>,
    /// Required: a JSON document without it is not a manifest.
    number_of_scanned_files: u64,
    #[serde(default)]
    number_of_imported_files: u64,
    #[serde(default)]
    number_of_files_with_customer_error: u64,
    #[serde(default)]
    number_of_files_with_server_error: u64,
}

/// Parses HealthImaging's `job-output-manifest.json`.
pub fn parse_imaging_manifest(text: &str) -> Result<OutputManifest, serde_json::Error> {
    let summary = serde_json::from_str::<ImagingManifest>(text)?.job_summary;
    Ok(OutputManifest {
        counts: JobCounts {
            scanned: summary.number_of_scanned_files,
            imported: summary.number_of_imported_files,
            failed: summary.number_of_files_with_customer_error
                + summary.number_of_files_with_server_error,
        },
        failure_output: summary.failure_output_s3_uri.filter(|u| !u.is_empty()),
        resources_failed: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthLakeManifest {
    #[serde(default)]
    failure_output: Option<HealthLakeFailureOutput>,
    /// Required: a JSON document without it is not a manifest.
    number_of_scanned_files: u64,
    #[serde(default)]
    number_of_files_imported: u64,
    #[serde(default)]
    number_of_resources_with_customer_error: u64,
    #[serde(default)]
    number_of_resources_with_server_error: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthLakeFailureOutput {
    #[serde(default)]
    failure_output_s3_uri: Option<String>,
}

/// Parses HealthLake's `manifest.json`. Its counts are of files; a file counts as imported even
/// when some of its resources failed, so the failed resources are kept apart.
pub fn parse_healthlake_manifest(text: &str) -> Result<OutputManifest, serde_json::Error> {
    let manifest: HealthLakeManifest = serde_json::from_str(text)?;
    Ok(OutputManifest {
        counts: JobCounts {
            scanned: manifest.number_of_scanned_files,
            imported: manifest.number_of_files_imported,
            failed: manifest
                .number_of_scanned_files
                .saturating_sub(manifest.number_of_files_imported),
        },
        failure_output: manifest
            .failure_output
            .and_then(|f| f.failure_output_s3_uri)
            .filter(|u| !u.is_empty()),
        resources_failed: Some(
            manifest.number_of_resources_with_customer_error
                + manifest.number_of_resources_with_server_error,
        ),
    })
}

/// The first `limit` failures of HealthImaging's `failure.ndjson`. Lines that are not the
/// documented shape (or the last line, cut by a bounded read) are skipped.
pub fn parse_imaging_failures(text: &str, limit: usize) -> Vec<FailedFile> {
    json_lines(text)
        .filter_map(|line| {
            let input_file = line.get("inputFile")?.as_str()?.to_owned();
            let exception = line.get("exception");
            let kind = exception
                .and_then(|e| e.get("exceptionType"))
                .and_then(Value::as_str);
            let message = exception
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str);
            let message = match (kind, message) {
                (Some(k), Some(m)) => format!("{k}: {m}"),
                (Some(k), None) => k.to_owned(),
                (None, Some(m)) => m.to_owned(),
                (None, None) => "failed (no message in failure.ndjson)".to_owned(),
            };
            Some(FailedFile {
                input_file,
                message: bounded(message),
            })
        })
        .take(limit)
        .collect()
}

/// The first `limit` failures of one HealthLake failure file (`file_uri`). HealthLake does not
/// document the line format, so each line's input file and message are taken from the first field
/// present among a few likely names, falling back to the failure file itself and the whole line.
pub fn parse_healthlake_failures(text: &str, file_uri: &str, limit: usize) -> Vec<FailedFile> {
    json_lines(text)
        .map(|line| {
            let input_file = first_string(&line, &["inputFile", "fileName", "file", "inputS3Uri"])
                .unwrap_or_else(|| file_uri.to_owned());
            let message = first_string(
                &line,
                &["errorMessage", "message", "error", "diagnostics", "reason"],
            )
            .or_else(|| {
                line.get("exception")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| line.to_string());
            FailedFile {
                input_file,
                message: bounded(message),
            }
        })
        .take(limit)
        .collect()
}

fn json_lines(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
}

fn first_string(line: &Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| line.get(*n).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn bounded(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Splits `s3://bucket/key` into its bucket and key.
pub fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

/// [`OutputReader`] on S3.
#[derive(Debug, Clone)]
pub struct S3OutputReader {
    client: Client,
}

impl S3OutputReader {
    pub fn new(client: Client) -> Self {
        S3OutputReader { client }
    }
}

fn read_error(
    uri: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> OutputReadError {
    OutputReadError {
        uri: uri.to_owned(),
        source: Box::new(source),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is not an s3://bucket/key URI")]
struct NotAnS3Uri(String);

#[async_trait]
impl OutputReader for S3OutputReader {
    async fn read(
        &self,
        uri: &str,
        max_bytes: Option<usize>,
    ) -> Result<Option<String>, OutputReadError> {
        let (bucket, key) =
            split_s3_uri(uri).ok_or_else(|| read_error(uri, NotAnS3Uri(uri.to_owned())))?;
        let range = max_bytes.map(|n| format!("bytes=0-{}", n.saturating_sub(1)));
        let result = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(range)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(SdkError::ServiceError(e)) if matches!(e.err(), GetObjectError::NoSuchKey(_)) => {
                return Ok(None)
            }
            // A ranged read of an empty object is refused with 416 InvalidRange: it is empty.
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("InvalidRange") => {
                return Ok(Some(String::new()))
            }
            Err(e) => return Err(read_error(uri, e)),
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| read_error(uri, e))?
            .into_bytes();
        // A bounded read can cut a multi-byte character: keep what decodes.
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn list(&self, prefix_uri: &str, limit: usize) -> Result<Vec<String>, OutputReadError> {
        let (bucket, prefix) = split_s3_uri(prefix_uri)
            .ok_or_else(|| read_error(prefix_uri, NotAnS3Uri(prefix_uri.to_owned())))?;
        let mut uris = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| read_error(prefix_uri, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                // Folder placeholders hold nothing to read.
                if key.ends_with('/') {
                    continue;
                }
                uris.push(format!("s3://{bucket}/{key}"));
                if uris.len() >= limit {
                    return Ok(uris);
                }
            }
        }
        Ok(uris)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_sdk_s3::types::Object;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The fixture if the service-double work has written it yet.
    fn optional_fixture(name: &str) -> Option<String> {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).ok()
    }

    #[test]
    fn output_locations_follow_the_documented_layout() {
        let dicom = output_location(
            Service::HealthImaging,
            JobKind::Import,
            "s3://out/dicom/",
            "ds1",
            "job9",
        );
        assert_eq!(dicom, "s3://out/dicom/ds1-DicomImport-job9/");
        assert_eq!(
            manifest_uri(Service::HealthImaging, &dicom),
            "s3://out/dicom/ds1-DicomImport-job9/job-output-manifest.json"
        );
        let fhir = output_location(
            Service::HealthLake,
            JobKind::Import,
            "s3://out/fhir",
            "ds2",
            "j",
        );
        assert_eq!(fhir, "s3://out/fhir/ds2-FHIR_IMPORT-j/");
        assert_eq!(
            manifest_uri(Service::HealthLake, &fhir),
            "s3://out/fhir/ds2-FHIR_IMPORT-j/manifest.json"
        );
        let export = output_location(
            Service::HealthLake,
            JobKind::Export,
            "s3://exports/",
            "ds2",
            "e",
        );
        assert_eq!(export, "s3://exports/ds2-FHIR_EXPORT-e/");
    }

    #[test]
    fn imaging_manifest_counts_customer_and_server_errors_as_failed() {
        let m =
            parse_imaging_manifest(&fixture("manifests/imaging-job-output-manifest.json")).unwrap();
        assert_eq!(
            m.counts,
            JobCounts {
                scanned: 5,
                imported: 3,
                failed: 2
            }
        );
        assert_eq!(
            m.failure_output.as_deref(),
            Some("s3://out/dicom/3c3b1cc0fa0bd16fbc0e1e3b6f8d9e21-DicomImport-5e2d4c3b2a1f0e9d8c7b6a5f4e3d2c1b/FAILURE/")
        );
    }

    #[test]
    fn healthlake_manifest_keeps_file_and_resource_failures_apart() {
        let m = parse_healthlake_manifest(&fixture("manifests/healthlake-manifest.json")).unwrap();
        assert_eq!(
            m.counts,
            JobCounts {
                scanned: 1,
                imported: 1,
                failed: 0
            }
        );
        assert_eq!(m.resources_failed, Some(5));
        assert!(m.failure_output.unwrap().ends_with("/FAILURE/"));
    }

    #[test]
    fn the_service_double_fixtures_parse_when_present() {
        if let Some(text) = optional_fixture("imaging-job-output-manifest.json") {
            parse_imaging_manifest(&text).expect("imaging-job-output-manifest.json parses");
        }
        if let Some(text) = optional_fixture("healthlake-import-manifest.json") {
            parse_healthlake_manifest(&text).expect("healthlake-import-manifest.json parses");
        }
    }

    #[test]
    fn a_manifest_that_is_not_the_documented_shape_is_an_error() {
        assert!(parse_imaging_manifest(r#"{"jobSummary": 3}"#).is_err());
        assert!(parse_imaging_manifest("<html>").is_err());
        assert!(parse_healthlake_manifest("[]").is_err());
        assert!(parse_healthlake_manifest("{}").is_err());
        assert!(parse_imaging_manifest(r#"{"jobSummary": {}}"#).is_err());
    }

    #[test]
    fn imaging_failures_carry_file_type_and_message_and_are_bounded() {
        let text = fixture("manifests/imaging-failure.ndjson");
        let all = parse_imaging_failures(&text, 100);
        assert_eq!(all.len(), 2, "the cut last line is skipped: {all:?}");
        assert_eq!(all[0].input_file, "s3://ingest/dicom/study-7/broken.dcm");
        assert!(
            all[0].message.starts_with("ValidationException: "),
            "{all:?}"
        );
        assert_eq!(parse_imaging_failures(&text, 1).len(), 1);

        let many: String = (0..5000)
            .map(|i| {
                format!(
                    "{{\"inputFile\":\"s3://b/{i}.dcm\",\"exception\":{{\"exceptionType\":\"X\",\"message\":\"{}\"}}}}\n",
                    "m".repeat(2000)
                )
            })
            .collect();
        let bounded = parse_imaging_failures(&many, crate::job::MAX_FAILED_FILES);
        assert_eq!(bounded.len(), crate::job::MAX_FAILED_FILES);
        assert!(bounded[0].message.chars().count() <= MAX_MESSAGE_CHARS);
    }

    #[test]
    fn healthlake_failure_lines_are_read_tolerantly() {
        let text = fixture("manifests/healthlake-failure.ndjson");
        let failed = parse_healthlake_failures(&text, "s3://out/x/FAILURE/patients.ndjson", 100);
        assert_eq!(failed.len(), 3);
        assert!(
            failed[0].message.contains("Patient.birthDate"),
            "{failed:?}"
        );
        assert_eq!(failed[0].input_file, "s3://out/x/FAILURE/patients.ndjson");
        assert_eq!(failed[1].input_file, "fhir/observations.ndjson");
        // A line with no known message field is kept whole rather than dropped.
        assert!(failed[2].message.contains("\"code\""), "{failed:?}");
    }

    #[test]
    fn s3_uris_split_into_bucket_and_key() {
        assert_eq!(split_s3_uri("s3://b/k/x.json"), Some(("b", "k/x.json")));
        assert_eq!(split_s3_uri("s3://b"), Some(("b", "")));
        assert_eq!(split_s3_uri("https://b/k"), None);
        assert_eq!(split_s3_uri("s3:///k"), None);
    }

    /// An in-memory reader for the orchestration tests of this module.
    #[derive(Default)]
    struct Objects(Mutex<BTreeMap<String, String>>);

    #[async_trait]
    impl OutputReader for Objects {
        async fn read(
            &self,
            uri: &str,
            _max_bytes: Option<usize>,
        ) -> Result<Option<String>, OutputReadError> {
            Ok(self.0.lock().unwrap().get(uri).cloned())
        }
        async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, OutputReadError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect())
        }
    }

    #[tokio::test]
    async fn a_missing_manifest_is_not_ready() {
        let err = read_job_output(&Objects::default(), Service::HealthLake, "s3://o/x/", 100)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ManifestError::NotReady { uri } if uri == "s3://o/x/manifest.json"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn healthlake_output_reads_every_failure_file_up_to_the_bound() {
        let objects = Objects::default();
        let location = "s3://o/ds-FHIR_IMPORT-j/";
        objects.0.lock().unwrap().insert(
            format!("{location}manifest.json"),
            fixture("manifests/healthlake-manifest.json")
                .replace("s3://healthimport-output/fhir/32839038a2f47f17c2fe0f53f0c3a0ba-FHIR_IMPORT-19dd7bb7bcc8ee12a09bf6d322744a3d/", location),
        );
        for name in ["a.ndjson", "b.ndjson"] {
            objects.0.lock().unwrap().insert(
                format!("{location}FAILURE/{name}"),
                fixture("manifests/healthlake-failure.ndjson"),
            );
        }
        let output = read_job_output(&objects, Service::HealthLake, location, 4)
            .await
            .unwrap();
        assert_eq!(output.failed_files.len(), 4);
        assert_eq!(output.manifest.resources_failed, Some(5));
    }

    #[tokio::test]
    async fn a_clean_imaging_job_reads_no_failure_file() {
        let objects = Objects::default();
        let location = "s3://o/ds-DicomImport-j/";
        objects.0.lock().unwrap().insert(
            format!("{location}job-output-manifest.json"),
            r#"{"jobSummary":{"numberOfScannedFiles":2,"numberOfImportedFiles":2,
                "numberOfFilesWithCustomerError":0,"numberOfFilesWithServerError":0}}"#
                .into(),
        );
        let output = read_job_output(&objects, Service::HealthImaging, location, 100)
            .await
            .unwrap();
        assert!(output.failed_files.is_empty());
        assert_eq!(output.manifest.counts.imported, 2);
    }

    #[tokio::test]
    async fn s3_no_such_key_reads_as_absent() {
        let rule = mock!(Client::get_object)
            .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
        let reader = S3OutputReader::new(mock_client!(aws_sdk_s3, [&rule]));
        assert_eq!(
            reader.read("s3://o/x/manifest.json", None).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn s3_read_returns_the_body_and_bounds_the_range() {
        let rule = mock!(Client::get_object)
            .match_requests(|r| {
                r.bucket() == Some("o")
                    && r.key() == Some("x/FAILURE/failure.ndjson")
                    && r.range() == Some("bytes=0-1023")
            })
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"{\"inputFile\":\"a\"}\n"))
                    .build()
            });
        let reader = S3OutputReader::new(mock_client!(aws_sdk_s3, [&rule]));
        let text = reader
            .read("s3://o/x/FAILURE/failure.ndjson", Some(1024))
            .await
            .unwrap();
        assert_eq!(text.as_deref(), Some("{\"inputFile\":\"a\"}\n"));
    }

    #[tokio::test]
    async fn s3_access_denied_is_an_error_naming_the_object() {
        let rule = mock!(Client::get_object).then_error(|| {
            GetObjectError::generic(
                aws_sdk_s3::error::ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("denied")
                    .build(),
            )
        });
        let reader = S3OutputReader::new(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]));
        let err = reader
            .read("s3://o/x/manifest.json", None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "could not read s3://o/x/manifest.json");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[tokio::test]
    async fn s3_list_skips_folder_placeholders_and_stops_at_the_limit() {
        let rule = mock!(Client::list_objects_v2)
            .match_requests(|r| r.bucket() == Some("o") && r.prefix() == Some("x/FAILURE/"))
            .then_output(|| {
                ListObjectsV2Output::builder()
                    .contents(Object::builder().key("x/FAILURE/").build())
                    .contents(Object::builder().key("x/FAILURE/a.ndjson").build())
                    .contents(Object::builder().key("x/FAILURE/b.ndjson").build())
                    .contents(Object::builder().key("x/FAILURE/c.ndjson").build())
                    .build()
            });
        let reader = S3OutputReader::new(mock_client!(aws_sdk_s3, [&rule]));
        let uris = reader.list("s3://o/x/FAILURE/", 2).await.unwrap();
        assert_eq!(
            uris,
            vec!["s3://o/x/FAILURE/a.ndjson", "s3://o/x/FAILURE/b.ndjson"]
        );
    }
}
