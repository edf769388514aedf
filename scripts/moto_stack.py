"""moto's server as the local stack runs it, with two changes that make it behave like AWS where our
tests depend on it. Run with the venv's python: `python scripts/moto_stack.py -H 127.0.0.1 -p 5155`.

1. DynamoDB requests are served one at a time. DynamoDB applies conditional writes to an item
   atomically; moto's threaded server checks a condition and writes in two steps, so two concurrent
   conditional writes can both pass. Serialising DynamoDB restores "of two racing writers, one wins",
   which our exactly-once tests assert.

2. Lambda Invoke is forwarded to a Lambda Invoke API of our own (`cargo lambda watch`, which runs the
   real function binaries), named by LOCAL_LAMBDA_ENDPOINT, e.g. http://127.0.0.1:5157. moto would
   otherwise run functions in Docker, which we do not have. This is what Step Functions' lambda:invoke
   tasks reach when moto executes a state machine. A function error (non-2xx from the Invoke API,
   body {"errorType", "errorMessage"}) is returned the way Lambda returns it: status 200 with
   X-Amz-Function-Error, so a state machine's Retry and Catch match on errorType.

3. Step Functions starts an execution while others of the same state machine are running. moto
   deep-copies the state machine at each start, executions included, and a running execution
   holds a lock that cannot be copied, so the second concurrent start failed with HTTP 500.
   The copy now leaves the executions out (the clone never uses them).

4. S3 event notifications look like S3's: eventTime in UTC with its "Z" (moto leaves the zone out,
   which strict parsers such as aws_lambda_events refuse), the object's versionId in a versioned
   bucket (moto leaves it out; the starter's job id depends on it), and the userIdentity,
   requestParameters and responseElements members every S3 record carries (moto leaves them out;
   aws_lambda_events' S3EventRecord requires the first two).
"""

import copy
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from urllib.parse import quote

from moto.awslambda.models import LambdaBackend
from moto.dynamodb.responses import DynamoHandler
from moto.s3 import notifications as s3_notifications
from moto.server import main
from moto.stepfunctions.models import StateMachineInstance

_dynamodb_lock = threading.Lock()
_dynamodb_call_action = DynamoHandler.call_action


def _serialised_call_action(self):
    with _dynamodb_lock:
        return _dynamodb_call_action(self)


DynamoHandler.call_action = _serialised_call_action

_lambda_endpoint = os.environ.get("LOCAL_LAMBDA_ENDPOINT", "").rstrip("/")
_moto_invoke = LambdaBackend.invoke


def _function_name(name_or_arn):
    # "poller", "arn:aws:lambda:us-east-1:123456789012:function:poller" or "...:function:poller:live"
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


def _forwarded_invoke(self, function_name, qualifier, body, headers, response_headers):
    if not _lambda_endpoint:
        return _moto_invoke(self, function_name, qualifier, body, headers, response_headers)
    name = _function_name(function_name)
    data = body.encode("utf-8") if isinstance(body, str) else (body or b"{}")
    request = urllib.request.Request(
        f"{_lambda_endpoint}/2015-03-31/functions/{quote(name)}/invocations",
        data=data,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        # The functions run prebuilt, but a step may wait on a slow service; Lambda's own ceiling is
        # 15 minutes.
        with urllib.request.urlopen(request, timeout=900) as response:
            payload = response.read()
        outcome = "ok"
    except urllib.error.HTTPError as error:
        payload = error.read()
        response_headers["x-amz-function-error"] = "Unhandled"
        outcome = f"function error (HTTP {error.code})"
    except urllib.error.URLError as error:
        # Lambda's own failure to run the function, as a function error the caller can see.
        payload = json.dumps(
            {"errorType": "Lambda.ServiceException", "errorMessage": f"{_lambda_endpoint}: {error.reason}"}
        ).encode("utf-8")
        response_headers["x-amz-function-error"] = "Unhandled"
        outcome = f"not reachable ({error.reason})"
    sys.stderr.write(f"moto_stack: invoke {name}: {outcome}\n")
    response_headers["Content-Length"] = str(len(payload))
    return payload


LambdaBackend.invoke = _forwarded_invoke


def _copy_without_executions(self, memo):
    clone = self.__class__.__new__(self.__class__)
    memo[id(self)] = clone
    for name, value in self.__dict__.items():
        setattr(clone, name, [] if name == "executions" else copy.deepcopy(value, memo))
    return clone


StateMachineInstance.__deepcopy__ = _copy_without_executions

# moto formats datetime.now() (local time, which is UTC on the machines this runs on).
s3_notifications._EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_moto_s3_event = s3_notifications._get_s3_event


def _s3_event_with_version(event_name, bucket, key, notification_id):
    event = _moto_s3_event(event_name, bucket, key, notification_id)
    version = getattr(key, "version_id", None)
    for record in event["Records"]:
        if version and version != "null":
            record["s3"]["object"]["versionId"] = version
        record.setdefault("userIdentity", {"principalId": "AWS:LOCALSTACKUSER"})
        record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        record.setdefault(
            "responseElements",
            {"x-amz-request-id": "LOCAL", "x-amz-id-2": "LOCAL"},
        )
    return event


s3_notifications._get_s3_event = _s3_event_with_version

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
