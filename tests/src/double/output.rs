//! What a job does with S3: list its input, judge every file, and write the output files and
//! manifest in each service's documented layout.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};

use super::state::{new_id, Job, JobKind, Service};

/// Byte offset of the `DICM` magic in a DICOM P10 file (after the 128-byte preamble).
const DICOM_MAGIC_OFFSET: usize = 128;
const DICOM_MAGIC: &[u8; 4] = b"DICM";
const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

/// An S3 error reduced to what a job message shows: code and message, never object contents.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text}")]
pub struct S3Failure {
    code: Option<String>,
    text: String,
}

impl S3Failure {
    fn from_sdk<E>(err: &aws_sdk_s3::error::SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let text = match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(err).to_string(),
        };
        Self {
            code: err.code().map(str::to_owned),
            text,
        }
    }

    fn other(text: String) -> Self {
        Self { code: None, text }
    }

    /// The S3 error code alone, for failure lines.
    fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("S3Error")
    }
}

/// `s3://bucket/key`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl S3Location {
    /// Parses a URI already checked against the services' S3 URI pattern.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The location of `name` under this one as a folder, with exactly one `/` between them.
    pub fn join(&self, name: &str) -> Self {
        let base = self.key.trim_end_matches('/');
        let key = if base.is_empty() {
            name.to_owned()
        } else {
            format!("{base}/{name}")
        };
        Self {
            bucket: self.bucket.clone(),
            key,
        }
    }
}

#[derive(Debug, Clone)]
pub struct InputFile {
    pub location: S3Location,
    pub size: u64,
}

/// The objects a job imports: every object under the prefix except "folder" keys. For
/// HealthLake, an input naming one object exactly imports just that object.
pub async fn list_input(
    s3: &aws_sdk_s3::Client,
    input: &S3Location,
    service: Service,
) -> Result<Vec<InputFile>, S3Failure> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(&input.bucket)
        .prefix(&input.key)
        .into_paginator()
        .send();
    let mut files = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| S3Failure::from_sdk(&err))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if key.ends_with('/') {
                continue;
            }
            files.push(InputFile {
                location: S3Location {
                    bucket: input.bucket.clone(),
                    key: key.to_owned(),
                },
                size: object
                    .size()
                    .and_then(|size| u64::try_from(size).ok())
                    .unwrap_or(0),
            });
        }
    }
    if service == Service::HealthLake && !input.key.is_empty() && !input.key.ends_with('/') {
        if let Some(exact) = files.iter().find(|file| file.location.key == input.key) {
            return Ok(vec![exact.clone()]);
        }
    }
    Ok(files)
}

/// The numbers a job reports, in both services' vocabularies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobCounts {
    pub scanned_files: u64,
    pub imported_files: u64,
    pub files_with_customer_error: u64,
    pub files_with_server_error: u64,
    pub scanned_bytes: u64,
    pub imported_bytes: u64,
    /// HealthLake: resources (NDJSON lines).
    pub resources_scanned: u64,
    pub resources_imported: u64,
    pub resources_with_customer_error: u64,
    pub resources_with_server_error: u64,
    /// HealthImaging.
    pub image_sets: u64,
}

impl JobCounts {
    /// The share of these counts a job has reached `fraction` of the way through its run.
    pub fn scaled(&self, fraction: f64) -> Self {
        // Counts are far below 2^52, so the round trip through f64 is exact enough.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let part = |value: u64| (value as f64 * fraction).floor() as u64;
        Self {
            scanned_files: part(self.scanned_files),
            imported_files: part(self.imported_files),
            files_with_customer_error: part(self.files_with_customer_error),
            files_with_server_error: part(self.files_with_server_error),
            scanned_bytes: part(self.scanned_bytes),
            imported_bytes: part(self.imported_bytes),
            resources_scanned: part(self.resources_scanned),
            resources_imported: part(self.resources_imported),
            resources_with_customer_error: part(self.resources_with_customer_error),
            resources_with_server_error: part(self.resources_with_server_error),
            image_sets: part(self.image_sets),
        }
    }

    /// HealthLake reports COMPLETED_WITH_ERRORS when anything failed.
    pub fn has_errors(&self) -> bool {
        self.files_with_customer_error
            + self.files_with_server_error
            + self.resources_with_customer_error
            + self.resources_with_server_error
            > 0
    }
}

#[allow(clippy::cast_precision_loss)]
pub fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / BYTES_PER_MB
}

/// The verdict on every input file of a job.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    pub counts: JobCounts,
    pub success_lines: Vec<Value>,
    pub failure_lines: Vec<Value>,
    /// HealthImaging: the one image set this double files every imported instance under.
    pub image_set_id: Option<String>,
}

/// HealthImaging: a file is DICOM P10 when `DICM` sits at byte 128. Only the first 132 bytes
/// are fetched, so large files cost nothing.
pub async fn judge_dicom(s3: &aws_sdk_s3::Client, files: &[InputFile]) -> Judgement {
    let mut judgement = Judgement::default();
    let image_set_id = new_id();
    for file in files {
        judgement.counts.scanned_files += 1;
        judgement.counts.scanned_bytes += file.size;
        let input_file = file.location.uri();
        let verdict = if file.size < (DICOM_MAGIC_OFFSET + DICOM_MAGIC.len()) as u64 {
            Err((
                "InvalidDicomFile".to_owned(),
                not_dicom_message(&input_file),
            ))
        } else {
            match read(
                s3,
                &file.location,
                Some(DICOM_MAGIC_OFFSET + DICOM_MAGIC.len()),
            )
            .await
            {
                Ok(head)
                    if head.get(DICOM_MAGIC_OFFSET..DICOM_MAGIC_OFFSET + 4)
                        == Some(DICOM_MAGIC) =>
                {
                    Ok(())
                }
                Ok(_) => Err((
                    "InvalidDicomFile".to_owned(),
                    not_dicom_message(&input_file),
                )),
                Err(failure) => Err((failure.code().to_owned(), failure.to_string())),
            }
        };
        match verdict {
            Ok(()) => {
                judgement.counts.imported_files += 1;
                judgement.counts.imported_bytes += file.size;
                judgement.success_lines.push(json!({
                    "inputFile": input_file,
                    "importResponse": {"imageSetId": image_set_id, "isPrimary": true},
                }));
            }
            Err((exception_type, message)) => {
                judgement.counts.files_with_customer_error += 1;
                judgement.failure_lines.push(json!({
                    "inputFile": input_file,
                    "exception": {"exceptionType": exception_type, "message": message},
                }));
            }
        }
    }
    if judgement.counts.imported_files > 0 {
        judgement.counts.image_sets = 1;
        judgement.image_set_id = Some(image_set_id);
    }
    judgement
}

fn not_dicom_message(input_file: &str) -> String {
    format!("{input_file} is not a DICOM P10 file: no DICM prefix at byte offset 128")
}

/// HealthLake: every non-blank line must be a JSON object with a string `resourceType`. A bad
/// line fails that resource only; the rest of the file is imported.
pub async fn judge_ndjson(s3: &aws_sdk_s3::Client, files: &[InputFile]) -> Judgement {
    let mut judgement = Judgement::default();
    for file in files {
        let counts = &mut judgement.counts;
        counts.scanned_files += 1;
        counts.scanned_bytes += file.size;
        let file_name = file.location.uri();
        let body = match read(s3, &file.location, None).await {
            Ok(body) => body,
            Err(failure) => {
                counts.files_with_customer_error += 1;
                judgement.failure_lines.push(json!({
                    "fileName": file_name,
                    "statusCode": 400,
                    "errorMessage": format!("Unable to read the file: {failure}"),
                }));
                continue;
            }
        };
        let mut imported_here = 0;
        for (index, raw_line) in body.split(|byte| *byte == b'\n').enumerate() {
            let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            counts.resources_scanned += 1;
            let line_number = index + 1;
            match judge_resource(line) {
                Ok((resource_type, id)) => {
                    counts.resources_imported += 1;
                    counts.imported_bytes += raw_line.len() as u64 + 1;
                    imported_here += 1;
                    judgement.success_lines.push(json!({
                        "fileName": file_name,
                        "lineNumber": line_number,
                        "resourceType": resource_type,
                        "id": id,
                    }));
                }
                Err(reason) => {
                    counts.resources_with_customer_error += 1;
                    judgement.failure_lines.push(json!({
                        "fileName": file_name,
                        "lineNumber": line_number,
                        "statusCode": 400,
                        "errorMessage": reason,
                    }));
                }
            }
        }
        if imported_here > 0 {
            counts.imported_files += 1;
        }
    }
    judgement
}

/// `Ok((resourceType, id))` for an acceptable resource, `Err(reason)` otherwise. The reason
/// never quotes the line: resources carry patient data.
fn judge_resource(line: &[u8]) -> Result<(String, String), String> {
    let value: Value = serde_json::from_slice(line).map_err(|err| {
        let kind = match err.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end",
        };
        format!(
            "The line is not valid JSON ({kind} at column {})",
            err.column()
        )
    })?;
    let Value::Object(resource) = value else {
        return Err("The line is not a JSON object".to_owned());
    };
    let Some(Value::String(resource_type)) = resource.get("resourceType") else {
        return Err("The resource has no string resourceType".to_owned());
    };
    let id = match resource.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => new_id(),
    };
    Ok((resource_type.clone(), id))
}

/// Reads an object, or only its first `limit` bytes.
async fn read(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    limit: Option<usize>,
) -> Result<Vec<u8>, S3Failure> {
    let mut request = s3.get_object().bucket(&location.bucket).key(&location.key);
    if let Some(limit) = limit {
        request = request.range(format!("bytes=0-{}", limit.saturating_sub(1)));
    }
    let object = request
        .send()
        .await
        .map_err(|err| S3Failure::from_sdk(&err))?;
    let body = object
        .body
        .collect()
        .await
        .map_err(|err| S3Failure::other(format!("reading the body failed: {err}")))?;
    Ok(body.into_bytes().to_vec())
}

/// Where one job's output goes: `<output>/<datastoreId>-<DicomImport|FHIR_IMPORT>-<jobId>/`.
#[derive(Debug, Clone)]
pub struct OutputLayout {
    pub service: Service,
    pub job_folder: S3Location,
}

impl OutputLayout {
    pub fn new(job: &Job) -> Option<Self> {
        let output = S3Location::parse(&job.request.output_s3_uri)?;
        let kind = match (job.service, job.request.kind) {
            (Service::HealthLake, JobKind::Import) => "FHIR_IMPORT",
            (Service::HealthLake, JobKind::Export) => "FHIR_EXPORT",
            (Service::Imaging, _) => "DicomImport",
        };
        let folder = format!("{}-{kind}-{}/", job.request.datastore_id, job.id);
        Some(Self {
            service: job.service,
            job_folder: output.join(&folder),
        })
    }

    fn folder(&self, name: &str) -> S3Location {
        self.job_folder.join(&format!("{name}/"))
    }

    pub fn manifest(&self) -> S3Location {
        self.job_folder.join(match self.service {
            Service::HealthLake => "manifest.json",
            Service::Imaging => "job-output-manifest.json",
        })
    }

    /// The detail files: `SUCCESS/success.ndjson`, `FAILURE/failure.ndjson` and, for
    /// HealthImaging, `WARNING/warning.ndjson` (always empty here). Written even when empty so
    /// every folder the manifest names exists.
    fn detail_files<'a>(&self, judgement: &'a Judgement) -> Vec<(S3Location, &'a [Value])> {
        let mut files = vec![
            (
                self.folder("SUCCESS").join("success.ndjson"),
                judgement.success_lines.as_slice(),
            ),
            (
                self.folder("FAILURE").join("failure.ndjson"),
                judgement.failure_lines.as_slice(),
            ),
        ];
        if self.service == Service::Imaging {
            files.push((self.folder("WARNING").join("warning.ndjson"), &[]));
        }
        files
    }

    pub async fn write_details(
        &self,
        s3: &aws_sdk_s3::Client,
        judgement: &Judgement,
    ) -> Result<(), S3Failure> {
        for (location, lines) in self.detail_files(judgement) {
            let mut body = String::new();
            for line in lines {
                body.push_str(&line.to_string());
                body.push('\n');
            }
            put(s3, &location, body.into_bytes(), "application/x-ndjson").await?;
        }
        Ok(())
    }

    /// The manifest document; see the module doc of `double` for where each name comes from.
    pub fn manifest_document(&self, job: &Job, judgement: &Judgement) -> Value {
        let counts = &judgement.counts;
        match self.service {
            Service::Imaging => {
                let image_sets: Vec<Value> = judgement
                    .image_set_id
                    .iter()
                    .map(|image_set_id| {
                        json!({
                            "imageSetId": image_set_id,
                            "imageSetVersion": 1,
                            "isPrimary": true,
                            "numberOfMatchedSOPInstances": counts.imported_files,
                        })
                    })
                    .collect();
                json!({"jobSummary": {
                    "jobId": job.id,
                    "datastoreId": job.request.datastore_id,
                    // As in the example of the developer guide ("Understanding import jobs"):
                    // the job's input prefix, and its own output folder.
                    "inputS3Uri": job.request.input_s3_uri,
                    "outputS3Uri": self.job_folder.uri(),
                    "successOutputS3Uri": self.folder("SUCCESS").uri(),
                    "failureOutputS3Uri": self.folder("FAILURE").uri(),
                    "warningsOutputS3Uri": self.folder("WARNING").uri(),
                    "numberOfScannedFiles": counts.scanned_files,
                    "numberOfImportedFiles": counts.imported_files,
                    "numberOfFilesWithCustomerError": counts.files_with_customer_error,
                    "numberOfFilesWithServerError": counts.files_with_server_error,
                    "numberOfGeneratedImageSets": counts.image_sets,
                    "imageSetsSummary": image_sets,
                }})
            }
            Service::HealthLake => json!({
                "inputDataConfig": {"s3Uri": job.request.input_s3_uri},
                "outputDataConfig": {
                    "s3Uri": self.job_folder.uri(),
                    "encryptionKeyID": job.request.kms_key_id,
                },
                "successOutput": {"successOutputS3Uri": self.folder("SUCCESS").uri()},
                "failureOutput": {"failureOutputS3Uri": self.folder("FAILURE").uri()},
                "numberOfScannedFiles": counts.scanned_files,
                "numberOfFilesImported": counts.imported_files,
                "sizeOfScannedFilesInMB": megabytes(counts.scanned_bytes),
                "sizeOfDataImportedSuccessfullyInMB": megabytes(counts.imported_bytes),
                "numberOfResourcesScanned": counts.resources_scanned,
                "numberOfResourcesImportedSuccessfully": counts.resources_imported,
                "numberOfResourcesWithCustomerError": counts.resources_with_customer_error,
                "numberOfResourcesWithServerError": counts.resources_with_server_error,
            }),
        }
    }

    /// An export's file of one resource type: `<Type>/<Type>-0.ndjson`.
    pub async fn write_export_file(
        &self,
        s3: &aws_sdk_s3::Client,
        resource_type: &str,
        body: Vec<u8>,
    ) -> Result<(), S3Failure> {
        let location = self
            .folder(resource_type)
            .join(&format!("{resource_type}-0.ndjson"));
        put(s3, &location, body, "application/x-ndjson").await
    }

    pub async fn write_manifest(
        &self,
        s3: &aws_sdk_s3::Client,
        manifest: &Value,
    ) -> Result<(), S3Failure> {
        let body = serde_json::to_vec_pretty(manifest)
            .map_err(|err| S3Failure::other(format!("cannot encode the manifest: {err}")))?;
        put(s3, &self.manifest(), body, "application/json").await
    }
}

async fn put(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(), S3Failure> {
    s3.put_object()
        .bucket(&location.bucket)
        .key(&location.key)
        .content_type(content_type)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|err| S3Failure::from_sdk(&err))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_join_with_one_slash() {
        let out = S3Location::parse("s3://bucket/out/").unwrap();
        assert_eq!(out.join("a/").uri(), "s3://bucket/out/a/");
        let bare = S3Location::parse("s3://bucket").unwrap();
        assert_eq!(bare.join("a/").uri(), "s3://bucket/a/");
        let no_slash = S3Location::parse("s3://bucket/out").unwrap();
        assert_eq!(no_slash.join("m.json").key, "out/m.json");
    }

    #[test]
    fn resources_need_an_object_with_a_string_resource_type() {
        assert_eq!(
            judge_resource(br#"{"resourceType":"Patient","id":"p1"}"#).unwrap(),
            ("Patient".to_owned(), "p1".to_owned())
        );
        assert!(judge_resource(br#"{"resourceType":7}"#).is_err());
        assert!(judge_resource(br#"["Patient"]"#).is_err());
        assert!(judge_resource(b"{not json").is_err());
    }

    #[test]
    fn progress_scales_down() {
        let counts = JobCounts {
            scanned_files: 10,
            resources_scanned: 7,
            ..JobCounts::default()
        };
        let half = counts.scaled(0.5);
        assert_eq!((half.scanned_files, half.resources_scanned), (5, 3));
        assert!(!counts.has_errors());
    }
}
