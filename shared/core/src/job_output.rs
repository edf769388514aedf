//! Reading what a finished job wrote, through the [`OutputReader`] port: its manifest and first
//! failed files (imports), or its exported files (exports). What the files mean is
//! [`crate::domain::manifest`]'s.
//!
//! The manifest can appear a little after the job's status turns terminal: a missing manifest is
//! [`ManifestError::NotReady`], which the caller retries, not a failure.

use crate::domain::job::{FailedFile, JobCounts, Service};
use crate::domain::manifest::{
    manifest_uri, parse_healthlake_failures, parse_healthlake_manifest, parse_imaging_failures,
    parse_imaging_manifest, reports_failures, JobOutput, OutputManifest, FAILURE_READ_BYTES,
    HEALTHLAKE_FAILURE_FILES, IMAGING_FAILURE_FILE,
};
use crate::ports::outputs::{OutputReadError, OutputReader};

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

/// How much of a finished job's failure output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureBounds {
    pub max_failed: usize,
    /// Bytes read of each failure file.
    pub read_bytes: usize,
    /// HealthLake: failure files opened.
    pub files: usize,
}

impl FailureBounds {
    /// Enough for the record and the event: their first failed files.
    pub fn first(max_failed: usize) -> FailureBounds {
        FailureBounds {
            max_failed,
            read_bytes: FAILURE_READ_BYTES,
            files: HEALTHLAKE_FAILURE_FILES,
        }
    }

    /// Every failed file of a batch's job (up to the services' 10,000 files a job), so that each
    /// upload gets its own result.
    pub fn every_file() -> FailureBounds {
        FailureBounds {
            max_failed: usize::MAX,
            read_bytes: 64 * 1024 * 1024,
            files: 10_000,
        }
    }
}

/// Reads a finished job's manifest and its first `max_failed` failed files.
pub async fn read_job_output(
    reader: &(impl OutputReader + ?Sized),
    service: Service,
    location: &str,
    max_failed: usize,
) -> Result<JobOutput, ManifestError> {
    read_job_output_within(reader, service, location, FailureBounds::first(max_failed)).await
}

/// Reads a finished job's manifest and its failed files within `bounds`.
pub async fn read_job_output_within(
    reader: &(impl OutputReader + ?Sized),
    service: Service,
    location: &str,
    bounds: FailureBounds,
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
    let failed_files = if reports_failures(&manifest) {
        read_failures(reader, service, location, &manifest, bounds).await?
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

async fn read_failures(
    reader: &(impl OutputReader + ?Sized),
    service: Service,
    location: &str,
    manifest: &OutputManifest,
    bounds: FailureBounds,
) -> Result<Vec<FailedFile>, OutputReadError> {
    let max_failed = bounds.max_failed;
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
                .read(&uri, Some(bounds.read_bytes))
                .await?
                .unwrap_or_default();
            Ok(parse_imaging_failures(&text, max_failed))
        }
        Service::HealthLake => {
            let prefix = format!("{}/", folder.trim_end_matches('/'));
            let mut failed = Vec::new();
            for uri in reader.list(&prefix, bounds.files).await? {
                if failed.len() >= max_failed {
                    break;
                }
                let text = reader
                    .read(&uri, Some(bounds.read_bytes))
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

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// An in-memory reader for the orchestration tests of this module.
    #[derive(Default)]
    struct Objects(Mutex<BTreeMap<String, String>>);

    impl Objects {
        fn put(&self, uri: String, text: String) {
            self.0.lock().unwrap().insert(uri, text);
        }
    }

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
        objects.put(
            format!("{location}manifest.json"),
            fixture("manifests/healthlake-manifest.json")
                .replace("s3://healthimport-output/fhir/32839038a2f47f17c2fe0f53f0c3a0ba-FHIR_IMPORT-19dd7bb7bcc8ee12a09bf6d322744a3d/", location),
        );
        for name in ["a.ndjson", "b.ndjson"] {
            objects.put(
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
        objects.put(
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
}
