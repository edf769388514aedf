//! What a finished job wrote, and what it means: the services' output layout, their manifests and
//! failure files, parsed. Pure: no I/O (reading goes through the `OutputReader` port, in
//! the crate's `job_output`).
//!
//! Where each service writes (SERVICE-FACTS.md):
//! - HealthImaging: `<outputS3Uri>/<datastoreId>-DicomImport-<jobId>/job-output-manifest.json`, with
//!   `FAILURE/failure.ndjson` (one `{inputFile, exception{exceptionType, message}}` a line).
//! - HealthLake: `<S3Uri>/<datastoreId>-FHIR_IMPORT-<jobId>/manifest.json`, with a `FAILURE/`
//!   folder of NDJSON files. Their line format is not documented, so those lines are read
//!   tolerantly (see [`parse_healthlake_failures`]).
//! - HealthLake export: `<S3Uri>/<datastoreId>-FHIR_EXPORT-<jobId>/`, NDJSON files grouped by
//!   resource type. No manifest is documented for `StartFHIRExportJob`, so an export's counts are
//!   the files found there.

use serde::Deserialize;
use serde_json::Value;

use crate::domain::job::{FailedFile, JobCounts, JobKind, Service};

/// HealthImaging's manifest file name inside the job's output folder.
pub const IMAGING_MANIFEST: &str = "job-output-manifest.json";
/// HealthLake's manifest file name inside the job's output folder.
pub const HEALTHLAKE_MANIFEST: &str = "manifest.json";
/// HealthImaging's failure file inside its failure folder.
pub const IMAGING_FAILURE_FILE: &str = "failure.ndjson";

/// How much of a failure file is read: the first [`crate::domain::job::MAX_FAILED_FILES`] lines fit many
/// times over, and a batch of 5,000 failed files must not be pulled into a Lambda whole.
pub const FAILURE_READ_BYTES: usize = 1024 * 1024;
/// How many of HealthLake's failure files are opened (one per input file at most).
pub const HEALTHLAKE_FAILURE_FILES: usize = 20;
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

/// Whether the manifest reports any failed file or resource.
pub fn reports_failures(manifest: &OutputManifest) -> bool {
    manifest.counts.failed > 0 || manifest.resources_failed.is_some_and(|n| n > 0)
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
            // Never the line itself: it may hold the resource, that is, patient data.
            .unwrap_or_else(|| NO_MESSAGE.to_owned());
            FailedFile {
                input_file,
                message: bounded(message),
            }
        })
        .take(limit)
        .collect()
}

/// What a failure line without a message field is recorded with.
pub const NO_MESSAGE: &str = "the service's failure line names no error message";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The fixture if the service-double work has written it yet.
    fn optional_fixture(name: &str) -> Option<String> {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).ok()
    }

    #[test]
    fn output_locations_follow_the_documented_layout() {
        use JobKind::{Export, Import};
        use Service::{HealthImaging, HealthLake};
        // (service, kind, output URI, data store, job) → folder, and its manifest if any.
        let cases = [
            (
                (HealthImaging, Import, "s3://out/dicom/", "ds1", "job9"),
                "s3://out/dicom/ds1-DicomImport-job9/",
                Some("s3://out/dicom/ds1-DicomImport-job9/job-output-manifest.json"),
            ),
            (
                (HealthLake, Import, "s3://out/fhir", "ds2", "j"),
                "s3://out/fhir/ds2-FHIR_IMPORT-j/",
                Some("s3://out/fhir/ds2-FHIR_IMPORT-j/manifest.json"),
            ),
            (
                (HealthLake, Export, "s3://exports/", "ds2", "e"),
                "s3://exports/ds2-FHIR_EXPORT-e/",
                None,
            ),
        ];
        for ((service, kind, out, datastore, job), folder, manifest) in cases {
            let location = output_location(service, kind, out, datastore, job);
            assert_eq!(location, folder);
            if let Some(manifest) = manifest {
                assert_eq!(manifest_uri(service, &location), manifest);
            }
        }
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
        let bounded = parse_imaging_failures(&many, crate::domain::job::MAX_FAILED_FILES);
        assert_eq!(bounded.len(), crate::domain::job::MAX_FAILED_FILES);
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
        // A line with no known message field is kept, but never its content (it may be the
        // resource, that is, patient data).
        assert_eq!(failed[2].message, NO_MESSAGE);
        assert!(failed.iter().all(|f| !f.message.contains("Encounter")));
    }
}
