//! The `ObjectLister` port: what a DICOM batch folder holds, so its size can be checked against
//! HealthImaging's per-job limits before the job is started.

use async_trait::async_trait;
use aws_sdk_s3::Client;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("could not list s3://{bucket}/{prefix}")]
pub struct ListError {
    pub bucket: String,
    pub prefix: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

#[async_trait]
pub trait ObjectLister: Send + Sync {
    /// Up to `limit` objects under `prefix` (more than the per-job limit is enough to refuse).
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ListedObject>, ListError>;
}

#[derive(Debug, Clone)]
pub struct S3ObjectLister {
    client: Client,
}

impl S3ObjectLister {
    pub fn new(client: Client) -> Self {
        S3ObjectLister { client }
    }
}

#[async_trait]
impl ObjectLister for S3ObjectLister {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ListedObject>, ListError> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ListError {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                source: Box::new(e),
            })?;
            for object in page.contents() {
                objects.push(ListedObject {
                    key: object.key().unwrap_or_default().to_owned(),
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
