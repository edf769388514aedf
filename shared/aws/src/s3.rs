//! S3 adapters: the [`OutputReader`] port (the services' output files), the [`ObjectLister`] port,
//! and the [`StagedCopies`] port (each batch's server-side copies of its files), over one
//! paginated listing.

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::Client;
use healthimport::domain::job::SourceObject;
use healthimport::domain::s3_uri::{s3_uri, split_s3_uri};
use healthimport::ports::objects::{
    ListError, ListedObject, ObjectError, ObjectLister, StagedCopies,
};
use healthimport::ports::outputs::{OutputReadError, OutputReader};

/// [`OutputReader`] and [`ObjectLister`] on S3.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: Client,
}

impl S3Objects {
    pub fn new(client: Client) -> Self {
        S3Objects { client }
    }

    /// Up to `limit` objects under `prefix` that `keep` accepts, in key order, page by page.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<ListedObject>, Box<dyn std::error::Error + Send + Sync>> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page?.contents() {
                let Some(key) = object.key().filter(|key| keep(key)) else {
                    continue;
                };
                objects.push(ListedObject {
                    key: key.to_owned(),
                    size: object.size().map_or(0, |s| u64::try_from(s).unwrap_or(0)),
                });
                if objects.len() >= limit {
                    return Ok(objects);
                }
            }
        }
        Ok(objects)
    }
}

/// S3 copies up to 5 GB in one CopyObject; larger objects are copied in parts.
const MAX_SINGLE_COPY_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Part size of a multipart copy: well inside S3's 5 MB–5 GB part limits, and 10 GB (the largest
/// DICOM file HealthImaging takes) in 20 parts, far from the 10,000-part limit.
const COPY_PART_BYTES: u64 = 512 * 1024 * 1024;
/// DeleteObjects takes at most 1,000 keys.
const DELETE_BATCH: usize = 1000;

/// `CopySource`: the bucket and the key, URL-encoded except its slashes, and the uploaded version
/// when there is one.
fn copy_source(source: &SourceObject) -> String {
    const KEY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let key = percent_encoding::utf8_percent_encode(&source.key, KEY);
    match &source.version_id {
        Some(version) => format!(
            "{}/{key}?versionId={}",
            source.bucket,
            percent_encoding::utf8_percent_encode(version, KEY)
        ),
        None => format!("{}/{key}", source.bucket),
    }
}

fn object_error<E>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    error: SdkError<E>,
) -> ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let gone = matches!(&error, SdkError::ServiceError(e)
        if matches!(e.err().code(), Some("NoSuchKey" | "NoSuchVersion" | "NotFound")));
    if gone {
        return ObjectError::Gone {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
    }
    ObjectError::Unavailable {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        source: Box::new(error),
    }
}

impl S3Objects {
    async fn copy_in_parts(&self, source: &SourceObject, to_key: &str) -> Result<(), ObjectError> {
        let (bucket, size) = (source.bucket.as_str(), source.size);
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(to_key)
            .send()
            .await
            .map_err(|e| object_error("CreateMultipartUpload", bucket, to_key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let parts = async {
            let mut parts = Vec::new();
            let mut start = 0;
            let mut number = 1;
            while start < size {
                let end = (start + COPY_PART_BYTES).min(size) - 1;
                let part = self
                    .client
                    .upload_part_copy()
                    .bucket(bucket)
                    .key(to_key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(copy_source(source))
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                    .map_err(|e| object_error("UploadPartCopy", bucket, &source.key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(
                            part.copy_part_result()
                                .and_then(|r| r.e_tag().map(str::to_owned)),
                        )
                        .build(),
                );
                start = end + 1;
                number += 1;
            }
            Ok(parts)
        }
        .await;
        let completed = match parts {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(to_key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| object_error("CompleteMultipartUpload", bucket, to_key, e)),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Parts of an abandoned upload are billed until aborted (the lifecycle rule's
            // AbortIncompleteMultipartUpload is the backstop).
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(to_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }
}

#[async_trait]
impl StagedCopies for S3Objects {
    async fn copy(&self, source: &SourceObject, to_key: &str) -> Result<(), ObjectError> {
        if source.size > MAX_SINGLE_COPY_BYTES {
            return self.copy_in_parts(source, to_key).await;
        }
        self.client
            .copy_object()
            .bucket(&source.bucket)
            .key(to_key)
            .copy_source(copy_source(source))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| object_error("CopyObject", &source.bucket, &source.key, e))
    }

    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<u64, ObjectError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let listed = self
            .list_objects(bucket, prefix, usize::MAX, |_| true)
            .await
            .map_err(|source| ObjectError::Unavailable {
                operation: "ListObjectsV2",
                bucket: bucket.to_owned(),
                key: prefix.to_owned(),
                source,
            })?;
        for chunk in listed.chunks(DELETE_BATCH) {
            let objects = chunk
                .iter()
                .filter_map(|o| ObjectIdentifier::builder().key(&o.key).build().ok())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| ObjectError::Unavailable {
                    operation: "DeleteObjects",
                    bucket: bucket.to_owned(),
                    key: prefix.to_owned(),
                    source: Box::new(e),
                })?;
            self.client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| object_error("DeleteObjects", bucket, prefix, e))?;
        }
        Ok(listed.len() as u64)
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
impl OutputReader for S3Objects {
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
        // Folder placeholders hold nothing to read.
        let objects = self
            .list_objects(bucket, prefix, limit, |key| !key.ends_with('/'))
            .await
            .map_err(|source| OutputReadError {
                uri: prefix_uri.to_owned(),
                source,
            })?;
        Ok(objects.iter().map(|o| s3_uri(bucket, &o.key)).collect())
    }
}

#[async_trait]
impl ObjectLister for S3Objects {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ListedObject>, ListError> {
        self.list_objects(bucket, prefix, limit, |_| true)
            .await
            .map_err(|source| ListError {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                source,
            })
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

    #[tokio::test]
    async fn s3_no_such_key_reads_as_absent() {
        let rule = mock!(Client::get_object)
            .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
        let reader = S3Objects::new(mock_client!(aws_sdk_s3, [&rule]));
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
        let reader = S3Objects::new(mock_client!(aws_sdk_s3, [&rule]));
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
        let reader = S3Objects::new(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]));
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
        let reader = S3Objects::new(mock_client!(aws_sdk_s3, [&rule]));
        let uris = OutputReader::list(&reader, "s3://o/x/FAILURE/", 2)
            .await
            .unwrap();
        assert_eq!(
            uris,
            vec!["s3://o/x/FAILURE/a.ndjson", "s3://o/x/FAILURE/b.ndjson"]
        );
    }
}
