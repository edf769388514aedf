"""boto3's `healthlake` client against the double: every HealthLake operation the project uses
(shared/aws/src/healthlake.rs, tests/src/provision.rs), answers checked against botocore's model."""

import os

import pytest

from conftest import (BUCKET, FHIR_ROLE_ARN, KMS_KEY_ARN, call, eventually, expect_error,
                      token)

UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCEL_COMPLETED"}
PATIENT = b'{"resourceType": "Patient", "id": "conformance-1"}\n'


def test_the_client_honours_the_service_endpoint_variable(healthlake):
    assert healthlake.client.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL_HEALTHLAKE"]


@pytest.fixture(scope="module")
def datastore(healthlake):
    """A FHIR data store of the suite's own, through CreateFHIRDatastore, once ACTIVE."""
    created = call(healthlake, "create_fhir_datastore", DatastoreName="conformance",
                   DatastoreTypeVersion="R4", ClientToken=token())
    datastore_id = created["DatastoreId"]

    def active():
        described = call(healthlake, "describe_fhir_datastore", DatastoreId=datastore_id)
        return described["DatastoreProperties"]["DatastoreStatus"] == "ACTIVE"

    eventually(f"data store {datastore_id} ACTIVE", active)
    return datastore_id


@pytest.fixture(scope="module")
def input_uri(s3):
    s3.put_object(Bucket=BUCKET, Key="fhir-input/patients.ndjson", Body=PATIENT)
    return f"s3://{BUCKET}/fhir-input/"


def import_params(datastore_id, input_uri, client_token):
    return dict(
        JobName="conformance-import",
        InputDataConfig={"S3Uri": input_uri},
        JobOutputDataConfig={"S3Configuration": {"S3Uri": f"s3://{BUCKET}/fhir-output/",
                                                 "KmsKeyId": KMS_KEY_ARN}},
        DatastoreId=datastore_id,
        DataAccessRoleArn=FHIR_ROLE_ARN,
        ClientToken=client_token,
        ValidationLevel="strict",
    )


def export_params(datastore_id, client_token):
    return dict(
        JobName="conformance-export",
        OutputDataConfig={"S3Configuration": {"S3Uri": f"s3://{BUCKET}/fhir-export/",
                                              "KmsKeyId": KMS_KEY_ARN}},
        DatastoreId=datastore_id,
        DataAccessRoleArn=FHIR_ROLE_ARN,
        ClientToken=client_token,
    )


def test_create_and_describe_fhir_datastore(healthlake, datastore):
    described = call(healthlake, "describe_fhir_datastore", DatastoreId=datastore)
    properties = described["DatastoreProperties"]
    assert properties["DatastoreId"] == datastore
    assert properties["DatastoreTypeVersion"] == "R4"


def test_a_new_datastore_is_creating_then_active_and_listed(healthlake):
    created = call(healthlake, "create_fhir_datastore", DatastoreName="conformance-lifecycle",
                   DatastoreTypeVersion="R4", ClientToken=token())
    datastore_id = created["DatastoreId"]
    # Nothing is pre-seeded and nothing is ACTIVE at once: the double's data stores are CREATING
    # for DOUBLE_DATASTORE_CREATE_MS (200 ms on the local stack) first.
    assert created["DatastoreStatus"] == "CREATING"
    assert 1 <= len(datastore_id) <= 32
    listed = call(healthlake, "list_fhir_datastores")
    statuses = {p["DatastoreId"]: p["DatastoreStatus"] for p in listed["DatastorePropertiesList"]}
    assert statuses.get(datastore_id) in {"CREATING", "ACTIVE"}

    def active():
        described = call(healthlake, "describe_fhir_datastore", DatastoreId=datastore_id)
        return described["DatastoreProperties"]["DatastoreStatus"] == "ACTIVE"

    eventually(f"data store {datastore_id} ACTIVE", active)
    listed = call(healthlake, "list_fhir_datastores", MaxResults=500,
                  Filter={"DatastoreName": "conformance-lifecycle", "DatastoreStatus": "ACTIVE"})
    assert [p["DatastoreId"] for p in listed["DatastorePropertiesList"]] == [datastore_id]
    none = call(healthlake, "list_fhir_datastores",
                Filter={"DatastoreName": "conformance-lifecycle", "DatastoreStatus": "CREATING"})
    assert none["DatastorePropertiesList"] == []


def test_list_fhir_datastores_pages(healthlake, datastore):
    first = call(healthlake, "list_fhir_datastores", MaxResults=1)
    assert len(first["DatastorePropertiesList"]) == 1
    assert first.get("NextToken"), "more than one data store exists: a next page"
    second = call(healthlake, "list_fhir_datastores", MaxResults=1, NextToken=first["NextToken"])
    assert second["DatastorePropertiesList"][0]["DatastoreId"] != \
        first["DatastorePropertiesList"][0]["DatastoreId"]


def test_a_replayed_create_token_returns_the_same_datastore(healthlake):
    client_token = token()
    params = dict(DatastoreName="conformance-replay", DatastoreTypeVersion="R4",
                  ClientToken=client_token)
    first = call(healthlake, "create_fhir_datastore", **params)
    again = call(healthlake, "create_fhir_datastore", **params)
    assert again["DatastoreId"] == first["DatastoreId"]


def test_import_start_describe_list(healthlake, datastore, input_uri):
    started = call(healthlake, "start_fhir_import_job",
                   **import_params(datastore, input_uri, token()))
    job_id = started["JobId"]

    def finished():
        described = call(healthlake, "describe_fhir_import_job",
                         DatastoreId=datastore, JobId=job_id)
        properties = described["ImportJobProperties"]
        return properties if properties["JobStatus"] in TERMINAL else None

    properties = eventually(f"import {job_id} terminal", finished)
    assert properties["JobId"] == job_id
    assert properties["JobStatus"] == "COMPLETED", properties

    listed = call(healthlake, "list_fhir_import_jobs", DatastoreId=datastore)
    assert job_id in [job["JobId"] for job in listed["ImportJobPropertiesList"]]
    # The list's filters and paging members, as the project sends them.
    call(healthlake, "list_fhir_import_jobs", DatastoreId=datastore, JobStatus="COMPLETED",
         MaxResults=1)


def test_export_start_describe_list(healthlake, datastore):
    started = call(healthlake, "start_fhir_export_job", **export_params(datastore, token()))
    job_id = started["JobId"]

    def finished():
        described = call(healthlake, "describe_fhir_export_job",
                         DatastoreId=datastore, JobId=job_id)
        properties = described["ExportJobProperties"]
        return properties if properties["JobStatus"] in TERMINAL else None

    properties = eventually(f"export {job_id} terminal", finished)
    assert properties["JobId"] == job_id
    assert properties["JobStatus"] == "COMPLETED", properties

    listed = call(healthlake, "list_fhir_export_jobs", DatastoreId=datastore)
    assert job_id in [job["JobId"] for job in listed["ExportJobPropertiesList"]]


# One test per refused call, so that each mismatch shows on its own.
UNKNOWN_CASES = {
    "DescribeFHIRImportJob unknown job": lambda ds, uri: (
        "describe_fhir_import_job", dict(DatastoreId=ds, JobId=UNKNOWN_ID)),
    "DescribeFHIRExportJob unknown job": lambda ds, uri: (
        "describe_fhir_export_job", dict(DatastoreId=ds, JobId=UNKNOWN_ID)),
    "DescribeFHIRDatastore unknown data store": lambda ds, uri: (
        "describe_fhir_datastore", dict(DatastoreId=UNKNOWN_ID)),
    "StartFHIRImportJob unknown data store": lambda ds, uri: (
        "start_fhir_import_job", import_params(UNKNOWN_ID, uri, token())),
    "StartFHIRExportJob unknown data store": lambda ds, uri: (
        "start_fhir_export_job", export_params(UNKNOWN_ID, token())),
    "ListFHIRImportJobs unknown data store": lambda ds, uri: (
        "list_fhir_import_jobs", dict(DatastoreId=UNKNOWN_ID)),
    "ListFHIRExportJobs unknown data store": lambda ds, uri: (
        "list_fhir_export_jobs", dict(DatastoreId=UNKNOWN_ID)),
}


@pytest.mark.parametrize("case", list(UNKNOWN_CASES))
def test_unknown_resources_are_resource_not_found(healthlake, datastore, input_uri, case):
    method, params = UNKNOWN_CASES[case](datastore, input_uri)
    expect_error(healthlake, "ResourceNotFoundException", method, **params)


def test_a_client_token_reused_with_other_input_is_a_validation_error(healthlake, datastore,
                                                                      input_uri):
    client_token = token()
    first = call(healthlake, "start_fhir_import_job",
                 **import_params(datastore, input_uri, client_token))
    # The same token with the same input is a replay: the same job.
    again = call(healthlake, "start_fhir_import_job",
                 **import_params(datastore, input_uri, client_token))
    assert again["JobId"] == first["JobId"]
    other_input = import_params(datastore, f"s3://{BUCKET}/fhir-other-input/", client_token)
    expect_error(healthlake, "ValidationException", "start_fhir_import_job", **other_input)


def test_input_outside_the_model_is_a_validation_error(healthlake, datastore, input_uri):
    # botocore checks lengths and required members itself; patterns and enums are the service's.
    params = import_params(datastore, input_uri, token())
    params["ValidationLevel"] = "lenient"
    expect_error(healthlake, "ValidationException", "start_fhir_import_job", **params)


@pytest.mark.parametrize("member, value, named", [
    ("KmsKeyId", "not a key!!", "JobOutputDataConfig.S3Configuration.KmsKeyId"),
    ("ClientToken", "batch_1", "ClientToken"),
    ("JobName", "a" * 65, "JobName"),
])
def test_patterns_and_lengths_come_from_the_model(healthlake, datastore, input_uri, member, value,
                                                  named):
    # Not checked by botocore (it validates types, required members and minimum lengths only):
    # the double refuses them from the same model, naming the member as AWS does.
    params = import_params(datastore, input_uri, token())
    if member == "KmsKeyId":
        params["JobOutputDataConfig"]["S3Configuration"]["KmsKeyId"] = value
    else:
        params[member] = value
    response = expect_error(healthlake, "ValidationException", "start_fhir_import_job", **params)
    message = response["Error"]["Message"]
    assert f"at '{named}' failed to satisfy constraint" in message, message

