//! Routing an uploaded S3 object: to a HealthLake import, a HealthImaging import, a DICOM batch
//! that is still arriving, or a recorded skip with its reason. Pure: no AWS types, no I/O.
//!
//! The rules (prefixes configurable, see [`RoutingConfig`]):
//! - `fhir/…/x.ndjson` → one HealthLake job for that object;
//! - `dicom/<batch>/…/_READY` → one HealthImaging job for the whole folder holding the marker;
//! - `dicom/x.dcm` (directly under the prefix) → one HealthImaging job for that object alone;
//! - any other object under `dicom/<batch>/` is part of a batch that its marker will import;
//! - anything else → skipped, with a [`SkipReason`] that the job record keeps.

use std::borrow::Cow;
use std::fmt;

use crate::domain::job::{Service, SourceObject};
use crate::domain::s3_uri::s3_uri;

/// HealthImaging: one P10 file up to 10 GB (an older page says 4 GB; we allow the documented
/// current limit and let the service have the last word).
pub const IMAGING_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// HealthImaging: 10 GB per import job.
pub const IMAGING_MAX_JOB_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// HealthImaging: 5,000 files per import job.
pub const IMAGING_MAX_JOB_FILES: u64 = 5_000;
/// Both services: an input S3 URI is at most 1024 characters.
pub const MAX_S3_URI_CHARS: usize = 1024;
/// S3: a key is at most 1024 bytes of UTF-8.
pub const MAX_S3_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    #[error("object key is empty")]
    Empty,
    #[error("object key has a malformed percent escape at byte {0}")]
    BadEscape(usize),
    #[error("object key is not valid UTF-8 once decoded")]
    NotUtf8,
}

/// Decodes an object key as S3 event notifications carry it: URL-encoded with `+` for a space.
/// `+` is turned into a space first, then `%XX` escapes are decoded (so `%2B` is a literal `+`).
/// A `%` that does not start a valid escape is an error rather than passed through, because a
/// wrongly decoded key names a different object.
pub fn decode_event_key(raw: &str) -> Result<String, KeyDecodeError> {
    if raw.is_empty() {
        return Err(KeyDecodeError::Empty);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(KeyDecodeError::BadEscape(i))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| KeyDecodeError::NotUtf8)
}

/// Where each kind of upload is expected. Prefixes end with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    pub fhir_prefix: String,
    pub dicom_prefix: String,
    /// The object whose arrival says "this DICOM batch folder is complete".
    pub batch_marker: String,
    /// Whether a HealthLake data store is configured; without one, FHIR uploads are skipped.
    pub fhir_enabled: bool,
    /// Whether a HealthImaging data store is configured.
    pub imaging_enabled: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            fhir_prefix: "fhir/".into(),
            dicom_prefix: "dicom/".into(),
            batch_marker: "_READY".into(),
            fhir_enabled: true,
            imaging_enabled: true,
        }
    }
}

impl RoutingConfig {
    /// Normalises prefixes to end with exactly one `/` (an empty prefix stays empty).
    pub fn with_prefixes(mut self, fhir: &str, dicom: &str) -> Self {
        self.fhir_prefix = normalise_prefix(fhir);
        self.dicom_prefix = normalise_prefix(dicom);
        self
    }
}

fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// What to import, and with which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub service: Service,
    /// The S3 URI handed to the service: the object, or the batch folder (ending in `/`).
    pub input_s3_uri: String,
    pub scope: ImportScope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportScope {
    /// One object.
    Object,
    /// Every object under a folder, announced by its marker. The batch must be checked against
    /// the per-job limits (files, bytes) once it is listed: see [`check_batch`].
    Batch { prefix: String },
}

/// Why an upload is not imported. Its text is what the job record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    FolderMarker,
    EmptyObject,
    KeyTooLong {
        bytes: usize,
    },
    S3UriTooLong {
        chars: usize,
    },
    BucketNameNotAccepted,
    OutsidePrefixes,
    UnsupportedType {
        expected: &'static str,
    },
    ObjectTooLarge {
        bytes: u64,
        limit: u64,
    },
    MarkerOutsideBatchFolder,
    ServiceNotConfigured(Service),
    BatchTooManyFiles {
        files: u64,
        limit: u64,
    },
    BatchTooLarge {
        bytes: u64,
        limit: u64,
    },
    BatchEmpty,
    /// The event names another bucket than the one the starter imports from (a notification
    /// configured by hand elsewhere).
    NotTheIngestBucket {
        bucket: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::FolderMarker => write!(f, "folder marker (key ends with '/'), nothing to import"),
            SkipReason::EmptyObject => write!(f, "zero-byte object, nothing to import"),
            SkipReason::KeyTooLong { bytes } => {
                write!(f, "key is {bytes} bytes, over S3's {MAX_S3_KEY_BYTES}-byte limit")
            }
            SkipReason::S3UriTooLong { chars } => write!(
                f,
                "input S3 URI is {chars} characters, over the services' {MAX_S3_URI_CHARS}-character limit"
            ),
            SkipReason::BucketNameNotAccepted => write!(
                f,
                "bucket name does not match the services' S3 URI pattern (lowercase letters, digits, '.' and '-')"
            ),
            SkipReason::OutsidePrefixes => write!(f, "key is under neither the FHIR nor the DICOM prefix"),
            SkipReason::UnsupportedType { expected } => {
                write!(f, "unsupported file type: expected {expected}")
            }
            SkipReason::ObjectTooLarge { bytes, limit } => write!(
                f,
                "object is {bytes} bytes, over the per-file limit of {limit} bytes"
            ),
            SkipReason::MarkerOutsideBatchFolder => write!(
                f,
                "batch marker must be inside a batch folder (<dicom prefix>/<batch>/), not directly under the prefix"
            ),
            SkipReason::ServiceNotConfigured(service) => {
                write!(f, "no {service} data store is configured for this deployment")
            }
            SkipReason::BatchTooManyFiles { files, limit } => write!(
                f,
                "batch holds {files} files, over the per-job limit of {limit}; split it into several batch folders"
            ),
            SkipReason::BatchTooLarge { bytes, limit } => write!(
                f,
                "batch holds {bytes} bytes, over the per-job limit of {limit} bytes; split it into several batch folders"
            ),
            SkipReason::BatchEmpty => write!(f, "batch folder holds no files besides its marker"),
            SkipReason::NotTheIngestBucket { bucket } => write!(
                f,
                "the object is in bucket {bucket}, not in the ingest bucket this starter imports from"
            ),
        }
    }
}

/// The routing decision for one uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Import(ImportRequest),
    /// A DICOM file inside a batch folder: imported by the batch's job when the marker arrives,
    /// so it gets no record of its own.
    PartOfBatch {
        prefix: String,
    },
    Skip(SkipReason),
}

/// Decides what to do with the uploaded `object` (its key already decoded).
pub fn route(object: &SourceObject, config: &RoutingConfig) -> Route {
    match route_checked(object, config) {
        Ok(route) => route,
        Err(reason) => Route::Skip(reason),
    }
}

fn route_checked(object: &SourceObject, config: &RoutingConfig) -> Result<Route, SkipReason> {
    let key = object.key.as_str();
    if key.len() > MAX_S3_KEY_BYTES {
        return Err(SkipReason::KeyTooLong { bytes: key.len() });
    }
    if key.ends_with('/') {
        return Err(SkipReason::FolderMarker);
    }
    if !bucket_name_accepted(&object.bucket) {
        return Err(SkipReason::BucketNameNotAccepted);
    }

    // The DICOM prefix is checked first so that an empty FHIR prefix ("everything else is FHIR")
    // does not swallow DICOM uploads.
    if let Some(rest) = strip_prefix(key, &config.dicom_prefix) {
        return route_dicom(object, rest, config);
    }
    if let Some(rest) = strip_prefix(key, &config.fhir_prefix) {
        return route_fhir(object, rest, config);
    }
    Err(SkipReason::OutsidePrefixes)
}

fn strip_prefix<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix).filter(|rest| !rest.is_empty())
}

fn route_fhir(
    object: &SourceObject,
    rest: &str,
    config: &RoutingConfig,
) -> Result<Route, SkipReason> {
    if !has_extension(rest, ".ndjson") {
        return Err(SkipReason::UnsupportedType {
            expected: "FHIR R4 NDJSON (.ndjson)",
        });
    }
    if object.size == 0 {
        return Err(SkipReason::EmptyObject);
    }
    if !config.fhir_enabled {
        return Err(SkipReason::ServiceNotConfigured(Service::HealthLake));
    }
    import(Service::HealthLake, object.uri(), ImportScope::Object)
}

fn route_dicom(
    object: &SourceObject,
    rest: &str,
    config: &RoutingConfig,
) -> Result<Route, SkipReason> {
    let (folder, file_name) = match rest.rsplit_once('/') {
        Some((folder, name)) => (Some(folder), name),
        None => (None, rest),
    };

    if file_name == config.batch_marker {
        let Some(folder) = folder else {
            return Err(SkipReason::MarkerOutsideBatchFolder);
        };
        if !config.imaging_enabled {
            return Err(SkipReason::ServiceNotConfigured(Service::HealthImaging));
        }
        let prefix = format!("{}{folder}/", config.dicom_prefix);
        let uri = s3_uri(&object.bucket, &prefix);
        return import(Service::HealthImaging, uri, ImportScope::Batch { prefix });
    }

    if let Some(folder) = folder {
        return Ok(Route::PartOfBatch {
            prefix: format!("{}{folder}/", config.dicom_prefix),
        });
    }

    if !has_extension(file_name, ".dcm") {
        return Err(SkipReason::UnsupportedType {
            expected: "DICOM P10 (.dcm) directly under the DICOM prefix, or a batch folder with its marker",
        });
    }
    if object.size == 0 {
        return Err(SkipReason::EmptyObject);
    }
    if object.size > IMAGING_MAX_FILE_BYTES {
        return Err(SkipReason::ObjectTooLarge {
            bytes: object.size,
            limit: IMAGING_MAX_FILE_BYTES,
        });
    }
    if !config.imaging_enabled {
        return Err(SkipReason::ServiceNotConfigured(Service::HealthImaging));
    }
    // HealthImaging imports a prefix; the object's own key is a prefix that selects it.
    import(Service::HealthImaging, object.uri(), ImportScope::Object)
}

fn import(service: Service, input_s3_uri: String, scope: ImportScope) -> Result<Route, SkipReason> {
    let chars = input_s3_uri.chars().count();
    if chars > MAX_S3_URI_CHARS {
        return Err(SkipReason::S3UriTooLong { chars });
    }
    Ok(Route::Import(ImportRequest {
        service,
        input_s3_uri,
        scope,
    }))
}

fn has_extension(name: &str, extension: &str) -> bool {
    name.len() > extension.len()
        && name
            .get(name.len() - extension.len()..)
            .is_some_and(|ext| ext.eq_ignore_ascii_case(extension))
}

/// The services' S3 URI pattern's bucket part: `[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9]`.
fn bucket_name_accepted(bucket: &str) -> bool {
    let b = bucket.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'.' || *c == b'-')
}

/// One file of a listed DICOM batch folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFile<'a> {
    pub key: Cow<'a, str>,
    pub size: u64,
}

/// Checks a listed batch folder against HealthImaging's per-job limits. A batch over a limit is
/// refused whole with a reason that says how to fix it, never silently truncated. The marker
/// object and folder placeholders are not files of the batch.
pub fn check_batch<'a>(
    files: impl IntoIterator<Item = BatchFile<'a>>,
    config: &RoutingConfig,
) -> Result<(u64, u64), SkipReason> {
    let (mut count, mut bytes) = (0u64, 0u64);
    for file in files {
        let is_marker = file
            .key
            .rsplit('/')
            .next()
            .is_some_and(|name| name == config.batch_marker);
        if is_marker || file.key.ends_with('/') {
            continue;
        }
        count += 1;
        bytes = bytes.saturating_add(file.size);
    }
    if count == 0 {
        return Err(SkipReason::BatchEmpty);
    }
    if count > IMAGING_MAX_JOB_FILES {
        return Err(SkipReason::BatchTooManyFiles {
            files: count,
            limit: IMAGING_MAX_JOB_FILES,
        });
    }
    if bytes > IMAGING_MAX_JOB_BYTES {
        return Err(SkipReason::BatchTooLarge {
            bytes,
            limit: IMAGING_MAX_JOB_BYTES,
        });
    }
    Ok((count, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64) -> SourceObject {
        SourceObject {
            bucket: "ingest-bucket".into(),
            key: key.into(),
            size,
            e_tag: Some("\"e\"".into()),
            version_id: None,
        }
    }

    fn route_key(key: &str) -> Route {
        route(&object(key, 100), &RoutingConfig::default())
    }

    fn skip_of(key: &str) -> SkipReason {
        match route_key(key) {
            Route::Skip(reason) => reason,
            other => panic!("{key}: expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn decodes_plus_as_space_and_percent_escapes() {
        for (raw, decoded) in [
            ("fhir/my+file.ndjson", "fhir/my file.ndjson"),
            ("fhir/a%2Bb.ndjson", "fhir/a+b.ndjson"),
            ("fhir/a%20b+c%2B.ndjson", "fhir/a b c+.ndjson"),
            // moto percent-encodes '/', real S3 does not: both decode the same.
            ("fhir%2Fx.ndjson", "fhir/x.ndjson"),
            ("plain/key.dcm", "plain/key.dcm"),
        ] {
            assert_eq!(decode_event_key(raw).unwrap(), decoded, "{raw}");
        }
    }

    #[test]
    fn decodes_unicode_keys() {
        assert_eq!(
            decode_event_key("fhir/patient-%C3%A9t%C3%A9+%E6%82%A3%E8%80%85.ndjson").unwrap(),
            "fhir/patient-été 患者.ndjson"
        );
    }

    #[test]
    fn a_literal_percent_sign_arrives_encoded() {
        assert_eq!(
            decode_event_key("fhir/100%25.ndjson").unwrap(),
            "fhir/100%.ndjson"
        );
    }

    #[test]
    fn refuses_malformed_escapes_and_bad_utf8() {
        assert_eq!(decode_event_key(""), Err(KeyDecodeError::Empty));
        assert_eq!(decode_event_key("a%2"), Err(KeyDecodeError::BadEscape(1)));
        assert_eq!(decode_event_key("a%zz"), Err(KeyDecodeError::BadEscape(1)));
        assert_eq!(decode_event_key("a%C3"), Err(KeyDecodeError::NotUtf8));
    }

    #[test]
    fn ndjson_under_fhir_is_one_healthlake_job() {
        assert_eq!(
            route_key("fhir/2026/patients.ndjson"),
            Route::Import(ImportRequest {
                service: Service::HealthLake,
                input_s3_uri: "s3://ingest-bucket/fhir/2026/patients.ndjson".into(),
                scope: ImportScope::Object,
            })
        );
        assert!(matches!(route_key("fhir/UPPER.NDJSON"), Route::Import(_)));
        assert!(matches!(
            route_key("fhir/with space + plus.ndjson"),
            Route::Import(_)
        ));
    }

    #[test]
    fn lone_dcm_directly_under_dicom_is_one_imaging_job() {
        assert_eq!(
            route_key("dicom/scan.dcm"),
            Route::Import(ImportRequest {
                service: Service::HealthImaging,
                input_s3_uri: "s3://ingest-bucket/dicom/scan.dcm".into(),
                scope: ImportScope::Object,
            })
        );
    }

    #[test]
    fn batch_marker_imports_its_folder() {
        assert_eq!(
            route_key("dicom/study-42/_READY"),
            Route::Import(ImportRequest {
                service: Service::HealthImaging,
                input_s3_uri: "s3://ingest-bucket/dicom/study-42/".into(),
                scope: ImportScope::Batch {
                    prefix: "dicom/study-42/".into()
                },
            })
        );
        assert!(matches!(
            route_key("dicom/study-42/series 1/_READY"),
            Route::Import(ImportRequest { scope: ImportScope::Batch { prefix }, .. })
                if prefix == "dicom/study-42/series 1/"
        ));
    }

    #[test]
    fn files_inside_a_batch_wait_for_the_marker() {
        assert_eq!(
            route_key("dicom/study-42/img-001.dcm"),
            Route::PartOfBatch {
                prefix: "dicom/study-42/".into()
            }
        );
    }

    #[test]
    fn marker_directly_under_dicom_is_refused() {
        assert_eq!(
            skip_of("dicom/_READY"),
            SkipReason::MarkerOutsideBatchFolder
        );
    }

    #[test]
    fn every_skip_reason() {
        assert_eq!(skip_of("fhir/"), SkipReason::FolderMarker);
        assert_eq!(skip_of("dicom/study/"), SkipReason::FolderMarker);
        assert_eq!(skip_of("other/file.ndjson"), SkipReason::OutsidePrefixes);
        assert_eq!(skip_of("fhirish.ndjson"), SkipReason::OutsidePrefixes);
        assert!(matches!(
            skip_of("fhir/data.json"),
            SkipReason::UnsupportedType { .. }
        ));
        assert!(matches!(
            skip_of("fhir/.ndjson"),
            SkipReason::UnsupportedType { .. }
        ));
        assert!(matches!(
            skip_of("dicom/notes.txt"),
            SkipReason::UnsupportedType { .. }
        ));
        assert_eq!(
            route(&object("fhir/empty.ndjson", 0), &RoutingConfig::default()),
            Route::Skip(SkipReason::EmptyObject)
        );
        assert_eq!(
            route(&object("dicom/empty.dcm", 0), &RoutingConfig::default()),
            Route::Skip(SkipReason::EmptyObject)
        );
        assert_eq!(
            route(
                &object("dicom/huge.dcm", IMAGING_MAX_FILE_BYTES + 1),
                &RoutingConfig::default()
            ),
            Route::Skip(SkipReason::ObjectTooLarge {
                bytes: IMAGING_MAX_FILE_BYTES + 1,
                limit: IMAGING_MAX_FILE_BYTES
            })
        );
    }

    #[test]
    fn keys_that_are_too_long() {
        let key = format!("fhir/{}.ndjson", "a".repeat(MAX_S3_KEY_BYTES));
        assert!(matches!(skip_of(&key), SkipReason::KeyTooLong { .. }));
        // Within S3's key limit, but "s3://bucket/" pushes the URI over the services' limit.
        let key = format!("fhir/{}.ndjson", "a".repeat(MAX_S3_KEY_BYTES - 12));
        assert!(key.len() <= MAX_S3_KEY_BYTES);
        assert!(matches!(skip_of(&key), SkipReason::S3UriTooLong { .. }));
        // Multi-byte characters: 1024 bytes is fewer than 1024 characters.
        let key = format!("fhir/{}.ndjson", "é".repeat(400));
        assert!(matches!(route_key(&key), Route::Import(_)));
    }

    #[test]
    fn unconfigured_service_is_a_recorded_skip() {
        let config = RoutingConfig {
            fhir_enabled: false,
            imaging_enabled: false,
            ..RoutingConfig::default()
        };
        for key in ["fhir/a.ndjson", "dicom/a.dcm", "dicom/b/_READY"] {
            assert!(
                matches!(
                    route(&object(key, 1), &config),
                    Route::Skip(SkipReason::ServiceNotConfigured(_))
                ),
                "{key}"
            );
        }
    }

    #[test]
    fn bucket_names_outside_the_services_pattern_are_skipped() {
        let mut o = object("fhir/a.ndjson", 1);
        o.bucket = "Legacy_Bucket".into();
        assert_eq!(
            route(&o, &RoutingConfig::default()),
            Route::Skip(SkipReason::BucketNameNotAccepted)
        );
    }

    #[test]
    fn custom_prefixes_are_normalised() {
        let config = RoutingConfig {
            batch_marker: "DONE".into(),
            ..RoutingConfig::default()
        }
        .with_prefixes("incoming/fhir", "incoming/dicom/");
        assert_eq!(config.fhir_prefix, "incoming/fhir/");
        assert!(matches!(
            route(&object("incoming/fhir/x.ndjson", 1), &config),
            Route::Import(_)
        ));
        assert!(matches!(
            route(&object("incoming/dicom/b/DONE", 1), &config),
            Route::Import(_)
        ));
        assert!(matches!(
            route(&object("fhir/x.ndjson", 1), &config),
            Route::Skip(SkipReason::OutsidePrefixes)
        ));
    }

    #[test]
    fn skip_reasons_read_as_sentences() {
        assert_eq!(
            SkipReason::ServiceNotConfigured(Service::HealthLake).to_string(),
            "no HEALTHLAKE data store is configured for this deployment"
        );
        assert!(SkipReason::BatchTooManyFiles {
            files: 5001,
            limit: 5000
        }
        .to_string()
        .contains("split"));
    }

    fn file(key: &str, size: u64) -> BatchFile<'static> {
        BatchFile {
            key: Cow::Owned(key.to_owned()),
            size,
        }
    }

    #[test]
    fn batch_limits_refuse_rather_than_truncate() {
        let config = RoutingConfig::default();
        let ok = vec![
            file("dicom/b/1.dcm", 10),
            file("dicom/b/2.dcm", 20),
            file("dicom/b/_READY", 0),
        ];
        assert_eq!(check_batch(ok, &config), Ok((2, 30)));

        let too_many = (0..=IMAGING_MAX_JOB_FILES).map(|i| file(&format!("dicom/b/{i}.dcm"), 1));
        assert_eq!(
            check_batch(too_many, &config),
            Err(SkipReason::BatchTooManyFiles {
                files: 5001,
                limit: 5000
            })
        );

        let too_big = vec![
            file("dicom/b/1.dcm", IMAGING_MAX_JOB_BYTES),
            file("dicom/b/2.dcm", 1),
        ];
        assert!(matches!(
            check_batch(too_big, &config),
            Err(SkipReason::BatchTooLarge { .. })
        ));

        let empty = vec![file("dicom/b/_READY", 0), file("dicom/b/sub/", 0)];
        assert_eq!(check_batch(empty, &config), Err(SkipReason::BatchEmpty));
    }
}
