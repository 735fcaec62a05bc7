"""The building blocks of the states: retriers, catchers, a Lambda invocation, a status message
sent to the queue, and the ledger's notified marker with the Task that writes it.

Every Task retries what may pass: Lambda's own service errors, and the project's transient errors
by class name (:func:`scm_batch.retry.transient_error_names`), with the local run's retry policy
and full jitter; a direct service call (SQS, S3) retries any failure of the call.
"""

from __future__ import annotations

from typing import Any

from scm_batch import layout
from scm_batch.aws.definition.resources import Number
from scm_batch.model import StatusWord
from scm_batch.retry import RetryPolicy, transient_error_names
from scm_batch.sinks.routing import STATUS_CHANNEL

TASK_TIMEOUT_MARGIN = 60  # a Task outlives its function, so the function's own error is seen
SERVICE_CALL_TIMEOUT = 60

LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
]
# A function Lambda killed: out of time or memory. AWS names it Lambda.Unknown (the runtime had no
# chance to report), or by the runtime's report; States.Timeout if the Task gave up first.
LAMBDA_KILLED = [
    "Lambda.Unknown",
    "Sandbox.Timedout",
    "Runtime.OutOfMemory",
    "Runtime.ExitError",
    "States.Timeout",
]
# A step killed is tried twice more (a slow storage or broker may have held it up), no more: its
# input will not shrink.
KILLED_ATTEMPTS = 2
# Throttling (the account's concurrency is used up: by this Map, another execution, other
# functions) means the function never ran, so retrying is always safe, and a chunk must not fail
# for it: retried for days, at most 5 minutes apart (full jitter: 2.5 on average once at the
# cap). 2,000 attempts stay well inside a distributed Map child's 25,000 history events.
LAMBDA_THROTTLED = "Lambda.TooManyRequestsException"
THROTTLE_RETRY = RetryPolicy(attempts=2_001, base_delay_seconds=5.0, max_delay_seconds=300.0)


def retrier(errors: list[str], policy: RetryPolicy, attempts: int | None = None) -> dict[str, Any]:
    return {
        "ErrorEquals": errors,
        "IntervalSeconds": max(1, round(policy.base_delay_seconds)),  # ASL: a whole number ≥ 1
        "BackoffRate": policy.backoff_rate,
        "MaxAttempts": attempts if attempts is not None else policy.attempts - 1,
        "MaxDelaySeconds": max(1, round(policy.max_delay_seconds)),
        "JitterStrategy": "FULL",
    }


def lambda_retry(policy: RetryPolicy, *, killed: bool = True) -> list[dict[str, Any]]:
    """Throttles, Lambda's own errors and the project's transient ones; and, unless ``killed`` is
    false (the caller catches them), a function killed by Lambda."""
    retriers = [
        retrier([LAMBDA_THROTTLED], THROTTLE_RETRY),
        # The platform's own hiccups: retried a little longer than the project's errors.
        retrier(LAMBDA_SERVICE_ERRORS, policy, attempts=max(3, policy.attempts + 2)),
        retrier(transient_error_names(), policy),
    ]
    if killed:
        retriers.append(retrier(LAMBDA_KILLED, policy, attempts=KILLED_ATTEMPTS))
    return retriers


def encrypted(parameters: dict[str, Any], sse_kms_key: str | None) -> dict[str, Any]:
    """An S3 PutObject's parameters with the deployment's SSE-KMS key, as the functions write:
    a bucket policy that requires that key refuses anything else."""
    if sse_kms_key is None:
        return parameters
    return {**parameters, "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": sse_kms_key}


def service_retry(policy: RetryPolicy) -> list[dict[str, Any]]:
    """For direct service calls (SQS, S3): any failure of the call, a few times."""
    return [retrier(["States.TaskFailed"], policy, attempts=max(3, policy.attempts))]


def if_present(variable: str, test: dict[str, Any], next_state: str) -> dict[str, Any]:
    """A Choice rule applying ``test`` to ``variable`` only where it exists: a comparison with a
    missing field fails the execution (``States.Runtime``) instead of choosing."""
    return {
        "And": [{"Variable": variable, "IsPresent": True}, {"Variable": variable, **test}],
        "Next": next_state,
    }


def catch(next_state: str, result_path: str = "$.error") -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]


def lambda_task(
    arn: str,
    payload: dict[str, Any] | str,
    selected: dict[str, str],
    *,
    result_path: str | None,
    timeout: Number,
    retry: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        # A path hands the function that part of the state as its event.
        "Parameters": (
            {"FunctionName": arn, "Payload.$": payload}
            if isinstance(payload, str)
            else {"FunctionName": arn, "Payload": payload}
        ),
        # lambda:invoke answers {Payload, StatusCode, …}: keep just the function's own fields.
        "ResultSelector": {f"{name}.$": f"$.Payload.{path}" for name, path in selected.items()},
        "ResultPath": result_path,
        "TimeoutSeconds": timeout,
        "Retry": retry,
    }


def send_status(queue_url: str, body_path: str, policy: RetryPolicy) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage",
        "Parameters": {"QueueUrl": queue_url, "MessageBody.$": body_path},
        "ResultPath": None,
        "TimeoutSeconds": SERVICE_CALL_TIMEOUT,
        "Retry": service_retry(policy),
    }


# ---- the notified marker ----------------------------------------------------------------------
def notified_marker(status: StatusWord, completion_channel: str) -> dict[str, Any]:
    """Where and what the ledger's notified marker is (``Ledger.record_notified``'s document):
    the channels are the completion's (a path, or ``[]`` for none) and the status queue's."""
    channels = (
        f"States.Array('{STATUS_CHANNEL}')"
        if completion_channel == "[]"
        else f"States.Array({completion_channel}, '{STATUS_CHANNEL}')"
    )
    return {
        "Bucket.$": "$.batch.plan.bucket",
        "Key.$": f"States.Format('{layout.notified_key('{}')}', $.batch.job.batchId)",
        "Body": {
            "batchStatus": status.value,
            "sentAt.$": "$$.State.EnteredTime",
            "channels.$": channels,
        },
    }


def record_notified(policy: RetryPolicy, marker: str, sse_kms_key: str | None) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
        "Parameters": encrypted(
            {
                "Bucket.$": f"{marker}.Bucket",
                "Key.$": f"{marker}.Key",
                "Body.$": f"States.JsonToString({marker}.Body)",
                "ContentType": "application/json",
            },
            sse_kms_key,
        ),
        "ResultPath": None,
        "TimeoutSeconds": SERVICE_CALL_TIMEOUT,
        "Retry": service_retry(policy),
    }
