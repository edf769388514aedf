"""Fixtures of the conformance suite: boto3's own `healthlake` and `medical-imaging` clients
(pinned in requirements-dev.txt) against the service double of the local stack.

Run it inside the stack: `scripts/local-stack.sh run -- .venv/bin/python -m pytest -q tests/conformance`.
Nothing here skips: without the stack's variables or a reachable double every test fails.
"""

import json
import os
import socket
import time
import uuid
from collections import Counter
from urllib.parse import urlparse

import boto3
import botocore
import pytest
from botocore.config import Config

from model_check import missing_required, unmodelled_keys

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
# The suite's own S3 bucket in moto (input and output), so it disturbs no other test's resources.
BUCKET = "healthimport-conformance"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/00000000-0000-4000-8000-000000000001"
FHIR_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/healthimport-conformance-fhir"
IMAGING_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/healthimport-conformance-imaging"

REQUIRED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_HEALTHLAKE",
    "AWS_ENDPOINT_URL_MEDICAL_IMAGING",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)

# Every call the suite made: (service, operation, HTTP status), for the summary.
CALLS: Counter = Counter()
# Responses without a RequestId (issue 15 item 6: x-amzn-RequestId on every response).
MISSING_REQUEST_IDS: list[str] = []
_STARTED = time.monotonic()


class Recorder:
    """Keeps the raw HTTP answer of a client's last call (botocore's `after-call` event)."""

    def __init__(self, client):
        self.client = client
        self.service = client.meta.service_model.service_name
        self.last = None
        client.meta.events.register("after-call", self._after_call)

    def _after_call(self, http_response, parsed, model, **_):
        CALLS[(self.service, model.name, http_response.status_code)] += 1
        self.last = (http_response, parsed, model)
        # REQUEST-ID CHECK, recorded for every response (asserted in call/expect_error).
        if not parsed.get("ResponseMetadata", {}).get("RequestId"):
            MISSING_REQUEST_IDS.append(f"{self.service} {model.name} {http_response.status_code}")

    def raw_body(self):
        http_response, _, _ = self.last
        return json.loads(http_response.content) if http_response.content else {}


def _check_request_id(what: str, response: dict):
    # REQUEST-ID CHECK (issue 15 item 6): botocore reads `x-amzn-RequestId` into
    # ResponseMetadata.RequestId; the double must send one on every response, errors included.
    request_id = response.get("ResponseMetadata", {}).get("RequestId")
    assert request_id, f"REQUEST-ID CHECK: {what}: no x-amzn-RequestId (ResponseMetadata.RequestId)"


def call(recorder: Recorder, method: str, **params) -> dict:
    """Calls the operation, then checks the answer against the model: required members present
    (recursively), enum values known, no key the model does not name, a RequestId."""
    response = getattr(recorder.client, method)(**params)
    _, _, model = recorder.last
    what = f"{recorder.service} {model.name}"
    _check_request_id(what, response)
    problems = missing_required(model.output_shape, response)
    problems += unmodelled_keys(model.output_shape, recorder.raw_body())
    assert not problems, f"{what}: the response does not match the model:\n  " + "\n  ".join(problems)
    return response


def expect_error(recorder: Recorder, error: str, method: str, **params) -> dict:
    """Calls the operation and expects boto3's exception class `client.exceptions.<error>`, one
    the model lists for the operation, with the error shape's members spelled as modelled."""
    exception_class = getattr(recorder.client.exceptions, error)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        getattr(recorder.client, method)(**params)
    _, _, model = recorder.last
    what = f"{recorder.service} {model.name} -> {error}"
    got = caught.value
    assert isinstance(got, exception_class), (
        f"{what}: got {type(got).__name__} ({got.response.get('Error')}, "
        f"HTTP {got.response['ResponseMetadata'].get('HTTPStatusCode')})"
    )
    assert error in [shape.name for shape in model.error_shapes], (
        f"{what}: the model does not list {error} for {model.name}"
    )
    _check_request_id(what, got.response)
    assert got.response["Error"].get("Message"), f"{what}: no error message"
    shape = recorder.client.meta.service_model.shape_for(error)
    raw = recorder.raw_body()
    problems = unmodelled_keys(shape, raw, extra=frozenset({"__type", "code"}))
    problems += [f"$.{name}: required by {error}, missing" for name in shape.required_members
                 if not raw.get(name)]
    if not shape.required_members:
        # HealthLake's error shapes require nothing, but name `Message`: the message must be there.
        problems += [f"$.{name}: missing" for name in shape.members if not raw.get(name)]
    assert not problems, f"{what}: the error body does not match the model:\n  " + "\n  ".join(problems)
    return got.response


@pytest.fixture(scope="session")
def stack():
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"not on the local stack ({', '.join(missing)} unset): run through "
            "`scripts/local-stack.sh run -- .venv/bin/python -m pytest -q tests/conformance`",
            pytrace=False,
        )
    for name in ("AWS_ENDPOINT_URL_HEALTHLAKE", "AWS_ENDPOINT_URL_MEDICAL_IMAGING", "AWS_ENDPOINT_URL"):
        url = urlparse(os.environ[name])
        try:
            socket.create_connection((url.hostname, url.port), timeout=5).close()
        except OSError as error:
            pytest.fail(f"{name}={os.environ[name]} is not reachable: {error}", pytrace=False)
    return os.environ


def _client(service: str):
    # No retries: a ThrottlingException must reach the test, not be retried away by botocore.
    config = Config(region_name=REGION, retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.session.Session().client(service, config=config)


@pytest.fixture(scope="session")
def healthlake(stack) -> Recorder:
    return Recorder(_client("healthlake"))


@pytest.fixture(scope="session")
def imaging(stack) -> Recorder:
    return Recorder(_client("medical-imaging"))


@pytest.fixture(scope="session")
def s3(stack):
    client = boto3.session.Session().client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def eventually(what: str, check, deadline_seconds: float = 60.0, interval: float = 0.2):
    """Polls `check` until it returns something truthy (the double's jobs take under a second)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {deadline_seconds} s")
        time.sleep(interval)


def token() -> str:
    return str(uuid.uuid4())


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    write("")
    write("conformance: operations called through boto3 (service, operation, HTTP status: calls)")
    for (service, operation, status), count in sorted(CALLS.items()):
        write(f"  {service:16} {operation:22} {status}: {count}")
    operations = sorted({(service, operation) for service, operation, _ in CALLS})
    write(f"conformance: {len(operations)} operations, {sum(CALLS.values())} calls, "
          f"boto3 {boto3.__version__}, botocore {botocore.__version__}")
    if MISSING_REQUEST_IDS:
        write(f"conformance: REQUEST-ID CHECK failed on {len(MISSING_REQUEST_IDS)} responses: "
              + ", ".join(sorted(set(MISSING_REQUEST_IDS))))
    else:
        write(f"conformance: REQUEST-ID CHECK: all {sum(CALLS.values())} responses carried one")
    write(f"conformance: run time {time.monotonic() - _STARTED:.1f} s")
