//! A batch's staged copy is the upload's own version, on S3's wire protocol (moto): an overwrite
//! of the key after the upload is an upload of its own, and must not be imported in its place.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use healthimport::domain::job::SourceObject;
use healthimport::ports::objects::{ObjectError, StagedCopies};
use healthimport_aws::s3::S3Objects;
use healthimport_tests::local_stack::{create_bucket, sdk_config, unique_name};

async fn versioned_bucket(s3: &aws_sdk_s3::Client, config: &aws_config::SdkConfig) -> String {
    let bucket = unique_name("staged-copies");
    create_bucket(config, &bucket).await.expect("bucket");
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
    bucket
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) -> String {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .expect("put")
        .version_id()
        .expect("a versioned bucket names the version")
        .to_owned()
}

async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    String::from_utf8(body.to_vec()).expect("utf-8")
}

fn upload(bucket: &str, key: &str, version: Option<&str>, size: u64) -> SourceObject {
    SourceObject {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size,
        e_tag: None,
        version_id: version.map(str::to_owned),
    }
}

#[tokio::test]
async fn the_staged_copy_is_the_uploaded_version_even_after_an_overwrite_or_a_delete() {
    let config = sdk_config().await;
    let s3 = aws_sdk_s3::Client::new(&config);
    let bucket = versioned_bucket(&s3, &config).await;
    let key = "dicom/study-1/ct 1+.dcm";
    let first = put(&s3, &bucket, key, "first upload").await;
    put(&s3, &bucket, key, "second upload").await;
    let copies = S3Objects::new(s3.clone());

    copies
        .copy(
            &upload(&bucket, key, Some(&first), 12),
            "staging/b-1/ct 1+.dcm",
        )
        .await
        .expect("copy of the first version");
    assert_eq!(
        read(&s3, &bucket, "staging/b-1/ct 1+.dcm").await,
        "first upload"
    );

    // A delete marker on the key does not take back what was uploaded.
    s3.delete_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .expect("delete");
    copies
        .copy(
            &upload(&bucket, key, Some(&first), 12),
            "staging/b-2/ct.dcm",
        )
        .await
        .expect("copy of a version behind a delete marker");
    assert_eq!(
        read(&s3, &bucket, "staging/b-2/ct.dcm").await,
        "first upload"
    );
}

#[tokio::test]
async fn a_version_or_object_that_is_gone_reads_as_gone() {
    let config = sdk_config().await;
    let s3 = aws_sdk_s3::Client::new(&config);
    let bucket = versioned_bucket(&s3, &config).await;
    let key = "fhir/patients.ndjson";
    let version = put(&s3, &bucket, key, "{}").await;
    s3.delete_object()
        .bucket(&bucket)
        .key(key)
        .version_id(&version)
        .send()
        .await
        .expect("delete the version for good");
    let copies = S3Objects::new(s3.clone());

    for source in [
        upload(&bucket, key, Some(&version), 2),
        upload(&bucket, "fhir/never-uploaded.ndjson", None, 2),
    ] {
        match copies.copy(&source, "staging/b-3/x").await {
            Err(ObjectError::Gone { key: gone, .. }) => assert_eq!(gone, source.key),
            other => panic!("{}: expected Gone, got {other:?}", source.key),
        }
    }
}
