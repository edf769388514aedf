//! Routing an uploaded S3 object: into the open batch of its service and folder, to closing that
//! batch (its marker), or to a recorded skip with its reason. Pure: no AWS types, no I/O.
//!
//! The rules (prefixes and marker configurable, see [`RoutingConfig`]); the folder is the key's
//! parent prefix, so files directly under a prefix form that prefix's own rolling batch:
//! - `fhir/…/x.ndjson` → joins the HealthLake batch of its folder;
//! - `dicom/…/<any name>` inside a folder, and `dicom/x.dcm` directly under the prefix → joins the
//!   HealthImaging batch of its folder (files in a DICOM folder often have no extension);
//! - `<prefix>/<folder>/_READY` → closes the open batch of its folder (FHIR and DICOM alike);
//! - anything else → skipped, with a [`SkipReason`] that the upload's record keeps.

use std::fmt;

use crate::domain::job::{Service, SourceObject};

/// HealthImaging: one P10 file up to 10 GB (an older page says 4 GB; we allow the documented
/// current limit and let the service have the last word).
pub const IMAGING_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
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
    /// The object whose arrival says "this folder is complete": it closes the folder's batch.
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

/// Why an upload is not imported. Its text is what the upload's record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    FolderMarker,
    EmptyObject,
    KeyTooLong {
        bytes: usize,
    },
    /// The copy of the upload in its batch's staging prefix would pass S3's key limit.
    StagingKeyTooLong {
        bytes: usize,
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
    /// The event names another bucket than the one the starter imports from (a notification
    /// configured by hand elsewhere).
    NotTheIngestBucket {
        bucket: String,
    },
    /// The upload is a batch marker: it closed its folder's batch (or found none open) and is not
    /// imported itself.
    BatchMarker {
        closed_batch: Option<String>,
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
            SkipReason::StagingKeyTooLong { bytes } => write!(
                f,
                "the batch's copy of this key would be {bytes} bytes, over S3's {MAX_S3_KEY_BYTES}-byte limit; use a shorter key"
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
                "batch marker must be inside a folder (<prefix>/<folder>/), not directly under the prefix"
            ),
            SkipReason::ServiceNotConfigured(service) => {
                write!(f, "no {service} data store is configured for this deployment")
            }
            SkipReason::NotTheIngestBucket { bucket } => write!(
                f,
                "the object is in bucket {bucket}, not in the ingest bucket this starter imports from"
            ),
            SkipReason::BatchMarker { closed_batch: Some(batch) } => {
                write!(f, "batch marker: closed batch {batch} of its folder")
            }
            SkipReason::BatchMarker { closed_batch: None } => write!(
                f,
                "batch marker: its folder had no open batch (already closed, or no file yet)"
            ),
        }
    }
}

/// The routing decision for one uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Joins the open batch of `service` for `folder` (the key's parent prefix, ending in `/`).
    Join {
        service: Service,
        folder: String,
    },
    /// A marker: closes the open batch of `service` for `folder`.
    CloseBatch {
        service: Service,
        folder: String,
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
    let (service, prefix, rest) = if let Some(rest) = strip_prefix(key, &config.dicom_prefix) {
        (Service::HealthImaging, &config.dicom_prefix, rest)
    } else if let Some(rest) = strip_prefix(key, &config.fhir_prefix) {
        (Service::HealthLake, &config.fhir_prefix, rest)
    } else {
        return Err(SkipReason::OutsidePrefixes);
    };
    let (in_folder, file_name) = match rest.rsplit_once('/') {
        Some((_, name)) => (true, name),
        None => (false, rest),
    };
    let folder = key[..key.len() - file_name.len()].to_owned();
    debug_assert!(folder.starts_with(prefix.as_str()));
    let enabled = match service {
        Service::HealthLake => config.fhir_enabled,
        Service::HealthImaging => config.imaging_enabled,
    };

    if file_name == config.batch_marker {
        if !in_folder {
            return Err(SkipReason::MarkerOutsideBatchFolder);
        }
        if !enabled {
            return Err(SkipReason::ServiceNotConfigured(service));
        }
        return Ok(Route::CloseBatch { service, folder });
    }
    match service {
        Service::HealthLake if !has_extension(file_name, ".ndjson") => {
            return Err(SkipReason::UnsupportedType {
                expected: "FHIR R4 NDJSON (.ndjson)",
            })
        }
        Service::HealthImaging if !in_folder && !has_extension(file_name, ".dcm") => {
            return Err(SkipReason::UnsupportedType {
                expected: "DICOM P10 (.dcm) directly under the DICOM prefix, or any file in a folder under it",
            })
        }
        _ => {}
    }
    if object.size == 0 {
        return Err(SkipReason::EmptyObject);
    }
    if service == Service::HealthImaging && object.size > IMAGING_MAX_FILE_BYTES {
        return Err(SkipReason::ObjectTooLarge {
            bytes: object.size,
            limit: IMAGING_MAX_FILE_BYTES,
        });
    }
    if !enabled {
        return Err(SkipReason::ServiceNotConfigured(service));
    }
    Ok(Route::Join { service, folder })
}

fn strip_prefix<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix).filter(|rest| !rest.is_empty())
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

    fn joins(key: &str) -> (Service, String) {
        match route_key(key) {
            Route::Join { service, folder } => (service, folder),
            other => panic!("{key}: expected a join, got {other:?}"),
        }
    }

    #[test]
    fn every_upload_joins_the_batch_of_its_parent_folder() {
        assert_eq!(
            joins("fhir/export-7/Patient.ndjson"),
            (Service::HealthLake, "fhir/export-7/".into())
        );
        assert_eq!(
            joins("fhir/a.ndjson"),
            (Service::HealthLake, "fhir/".into())
        );
        assert_eq!(
            joins("dicom/study-2/series-1/IM0001"),
            (Service::HealthImaging, "dicom/study-2/series-1/".into())
        );
        // Lone files directly under the prefix form the prefix's own rolling batch.
        assert_eq!(
            joins("dicom/x.dcm"),
            (Service::HealthImaging, "dicom/".into())
        );
    }

    #[test]
    fn a_marker_closes_its_folders_batch_for_both_services() {
        assert_eq!(
            route_key("dicom/study-2/_READY"),
            Route::CloseBatch {
                service: Service::HealthImaging,
                folder: "dicom/study-2/".into()
            }
        );
        assert_eq!(
            route_key("fhir/export-7/_READY"),
            Route::CloseBatch {
                service: Service::HealthLake,
                folder: "fhir/export-7/".into()
            }
        );
        assert_eq!(
            skip_of("dicom/_READY"),
            SkipReason::MarkerOutsideBatchFolder
        );
        assert_eq!(skip_of("fhir/_READY"), SkipReason::MarkerOutsideBatchFolder);
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
            route(&object("dicom/s/empty", 0), &RoutingConfig::default()),
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
        // Multi-byte characters: 1024 bytes is fewer than 1024 characters.
        let key = format!("fhir/{}.ndjson", "é".repeat(400));
        assert!(matches!(route_key(&key), Route::Join { .. }));
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
            Route::Join { .. }
        ));
        assert!(matches!(
            route(&object("incoming/dicom/b/DONE", 1), &config),
            Route::CloseBatch { .. }
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
        assert!(SkipReason::BatchMarker {
            closed_batch: Some("b-1".into())
        }
        .to_string()
        .contains("closed batch b-1"));
    }
}
