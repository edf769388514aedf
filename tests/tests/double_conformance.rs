//! The HealthLake + HealthImaging service double against the real SDK clients over HTTP, with
//! jobs reading and writing moto's S3 (`AWS_ENDPOINT_URL`; these tests fail without it).
//!
//! The clients are built with retries disabled so the tests see the double's raw answers. The
//! double puts its job events on moto's default event bus; the event tests read them back through
//! a rule per data store whose target is an SQS queue (a target moto delivers itself).

use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_sdk_healthlake::types::{
    InputDataConfig, JobStatus as FhirStatus, OutputDataConfig, S3Configuration,
};
use aws_sdk_medicalimaging::types::JobStatus as ImagingStatus;
use aws_sdk_s3::primitives::ByteStream;
use healthimport_tests::double::{
    DoubleClients, DoubleConfig, FaultScope, Faults, JobTimings, ServiceDouble, HEALTHLAKE_SOURCE,
    IMAGING_SOURCE,
};
use healthimport_tests::local_stack;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

const ROLE: &str = "arn:aws:iam::123456789012:role/healthimport-import";
const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
const DEADLINE: Duration = Duration::from_secs(20);

struct Harness {
    double: ServiceDouble,
    sdk: SdkConfig,
    s3: aws_sdk_s3::Client,
    healthlake: aws_sdk_healthlake::Client,
    imaging: aws_sdk_medicalimaging::Client,
    bucket: String,
}

impl Harness {
    async fn start(config: DoubleConfig) -> Self {
        let sdk = local_stack::sdk_config().await;
        let s3 = aws_sdk_s3::Client::new(&sdk);
        let clients = DoubleClients::new(s3.clone(), aws_sdk_eventbridge::Client::new(&sdk));
        let double = ServiceDouble::start(config, clients)
            .await
            .expect("start the service double");
        let bucket = local_stack::unique_name("double");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|err| panic!("create bucket {bucket} in moto: {err:?}"));
        Self {
            healthlake: healthlake_client(&sdk, &double),
            imaging: imaging_client(&sdk, &double),
            double,
            sdk,
            s3,
            bucket,
        }
    }

    /// Reads back the job events of `datastore_id` from moto's default bus.
    async fn tap(&self, source: &str, datastore_id: &str) -> EventTap {
        EventTap::open(&self.sdk, source, datastore_id).await
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.into()))
            .send()
            .await
            .unwrap();
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(object.body.collect().await.unwrap().into_bytes().to_vec())
    }

    async fn get_json(&self, key: &str) -> Value {
        let body = self
            .get(key)
            .await
            .unwrap_or_else(|| panic!("s3://{}/{key} does not exist", self.bucket));
        serde_json::from_slice(&body).unwrap()
    }

    async fn get_lines(&self, key: &str) -> Vec<Value> {
        let body = self
            .get(key)
            .await
            .unwrap_or_else(|| panic!("s3://{}/{key} does not exist", self.bucket));
        String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// A new FHIR data store through CreateFHIRDatastore, once DescribeFHIRDatastore says ACTIVE.
    async fn fhir_datastore(&self) -> String {
        let id = self
            .healthlake
            .create_fhir_datastore()
            .datastore_type_version(aws_sdk_healthlake::types::FhirVersion::R4)
            .send()
            .await
            .unwrap()
            .datastore_id()
            .to_owned();
        self.wait_fhir_datastore_active(&id).await;
        id
    }

    async fn wait_fhir_datastore_active(&self, datastore_id: &str) {
        wait_until("the FHIR data store is ACTIVE", DEADLINE, || async {
            let described = self
                .healthlake
                .describe_fhir_datastore()
                .datastore_id(datastore_id)
                .send()
                .await
                .unwrap();
            let status = described.datastore_properties()?.datastore_status();
            (status == &aws_sdk_healthlake::types::DatastoreStatus::Active).then_some(())
        })
        .await
    }

    /// A new HealthImaging data store through CreateDatastore, once GetDatastore says ACTIVE.
    async fn imaging_datastore(&self) -> String {
        let id = self
            .imaging
            .create_datastore()
            .datastore_name("test")
            .send()
            .await
            .unwrap()
            .datastore_id()
            .to_owned();
        self.wait_imaging_datastore_active(&id).await;
        id
    }

    async fn wait_imaging_datastore_active(&self, datastore_id: &str) {
        wait_until("the imaging data store is ACTIVE", DEADLINE, || async {
            let got = self
                .imaging
                .get_datastore()
                .datastore_id(datastore_id)
                .send()
                .await
                .unwrap();
            let status = got.datastore_properties()?.datastore_status();
            (status == &aws_sdk_medicalimaging::types::DatastoreStatus::Active).then_some(())
        })
        .await
    }

    fn start_fhir(
        &self,
        datastore_id: &str,
        input_key: &str,
        output_key: &str,
    ) -> aws_sdk_healthlake::operation::start_fhir_import_job::builders::StartFHIRImportJobFluentBuilder{
        self.healthlake
            .start_fhir_import_job()
            .datastore_id(datastore_id)
            .input_data_config(InputDataConfig::S3Uri(self.uri(input_key)))
            .job_output_data_config(OutputDataConfig::S3Configuration(
                S3Configuration::builder()
                    .s3_uri(self.uri(output_key))
                    .kms_key_id(KMS_KEY)
                    .build()
                    .unwrap(),
            ))
            .data_access_role_arn(ROLE)
    }

    fn start_fhir_export(
        &self,
        datastore_id: &str,
        output_key: &str,
    ) -> aws_sdk_healthlake::operation::start_fhir_export_job::builders::StartFHIRExportJobFluentBuilder{
        self.healthlake
            .start_fhir_export_job()
            .datastore_id(datastore_id)
            .output_data_config(OutputDataConfig::S3Configuration(
                S3Configuration::builder()
                    .s3_uri(self.uri(output_key))
                    .kms_key_id(KMS_KEY)
                    .build()
                    .unwrap(),
            ))
            .data_access_role_arn(ROLE)
    }

    async fn fhir_export_job(
        &self,
        datastore_id: &str,
        job_id: &str,
    ) -> aws_sdk_healthlake::types::ExportJobProperties {
        self.healthlake
            .describe_fhir_export_job()
            .datastore_id(datastore_id)
            .job_id(job_id)
            .send()
            .await
            .unwrap()
            .export_job_properties()
            .cloned()
            .expect("ExportJobProperties")
    }

    fn start_dicom(
        &self,
        datastore_id: &str,
        input_key: &str,
        output_key: &str,
    ) -> aws_sdk_medicalimaging::operation::start_dicom_import_job::builders::StartDICOMImportJobFluentBuilder{
        self.imaging
            .start_dicom_import_job()
            .datastore_id(datastore_id)
            .data_access_role_arn(ROLE)
            .input_s3_uri(self.uri(input_key))
            .output_s3_uri(self.uri(output_key))
    }

    async fn fhir_job(
        &self,
        datastore_id: &str,
        job_id: &str,
    ) -> aws_sdk_healthlake::types::ImportJobProperties {
        self.healthlake
            .describe_fhir_import_job()
            .datastore_id(datastore_id)
            .job_id(job_id)
            .send()
            .await
            .unwrap()
            .import_job_properties()
            .cloned()
            .expect("ImportJobProperties")
    }

    async fn dicom_job(
        &self,
        datastore_id: &str,
        job_id: &str,
    ) -> aws_sdk_medicalimaging::types::DicomImportJobProperties {
        self.imaging
            .get_dicom_import_job()
            .datastore_id(datastore_id)
            .job_id(job_id)
            .send()
            .await
            .unwrap()
            .job_properties()
            .cloned()
            .expect("jobProperties")
    }

    async fn wait_fhir_terminal(
        &self,
        datastore_id: &str,
        job_id: &str,
    ) -> aws_sdk_healthlake::types::ImportJobProperties {
        wait_until("the FHIR import job ends", DEADLINE, || async {
            let job = self.fhir_job(datastore_id, job_id).await;
            matches!(
                job.job_status(),
                FhirStatus::Completed | FhirStatus::CompletedWithErrors | FhirStatus::Failed
            )
            .then_some(job)
        })
        .await
    }

    async fn wait_dicom_terminal(
        &self,
        datastore_id: &str,
        job_id: &str,
    ) -> aws_sdk_medicalimaging::types::DicomImportJobProperties {
        wait_until("the DICOM import job ends", DEADLINE, || async {
            let job = self.dicom_job(datastore_id, job_id).await;
            matches!(
                job.job_status(),
                ImagingStatus::Completed | ImagingStatus::Failed
            )
            .then_some(job)
        })
        .await
    }
}

fn healthlake_client(sdk: &SdkConfig, double: &ServiceDouble) -> aws_sdk_healthlake::Client {
    aws_sdk_healthlake::Client::from_conf(
        aws_sdk_healthlake::config::Builder::from(sdk)
            .endpoint_url(double.endpoint_url())
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

fn imaging_client(sdk: &SdkConfig, double: &ServiceDouble) -> aws_sdk_medicalimaging::Client {
    aws_sdk_medicalimaging::Client::from_conf(
        aws_sdk_medicalimaging::config::Builder::from(sdk)
            .endpoint_url(double.endpoint_url())
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

/// Polls `probe` until it yields a value; panics naming `what` at the deadline.
async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal DICOM P10 file: 128-byte preamble, `DICM`, a few bytes of data set.
fn dicom_file() -> Vec<u8> {
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    bytes.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0]);
    bytes
}

fn fast_config() -> DoubleConfig {
    DoubleConfig {
        imaging_start_rate_per_second: 1000.0,
        imaging_start_burst: 100,
        ..DoubleConfig::default()
    }
}

/// `run_ms` of IN_PROGRESS per job, whatever its number of files.
fn timings(run_ms: u64) -> JobTimings {
    JobTimings {
        submit_delay: Duration::from_millis(50),
        run_overhead: Duration::from_millis(run_ms),
        per_file: Duration::ZERO,
        manifest_delay: Duration::ZERO,
    }
}

/// The HTTP status of an SDK error's raw response (both SDKs share the smithy error type).
fn http_status<E>(
    err: &aws_sdk_healthlake::error::SdkError<E, aws_sdk_healthlake::config::http::HttpResponse>,
) -> u16 {
    err.raw_response()
        .map(|response| response.status().as_u16())
        .unwrap_or_default()
}

/// A fixture under `tests/fixtures/`: one JSON document, or the first line of an NDJSON file.
fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let document = if name.ends_with(".ndjson") {
        text.lines().next().unwrap()
    } else {
        text.as_str()
    };
    serde_json::from_str(document).unwrap()
}

/// The fixtures a poller is tested with must have exactly the members the double writes.
fn assert_same_shape(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => {
            let mut actual_keys: Vec<&String> = actual.keys().collect();
            let mut expected_keys: Vec<&String> = expected.keys().collect();
            actual_keys.sort();
            expected_keys.sort();
            assert_eq!(actual_keys, expected_keys, "members of {path}");
            for (key, value) in actual {
                assert_same_shape(value, &expected[key], &format!("{path}.{key}"));
            }
        }
        (Value::Array(actual), Value::Array(expected)) => {
            if let (Some(actual), Some(expected)) = (actual.first(), expected.first()) {
                assert_same_shape(actual, expected, &format!("{path}[0]"));
            }
        }
        (actual, expected) => assert_eq!(
            std::mem::discriminant(actual),
            std::mem::discriminant(expected),
            "type of {path}: {actual} vs {expected}"
        ),
    }
}

/// One raw HTTP/1.1 request, for what the SDKs cannot send (unknown operations, admin calls).
async fn raw_http(double: &ServiceDouble, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(double.local_addr())
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap();
    (status, response)
}

#[tokio::test]
async fn fhir_job_moves_through_statuses_and_writes_the_documented_manifest() {
    let h = Harness::start(DoubleConfig {
        healthlake: timings(600),
        ..fast_config()
    })
    .await;
    let datastore = h.fhir_datastore().await;
    h.put(
        "fhir/patients.ndjson",
        "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n{\"resourceType\":\"Patient\",\"id\":\"p2\"}\n\n{\"resourceType\":\"Observation\"}\n",
    )
    .await;
    let started = h
        .start_fhir(&datastore, "fhir/patients.ndjson", "out/")
        .job_name("patients")
        .send()
        .await
        .unwrap();
    assert_eq!(started.job_status(), &FhirStatus::Submitted);
    assert_eq!(started.datastore_id(), Some(datastore.as_str()));
    let job_id = started.job_id().to_owned();
    assert_eq!(job_id.len(), 32);

    let running = wait_until("the FHIR job is IN_PROGRESS", DEADLINE, || async {
        let job = h.fhir_job(&datastore, &job_id).await;
        (job.job_status() == &FhirStatus::InProgress).then_some(job)
    })
    .await;
    assert!(
        running.job_progress_report().is_some(),
        "a running job reports progress"
    );
    assert!(running.end_time().is_none());

    let job = h.wait_fhir_terminal(&datastore, &job_id).await;
    assert_eq!(
        job.job_status(),
        &FhirStatus::Completed,
        "{:?}",
        job.message()
    );
    assert!(job.end_time().unwrap().as_secs_f64() >= job.submit_time().as_secs_f64());
    assert_eq!(job.job_name(), Some("patients"));
    let report = job.job_progress_report().unwrap();
    assert_eq!(report.total_number_of_resources_scanned(), Some(3));
    assert_eq!(report.total_number_of_resources_imported(), Some(3));

    let folder = format!("out/{datastore}-FHIR_IMPORT-{job_id}/");
    let manifest = h.get_json(&format!("{folder}manifest.json")).await;
    assert_eq!(
        manifest["inputDataConfig"]["s3Uri"],
        h.uri("fhir/patients.ndjson")
    );
    assert_eq!(manifest["outputDataConfig"]["s3Uri"], h.uri(&folder));
    assert_eq!(manifest["outputDataConfig"]["encryptionKeyID"], KMS_KEY);
    assert_eq!(
        manifest["successOutput"]["successOutputS3Uri"],
        h.uri(&format!("{folder}SUCCESS/"))
    );
    assert_eq!(
        manifest["failureOutput"]["failureOutputS3Uri"],
        h.uri(&format!("{folder}FAILURE/"))
    );
    assert_eq!(manifest["numberOfScannedFiles"], 1);
    assert_eq!(manifest["numberOfFilesImported"], 1);
    assert_eq!(manifest["numberOfResourcesScanned"], 3);
    assert_eq!(manifest["numberOfResourcesImportedSuccessfully"], 3);
    assert_eq!(manifest["numberOfResourcesWithCustomerError"], 0);
    assert_eq!(manifest["numberOfResourcesWithServerError"], 0);
    assert!(manifest["sizeOfScannedFilesInMB"].as_f64().unwrap() > 0.0);
    assert_eq!(
        h.get_lines(&format!("{folder}SUCCESS/success.ndjson"))
            .await
            .len(),
        3
    );
    assert!(h
        .get_lines(&format!("{folder}FAILURE/failure.ndjson"))
        .await
        .is_empty());
}

#[tokio::test]
async fn fhir_file_with_a_bad_line_completes_with_errors() {
    let h = Harness::start(fast_config()).await;
    let datastore = h.fhir_datastore().await;
    h.put(
        "fhir/mixed/a.ndjson",
        "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n{\"id\":\"no-type\"}\n{\"resourceType\":\"Encounter\",\"id\":\"e1\"}\n",
    )
    .await;
    let job_id = h
        .start_fhir(&datastore, "fhir/mixed/", "out")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let job = h.wait_fhir_terminal(&datastore, &job_id).await;
    assert_eq!(job.job_status(), &FhirStatus::CompletedWithErrors);
    let report = job.job_progress_report().unwrap();
    assert_eq!(
        report.total_number_of_resources_with_customer_error(),
        Some(1)
    );

    let folder = format!("out/{datastore}-FHIR_IMPORT-{job_id}/");
    let manifest = h.get_json(&format!("{folder}manifest.json")).await;
    assert_eq!(manifest["numberOfResourcesScanned"], 3);
    assert_eq!(manifest["numberOfResourcesImportedSuccessfully"], 2);
    assert_eq!(manifest["numberOfResourcesWithCustomerError"], 1);
    assert_eq!(
        manifest["numberOfFilesImported"], 1,
        "a partly bad file is still imported"
    );
    let failures = h
        .get_lines(&format!("{folder}FAILURE/failure.ndjson"))
        .await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["fileName"], h.uri("fhir/mixed/a.ndjson"));
    assert_eq!(failures[0]["lineNumber"], 2);
    assert_same_shape(
        &manifest,
        &fixture("healthlake-import-manifest.json"),
        "manifest",
    );
    assert_same_shape(
        &failures[0],
        &fixture("healthlake-import-failure.ndjson"),
        "failure line",
    );
    let successes = h
        .get_lines(&format!("{folder}SUCCESS/success.ndjson"))
        .await;
    assert_same_shape(
        &successes[0],
        &fixture("healthlake-import-success.ndjson"),
        "success line",
    );
    assert!(
        !failures[0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no-type"),
        "never quote data"
    );
}

#[tokio::test]
async fn fhir_jobs_of_one_datastore_run_one_at_a_time_in_submit_order() {
    let h = Harness::start(DoubleConfig {
        healthlake: timings(700),
        ..fast_config()
    })
    .await;
    let datastore = h.fhir_datastore().await;
    h.put("fhir/one.ndjson", "{\"resourceType\":\"Patient\"}\n")
        .await;
    let mut job_ids = Vec::new();
    for _ in 0..3 {
        let started = h
            .start_fhir(&datastore, "fhir/one.ndjson", "out/")
            .send()
            .await
            .unwrap();
        job_ids.push(started.job_id().to_owned());
    }

    // ListFHIRImportJobs answers from one consistent snapshot, so "at most one IN_PROGRESS" is
    // checked on every poll without racing the hand-over between two describe calls.
    let snapshot = || async {
        let listed = h
            .healthlake
            .list_fhir_import_jobs()
            .datastore_id(&datastore)
            .send()
            .await
            .unwrap();
        let jobs = listed.import_job_properties_list().to_vec();
        let running = jobs
            .iter()
            .filter(|job| job.job_status() == &FhirStatus::InProgress)
            .count();
        assert!(running <= 1, "more than one job runs: {jobs:?}");
        let ids: Vec<&str> = jobs.iter().map(|job| job.job_id()).collect();
        assert_eq!(ids, job_ids, "listed in submit order");
        jobs
    };

    wait_until("one job runs and two are QUEUED", DEADLINE, || async {
        let statuses: Vec<FhirStatus> = snapshot()
            .await
            .iter()
            .map(|job| job.job_status().clone())
            .collect();
        (statuses
            == [
                FhirStatus::InProgress,
                FhirStatus::Queued,
                FhirStatus::Queued,
            ])
        .then_some(())
    })
    .await;

    let queued = h
        .healthlake
        .list_fhir_import_jobs()
        .datastore_id(&datastore)
        .job_status(FhirStatus::Queued)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.import_job_properties_list().len(), 2);

    let jobs = wait_until("all three jobs end", DEADLINE, || async {
        let jobs = snapshot().await;
        jobs.iter()
            .all(|job| job.end_time().is_some())
            .then_some(jobs)
    })
    .await;
    assert!(jobs
        .iter()
        .all(|job| job.job_status() == &FhirStatus::Completed));
    let end_times: Vec<f64> = jobs
        .iter()
        .map(|job| job.end_time().unwrap().as_secs_f64())
        .collect();
    assert!(
        end_times.windows(2).all(|pair| pair[0] < pair[1]),
        "FIFO: {end_times:?}"
    );
}

#[tokio::test]
async fn dicom_clean_batch_writes_manifest_and_success_lines() {
    let h = Harness::start(fast_config()).await;
    let datastore = h.imaging_datastore().await;
    for name in ["a.dcm", "b.dcm", "series/c"] {
        h.put(&format!("dicom/batch-1/{name}"), dicom_file()).await;
    }
    h.put("dicom/batch-1/series/", Vec::new()).await; // a "folder" key, not a file
    let started = h
        .start_dicom(&datastore, "dicom/batch-1/", "out/dicom")
        .client_token("batch-1")
        .job_name("batch-1")
        .send()
        .await
        .unwrap();
    assert_eq!(started.job_status(), &ImagingStatus::Submitted);
    let job_id = started.job_id().to_owned();

    // Every status seen, in order; RefCell because each probe is a fresh future.
    let seen = std::cell::RefCell::new(Vec::new());
    let job = wait_until("the DICOM job ends", DEADLINE, || async {
        let job = h.dicom_job(&datastore, &job_id).await;
        let mut seen = seen.borrow_mut();
        if seen.last() != Some(job.job_status()) {
            seen.push(job.job_status().clone());
        }
        matches!(
            job.job_status(),
            ImagingStatus::Completed | ImagingStatus::Failed
        )
        .then_some(job)
    })
    .await;
    let seen = seen.into_inner();
    let order = [
        ImagingStatus::Submitted,
        ImagingStatus::InProgress,
        ImagingStatus::Completed,
    ];
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "statuses only move forward: {seen:?}"
    );
    assert_eq!(job.job_status(), &ImagingStatus::Completed);
    assert!(job.ended_at().is_some());
    assert_eq!(job.job_name(), "batch-1");

    let folder = format!("out/dicom/{datastore}-DicomImport-{job_id}/");
    let manifest = h
        .get_json(&format!("{folder}job-output-manifest.json"))
        .await;
    let summary = &manifest["jobSummary"];
    assert_eq!(summary["jobId"], job_id.as_str());
    assert_eq!(summary["datastoreId"], datastore.as_str());
    assert_eq!(
        summary["successOutputS3Uri"],
        h.uri(&format!("{folder}SUCCESS/"))
    );
    assert_eq!(
        summary["failureOutputS3Uri"],
        h.uri(&format!("{folder}FAILURE/"))
    );
    assert_eq!(
        summary["warningsOutputS3Uri"],
        h.uri(&format!("{folder}WARNING/"))
    );
    assert_eq!(summary["numberOfScannedFiles"], 3);
    assert_eq!(summary["numberOfImportedFiles"], 3);
    assert_eq!(summary["numberOfFilesWithCustomerError"], 0);
    assert_eq!(summary["numberOfFilesWithServerError"], 0);
    assert_eq!(summary["numberOfGeneratedImageSets"], 1);
    assert_eq!(summary["imageSetsSummary"].as_array().unwrap().len(), 1);
    let successes = h
        .get_lines(&format!("{folder}SUCCESS/success.ndjson"))
        .await;
    assert_eq!(successes.len(), 3);
    assert_eq!(successes[0]["inputFile"], h.uri("dicom/batch-1/a.dcm"));
    assert_eq!(successes[0]["importResponse"]["isPrimary"], true);
    assert!(h
        .get_lines(&format!("{folder}FAILURE/failure.ndjson"))
        .await
        .is_empty());
    assert!(h
        .get(&format!("{folder}WARNING/warning.ndjson"))
        .await
        .is_some());

    let listed = h
        .imaging
        .list_dicom_import_jobs()
        .datastore_id(&datastore)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.job_summaries().len(), 1);
    assert_eq!(listed.job_summaries()[0].job_id(), job_id);
}

#[tokio::test]
async fn dicom_broken_file_is_a_customer_error_in_a_completed_job() {
    let h = Harness::start(fast_config()).await;
    let datastore = h.imaging_datastore().await;
    h.put("dicom/b2/good-1.dcm", dicom_file()).await;
    h.put("dicom/b2/good-2.dcm", dicom_file()).await;
    let mut broken = dicom_file();
    broken[128..132].copy_from_slice(b"NOPE");
    h.put("dicom/b2/broken.dcm", broken).await;
    h.put("dicom/b2/tiny.dcm", b"DICM".to_vec()).await;
    let job_id = h
        .start_dicom(&datastore, "dicom/b2/", "out/")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let job = h.wait_dicom_terminal(&datastore, &job_id).await;
    assert_eq!(
        job.job_status(),
        &ImagingStatus::Completed,
        "per-file failures do not fail the job"
    );

    let folder = format!("out/{datastore}-DicomImport-{job_id}/");
    let summary = h
        .get_json(&format!("{folder}job-output-manifest.json"))
        .await["jobSummary"]
        .clone();
    assert_eq!(summary["numberOfScannedFiles"], 4);
    assert_eq!(summary["numberOfImportedFiles"], 2);
    assert_eq!(summary["numberOfFilesWithCustomerError"], 2);
    let failures = h
        .get_lines(&format!("{folder}FAILURE/failure.ndjson"))
        .await;
    let failed_files: Vec<&str> = failures
        .iter()
        .map(|f| f["inputFile"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed_files,
        [h.uri("dicom/b2/broken.dcm"), h.uri("dicom/b2/tiny.dcm")]
    );
    assert_eq!(
        failures[0]["exception"]["exceptionType"],
        "InvalidDicomFile"
    );
    assert!(failures[0]["exception"]["message"]
        .as_str()
        .unwrap()
        .contains("DICM"));
    let manifest = h
        .get_json(&format!("{folder}job-output-manifest.json"))
        .await;
    // AWS's example (HealthImaging developer guide, "Understanding import jobs") also carries
    // the job's `inputS3Uri` and `outputS3Uri`, as the fixture does.
    let expected = fixture("imaging-job-output-manifest.json");
    assert_same_shape(&manifest, &expected, "manifest");
    assert_eq!(
        manifest["jobSummary"]["inputS3Uri"],
        json!(h.uri("dicom/b2/"))
    );
    assert_eq!(manifest["jobSummary"]["outputS3Uri"], json!(h.uri(&folder)));
    // Our parser ignores members it does not know.
    let parsed = healthimport::domain::manifest::parse_imaging_manifest(&manifest.to_string())
        .expect("the poller parses the double's manifest");
    assert_eq!(
        parsed.counts.scanned,
        manifest["jobSummary"]["numberOfScannedFiles"]
            .as_u64()
            .unwrap()
    );
    assert_same_shape(
        &failures[0],
        &fixture("imaging-job-failure.ndjson"),
        "failure line",
    );
    let successes = h
        .get_lines(&format!("{folder}SUCCESS/success.ndjson"))
        .await;
    assert_same_shape(
        &successes[0],
        &fixture("imaging-job-success.ndjson"),
        "success line",
    );
}

#[tokio::test]
async fn empty_or_unreadable_input_fails_the_job_with_a_message() {
    let h = Harness::start(fast_config()).await;
    let fhir = h.fhir_datastore().await;
    let imaging = h.imaging_datastore().await;

    let fhir_job = h
        .start_fhir(&fhir, "fhir/nothing-here/", "out/")
        .send()
        .await
        .unwrap();
    let job = h.wait_fhir_terminal(&fhir, fhir_job.job_id()).await;
    assert_eq!(job.job_status(), &FhirStatus::Failed);
    assert_eq!(
        job.message(),
        Some(format!("No files found under {}", h.uri("fhir/nothing-here/")).as_str())
    );

    let dicom_job = h
        .start_dicom(&imaging, "dicom/nothing/", "out/")
        .send()
        .await
        .unwrap();
    let job = h.wait_dicom_terminal(&imaging, dicom_job.job_id()).await;
    assert_eq!(job.job_status(), &ImagingStatus::Failed);
    assert!(
        job.message()
            .unwrap()
            .starts_with("No files found under s3://"),
        "{:?}",
        job.message()
    );

    let missing_bucket = h
        .imaging
        .start_dicom_import_job()
        .datastore_id(&imaging)
        .data_access_role_arn(ROLE)
        .input_s3_uri(format!("s3://{}-missing/dicom/", h.bucket))
        .output_s3_uri(h.uri("out/"))
        .send()
        .await
        .unwrap();
    let job = h
        .wait_dicom_terminal(&imaging, missing_bucket.job_id())
        .await;
    assert_eq!(job.job_status(), &ImagingStatus::Failed);
    assert!(
        job.message().unwrap().contains("NoSuchBucket"),
        "{:?}",
        job.message()
    );

    h.put("dicom/ok/a.dcm", dicom_file()).await;
    let unwritable = h
        .imaging
        .start_dicom_import_job()
        .datastore_id(&imaging)
        .data_access_role_arn(ROLE)
        .input_s3_uri(h.uri("dicom/ok/"))
        .output_s3_uri(format!("s3://{}-missing/out/", h.bucket))
        .send()
        .await
        .unwrap();
    let job = h.wait_dicom_terminal(&imaging, unwritable.job_id()).await;
    assert_eq!(job.job_status(), &ImagingStatus::Failed);
    assert!(
        job.message()
            .unwrap()
            .contains("Unable to write the output"),
        "{:?}",
        job.message()
    );
}

#[tokio::test]
async fn dicom_starts_are_throttled_after_a_burst_of_two() {
    let h = Harness::start(DoubleConfig {
        imaging_start_rate_per_second: 0.5,
        imaging_start_burst: 2,
        ..DoubleConfig::default()
    })
    .await;
    let datastore = h.imaging_datastore().await;
    h.put("dicom/t/a.dcm", dicom_file()).await;

    let mut starts = JoinSet::new();
    for n in 0..6 {
        let request = h
            .start_dicom(&datastore, "dicom/t/", "out/")
            .client_token(format!("burst-{n}"));
        starts.spawn(async move { request.send().await });
    }
    let (mut accepted, mut throttled) = (0, 0);
    while let Some(result) = starts.join_next().await {
        match result.unwrap() {
            Ok(_) => accepted += 1,
            Err(err) => {
                assert_eq!(http_status(&err), 429);
                assert!(err.into_service_error().is_throttling_exception());
                throttled += 1;
            }
        }
    }
    assert_eq!((accepted, throttled), (2, 4));
    let stats = h.double.stats();
    assert_eq!(
        stats.imaging_jobs_created, 2,
        "a throttled start creates no job"
    );
    assert_eq!(stats.rate_limited_starts, 4);

    // The bucket refills at the configured rate.
    wait_until(
        "a start is accepted again",
        Duration::from_secs(5),
        || async {
            h.start_dicom(&datastore, "dicom/t/", "out/")
                .send()
                .await
                .ok()
        },
    )
    .await;
}

#[tokio::test]
async fn dicom_starts_beyond_the_running_jobs_quota_are_refused() {
    let h = Harness::start(DoubleConfig {
        imaging: timings(60_000),
        imaging_max_running_jobs_per_datastore: 3,
        ..fast_config()
    })
    .await;
    let datastore = h.imaging_datastore().await;
    let other = h.imaging_datastore().await;
    h.put("dicom/q/a.dcm", dicom_file()).await;
    let mut first = None;
    for n in 0..3 {
        let started = h
            .start_dicom(&datastore, "dicom/q/", "out/")
            .client_token(format!("quota-{n}"))
            .send()
            .await
            .unwrap();
        first.get_or_insert(started.job_id().to_owned());
    }
    let refused = h
        .start_dicom(&datastore, "dicom/q/", "out/")
        .client_token("quota-3")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&refused), 402);
    assert!(refused
        .into_service_error()
        .is_service_quota_exceeded_exception());
    assert_eq!(h.double.stats().imaging_jobs_created, 3);
    assert_eq!(h.double.stats().quota_refusals, 1);

    // A retry of an accepted start is still the same job, and other data stores have their own quota.
    let retry = h
        .start_dicom(&datastore, "dicom/q/", "out/")
        .client_token("quota-0")
        .send()
        .await
        .unwrap();
    assert_eq!(Some(retry.job_id().to_owned()), first);
    h.start_dicom(&other, "dicom/q/", "out/")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn same_client_token_is_the_same_job() {
    let h = Harness::start(fast_config()).await;
    let fhir = h.fhir_datastore().await;
    let imaging = h.imaging_datastore().await;
    h.put("fhir/idem.ndjson", "{\"resourceType\":\"Patient\"}\n")
        .await;
    h.put("dicom/idem/a.dcm", dicom_file()).await;

    let first = h
        .start_fhir(&fhir, "fhir/idem.ndjson", "out/")
        .client_token("upload-1")
        .send()
        .await
        .unwrap();
    let second = h
        .start_fhir(&fhir, "fhir/idem.ndjson", "out/")
        .client_token("upload-1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.job_id(), second.job_id());
    h.wait_fhir_terminal(&fhir, first.job_id()).await;
    let late = h
        .start_fhir(&fhir, "fhir/idem.ndjson", "out/")
        .client_token("upload-1")
        .send()
        .await
        .unwrap();
    assert_eq!(late.job_id(), first.job_id());
    assert_eq!(
        late.job_status(),
        &FhirStatus::Completed,
        "a late retry sees the current status"
    );
    let conflicting = h
        .start_fhir(&fhir, "fhir/other.ndjson", "out/")
        .client_token("upload-1")
        .send()
        .await;
    assert!(conflicting
        .unwrap_err()
        .into_service_error()
        .is_validation_exception());

    // Concurrent duplicates, while the first is still in flight.
    let mut starts = JoinSet::new();
    for _ in 0..8 {
        let request = h
            .start_dicom(&imaging, "dicom/idem/", "out/")
            .client_token("batch.idem_1");
        starts.spawn(async move { request.send().await.unwrap().job_id().to_owned() });
    }
    let mut ids = Vec::new();
    while let Some(id) = starts.join_next().await {
        ids.push(id.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one job for one token: {ids:?}");

    let stats = h.double.stats();
    assert_eq!(stats.fhir_jobs_created, 1);
    assert_eq!(stats.imaging_jobs_created, 1);
    assert_eq!(
        stats.start_calls_by_client_token[&format!("{fhir}/upload-1")],
        4
    );
    assert_eq!(
        stats.start_calls_by_client_token[&format!("{imaging}/batch.idem_1")],
        8
    );
    assert_eq!(stats.idempotent_replays, 2 + 7);
}

#[tokio::test]
async fn datastores_are_created_through_the_api_go_active_and_are_listed() {
    // The data stores stay CREATING until the test ends that phase below, however slow the
    // machine.
    let h = Harness::start(DoubleConfig {
        datastore_create_delay: Duration::from_secs(3600),
        ..fast_config()
    })
    .await;
    let listed = h.healthlake.list_fhir_datastores().send().await.unwrap();
    assert!(
        listed.datastore_properties_list().is_empty(),
        "nothing is pre-seeded"
    );

    let created = h
        .healthlake
        .create_fhir_datastore()
        .datastore_name("created")
        .datastore_type_version(aws_sdk_healthlake::types::FhirVersion::R4)
        .client_token("ds-1")
        .send()
        .await
        .unwrap();
    let fhir = created.datastore_id().to_owned();
    assert_eq!(
        created.datastore_status(),
        &aws_sdk_healthlake::types::DatastoreStatus::Creating
    );
    assert_eq!(
        created.datastore_endpoint(),
        format!("{}/datastore/{fhir}/r4/", h.double.endpoint_url())
    );
    assert!(created.datastore_arn().ends_with(&fhir));
    let again = h
        .healthlake
        .create_fhir_datastore()
        .datastore_type_version(aws_sdk_healthlake::types::FhirVersion::R4)
        .client_token("ds-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.datastore_id(),
        fhir,
        "the same token, the same data store"
    );

    let imaging_created = h
        .imaging
        .create_datastore()
        .datastore_name("created-imaging")
        .client_token("ds-2")
        .send()
        .await
        .unwrap();
    let imaging = imaging_created.datastore_id().to_owned();
    assert_eq!(
        imaging_created.datastore_status(),
        &aws_sdk_medicalimaging::types::DatastoreStatus::Creating
    );
    let imaging_again = h
        .imaging
        .create_datastore()
        .client_token("ds-2")
        .send()
        .await
        .unwrap();
    assert_eq!(imaging_again.datastore_id(), imaging);

    // Starts into a data store that is still CREATING are refused and create no job.
    h.put("dicom/created/a.dcm", dicom_file()).await;
    h.put("fhir/created/a.ndjson", b"{}\n".to_vec()).await;
    let refused = h
        .start_fhir(&fhir, "fhir/created/", "out/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&refused), 400);
    assert!(refused.into_service_error().is_validation_exception());
    let refused = h
        .start_dicom(&imaging, "dicom/created/", "out/")
        .client_token("early")
        .send()
        .await
        .unwrap_err();
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_conflict_exception()),
        "{refused:?}"
    );
    let stats = h.double.stats();
    assert_eq!(stats.fhir_jobs_created + stats.imaging_jobs_created, 0);

    let listed = h
        .healthlake
        .list_fhir_datastores()
        .filter(
            aws_sdk_healthlake::types::DatastoreFilter::builder()
                .datastore_status(aws_sdk_healthlake::types::DatastoreStatus::Creating)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .datastore_properties_list()
        .iter()
        .map(|properties| properties.datastore_id())
        .collect();
    assert_eq!(ids, [fhir.as_str()]);

    h.double.finish_creating_datastores();
    h.wait_fhir_datastore_active(&fhir).await;
    h.wait_imaging_datastore_active(&imaging).await;
    let described = h
        .healthlake
        .describe_fhir_datastore()
        .datastore_id(&fhir)
        .send()
        .await
        .unwrap();
    let properties = described.datastore_properties().unwrap();
    assert_eq!(properties.datastore_name(), Some("created"));
    assert_eq!(
        properties
            .sse_configuration()
            .and_then(|sse| sse.kms_encryption_config())
            .map(|kms| kms.cmk_type()),
        Some(&aws_sdk_healthlake::types::CmkType::AoCmk)
    );
    assert!(properties.created_at().is_some());

    let summaries = h.imaging.list_datastores().send().await.unwrap();
    let summaries = summaries.datastore_summaries();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].datastore_id(), imaging);
    assert_eq!(summaries[0].datastore_name(), "created-imaging");
    assert_eq!(
        summaries[0].datastore_status(),
        &aws_sdk_medicalimaging::types::DatastoreStatus::Active
    );
    let none_creating = h
        .imaging
        .list_datastores()
        .datastore_status(aws_sdk_medicalimaging::types::DatastoreStatus::Creating)
        .send()
        .await
        .unwrap();
    assert!(none_creating.datastore_summaries().is_empty());

    let job = h
        .start_dicom(&imaging, "dicom/created/", "out/")
        .client_token("early")
        .send()
        .await
        .unwrap();
    assert_eq!(
        h.wait_dicom_terminal(&imaging, job.job_id())
            .await
            .job_status(),
        &ImagingStatus::Completed
    );
    let job = h
        .start_fhir(&fhir, "fhir/created/", "out/")
        .send()
        .await
        .unwrap();
    h.wait_fhir_terminal(&fhir, job.job_id()).await;
}

#[tokio::test]
async fn invalid_requests_get_validation_and_not_found_errors() {
    let h = Harness::start(fast_config()).await;
    let fhir = h.fhir_datastore().await;
    let imaging = h.imaging_datastore().await;

    let missing_input = h
        .healthlake
        .start_fhir_import_job()
        .datastore_id(&fhir)
        .data_access_role_arn(ROLE)
        .job_output_data_config(OutputDataConfig::S3Configuration(
            S3Configuration::builder()
                .s3_uri(h.uri("out/"))
                .kms_key_id(KMS_KEY)
                .build()
                .unwrap(),
        ))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&missing_input), 400);
    let err = missing_input.into_service_error();
    assert!(err.is_validation_exception());
    assert!(
        err.meta().message().unwrap().contains("InputDataConfig"),
        "{err:?}"
    );

    let cases = [
        h.start_fhir(&fhir, "fhir/x.ndjson", "out/")
            .client_token("under_score"),
        h.start_fhir(&fhir, "fhir/x.ndjson", "out/")
            .client_token("x".repeat(65)),
        h.start_fhir(&fhir, "fhir/x.ndjson", "out/")
            .data_access_role_arn("not-an-arn"),
        h.start_fhir(&fhir, "fhir/x.ndjson", "out/")
            .input_data_config(InputDataConfig::S3Uri("s3://UPPER/x".to_owned())),
    ];
    for case in cases {
        let err = case.send().await.unwrap_err().into_service_error();
        assert!(err.is_validation_exception(), "{err:?}");
    }
    let unknown = h
        .start_fhir(&"f".repeat(32), "fhir/x.ndjson", "out/")
        .send()
        .await
        .unwrap_err();
    assert!(unknown
        .into_service_error()
        .is_resource_not_found_exception());
    let unknown_job = h
        .healthlake
        .describe_fhir_import_job()
        .datastore_id(&fhir)
        .job_id("nope")
        .send()
        .await;
    assert!(unknown_job
        .unwrap_err()
        .into_service_error()
        .is_resource_not_found_exception());

    let bad_token = h
        .start_dicom(&imaging, "dicom/x/", "out/")
        .client_token("has space")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&bad_token), 400);
    assert!(bad_token.into_service_error().is_validation_exception());
    let no_output = h
        .imaging
        .start_dicom_import_job()
        .datastore_id(&imaging)
        .data_access_role_arn(ROLE)
        .input_s3_uri(h.uri("dicom/x/"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(no_output.is_validation_exception());
    assert!(no_output.meta().message().unwrap().contains("outputS3Uri"));
    let unknown = h
        .start_dicom(&"0".repeat(32), "dicom/x/", "out/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&unknown), 404);
    assert!(unknown
        .into_service_error()
        .is_resource_not_found_exception());
    let bad_id = h
        .imaging
        .get_datastore()
        .datastore_id("Not-An-Id")
        .send()
        .await
        .unwrap_err();
    assert!(bad_id.into_service_error().is_validation_exception());
    assert_eq!(
        h.double.stats().fhir_jobs_created + h.double.stats().imaging_jobs_created,
        0
    );

    let (status, body) = raw_http(
        &h.double,
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: HealthLake.DeleteEverything\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("\"__type\":\"UnknownOperationException\""),
        "{body}"
    );
    let (status, body) = raw_http(
        &h.double,
        "GET /listImageSets/datastore/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        body.to_ascii_lowercase()
            .contains("x-amzn-errortype: unknownoperationexception"),
        "{body}"
    );
}

#[tokio::test]
async fn fault_injection_answers_the_configured_share_with_the_right_errors() {
    let h = Harness::start(fast_config()).await;
    let fhir = h.fhir_datastore().await;
    let imaging = h.imaging_datastore().await;

    h.double.set_faults(Faults {
        throttle_share: 1.0,
        ..Faults::default()
    });
    let err = h
        .healthlake
        .describe_fhir_datastore()
        .datastore_id(&fhir)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 400);
    assert!(err.into_service_error().is_throttling_exception());
    let err = h
        .imaging
        .get_datastore()
        .datastore_id(&imaging)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 429);
    assert!(err.into_service_error().is_throttling_exception());

    h.double.set_faults(Faults {
        internal_error_share: 1.0,
        ..Faults::default()
    });
    let err = h
        .start_fhir(&fhir, "fhir/x.ndjson", "out/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 500);
    assert!(err.into_service_error().is_internal_server_exception());
    let err = h
        .imaging
        .list_dicom_import_jobs()
        .datastore_id(&imaging)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 500);
    assert!(err.into_service_error().is_internal_server_exception());
    assert_eq!(h.double.stats().fhir_jobs_created, 0);

    h.double.set_faults(Faults {
        throttle_share: 1.0,
        scope: FaultScope::StartOnly,
        ..Faults::default()
    });
    h.imaging
        .get_datastore()
        .datastore_id(&imaging)
        .send()
        .await
        .unwrap();
    let err = h
        .start_dicom(&imaging, "dicom/x/", "out/")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_throttling_exception());

    h.double.set_faults(Faults {
        throttle_share: 0.3,
        ..Faults::default()
    });
    let mut failures = 0;
    for _ in 0..200 {
        if let Err(err) = h
            .imaging
            .get_datastore()
            .datastore_id(&imaging)
            .send()
            .await
        {
            assert!(err.into_service_error().is_throttling_exception());
            failures += 1;
        }
    }
    assert!(
        (30..=90).contains(&failures),
        "{failures} of 200 calls throttled at share 0.3"
    );

    h.double.set_faults(Faults {
        job_failure_share: 1.0,
        ..Faults::default()
    });
    h.put("dicom/jf/a.dcm", dicom_file()).await;
    let job = h
        .start_dicom(&imaging, "dicom/jf/", "out/")
        .send()
        .await
        .unwrap();
    let ended = h.wait_dicom_terminal(&imaging, job.job_id()).await;
    assert_eq!(ended.job_status(), &ImagingStatus::Failed);
    assert!(ended.message().is_some());
    assert_eq!(h.double.stats().injected_job_failures, 1);

    // The admin endpoint replaces the faults as well, and refuses nonsense.
    let body = r#"{"throttle_share": 0.0}"#;
    let (status, _) = raw_http(
        &h.double,
        &format!("POST /_double/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert_eq!(status, 204);
    h.imaging
        .get_datastore()
        .datastore_id(&imaging)
        .send()
        .await
        .unwrap();
    let body = r#"{"throttle_share": 1.5}"#;
    let (status, _) = raw_http(
        &h.double,
        &format!("POST /_double/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert_eq!(status, 400);
    let (status, stats) = raw_http(
        &h.double,
        "GET /_double/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(stats.contains("\"throttled_answers\""), "{stats}");
}

#[tokio::test]
async fn a_late_manifest_appears_after_the_terminal_status() {
    let h = Harness::start(DoubleConfig {
        imaging: JobTimings {
            manifest_delay: Duration::from_millis(1500),
            ..timings(100)
        },
        ..fast_config()
    })
    .await;
    let datastore = h.imaging_datastore().await;
    h.put("dicom/late/a.dcm", dicom_file()).await;
    let job_id = h
        .start_dicom(&datastore, "dicom/late/", "out/")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();
    h.wait_dicom_terminal(&datastore, &job_id).await;
    let manifest_key = format!("out/{datastore}-DicomImport-{job_id}/job-output-manifest.json");
    assert!(
        h.get(&manifest_key).await.is_none(),
        "the manifest lags the status"
    );
    wait_until("the manifest appears", DEADLINE, || async {
        h.get(&manifest_key).await
    })
    .await;
}

/// How long a job took by the double's own clock (SubmitTime / submittedAt to EndTime / endedAt).
fn job_seconds(
    submitted: Option<&aws_sdk_healthlake::primitives::DateTime>,
    ended: Option<&aws_sdk_healthlake::primitives::DateTime>,
) -> f64 {
    ended.expect("an end time").as_secs_f64() - submitted.expect("a submit time").as_secs_f64()
}

#[tokio::test]
async fn fhir_jobs_of_every_datastore_and_exports_share_one_lane_per_account() {
    let h = Harness::start(DoubleConfig {
        healthlake: timings(700),
        ..fast_config()
    })
    .await;
    let first_store = h.fhir_datastore().await;
    let second_store = h.fhir_datastore().await;
    h.put("fhir/lane.ndjson", "{\"resourceType\":\"Patient\"}\n")
        .await;
    let import = h
        .start_fhir(&first_store, "fhir/lane.ndjson", "out/")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let other_store_import = h
        .start_fhir(&second_store, "fhir/lane.ndjson", "out/")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let export = h
        .start_fhir_export(&first_store, "exports/")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();

    // The second data store's import and the export wait while the first import runs. Statuses
    // only move forward, so reading the waiting ones first and the running one last shows them
    // waiting while it had not ended.
    wait_until(
        "the first import runs while the others are QUEUED",
        DEADLINE,
        || async {
            let waiting = h.fhir_job(&second_store, &other_store_import).await;
            let export = h.fhir_export_job(&first_store, &export).await;
            let running = h.fhir_job(&first_store, &import).await;
            (waiting.job_status() == &FhirStatus::Queued
                && export.job_status() == &FhirStatus::Queued
                && running.job_status() == &FhirStatus::InProgress)
                .then_some(())
        },
    )
    .await;

    let import = h.wait_fhir_terminal(&first_store, &import).await;
    let other_store_import = h
        .wait_fhir_terminal(&second_store, &other_store_import)
        .await;
    let export = wait_until("the export ends", DEADLINE, || async {
        let job = h.fhir_export_job(&first_store, &export).await;
        job.end_time().is_some().then_some(job)
    })
    .await;
    assert_eq!(import.job_status(), &FhirStatus::Completed);
    assert_eq!(other_store_import.job_status(), &FhirStatus::Completed);
    assert_eq!(export.job_status(), &FhirStatus::Completed);
    // One after another in submit order: each ends at least one run (700 ms) after the one
    // before it (end times have millisecond precision).
    let end_times = [
        import.end_time(),
        other_store_import.end_time(),
        export.end_time(),
    ]
    .map(|end| end.unwrap().as_secs_f64());
    assert!(
        end_times.windows(2).all(|pair| pair[1] - pair[0] >= 0.699),
        "one lane, FIFO: {end_times:?}"
    );
}

#[tokio::test]
async fn a_full_fhir_queue_refuses_starts_with_throttling_and_creates_no_job() {
    let h = Harness::start(DoubleConfig {
        healthlake: timings(60_000),
        healthlake_max_queued_jobs_per_datastore: 2,
        ..fast_config()
    })
    .await;
    let datastore = h.fhir_datastore().await;
    let other = h.fhir_datastore().await;
    h.put("fhir/full.ndjson", "{\"resourceType\":\"Patient\"}\n")
        .await;
    let mut job_ids = Vec::new();
    // One runs, two wait.
    for n in 0..3 {
        let started = h
            .start_fhir(&datastore, "fhir/full.ndjson", "out/")
            .client_token(format!("full-{n}"))
            .send()
            .await
            .unwrap();
        job_ids.push(started.job_id().to_owned());
    }

    let refused = h
        .start_fhir(&datastore, "fhir/full.ndjson", "out/")
        .client_token("full-3")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&refused), 400);
    let refused = refused.into_service_error();
    assert!(refused.is_throttling_exception(), "{refused:?}");
    assert!(
        refused.to_string().contains("2 jobs queued"),
        "the message says why: {refused}"
    );
    // An export shares the queue.
    let refused_export = h
        .start_fhir_export(&datastore, "exports/")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        refused_export.is_throttling_exception(),
        "{refused_export:?}"
    );

    let stats = h.double.stats();
    assert_eq!(stats.fhir_jobs_created, 3, "a refused start creates no job");
    assert_eq!(stats.fhir_export_jobs_created, 0);
    assert_eq!(stats.fhir_queue_refusals, 2);
    let listed = h
        .healthlake
        .list_fhir_import_jobs()
        .datastore_id(&datastore)
        .send()
        .await
        .unwrap();
    let listed: Vec<&str> = listed
        .import_job_properties_list()
        .iter()
        .map(|job| job.job_id())
        .collect();
    assert_eq!(listed, job_ids);

    // A retry of an accepted start is still answered with its job.
    let retry = h
        .start_fhir(&datastore, "fhir/full.ndjson", "out/")
        .client_token("full-1")
        .send()
        .await
        .unwrap();
    assert_eq!(retry.job_id(), job_ids[1]);
    // The limit is per data store: another one can still queue a job behind the same lane.
    let queued_elsewhere = h
        .start_fhir(&other, "fhir/full.ndjson", "out/")
        .send()
        .await
        .unwrap();
    assert_eq!(queued_elsewhere.job_status(), &FhirStatus::Submitted);
    assert_eq!(h.double.stats().fhir_jobs_created, 4);
}

#[tokio::test]
async fn run_time_grows_with_the_number_of_input_files() {
    // 50 ms SUBMITTED + 200 ms overhead + 150 ms a file.
    let per_file = JobTimings {
        per_file: Duration::from_millis(150),
        ..timings(200)
    };
    let h = Harness::start(DoubleConfig {
        healthlake: per_file.clone(),
        imaging: per_file,
        ..fast_config()
    })
    .await;
    let fhir = h.fhir_datastore().await;
    let imaging = h.imaging_datastore().await;
    for n in 0..8 {
        let line = format!("{{\"resourceType\":\"Patient\",\"id\":\"p{n}\"}}\n");
        h.put(&format!("fhir/large/{n}.ndjson"), line.clone()).await;
        h.put(&format!("dicom/large/{n}.dcm"), dicom_file()).await;
        if n == 0 {
            h.put("fhir/small/0.ndjson", line).await;
            h.put("dicom/small/0.dcm", dicom_file()).await;
        }
    }
    // The model's lower bound, less a millisecond for the timestamps' precision.
    let expected = |files: f64| 0.05 + 0.2 + 0.15 * files - 0.001;

    // HealthLake runs one job at a time: one after the other, so neither waits in the queue.
    let mut fhir_seconds = Vec::new();
    for input in ["fhir/small/", "fhir/large/"] {
        let job_id = h
            .start_fhir(&fhir, input, "out/")
            .send()
            .await
            .unwrap()
            .job_id()
            .to_owned();
        let job = h.wait_fhir_terminal(&fhir, &job_id).await;
        assert_eq!(job.job_status(), &FhirStatus::Completed);
        fhir_seconds.push(job_seconds(Some(job.submit_time()), job.end_time()));
    }
    assert!(fhir_seconds[0] >= expected(1.0), "{fhir_seconds:?}");
    assert!(fhir_seconds[1] >= expected(8.0), "{fhir_seconds:?}");
    assert!(fhir_seconds[0] < fhir_seconds[1], "{fhir_seconds:?}");

    let mut dicom_seconds = Vec::new();
    for input in ["dicom/small/", "dicom/large/"] {
        let job_id = h
            .start_dicom(&imaging, input, "out/")
            .send()
            .await
            .unwrap()
            .job_id()
            .to_owned();
        let job = h.wait_dicom_terminal(&imaging, &job_id).await;
        assert_eq!(job.job_status(), &ImagingStatus::Completed);
        dicom_seconds.push(job_seconds(job.submitted_at(), job.ended_at()));
    }
    assert!(dicom_seconds[0] >= expected(1.0), "{dicom_seconds:?}");
    assert!(dicom_seconds[1] >= expected(8.0), "{dicom_seconds:?}");
    assert!(dicom_seconds[0] < dicom_seconds[1], "{dicom_seconds:?}");
}

#[tokio::test]
async fn dicom_input_over_the_byte_limit_fails_the_job_with_a_message() {
    let file = dicom_file();
    let limit = 2 * u64::try_from(file.len()).unwrap();
    let h = Harness::start(DoubleConfig {
        imaging_max_bytes_per_job: limit,
        ..fast_config()
    })
    .await;
    let datastore = h.imaging_datastore().await;
    for n in 0..3 {
        if n < 2 {
            h.put(&format!("dicom/fits/{n}.dcm"), file.clone()).await;
        }
        h.put(&format!("dicom/too-big/{n}.dcm"), file.clone()).await;
    }

    let fits = h
        .start_dicom(&datastore, "dicom/fits/", "out/")
        .send()
        .await
        .unwrap();
    let too_big = h
        .start_dicom(&datastore, "dicom/too-big/", "out/")
        .send()
        .await
        .unwrap();
    let fits = h.wait_dicom_terminal(&datastore, fits.job_id()).await;
    assert_eq!(
        fits.job_status(),
        &ImagingStatus::Completed,
        "exactly the limit fits: {:?}",
        fits.message()
    );
    let too_big = h.wait_dicom_terminal(&datastore, too_big.job_id()).await;
    assert_eq!(too_big.job_status(), &ImagingStatus::Failed);
    let bytes = 3 * file.len();
    assert_eq!(
        too_big.message(),
        Some(
            format!(
                "The input {} holds {bytes} bytes, more than the {limit} bytes one import job accepts",
                h.uri("dicom/too-big/")
            )
            .as_str()
        )
    );
    let manifest_key = format!(
        "out/{datastore}-DicomImport-{}/job-output-manifest.json",
        too_big.job_id()
    );
    assert!(
        h.get(&manifest_key).await.is_none(),
        "a FAILED job writes no output"
    );
}

/// One event as the tap's queue received it, with SQS's SentTimestamp.
struct Received {
    event: Value,
    sent_ms: u64,
}

/// The job events of one data store, read back through moto: a rule on the default bus matching
/// the service's source and the data store, whose target is an SQS queue.
struct EventTap {
    eventbridge: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    source: String,
    datastore_id: String,
    rule: String,
    queue_url: String,
    received: Vec<Received>,
}

impl EventTap {
    async fn open(sdk: &SdkConfig, source: &str, datastore_id: &str) -> Self {
        use aws_sdk_sqs::types::QueueAttributeName;
        let eventbridge = aws_sdk_eventbridge::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let name = local_stack::unique_name("job-events");
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
            .expect("the queue's ARN");
        let pattern = json!({"source": [source], "detail": {"datastoreId": [datastore_id]}});
        eventbridge
            .put_rule()
            .name(&name)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .unwrap();
        eventbridge
            .put_targets()
            .rule(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Self {
            eventbridge,
            sqs,
            source: source.to_owned(),
            datastore_id: datastore_id.to_owned(),
            rule: name,
            queue_url,
            received: Vec::new(),
        }
    }

    /// Receives (and deletes) messages until `done` holds for everything received so far; panics
    /// naming `what` at the deadline.
    async fn receive_until(&mut self, what: &str, done: impl Fn(&[Received]) -> bool) {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(&self.received) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}; received {:#?}",
                self.received
                    .iter()
                    .map(|received| &received.event)
                    .collect::<Vec<_>>()
            );
            let answer = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await
                .unwrap();
            for message in answer.messages() {
                let event = serde_json::from_str(message.body().unwrap()).unwrap();
                let sent_ms = message
                    .attributes()
                    .and_then(|attributes| {
                        attributes.get(&MessageSystemAttributeName::SentTimestamp)
                    })
                    .and_then(|sent| sent.parse().ok())
                    .expect("SentTimestamp");
                self.received.push(Received { event, sent_ms });
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// The events received for `job_id`, in the order received.
    fn of_job(&self, job_id: &str) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|received| received.event["detail"]["jobId"] == job_id)
            .collect()
    }

    fn detail_types(&self, job_id: &str) -> Vec<&str> {
        self.of_job(job_id)
            .iter()
            .map(|received| received.event["detail-type"].as_str().unwrap())
            .collect()
    }

    /// Puts an event of our own that the rule matches. PutEvents delivers to SQS before it
    /// answers, so once the sentinel has been received, everything put before it has been too.
    async fn put_sentinel(&self) -> String {
        let answer = self
            .eventbridge
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(&self.source)
                    .detail_type("Sentinel")
                    .detail(json!({"datastoreId": self.datastore_id}).to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.failed_entry_count(), 0);
        answer.entries()[0].event_id().unwrap().to_owned()
    }

    async fn close(self) {
        let _ = self
            .eventbridge
            .remove_targets()
            .rule(&self.rule)
            .ids("queue")
            .send()
            .await;
        let _ = self.eventbridge.delete_rule().name(&self.rule).send().await;
        let _ = self
            .sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await;
    }
}

/// The envelope members EventBridge sets, as moto sets them for the local account and Region.
fn assert_envelope(event: &Value, source: &str, resource: &str) {
    assert_eq!(event["version"], "0", "{event}");
    assert!(
        event["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{event}"
    );
    assert_eq!(event["source"], source, "{event}");
    assert_eq!(event["account"], "123456789012", "{event}");
    assert_eq!(event["region"], "us-east-1", "{event}");
    assert_eq!(event["resources"], json!([resource]), "{event}");
    let time = event["time"].as_str().expect("time");
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
}

/// A sample event under `events/`.
fn sample_event(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn imaging_arn(datastore_id: &str) -> String {
    format!("arn:aws:medical-imaging:us-east-1:123456789012:datastore/{datastore_id}")
}

fn healthlake_arn(datastore_id: &str) -> String {
    format!("arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/{datastore_id}")
}

/// Milliseconds since the epoch of an SDK timestamp.
fn epoch_millis(time: &aws_sdk_healthlake::primitives::DateTime) -> i128 {
    i128::from(time.secs()) * 1000 + i128::from(time.subsec_nanos() / 1_000_000)
}

#[tokio::test]
async fn imaging_jobs_put_their_documented_events_on_the_default_bus_in_order() {
    let h = Harness::start(fast_config()).await;
    let datastore = h.imaging_datastore().await;
    let mut tap = h.tap(IMAGING_SOURCE, &datastore).await;
    h.put("dicom/events/a.dcm", dicom_file()).await;
    let job_name = "b-7da77e05f54200ad8977a604-0";
    let completed = h
        .start_dicom(&datastore, "dicom/events/", "out/")
        .job_name(job_name)
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let failed = h
        .start_dicom(&datastore, "dicom/nothing-here/", "out/")
        .job_name("empty")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();

    tap.receive_until("both jobs' terminal events arrive", |received| {
        [&completed, &failed].iter().all(|job_id| {
            received.iter().any(|r| {
                r.event["detail"]["jobId"] == job_id.as_str()
                    && matches!(
                        r.event["detail-type"].as_str(),
                        Some("Import Job Completed" | "Import Job Failed")
                    )
            })
        })
    })
    .await;
    // The manifest is written before the terminal status (manifest_delay 0), so before its event.
    assert!(h
        .get(&format!(
            "out/{datastore}-DicomImport-{completed}/job-output-manifest.json"
        ))
        .await
        .is_some());

    for (job_id, name, input, terminal) in [
        (&completed, job_name, "dicom/events/", "COMPLETED"),
        (&failed, "empty", "dicom/nothing-here/", "FAILED"),
    ] {
        let detail_types = tap.detail_types(job_id);
        let terminal_type = if terminal == "COMPLETED" {
            "Import Job Completed"
        } else {
            "Import Job Failed"
        };
        assert_eq!(
            detail_types,
            [
                "Import Job Submitted",
                "Import Job In Progress",
                terminal_type
            ],
            "job {job_id}"
        );
        for (received, status) in
            tap.of_job(job_id)
                .iter()
                .zip(["SUBMITTED", "IN_PROGRESS", terminal])
        {
            assert_envelope(&received.event, IMAGING_SOURCE, &imaging_arn(&datastore));
            // The samples the functions are tested with have exactly these members.
            assert_same_shape(
                &received.event,
                &sample_event("job-event-imaging-import-completed.json"),
                "event",
            );
            assert_eq!(
                received.event["detail"],
                json!({
                    "imagingVersion": "1.0",
                    "datastoreId": datastore,
                    "jobId": job_id,
                    "jobName": name,
                    "jobStatus": status,
                    "inputS3Uri": h.uri(input),
                    "outputS3Uri": h.uri("out/"),
                })
            );
        }
    }
    let stats = h.double.stats();
    assert_eq!(stats.events_put, 6);
    assert_eq!(stats.event_put_failures, 0);
    assert_eq!(stats.events_by_detail_type["Import Job Submitted"], 2);
    assert_eq!(stats.events_by_detail_type["Import Job Failed"], 1);
    tap.close().await;
}

#[tokio::test]
async fn healthlake_jobs_put_their_documented_events_through_the_lane_in_order() {
    // Long enough that the three later jobs are created, and show QUEUED, while the first runs.
    let h = Harness::start(DoubleConfig {
        healthlake: timings(1000),
        ..fast_config()
    })
    .await;
    let datastore = h.fhir_datastore().await;
    let mut tap = h.tap(HEALTHLAKE_SOURCE, &datastore).await;
    h.put(
        "fhir/events/good.ndjson",
        "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n",
    )
    .await;
    h.put(
        "fhir/events/mixed.ndjson",
        "{\"resourceType\":\"Patient\",\"id\":\"p2\"}\n{\"id\":\"no-type\"}\n",
    )
    .await;
    let start = |input: &str| h.start_fhir(&datastore, input, "out/").send();
    let completed = start("fhir/events/good.ndjson")
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let with_errors = start("fhir/events/mixed.ndjson")
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let failed = start("fhir/events/nothing-here/")
        .await
        .unwrap()
        .job_id()
        .to_owned();
    let export = h
        .start_fhir_export(&datastore, "exports/")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();

    tap.receive_until("the export's terminal event arrives", |received| {
        received.iter().any(|r| {
            r.event["detail"]["jobId"] == export.as_str()
                && r.event["detail-type"] == "Export Job Completed"
        })
    })
    .await;

    let expected = [
        (&completed, "Import", None, "Completed"),
        (
            &with_errors,
            "Import",
            Some("Queued"),
            "Completed With Errors",
        ),
        (&failed, "Import", Some("Queued"), "Failed"),
        (&export, "Export", Some("Queued"), "Completed"),
    ];
    for (job_id, kind, queued, terminal) in expected {
        let mut sequence = vec![format!("{kind} Job Submitted")];
        sequence.extend(queued.map(|queued| format!("{kind} Job {queued}")));
        sequence.push(format!("{kind} Job In Progress"));
        sequence.push(format!("{kind} Job {terminal}"));
        assert_eq!(tap.detail_types(job_id), sequence, "job {job_id}");

        let (submitted, location) = if kind == "Import" {
            let job = h.fhir_job(&datastore, job_id).await;
            let uri = match job.input_data_config() {
                Some(InputDataConfig::S3Uri(uri)) => uri.clone(),
                other => panic!("{other:?}"),
            };
            (
                epoch_millis(job.submit_time()),
                json!({"inputDataConfig": {"s3Uri": uri}}),
            )
        } else {
            let job = h.fhir_export_job(&datastore, job_id).await;
            (
                epoch_millis(job.submit_time()),
                json!({"outputDataConfig": {"s3Uri": h.uri("exports/")}}),
            )
        };
        let sample = if kind == "Import" {
            sample_event("job-event-healthlake-import-completed.json")
        } else {
            sample_event("job-event-healthlake-export-completed.json")
        };
        for received in tap.of_job(job_id) {
            let event = &received.event;
            assert_envelope(event, HEALTHLAKE_SOURCE, &healthlake_arn(&datastore));
            assert_same_shape(event, &sample, "event");
            let detail = event["detail"].as_object().unwrap();
            let mut members: Vec<&str> = detail.keys().map(String::as_str).collect();
            members.sort_unstable();
            let location_member = location.as_object().unwrap().keys().next().unwrap();
            let mut expected_members = vec!["datastoreId", "jobId", "submitTime", location_member];
            expected_members.sort_unstable();
            assert_eq!(members, expected_members, "no status, message or progress");
            assert_eq!(detail["jobId"], job_id.as_str());
            assert_eq!(detail["datastoreId"], datastore.as_str());
            assert_eq!(detail[location_member], location[location_member]);
            // `2023-12-08T01:50:50.986Z`: the SubmitTime Describe answers, to the millisecond.
            let submit_time = detail["submitTime"].as_str().unwrap();
            assert!(
                submit_time.len() == 24 && submit_time.ends_with('Z'),
                "{submit_time}"
            );
            let parsed = time::OffsetDateTime::parse(
                submit_time,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            let parsed_ms = parsed.unix_timestamp_nanos() / 1_000_000;
            assert!(
                (parsed_ms - submitted).abs() <= 1,
                "{submit_time} vs {submitted} ms"
            );
        }
    }
    let stats = h.double.stats();
    assert_eq!(stats.events_by_detail_type["Import Job Queued"], 2);
    assert_eq!(stats.events_by_detail_type["Export Job Queued"], 1);
    assert_eq!(stats.event_put_failures, 0);
    tap.close().await;
}

/// A one-file HealthImaging job under `faults`, with a tap on its data store.
async fn imaging_job_under(h: &Harness, faults: Faults) -> (EventTap, String, String) {
    h.double.set_faults(faults);
    let datastore = h.imaging_datastore().await;
    let tap = h.tap(IMAGING_SOURCE, &datastore).await;
    h.put(&format!("dicom/{datastore}/a.dcm"), dicom_file())
        .await;
    let job_id = h
        .start_dicom(&datastore, &format!("dicom/{datastore}/"), "out/")
        .job_name("faulty")
        .send()
        .await
        .unwrap()
        .job_id()
        .to_owned();
    (tap, datastore, job_id)
}

#[tokio::test]
async fn dropped_job_events_never_arrive() {
    let h = Harness::start(fast_config()).await;
    let (mut tap, datastore, job_id) = imaging_job_under(&h, Faults::dropping_every_event()).await;
    let job = h.wait_dicom_terminal(&datastore, &job_id).await;
    assert_eq!(job.job_status(), &ImagingStatus::Completed);
    wait_until(
        "the emitter has dropped all three events",
        DEADLINE,
        || async { (h.double.stats().events_dropped == 3).then_some(()) },
    )
    .await;
    let sentinel = tap.put_sentinel().await;
    tap.receive_until("the sentinel arrives", |received| {
        received.iter().any(|r| r.event["id"] == sentinel.as_str())
    })
    .await;
    assert!(
        tap.of_job(&job_id).is_empty(),
        "no event of the job, the terminal one included: {:?}",
        tap.detail_types(&job_id)
    );
    assert_eq!(h.double.stats().events_put, 0);
    tap.close().await;
}

#[tokio::test]
async fn duplicated_job_events_arrive_twice() {
    let h = Harness::start(fast_config()).await;
    let (mut tap, _, job_id) = imaging_job_under(&h, Faults::duplicating_every_event()).await;
    tap.receive_until("every event arrives twice", |received| {
        received
            .iter()
            .filter(|r| r.event["detail"]["jobId"] == job_id.as_str())
            .count()
            == 6
    })
    .await;
    assert_eq!(
        tap.detail_types(&job_id),
        [
            "Import Job Submitted",
            "Import Job Submitted",
            "Import Job In Progress",
            "Import Job In Progress",
            "Import Job Completed",
            "Import Job Completed",
        ]
    );
    let stats = h.double.stats();
    assert_eq!(stats.events_duplicated, 3);
    assert_eq!(stats.events_put, 6);
    tap.close().await;
}

#[tokio::test]
async fn reordered_job_events_arrive_after_the_job_s_next_event() {
    let h = Harness::start(fast_config()).await;
    let (mut tap, _, job_id) = imaging_job_under(&h, Faults::reordering_every_event()).await;
    tap.receive_until("all three events arrive", |received| {
        received
            .iter()
            .filter(|r| r.event["detail"]["jobId"] == job_id.as_str())
            .count()
            == 3
    })
    .await;
    // SUBMITTED waits for IN_PROGRESS, which is held in turn and waits for COMPLETED.
    assert_eq!(
        tap.detail_types(&job_id),
        [
            "Import Job Submitted",
            "Import Job Completed",
            "Import Job In Progress",
        ]
    );
    assert_eq!(h.double.stats().events_reordered, 2);
    tap.close().await;
}

#[tokio::test]
async fn delayed_job_events_arrive_late() {
    let delay = Duration::from_millis(1500);
    let h = Harness::start(fast_config()).await;
    let (mut tap, datastore, job_id) =
        imaging_job_under(&h, Faults::delaying_every_event(delay)).await;
    let job = h.wait_dicom_terminal(&datastore, &job_id).await;
    let ended_ms = epoch_millis(job.ended_at().expect("endedAt"));
    tap.receive_until("the terminal event arrives", |received| {
        received.iter().any(|r| {
            r.event["detail"]["jobId"] == job_id.as_str()
                && r.event["detail-type"] == "Import Job Completed"
        })
    })
    .await;
    let terminal = tap
        .of_job(&job_id)
        .into_iter()
        .find(|r| r.event["detail-type"] == "Import Job Completed")
        .unwrap();
    let late_ms = i128::from(terminal.sent_ms) - ended_ms;
    // endedAt is kept to the millisecond: allow that much rounding.
    assert!(
        late_ms >= i128::try_from(delay.as_millis()).unwrap() - 1,
        "put {late_ms} ms after the job ended"
    );
    assert_eq!(h.double.stats().events_delayed, 3);
    tap.close().await;
}

#[tokio::test]
async fn the_stack_double_takes_event_faults_through_its_admin_api() {
    let admin = healthimport_tests::double_admin::DoubleAdmin::from_env();
    let before = admin.faults().await.unwrap();
    let changed = Faults {
        event_reorder_share: 0.5,
        event_delay_share: 0.25,
        event_delay_ms: 40,
        ..before.clone()
    };
    admin.set_faults(&changed).await.unwrap();
    assert_eq!(admin.faults().await.unwrap(), changed);
    assert!(
        admin
            .set_faults(&Faults {
                event_drop_share: 1.5,
                ..before.clone()
            })
            .await
            .is_err(),
        "a share above 1 is refused"
    );
    admin.set_faults(&before).await.unwrap();
    assert_eq!(admin.faults().await.unwrap(), before);
}

// --- Bulk Data kick-off headers, request ids, the newer Start members ---

/// The raw response's `x-amzn-RequestId` (HTTP header names are case-insensitive).
fn request_id_of(response: &str) -> String {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-amzn-requestid")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no x-amzn-RequestId in {head}"))
}

fn response_body(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {body:?}"))
}

/// A `$export` kick-off with the given extra header lines (each ending in `\r\n`). The double
/// checks that an `Authorization` header is present and SigV4-shaped, not its signature.
async fn kick_off(h: &Harness, datastore_id: &str, headers: &str) -> (u16, String) {
    let body = json!({
        "JobName": "kick-off",
        "OutputDataConfig": {"S3Configuration": {"S3Uri": h.uri("exports/"), "KmsKeyId": KMS_KEY}},
        "DataAccessRoleArn": ROLE,
    })
    .to_string();
    raw_http(
        &h.double,
        &format!(
            "POST /datastore/{datastore_id}/r4/$export?_since=2026-11-30T06%3A00%3A00.123Z HTTP/1.1\r\n\
             Host: x\r\nContent-Type: application/json\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/healthlake/aws4_request, SignedHeaders=host, Signature=00\r\n\
             X-Amz-Date: 20261130T060000Z\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

fn assert_outcome(response: &str, code: &str, mentions: &str) {
    let outcome = response_body(response);
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["severity"], "error", "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], code, "{outcome}");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains(mentions), "{diagnostics}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/fhir+json"),
        "{response}"
    );
}

#[tokio::test]
async fn export_kick_off_without_accept_fhir_json_is_refused() {
    let h = Harness::start(fast_config()).await;
    let datastore = h.fhir_datastore().await;
    let (status, response) = kick_off(&h, &datastore, "Prefer: respond-async\r\n").await;
    assert_eq!(status, 400, "{response}");
    assert_outcome(&response, "required", "Accept");
    let (status, response) = kick_off(
        &h,
        &datastore,
        "Accept: application/json\r\nPrefer: respond-async\r\n",
    )
    .await;
    assert_eq!(status, 406, "{response}");
    assert_outcome(&response, "not-supported", "application/fhir+json");
    // Refusals create no job.
    let listed = h
        .healthlake
        .list_fhir_export_jobs()
        .datastore_id(&datastore)
        .send()
        .await
        .unwrap();
    assert!(listed.export_job_properties_list().is_empty());
    // With parameters, and among other media types, it is accepted.
    let (status, response) = kick_off(
        &h,
        &datastore,
        "Accept: application/json, application/fhir+json; charset=utf-8\r\nPrefer: respond-async\r\n",
    )
    .await;
    assert_eq!(status, 202, "{response}");
}

#[tokio::test]
async fn export_kick_off_without_prefer_respond_async_is_refused() {
    let h = Harness::start(fast_config()).await;
    let datastore = h.fhir_datastore().await;
    for headers in [
        "Accept: application/fhir+json\r\n",
        "Accept: application/fhir+json\r\nPrefer: return=minimal\r\n",
    ] {
        let (status, response) = kick_off(&h, &datastore, headers).await;
        assert_eq!(status, 400, "{headers}: {response}");
        assert_outcome(&response, "required", "Prefer: respond-async");
    }
    let listed = h
        .healthlake
        .list_fhir_export_jobs()
        .datastore_id(&datastore)
        .send()
        .await
        .unwrap();
    assert!(listed.export_job_properties_list().is_empty());
    let (status, response) = kick_off(
        &h,
        &datastore,
        "Accept: application/fhir+json\r\nPrefer: respond-async, handling=lenient\r\n",
    )
    .await;
    assert_eq!(status, 202, "{response}");
    assert_eq!(response_body(&response)["jobStatus"], "SUBMITTED");
}

#[tokio::test]
async fn every_response_carries_a_fresh_request_id() {
    let h = Harness::start(fast_config()).await;
    let fhir = h.fhir_datastore().await;
    let imaging = h.imaging_datastore().await;
    let missing = "0".repeat(32);
    let healthlake = |datastore_id: &str| {
        let body = json!({ "DatastoreId": datastore_id }).to_string();
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: HealthLake.DescribeFHIRDatastore\r\n\
             Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let imaging_get = |datastore_id: &str| {
        format!("GET /datastore/{datastore_id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    };
    let bulk = "Accept: application/fhir+json\r\nPrefer: respond-async\r\n";
    let mut ids = Vec::new();
    for (what, request, expected) in [
        ("HealthLake success", healthlake(&fhir), 200),
        ("HealthLake error", healthlake(&missing), 400),
        ("HealthImaging success", imaging_get(&imaging), 200),
        ("HealthImaging error", imaging_get(&missing), 404),
    ] {
        let (status, response) = raw_http(&h.double, &request).await;
        assert_eq!(status, expected, "{what}: {response}");
        ids.push(request_id_of(&response));
    }
    let (status, response) = kick_off(&h, &fhir, bulk).await;
    assert_eq!(status, 202, "FHIR REST success: {response}");
    ids.push(request_id_of(&response));
    let (status, response) = kick_off(&h, &fhir, "Accept: application/fhir+json\r\n").await;
    assert_eq!(status, 400, "FHIR REST error: {response}");
    ids.push(request_id_of(&response));
    let (status, response) = raw_http(
        &h.double,
        "GET /listImageSets/datastore/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404, "unknown operation: {response}");
    ids.push(request_id_of(&response));
    for id in &ids {
        assert_eq!(id.len(), 36, "{id}");
    }
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "fresh ids: {ids:?}");

    // The SDKs read it, on a success and on an error.
    use aws_sdk_healthlake::operation::RequestId as _;
    let described = h
        .healthlake
        .describe_fhir_datastore()
        .datastore_id(&fhir)
        .send()
        .await
        .unwrap();
    assert!(described.request_id().is_some_and(|id| id.len() == 36));
    let refused = h
        .imaging
        .get_datastore()
        .datastore_id(&missing)
        .send()
        .await
        .unwrap_err();
    assert!(
        aws_sdk_medicalimaging::operation::RequestId::request_id(&refused)
            .is_some_and(|id| id.len() == 36),
        "{refused:?}"
    );
}

/// What the double recorded of a job's start request (`GET /_double/jobs/{id}`).
async fn recorded_job(h: &Harness, job_id: &str) -> Value {
    let (status, response) = raw_http(
        &h.double,
        &format!("GET /_double/jobs/{job_id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    response_body(&response)
}

#[tokio::test]
async fn fhir_validation_level_is_checked_and_kept_on_the_job() {
    use aws_sdk_healthlake::types::ValidationLevel;
    let h = Harness::start(fast_config()).await;
    let datastore = h.fhir_datastore().await;
    let mut started = Vec::new();
    for level in [
        Some(ValidationLevel::Strict),
        Some(ValidationLevel::StructureOnly),
        Some(ValidationLevel::Minimal),
        None,
    ] {
        let job = h
            .start_fhir(&datastore, "fhir/x.ndjson", "out/")
            .set_validation_level(level.clone())
            .send()
            .await
            .unwrap_or_else(|err| panic!("{level:?}: {err:?}"));
        started.push((level, job.job_id().to_owned()));
    }
    for (level, job_id) in &started {
        let job = h.fhir_job(&datastore, job_id).await;
        assert_eq!(job.validation_level(), level.as_ref(), "{job_id}");
        let recorded = recorded_job(&h, job_id).await;
        assert_eq!(
            recorded["validationLevel"].as_str(),
            level.as_ref().map(ValidationLevel::as_str),
            "{recorded}"
        );
    }
    let refused = h
        .start_fhir(&datastore, "fhir/x.ndjson", "out/")
        .validation_level(ValidationLevel::from("lenient"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&refused), 400);
    let err = refused.into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    assert_eq!(
        err.meta().message(),
        Some(
            "1 validation error detected: Value 'lenient' at 'ValidationLevel' failed to satisfy \
             constraint: Member must satisfy enum value set: [strict, structure-only, minimal]"
        )
    );
}

#[tokio::test]
async fn dicom_input_owner_must_be_twelve_digits_and_the_double_s_account() {
    let h = Harness::start(fast_config()).await;
    let datastore = h.imaging_datastore().await;
    let own = DoubleConfig::default().account_id;
    let started = h
        .start_dicom(&datastore, "dicom/owned/", "out/")
        .input_owner_account_id(&own)
        .send()
        .await
        .unwrap();
    let recorded = recorded_job(&h, started.job_id()).await;
    assert_eq!(recorded["inputOwnerAccountId"], json!(own), "{recorded}");
    let unowned = h
        .start_dicom(&datastore, "dicom/any/", "out/")
        .send()
        .await
        .unwrap();
    let recorded = recorded_job(&h, unowned.job_id()).await;
    assert_eq!(recorded["inputOwnerAccountId"], Value::Null, "{recorded}");

    for malformed in ["12345", "12345678901a", "1234567890123"] {
        let refused = h
            .start_dicom(&datastore, "dicom/x/", "out/")
            .input_owner_account_id(malformed)
            .send()
            .await
            .unwrap_err();
        let status = refused.raw_response().map(|r| r.status().as_u16());
        let err = refused.into_service_error();
        assert!(err.is_validation_exception(), "{malformed}: {err:?}");
        assert_eq!(status, Some(400));
        let message = err.meta().message().unwrap_or_default();
        assert!(
            message.starts_with("1 validation error detected: Value")
                && message.contains("'inputOwnerAccountId'"),
            "{message}"
        );
    }
    let refused = h
        .start_dicom(&datastore, "dicom/x/", "out/")
        .input_owner_account_id("210987654321")
        .send()
        .await
        .unwrap_err();
    let status = refused.raw_response().map(|r| r.status().as_u16());
    let err = refused.into_service_error();
    assert!(err.is_access_denied_exception(), "{err:?}");
    assert_eq!(status, Some(403));
    // Refusals create no job.
    let listed = h
        .imaging
        .list_dicom_import_jobs()
        .datastore_id(&datastore)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.job_summaries().len(), 2);
}

#[tokio::test]
async fn requests_not_signed_with_the_configured_credentials_are_refused_as_aws_does() {
    let h = Harness::start(DoubleConfig {
        signing_credentials: Some(("testing".to_owned(), "testing".to_owned())),
        ..fast_config()
    })
    .await;
    // The SDK signs with the stack's credentials: accepted, by both services.
    let datastore = h.fhir_datastore().await;
    h.healthlake
        .list_fhir_import_jobs()
        .datastore_id(&datastore)
        .send()
        .await
        .unwrap();
    // (An unknown data store: refused for that, after the signature was accepted.)
    let unknown = "0".repeat(32);
    let err = h
        .imaging
        .get_datastore()
        .datastore_id(&unknown)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{err:?}"
    );

    // Signed with the wrong secret: InvalidSignatureException, as AWS answers a signing bug.
    let wrong = h
        .sdk
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    "testing",
                    "not-the-secret",
                    None,
                    None,
                    "test",
                ),
            ),
        )
        .build();
    let err = healthlake_client(&wrong, &h.double)
        .list_fhir_import_jobs()
        .datastore_id(&datastore)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidSignatureException"),
        "{err:?}"
    );
    let err = imaging_client(&wrong, &h.double)
        .get_datastore()
        .datastore_id(&unknown)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidSignatureException"),
        "{err:?}"
    );

    // `Credential=garbage` and no signature at all, on the wire.
    let request = |authorization: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: HealthLake.ListFHIRDatastores\r\n\
             Content-Type: application/x-amz-json-1.0\r\n{authorization}\
             X-Amz-Date: 20261130T060000Z\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let (status, response) = raw_http(
        &h.double,
        &request(
            "Authorization: AWS4-HMAC-SHA256 Credential=garbage, SignedHeaders=host, Signature=00\r\n",
        ),
    )
    .await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(
        response_body(&response)["__type"],
        "IncompleteSignatureException"
    );
    let (status, response) = raw_http(&h.double, &request("")).await;
    assert_eq!(status, 403, "{response}");
    assert_eq!(
        response_body(&response)["__type"],
        "MissingAuthenticationTokenException"
    );
}
