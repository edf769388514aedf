//! S3 adapters: the [`OutputReader`] port (the services' output files) and the [`ObjectLister`]
//! port (what a batch folder holds), over one paginated listing.

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::Client;
use healthimport::domain::s3_uri::{s3_uri, split_s3_uri};
use healthimport::ports::objects::{ListError, ListedObject, ObjectLister};
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
