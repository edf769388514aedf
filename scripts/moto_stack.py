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

5. EventBridge delivers to Lambda functions and Step Functions state machines. moto's PutEvents
   answers HTTP 500 (NotImplementedError) when a matching rule targets either. Now, on any bus,
   every ENABLED rule whose event pattern matches (moto's own EventPattern matcher) hands the event
   to those targets on a worker thread, the way EventBridge does: PutEvents answers at once
   (FailedEntryCount 0, an EventId per entry) and a delivery failure is logged here, never
   returned. The target gets the whole event (`version`, `id` (the EventId PutEvents returned),
   `detail-type`, `source`, `account`, `time` as `YYYY-MM-DDTHH:MM:SSZ`, `region`, `resources`,
   `detail`) unless it has `Input` (sent as is), `InputPath` (a JSONPath into the event) or an
   `InputTransformer` (moto's template parser, which inserts a string value without the quotes
   EventBridge adds: quote the placeholder in the template).
   - Lambda: invoked asynchronously (InvocationType Event) through the same forwarding path as
     Invoke (2.). As Lambda does for asynchronous invocations, a function error is retried twice
     (after 1 s, then 2 s here instead of 1 and 2 minutes), or MaximumRetryAttempts times when the
     function exists in moto with an event invoke configuration, and the invocation record goes to
     that configuration's OnSuccess / OnFailure destination (an SQS queue, an event bus or another
     function). A function need not exist in moto to be invoked; one the Invoke API does not serve
     (HTTP 404) is not retried.
   - Step Functions: StartExecution with the event as input and a fresh UUID as the name.
   Other targets (SQS, logs, archives, other buses, API destinations) keep moto's own delivery.

6. Events delivered by moto's own targets (an SQS queue, a log group) carry `account`: moto's default
   input template leaves it out of the event EventBridge delivers.

7. An SQS event source keeps polling: moto hands messages to the mapped function only when one is
   added, so a delayed message or one a failed batch returned would wait for the next send. A
   worker receives, invokes and deletes them every second, as Lambda's poller does.
"""

import copy
import datetime
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from moto.awslambda.models import LambdaBackend, lambda_backends
from moto.dynamodb.responses import DynamoHandler
from moto.events import utils as events_utils
from moto.events.models import Rule, events_backends
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


def _invoke_local(name, data):
    """Runs function `name` once through the local Lambda Invoke API. Returns (function_error,
    payload, outcome): function_error is True when the function (or Lambda) failed; outcome
    starts with "no such function" when the Invoke API does not serve `name`."""
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
            return False, response.read(), "ok"
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return True, error.read(), "no such function (HTTP 404)"
        return True, error.read(), f"function error (HTTP {error.code})"
    except urllib.error.URLError as error:
        # Lambda's own failure to run the function, as a function error the caller can see.
        payload = json.dumps(
            {"errorType": "Lambda.ServiceException", "errorMessage": f"{_lambda_endpoint}: {error.reason}"}
        ).encode("utf-8")
        return True, payload, f"not reachable ({error.reason})"


def _forwarded_invoke(self, function_name, qualifier, body, headers, response_headers):
    if not _lambda_endpoint:
        return _moto_invoke(self, function_name, qualifier, body, headers, response_headers)
    name = _function_name(function_name)
    data = body.encode("utf-8") if isinstance(body, str) else (body or b"{}")
    function_error, payload, outcome = _invoke_local(name, data)
    if function_error:
        response_headers["x-amz-function-error"] = "Unhandled"
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

# 5. EventBridge rule targets moto cannot deliver: Lambda functions and state machines.

# Deliveries run here, off the PutEvents request: EventBridge answers before it delivers.
_deliveries = ThreadPoolExecutor(max_workers=8, thread_name_prefix="eventbridge-delivery")
# Lambda retries a failed asynchronous invocation after about 1 and then 2 minutes; seconds here.
_ASYNC_RETRY_DELAYS_S = (1, 2)
_moto_send_to_targets = Rule.send_to_targets


def _log(message):
    sys.stderr.write(f"moto_stack: {message}\n")


def _arn_parts(arn):
    # arn:partition:service:region:account:resource
    parts = arn.split(":", 5)
    return parts if len(parts) == 6 else None


def _delivered_here(target):
    parts = _arn_parts(target.get("Arn", ""))
    return parts is not None and parts[2] in ("lambda", "states")


class _RuleWithTargets:
    """A rule seen with only some of its targets, for moto's own delivery to the rest."""

    def __init__(self, rule, targets):
        self._rule = rule
        self.targets = targets

    def __getattr__(self, name):
        return getattr(self._rule, name)


def _iso_seconds(value):
    if isinstance(value, (int, float)):
        moment = datetime.datetime.fromtimestamp(float(value), tz=datetime.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _delivered_event(event):
    """The event as EventBridge hands it to a target: no moto bookkeeping, an ISO time."""
    delivered = {key: value for key, value in event.items() if key != "ingestion-time"}
    delivered["time"] = _iso_seconds(event.get("time"))
    return delivered


def _target_input(target, event, original_event):
    if "Input" in target:
        return target["Input"]
    if "InputPath" in target:
        from jsonpath_ng.ext import parse

        matches = parse(target["InputPath"]).find(event)
        return json.dumps(matches[0].value if matches else None)
    transformer = target.get("InputTransformer")
    if transformer:
        with_ingestion = dict(event)
        with_ingestion["ingestion-time"] = original_event.get("ingestion-time")
        return json.dumps(
            events_utils.EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=transformer.get("InputPathsMap", {}),
                event=with_ingestion,
            )
        )
    return json.dumps(event)


def _send_to_targets(self, original_event, transform_input=True):
    ours = [target for target in self.targets if _delivered_here(target)]
    others = [target for target in self.targets if not _delivered_here(target)]
    if ours and self.state == "ENABLED" and self.event_pattern.matches_event(original_event):
        event = _delivered_event(original_event)
        for target in ours:
            try:
                payload = _target_input(target, event, original_event) if transform_input else json.dumps(event)
            except Exception as error:  # a bad InputPath or template: EventBridge drops the delivery
                _log(f"rule {self.name}: target {target.get('Id')}: input not built: {error!r}")
                continue
            _deliveries.submit(_deliver, self.name, target, payload)
    if others:
        _moto_send_to_targets(_RuleWithTargets(self, others), original_event, transform_input)


def _deliver(rule_name, target, payload):
    arn = target["Arn"]
    try:
        if _arn_parts(arn)[2] == "lambda":
            _invoke_async(arn, payload)
        else:
            _start_execution(arn, payload)
    except Exception as error:  # logged, never returned: PutEvents has answered already
        _log(f"rule {rule_name}: delivery to {arn} failed: {error!r}")


def _invoke_async(function_arn, payload):
    """An asynchronous invocation as Lambda runs one: retries on error, then the destination."""
    name = _function_name(function_arn)
    parts = _arn_parts(function_arn)
    region, account = (parts[3], parts[4]) if parts else ("us-east-1", "123456789012")
    config = _event_invoke_config(account, region, name)
    retries = int(config.get("MaximumRetryAttempts", 2))
    if not _lambda_endpoint:
        _log(f"async invoke {name}: no LOCAL_LAMBDA_ENDPOINT, not delivered")
        return
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    attempts = 0
    while True:
        attempts += 1
        function_error, response, outcome = _invoke_local(name, data)
        _log(f"async invoke {name} (attempt {attempts}): {outcome}")
        # A function that does not exist is not retried: Lambda refuses such an event outright.
        if not function_error or attempts > retries or outcome.startswith("no such function"):
            break
        time.sleep(_ASYNC_RETRY_DELAYS_S[min(attempts - 1, len(_ASYNC_RETRY_DELAYS_S) - 1)])
    destination = (
        config.get("DestinationConfig", {})
        .get("OnFailure" if function_error else "OnSuccess", {})
        .get("Destination")
    )
    if destination:
        record = _invocation_record(
            f"arn:aws:lambda:{region}:{account}:function:{name}:$LATEST",
            data,
            response,
            function_error,
            attempts,
        )
        _send_invocation_record(destination, record, function_error)


def _event_invoke_config(account, region, name):
    """The function's event invoke configuration in moto (the last one put), or {}."""
    try:
        function = lambda_backends[account][region].get_function(name)
    except Exception:
        return {}
    configs = getattr(function, "event_invoke_config", None) or []
    return dict(configs[-1].config) if configs else {}


def _json_or_text(raw):
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _invocation_record(function_arn, request, response, function_error, attempts):
    response_context = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error:
        response_context["functionError"] = "Unhandled"
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    return {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": "RetriesExhausted" if function_error else "Success",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": _json_or_text(request),
        "responseContext": response_context,
        "responsePayload": _json_or_text(response),
    }


def _send_invocation_record(destination, record, function_error):
    parts = _arn_parts(destination)
    if parts is None:
        _log(f"destination {destination}: not an ARN")
        return
    service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
    body = json.dumps(record)
    if service == "sqs":
        from moto.sqs.models import sqs_backends

        sqs_backends[account][region].send_message(queue_name=resource, message_body=body)
    elif service == "events":
        outcome = "Failure" if function_error else "Success"
        events_backends[account][region].put_events(
            [
                {
                    "Source": "lambda",
                    "DetailType": f"Lambda Function Invocation Result - {outcome}",
                    "Detail": body,
                    "Resources": [record["requestContext"]["functionArn"], destination],
                    "EventBusName": destination,
                }
            ]
        )
    elif service == "lambda":
        _deliveries.submit(_invoke_async, destination, body)
    else:
        _log(f"destination {destination}: {service} destinations are not delivered locally")
        return
    _log(f"invocation record sent to {destination}")


def _start_execution(state_machine_arn, payload):
    from moto.stepfunctions.responses import get_backend

    parts = _arn_parts(state_machine_arn)
    backend = get_backend(parts[4], parts[3])
    execution = backend.start_execution(state_machine_arn, str(uuid.uuid4()), payload)
    _log(f"started {execution.execution_arn}")


Rule.send_to_targets = _send_to_targets

# 6. moto's default input template, with the `account` EventBridge puts in every event.
events_utils.EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "time": <time>, "region": "<region>", "resources": <resources>, '
    '"detail": <detail>}'
)

# 7. An SQS event source keeps polling. moto hands a queue's messages to its mapped function only
#    when a message is added, so a delayed message (DelaySeconds: the completion checks) or one a
#    failed batch made visible again would wait for the next send, possibly forever. Lambda polls
#    the queue itself; a worker here does the same every second, with moto's own receive, invoke
#    and delete.
def _poll_event_sources():
    from moto.awslambda.utils import get_backend as lambda_backend
    from moto.sqs.models import sqs_backends

    while True:
        time.sleep(1)
        try:
            for account, regions in list(sqs_backends.items()):
                for region, backend in list(regions.items()):
                    for queue in list(backend.queues.values()):
                        for arn, mapping in list(queue.lambda_event_source_mappings.items()):
                            if not mapping.enabled or not queue.messages:
                                continue
                            messages = backend.receive_message(
                                queue.name, mapping.batch_size, 0, queue.visibility_timeout
                            )
                            if not messages:
                                continue
                            delivered = lambda_backend(account, region).send_sqs_batch(
                                arn, messages, queue.queue_arn
                            )
                            for message in messages:
                                if delivered:
                                    backend.delete_message(queue.name, message.receipt_handle)
                                else:
                                    backend.change_message_visibility(
                                        queue.name, message.receipt_handle, visibility_timeout=0
                                    )
        except Exception as error:  # the poller must outlive one bad round
            _log(f"event source poll failed: {error!r}")


threading.Thread(target=_poll_event_sources, name="sqs-event-sources", daemon=True).start()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
