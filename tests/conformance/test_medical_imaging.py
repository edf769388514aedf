"""boto3's `medical-imaging` client against the double: every HealthImaging operation the project
uses (shared/aws/src/imaging.rs, tests/src/provision.rs), answers checked against botocore's model.

StartDICOMImportJob is rate limited (the double: 1 start a second, burst 2), so the starts here
are paced, except in the throttling test, which wants the refusal."""

import os
import re
import time

import pytest

from conftest import (ACCOUNT_ID, BUCKET, IMAGING_ROLE_ARN, call, eventually, expect_error,
                      token)

UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
TERMINAL = {"COMPLETED", "FAILED"}
# A DICOM Part 10 file as far as the double looks: 128-byte preamble, then `DICM`.
DICOM_FILE = b"\0" * 128 + b"DICM" + b"\0" * 64

_last_start = [0.0]


def paced(recorder, method, **params):
    """A start at least 1.1 s after the previous one, so the start rate never refuses it."""
    wait = _last_start[0] + 1.1 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    try:
        return method(recorder, **params)
    finally:
        _last_start[0] = time.monotonic()


def test_the_client_honours_the_service_endpoint_variable(imaging):
    assert imaging.client.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL_MEDICAL_IMAGING"]


@pytest.fixture(scope="module")
def datastore(imaging):
    """An imaging data store of the suite's own, through CreateDatastore, once ACTIVE."""
    created = call(imaging, "create_datastore", datastoreName="conformance", clientToken=token())
    datastore_id = created["datastoreId"]

    def active():
        got = call(imaging, "get_datastore", datastoreId=datastore_id)
        return got["datastoreProperties"]["datastoreStatus"] == "ACTIVE"

    eventually(f"data store {datastore_id} ACTIVE", active)
    return datastore_id


@pytest.fixture(scope="module")
def input_uri(s3):
    s3.put_object(Bucket=BUCKET, Key="dicom-input/image-1.dcm", Body=DICOM_FILE)
    return f"s3://{BUCKET}/dicom-input/"


def start_params(datastore_id, input_uri, client_token, output="dicom-output/"):
    return dict(
        jobName="conformance-import",
        dataAccessRoleArn=IMAGING_ROLE_ARN,
        clientToken=client_token,
        datastoreId=datastore_id,
        inputS3Uri=input_uri,
        outputS3Uri=f"s3://{BUCKET}/{output}",
        inputOwnerAccountId=ACCOUNT_ID,
    )


def start(recorder, **params):
    return call(recorder, "start_dicom_import_job", **params)


def test_create_and_get_datastore(imaging, datastore):
    got = call(imaging, "get_datastore", datastoreId=datastore)
    assert got["datastoreProperties"]["datastoreId"] == datastore
    assert got["datastoreProperties"]["datastoreName"] == "conformance"


def test_a_new_datastore_is_creating_then_active_and_listed(imaging):
    created = call(imaging, "create_datastore", datastoreName="conformance-lifecycle",
                   clientToken=token())
    datastore_id = created["datastoreId"]
    assert created["datastoreStatus"] == "CREATING"
    pattern = imaging.client.meta.service_model.shape_for("DatastoreId").metadata["pattern"]
    assert re.fullmatch(pattern, datastore_id), f"{datastore_id} outside {pattern}"

    def active():
        got = call(imaging, "get_datastore", datastoreId=datastore_id)
        return got["datastoreProperties"]["datastoreStatus"] == "ACTIVE"

    eventually(f"data store {datastore_id} ACTIVE", active)
    listed = call(imaging, "list_datastores", datastoreStatus="ACTIVE", maxResults=50)
    summaries = {s["datastoreId"]: s for s in listed["datastoreSummaries"]}
    assert summaries[datastore_id]["datastoreName"] == "conformance-lifecycle"
    assert summaries[datastore_id]["datastoreStatus"] == "ACTIVE"
    creating = call(imaging, "list_datastores", datastoreStatus="CREATING")
    assert datastore_id not in {s["datastoreId"] for s in creating["datastoreSummaries"]}


def test_import_start_get_list(imaging, datastore, input_uri):
    started = paced(imaging, start, **start_params(datastore, input_uri, token()))
    job_id = started["jobId"]
    assert started["datastoreId"] == datastore

    def finished():
        got = call(imaging, "get_dicom_import_job", datastoreId=datastore, jobId=job_id)
        properties = got["jobProperties"]
        return properties if properties["jobStatus"] in TERMINAL else None

    properties = eventually(f"import {job_id} terminal", finished)
    assert properties["jobStatus"] == "COMPLETED", properties

    listed = call(imaging, "list_dicom_import_jobs", datastoreId=datastore)
    assert job_id in [job["jobId"] for job in listed["jobSummaries"]]
    call(imaging, "list_dicom_import_jobs", datastoreId=datastore, jobStatus="COMPLETED",
         maxResults=1)


# One test per refused call, so that each mismatch shows on its own.
UNKNOWN_CASES = {
    "GetDICOMImportJob unknown job": lambda ds, uri: (
        "get_dicom_import_job", dict(datastoreId=ds, jobId=UNKNOWN_ID)),
    "GetDatastore unknown data store": lambda ds, uri: (
        "get_datastore", dict(datastoreId=UNKNOWN_ID)),
    "ListDICOMImportJobs unknown data store": lambda ds, uri: (
        "list_dicom_import_jobs", dict(datastoreId=UNKNOWN_ID)),
    "StartDICOMImportJob unknown data store": lambda ds, uri: (
        "start_dicom_import_job", start_params(UNKNOWN_ID, uri, token())),
}


@pytest.mark.parametrize("case", list(UNKNOWN_CASES))
def test_unknown_resources_are_resource_not_found(imaging, datastore, input_uri, case):
    method, params = UNKNOWN_CASES[case](datastore, input_uri)
    paced(imaging, lambda recorder, **p: expect_error(
        recorder, "ResourceNotFoundException", method, **p), **params)


def test_a_client_token_reused_with_other_input_is_a_conflict(imaging, datastore, input_uri):
    client_token = token()
    first = paced(imaging, start, **start_params(datastore, input_uri, client_token))
    again = paced(imaging, start, **start_params(datastore, input_uri, client_token))
    assert again["jobId"] == first["jobId"]
    other_output = start_params(datastore, input_uri, client_token, output="dicom-other/")
    paced(imaging, lambda recorder, **params: expect_error(
        recorder, "ConflictException", "start_dicom_import_job", **params), **other_output)


def test_input_outside_the_model_is_a_validation_error(imaging, datastore, input_uri):
    params = start_params(datastore, input_uri, token())
    params["jobName"] = "has a space"  # outside the model's pattern for jobName
    paced(imaging, lambda recorder, **p: expect_error(
        recorder, "ValidationException", "start_dicom_import_job", **p), **params)


def test_create_datastore_input_is_checked_against_the_model(imaging):
    response = expect_error(imaging, "ValidationException", "create_datastore",
                            datastoreName="conformance", clientToken=token(),
                            kmsKeyArn="not-a-key-arn")
    message = response["Error"]["Message"]
    assert "at 'kmsKeyArn' failed to satisfy constraint: Member must satisfy regular expression " \
        "pattern" in message, message


def test_three_starts_in_one_second_are_throttled(imaging, datastore, input_uri):
    # The bucket refills to its burst (2) first; three starts then come within well under a
    # second, so at least one is refused with ThrottlingException.
    time.sleep(max(0.0, _last_start[0] + 2.2 - time.monotonic()))
    began = time.monotonic()
    accepted = 0
    for _ in range(3):
        try:
            imaging.client.start_dicom_import_job(**start_params(datastore, input_uri, token()))
            accepted += 1
        except imaging.client.exceptions.ThrottlingException:
            break
    elapsed = time.monotonic() - began
    _last_start[0] = time.monotonic()
    assert elapsed < 1.0, f"the three starts took {elapsed:.2f} s, too slow to test the rate"
    assert accepted < 3, "three starts within one second were all accepted"
    # The refusal itself, checked as every other error (exception class, body, RequestId).
    expect_error(imaging, "ThrottlingException", "start_dicom_import_job",
                 **start_params(datastore, input_uri, token()))
