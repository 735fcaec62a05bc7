"""The Step Functions state machine, generated from the code it runs so the two cannot drift.

``scm-batch aws definition`` prints it; ``--terraform`` prints the template the Terraform module
deploys (``deploy/terraform/state-machine.asl.json.tftpl``), in which the deployed resources'
ARNs and the module's numbers are ``${…}`` references.

Shape (state names are the contract's)::

    InitializeBatchProcessing → ValidateBatchConfig → CalculateChunks
      → ProcessChunksInParallel (Map over chunk items)
          ProcessChunk (Choice on the item's route) → ProcessWithLambda | SubmitBatchJob
          a failure after retries → RecordChunkFailure → SaveChunkFailure (into the ledger)
      → AggregateResults → ToleratedFailureCheck
          ├ within tolerance → DeploymentChoiceState → SendToKafka | SendToSqsCore
          │                    → SendToSQS (status message) → SuccessState
          └ beyond it ───────→ DescribeBatchFailure → ReportFailure → FailureState
    any step failing for good → FailureCause → IdentifyFailedBatch → FailureOf… → ReportFailure

Decisions:

* Every Task retries what may pass: Lambda's own service errors, and the project's transient
  errors by class name (:func:`scm_batch.retry.transient_error_names`), with the local run's
  retry policy (:class:`scm_batch.retry.RetryPolicy`) and full jitter. Every Task has a timeout.
* A chunk's failure is caught inside the Map, recorded in the bucket where the local run records
  it, and the Map goes on; ``AggregateResults`` applies the deployment's tolerance exactly as the
  local run does, and ``ToleratedFailureCheck`` acts on its verdict. (A Distributed Map's own
  ``ToleratedFailurePercentage`` is not relied on: the decision stays in one place.)
* Batch runs through ``batch:submitJob.sync`` (the state waits for the job; nothing polls) with
  string parameters only. Transient container failures are retried by the job definition's retry
  strategy (exit code 75), so the Task retries only Batch API errors.
* Chunk items are plan entries (byte ranges, ids; a few hundred bytes, never records). The
  distributed Map reads them from ``metadata/{batchId}/chunk-items.json`` (``ItemReader``), so
  the state stays small whatever the chunk count; the inline Map, for small deployments, takes
  them from the state and ``CalculateChunks`` refuses plans larger than ``max_inline_chunks``.
* Iterations output nothing (``OutputPath: null``) and the Map discards its result array: the
  ledger in the bucket is the record, and a large plan cannot overflow the state.
* ``ReportFailure`` sends a message built by ``Pass`` states from fields that exist on every
  path (a Choice tests which do), so reporting a failure cannot itself fail on a missing field.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import msgspec

from scm_batch import layout
from scm_batch.model import StatusWord
from scm_batch.retry import RetryPolicy, transient_error_names
from scm_batch.stages.notify import STATUS_CHANNEL

MapMode = Literal["inline", "distributed"]

INLINE_MAP_MAX_CONCURRENCY = 40  # an inline Map runs at most 40 iterations at a time
DEFAULT_MAX_INLINE_CHUNKS = 100  # ~800 bytes an item: well inside the 256 KiB state limit
LAMBDA_MAX_TIMEOUT = 900
TASK_TIMEOUT_MARGIN = 60  # a Task outlives its function, so the function's own error is seen
BATCH_QUEUE_ALLOWANCE = 3600  # time a job may wait in its queue for capacity
SERVICE_CALL_TIMEOUT = 60

FUNCTION_NAMES = (
    "scm-batch-processor-read-s3",
    "scm-batch-processor-validate-data",
    "scm-batch-processor-calculate-chunks",
    "scm-batch-processor-update-records",
    "scm-batch-processor-aggregate-results",
    "scm-batch-processor-send-to-kafka",
    "scm-batch-processor-send-to-sqs-core",
)
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
]
# Throttling (the account's concurrency is used up, often by this very Map) clears when other
# invocations finish: retried longer and further apart than a failure.
LAMBDA_THROTTLED = "Lambda.TooManyRequestsException"
THROTTLE_RETRY = RetryPolicy(attempts=11, base_delay_seconds=5.0, max_delay_seconds=300.0)
BATCH_API_ERRORS = [
    "Batch.AWSBatchException",
    "Batch.ServerException",
    "Batch.SdkClientException",
]
FAILURE_STATUS = StatusWord.SUBMISSION_FAILED.value
# The execution's error when the workflow itself failed (a States.* error: a timeout, a Map that
# could not read its items), with the original name and cause in its cause.
WORKFLOW_FAILURE = "WorkflowFailed"
# A function's unhandled error: the Lambda runtime's JSON envelope as the error's Cause.
LAMBDA_ERROR_ENVELOPE = '{"errorMessage"*'


class Expr(msgspec.Struct, frozen=True):
    """A number the Terraform template computes (``${lambda_timeout + 60}``)."""

    text: str


Number = int | Expr


def _plus(value: Number, extra: int) -> Number:
    return value + extra if isinstance(value, int) else Expr(f"{value.text} + {extra}")


def _times(value: Number, factor: Number) -> Number:
    if isinstance(value, int) and isinstance(factor, int):
        return value * factor
    left = value.text if isinstance(value, Expr) else str(value)
    right = factor.text if isinstance(factor, Expr) else str(factor)
    return Expr(f"{left} * {right}")


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """The deployed resources the definition refers to, and the numbers it takes from the
    deployment's configuration."""

    lambda_arns: dict[str, str]  # by contract function name
    batch_job_queue: str
    batch_job_definition: str
    status_queue_url: str
    max_concurrent_chunks: Number = 50
    lambda_timeout: Number = LAMBDA_MAX_TIMEOUT
    batch_job_timeout: Number = 14_400
    batch_job_attempts: Number = 3
    map_mode: MapMode = "distributed"
    max_inline_chunks: int = DEFAULT_MAX_INLINE_CHUNKS
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)


def deployment_for_account(
    *,
    region: str,
    account: str,
    partition: str = "aws",
    job_queue: str = "scm-batch-chunks",
    job_definition: str = "scm-batch-chunk",
    status_queue: str = "batch-proc",
    **settings: Any,
) -> Deployment:
    """The deployment with the contract's function names in one account and region."""
    arns = {
        name: f"arn:{partition}:lambda:{region}:{account}:function:{name}"
        for name in FUNCTION_NAMES
    }
    return Deployment(
        lambda_arns=arns,
        batch_job_queue=f"arn:{partition}:batch:{region}:{account}:job-queue/{job_queue}",
        batch_job_definition=f"arn:{partition}:batch:{region}:{account}:job-definition/{job_definition}",
        status_queue_url=f"https://sqs.{region}.amazonaws.com/{account}/{status_queue}",
        **settings,
    )


TEMPLATE_STRINGS = {
    "batch_job_queue": "batch_job_queue_arn",
    "batch_job_definition": "batch_job_definition_arn",
    "status_queue_url": "status_queue_url",
}
TEMPLATE_NUMBERS = (
    "max_concurrent_chunks",
    "lambda_timeout",
    "batch_job_timeout",
    "batch_job_attempts",
)


def template_variable_of(function_name: str) -> str:
    """``scm-batch-processor-update-records`` → ``lambda_update_records_arn``."""
    suffix = function_name.removeprefix("scm-batch-processor-").replace("-", "_")
    return f"lambda_{suffix}_arn"


def _reference(variable: str) -> str:
    return "${" + variable + "}"


def terraform_deployment() -> Deployment:
    """The deployment as the Terraform template sees it: every value a ``${…}`` reference."""
    return Deployment(
        lambda_arns={name: _reference(template_variable_of(name)) for name in FUNCTION_NAMES},
        batch_job_queue=_reference(TEMPLATE_STRINGS["batch_job_queue"]),
        batch_job_definition=_reference(TEMPLATE_STRINGS["batch_job_definition"]),
        status_queue_url=_reference(TEMPLATE_STRINGS["status_queue_url"]),
        max_concurrent_chunks=Expr("max_concurrent_chunks"),
        lambda_timeout=Expr("lambda_timeout"),
        batch_job_timeout=Expr("batch_job_timeout"),
        batch_job_attempts=Expr("batch_job_attempts"),
        map_mode="distributed",
    )


def template_variables() -> list[str]:
    """Every variable the Terraform template takes."""
    return sorted(
        [template_variable_of(n) for n in FUNCTION_NAMES]
        + list(TEMPLATE_STRINGS.values())
        + list(TEMPLATE_NUMBERS)
    )


# ---- building blocks --------------------------------------------------------------------------
def _retrier(errors: list[str], policy: RetryPolicy, attempts: int | None = None) -> dict[str, Any]:
    return {
        "ErrorEquals": errors,
        "IntervalSeconds": max(1, round(policy.base_delay_seconds)),  # ASL: a whole number ≥ 1
        "BackoffRate": policy.backoff_rate,
        "MaxAttempts": attempts if attempts is not None else policy.attempts - 1,
        "MaxDelaySeconds": max(1, round(policy.max_delay_seconds)),
        "JitterStrategy": "FULL",
    }


def _lambda_retry(policy: RetryPolicy) -> list[dict[str, Any]]:
    return [
        _retrier([LAMBDA_THROTTLED], THROTTLE_RETRY),
        # The platform's own hiccups: retried a little longer than the project's errors.
        _retrier(LAMBDA_SERVICE_ERRORS, policy, attempts=max(3, policy.attempts + 2)),
        _retrier(transient_error_names(), policy),
    ]


def _service_retry(policy: RetryPolicy) -> list[dict[str, Any]]:
    """For direct service calls (SQS, S3): any failure of the call, a few times."""
    return [_retrier(["States.TaskFailed"], policy, attempts=max(3, policy.attempts))]


def _catch(next_state: str, result_path: str = "$.error") -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]


def _lambda_task(
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


def _send_status(queue_url: str, body_path: str, policy: RetryPolicy) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage",
        "Parameters": {"QueueUrl": queue_url, "MessageBody.$": body_path},
        "ResultPath": None,
        "TimeoutSeconds": SERVICE_CALL_TIMEOUT,
        "Retry": _service_retry(policy),
    }


# ---- the chunk iteration ----------------------------------------------------------------------
def _chunk_processor(d: Deployment, mode: MapMode) -> dict[str, Any]:
    failure_key = layout.failure_key("{}", "{}")  # the ledger's own layout, with the ids to fill
    update_records = _lambda_task(
        d.lambda_arns["scm-batch-processor-update-records"],
        {"chunk.$": "$.chunk", "attempt.$": "$$.State.RetryCount"},
        {"chunkId": "chunkId", "records": "records", "doneBefore": "doneBefore"},
        result_path="$.result",
        timeout=_plus(d.lambda_timeout, TASK_TIMEOUT_MARGIN),
        retry=_lambda_retry(d.retry),
    )
    batch_timeout = _plus(_times(d.batch_job_timeout, d.batch_job_attempts), BATCH_QUEUE_ALLOWANCE)
    return {
        "ProcessorConfig": (
            {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}  # .sync needs STANDARD
            if mode == "distributed"
            else {"Mode": "INLINE"}
        ),
        "StartAt": "ProcessChunk",
        "States": {
            "ProcessChunk": {
                "Type": "Choice",
                "Comment": "The plan routed each chunk: Batch when Lambda could not finish it",
                "Choices": [
                    {"Variable": "$.chunk.route", "StringEquals": "batch", "Next": "SubmitBatchJob"}
                ],
                "Default": "ProcessWithLambda",
            },
            "ProcessWithLambda": {
                **update_records,
                "OutputPath": None,
                "Catch": _catch("RecordChunkFailure"),
                "End": True,
            },
            "SubmitBatchJob": {
                "Type": "Task",
                "Resource": "arn:aws:states:::batch:submitJob.sync",
                "Parameters": {
                    "JobName.$": "States.Format('scm-batch-{}', $.chunk.chunkId)",
                    "JobQueue": d.batch_job_queue,
                    "JobDefinition": d.batch_job_definition,
                    # Batch parameters are strings, substituted into the job's command.
                    "Parameters": {
                        "bucket.$": "$.bucket",
                        "batchId.$": "$.chunk.batchId",
                        "chunkId.$": "$.chunk.chunkId",
                    },
                },
                "ResultSelector": {"jobId.$": "$.JobId", "status.$": "$.Status"},
                "ResultPath": "$.result",
                "OutputPath": None,
                "TimeoutSeconds": batch_timeout,
                "Retry": [_retrier(BATCH_API_ERRORS, d.retry, attempts=max(3, d.retry.attempts))],
                "Catch": _catch("RecordChunkFailure"),
                "End": True,
            },
            "RecordChunkFailure": {
                "Type": "Pass",
                "Comment": "The failure as the ledger stores it (a ChunkFailure)",
                "Parameters": {
                    "Bucket.$": "$.bucket",
                    "Key.$": f"States.Format('{failure_key}', $.chunk.batchId, $.chunk.chunkId)",
                    "Body": {
                        "chunkId.$": "$.chunk.chunkId",
                        "chunkNumber.$": "$.chunk.chunkNumber",
                        "errorType.$": "$.error.Error",
                        "message.$": "States.JsonToString($.error)",
                        "transient": False,
                        "status": StatusWord.CHUNK_FAILED.value,
                    },
                },
                "ResultPath": "$.failure",
                "Next": "SaveChunkFailure",
            },
            "SaveChunkFailure": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                "Parameters": {
                    "Bucket.$": "$.failure.Bucket",
                    "Key.$": "$.failure.Key",
                    "Body.$": "States.JsonToString($.failure.Body)",
                    "ContentType": "application/json",
                },
                "ResultPath": None,
                "OutputPath": None,
                "TimeoutSeconds": SERVICE_CALL_TIMEOUT,
                "Retry": _service_retry(d.retry),
                "End": True,
            },
        },
    }


def _chunk_map(d: Deployment, mode: MapMode) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemSelector": {"chunk.$": "$$.Map.Item.Value", "bucket.$": "$.batch.plan.bucket"},
        "ItemProcessor": _chunk_processor(d, mode),
        "ResultPath": None,
        "Catch": _catch("FailureCause"),
        "Next": "AggregateResults",
    }
    if mode == "distributed":
        state["ItemReader"] = {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket.$": "$.batch.plan.bucket", "Key.$": "$.batch.plan.itemsKey"},
        }
        state["MaxConcurrency"] = d.max_concurrent_chunks
    else:
        state["ItemsPath"] = "$.batch.plan.items"
        limit = d.max_concurrent_chunks
        state["MaxConcurrency"] = (
            min(limit, INLINE_MAP_MAX_CONCURRENCY) if isinstance(limit, int) else limit
        )
    return state


# ---- the notified marker ----------------------------------------------------------------------
def _notified_marker(status: StatusWord, completion_channel: str) -> dict[str, Any]:
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


def _record_notified(policy: RetryPolicy, marker: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
        "Parameters": {
            "Bucket.$": f"{marker}.Bucket",
            "Key.$": f"{marker}.Key",
            "Body.$": f"States.JsonToString({marker}.Body)",
            "ContentType": "application/json",
        },
        "ResultPath": None,
        "TimeoutSeconds": SERVICE_CALL_TIMEOUT,
        "Retry": _service_retry(policy),
    }


# ---- failure reporting ------------------------------------------------------------------------
def _failure_report(batch_id: str | None, customer_id: str | None) -> dict[str, Any]:
    """A Pass state building the status message's failure form from fields known to exist."""

    def field(name: str, path: str | None) -> dict[str, Any]:
        return {f"{name}.$": path} if path is not None else {name: None}

    message = {
        **field("batchId", batch_id),
        "batchStatus": FAILURE_STATUS,
        **field("customerId", customer_id),
        "notificationId.$": "States.UUID()",
        "progress": 0,
        "totalRecordsProcessed": 0,
        "processingTime": 0,
        "errorMessage.$": "States.Format('{}: {}', $.failure.error, $.failure.cause)",
        "executionId.$": "$$.Execution.Id",
    }
    return {
        "Type": "Pass",
        "Parameters": {"message": message},
        "ResultPath": "$.report",
        "Next": "ReportFailure",
    }


def _both_present(*paths: str) -> dict[str, Any]:
    return {"And": [{"Variable": p, "IsPresent": True} for p in paths]}


def _failure_states(d: Deployment) -> dict[str, Any]:
    return {
        "FailureCause": {
            "Type": "Choice",
            "Comment": (
                "A caught error has an Error; its Cause may be missing, and a function's is the "
                "Lambda runtime's JSON envelope, of which the message is what matters"
            ),
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.error.Cause", "IsPresent": True},
                        {"Variable": "$.error.Cause", "StringMatches": LAMBDA_ERROR_ENVELOPE},
                    ],
                    "Next": "ParseFunctionError",
                },
                {"Variable": "$.error.Cause", "IsPresent": True, "Next": "FailureWithCause"},
            ],
            "Default": "FailureWithoutCause",
        },
        "ParseFunctionError": {
            "Type": "Pass",
            "Parameters": {"envelope.$": "States.StringToJson($.error.Cause)"},
            "ResultPath": "$.failure",
            "Next": "FunctionErrorMessage",
        },
        "FunctionErrorMessage": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.failure.envelope.errorMessage", "IsPresent": True},
                        {"Variable": "$.failure.envelope.errorMessage", "IsString": True},
                    ],
                    "Next": "FailureOfFunction",
                }
            ],
            "Default": "FailureWithCause",
        },
        "FailureOfFunction": {
            "Type": "Pass",
            "Parameters": {
                "error.$": "$.error.Error",
                "cause.$": "$.failure.envelope.errorMessage",
            },
            "ResultPath": "$.failure",
            "Next": "IdentifyFailedBatch",
        },
        "FailureWithCause": {
            "Type": "Pass",
            "Parameters": {"error.$": "$.error.Error", "cause.$": "$.error.Cause"},
            "ResultPath": "$.failure",
            "Next": "IdentifyFailedBatch",
        },
        "FailureWithoutCause": {
            "Type": "Pass",
            "Parameters": {"error.$": "$.error.Error", "cause": "no cause given"},
            "ResultPath": "$.failure",
            "Next": "IdentifyFailedBatch",
        },
        "IdentifyFailedBatch": {
            "Type": "Choice",
            "Comment": (
                "The checked input if the batch got that far, else the raw input's ids. A batch "
                "id that belongs to another batch is not reported: its status is that batch's."
            ),
            "Choices": [
                {
                    "Variable": "$.failure.error",
                    "StringEquals": "BatchExistsError",
                    "Next": "FailureName",
                },
                {
                    **_both_present("$.batch.job.batchId", "$.batch.job.customerId"),
                    "Next": "FailureOfCheckedBatch",
                },
                {
                    **_both_present("$.batchId", "$.customerId"),
                    "Next": "FailureOfRequestedBatch",
                },
            ],
            "Default": "FailureOfUnknownBatch",
        },
        "FailureOfCheckedBatch": _failure_report("$.batch.job.batchId", "$.batch.job.customerId"),
        "FailureOfRequestedBatch": _failure_report("$.batchId", "$.customerId"),
        "FailureOfUnknownBatch": _failure_report(None, None),
        "DescribeBatchFailure": {
            "Type": "Pass",
            "Comment": (
                "AggregateResults built the failure message and named the failure; once it is "
                "sent, the batch is marked notified as a local run marks it"
            ),
            "Parameters": {
                "failure.$": "$.outcome.failure",
                "report": {"message.$": "$.outcome.statusMessage"},
                "marker": _notified_marker(StatusWord.SUBMISSION_FAILED, "[]"),
            },
            "ResultPath": "$",
            "Next": "ReportFailure",
        },
        "ReportFailure": {
            **_send_status(d.status_queue_url, "$.report.message", d.retry),
            # The execution fails with the original error even if its report cannot be sent.
            "Catch": _catch("FailureName", "$.reportError"),
            "Next": "FailureReported",
        },
        "FailureReported": {
            "Type": "Choice",
            "Comment": "An aggregated batch's failure is recorded as notified; others have no plan",
            "Choices": [
                {"Variable": "$.marker", "IsPresent": True, "Next": "RecordFailureNotified"}
            ],
            "Default": "FailureName",
        },
        "RecordFailureNotified": {
            **_record_notified(d.retry, "$.marker"),
            "Catch": _catch("FailureName", "$.recordError"),
            "Next": "FailureName",
        },
        "FailureName": {
            "Type": "Choice",
            "Comment": "A Fail state cannot raise a States.* name: those are renamed",
            "Choices": [
                {
                    "Variable": "$.failure.error",
                    "StringMatches": "States.*",
                    "Next": "NameWorkflowFailure",
                }
            ],
            "Default": "FailureState",
        },
        "NameWorkflowFailure": {
            "Type": "Pass",
            "Parameters": {
                "error": WORKFLOW_FAILURE,
                "cause.$": "States.Format('{}: {}', $.failure.error, $.failure.cause)",
            },
            "ResultPath": "$.failure",
            "Next": "FailureState",
        },
        "FailureState": {
            "Type": "Fail",
            "ErrorPath": "$.failure.error",
            "CausePath": "$.failure.cause",
        },
    }


# ---- the whole machine ------------------------------------------------------------------------
def build_definition(d: Deployment) -> dict[str, Any]:
    """The state machine for deployment ``d``, as a JSON-ready dict (numbers may be ``Expr``)."""
    fn = d.lambda_arns
    missing = [name for name in FUNCTION_NAMES if name not in fn]
    if missing:
        raise ValueError(f"no ARN for {', '.join(missing)}")
    lambda_retry = _lambda_retry(d.retry)
    step_timeout = LAMBDA_MAX_TIMEOUT + TASK_TIMEOUT_MARGIN

    def step(
        name: str, payload: dict[str, Any] | str, selected: dict[str, str], result: str
    ) -> Any:
        return {
            **_lambda_task(
                fn[name],
                payload,
                selected,
                result_path=result,
                timeout=step_timeout,
                retry=lambda_retry,
            ),
            "Catch": _catch("FailureCause"),
        }

    plan_payload: dict[str, Any] = {"batch.$": "$.batch"}
    if d.map_mode == "inline":
        plan_payload["maxInlineChunks"] = d.max_inline_chunks
    outcome_fields = {
        name: name
        for name in (
            "batchId",
            "status",
            "validationStatus",
            "failed",
            "failure",
            "summaryKey",
            "chunksFailed",
            "totalRecordsProcessed",
            "statusMessage",
            "alreadyNotified",
        )
    }
    completion = {"channel": "channel", "location": "location"}
    states: dict[str, Any] = {
        "InitializeBatchProcessing": {
            **step(
                "scm-batch-processor-read-s3",
                "$",  # the execution input (or the S3 event) is the function's event
                {"job": "job", "source": "source"},
                "$.batch",
            ),
            "Next": "ValidateBatchConfig",
        },
        "ValidateBatchConfig": {
            **step(
                "scm-batch-processor-validate-data",
                {"batch.$": "$.batch"},
                {"job": "job", "source": "source", "delivery": "delivery"},
                "$.batch",
            ),
            "Next": "CalculateChunks",
        },
        "CalculateChunks": {
            **step(
                "scm-batch-processor-calculate-chunks",
                plan_payload,
                {"job": "job", "delivery": "delivery", "plan": "plan"},
                "$.batch",
            ),
            "Next": "ChunksLeftCheck",
        },
        "ChunksLeftCheck": {
            "Type": "Choice",
            "Comment": "A batch done and notified before (started again) is not rerun",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.batch.plan.alreadyNotified", "IsPresent": True},
                        {"Variable": "$.batch.plan.alreadyNotified", "BooleanEquals": True},
                    ],
                    "Next": "AggregateResults",
                }
            ],
            "Default": "ProcessChunksInParallel",
        },
        "ProcessChunksInParallel": _chunk_map(d, d.map_mode),
        "AggregateResults": {
            **step(
                "scm-batch-processor-aggregate-results",
                {"batch.$": "$.batch", "startedAt.$": "$$.Execution.StartTime"},
                outcome_fields,
                "$.outcome",
            ),
            "Next": "ToleratedFailureCheck",
        },
        "ToleratedFailureCheck": {
            "Type": "Choice",
            "Comment": "AggregateResults applied the tolerance; a failed batch is reported",
            "Choices": [
                {
                    "Variable": "$.outcome.alreadyNotified",
                    "BooleanEquals": True,
                    "Next": "BatchAlreadyReported",
                },
                {
                    "Variable": "$.outcome.failed",
                    "BooleanEquals": True,
                    "Next": "DescribeBatchFailure",
                },
            ],
            "Default": "DeploymentChoiceState",
        },
        "BatchAlreadyReported": {
            "Type": "Choice",
            "Comment": "Its messages went out before: the outcome stands, nothing is sent again",
            "Choices": [
                {
                    "Variable": "$.outcome.failed",
                    "BooleanEquals": True,
                    "Next": "RepeatBatchFailure",
                }
            ],
            "Default": "SuccessState",
        },
        "RepeatBatchFailure": {
            "Type": "Pass",
            "Parameters": {"failure.$": "$.outcome.failure"},
            "ResultPath": "$",
            "Next": "FailureName",
        },
        "DeploymentChoiceState": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.batch.job.deployment",
                    "StringEquals": "CORE",
                    "Next": "SendToSqsCore",
                }
            ],
            "Default": "SendToKafka",
        },
        "SendToKafka": {
            **step(
                "scm-batch-processor-send-to-kafka",
                {"batch.$": "$.batch", "outcome.$": "$.outcome"},
                completion,
                "$.completion",
            ),
            "Next": "SendToSQS",
        },
        "SendToSqsCore": {
            **step(
                "scm-batch-processor-send-to-sqs-core",
                {"batch.$": "$.batch", "outcome.$": "$.outcome"},
                completion,
                "$.completion",
            ),
            "Next": "SendToSQS",
        },
        "SendToSQS": {
            **_send_status(d.status_queue_url, "$.outcome.statusMessage", d.retry),
            "Catch": _catch("FailureCause"),
            "Next": "DescribeNotification",
        },
        "DescribeNotification": {
            "Type": "Pass",
            "Comment": "The ledger's notified marker, as a local run writes it",
            "Parameters": _notified_marker(
                StatusWord.SUBMITTED_FOR_PROCESSING, "$.completion.channel"
            ),
            "ResultPath": "$.marker",
            "Next": "RecordNotified",
        },
        "RecordNotified": {
            **_record_notified(d.retry, "$.marker"),
            "Comment": "So that starting the execution again sends nothing twice",
            # Every message went out: a marker that cannot be written costs a repeat, no more.
            "Catch": _catch("SuccessState", "$.recordError"),
            "Next": "SuccessState",
        },
        "SuccessState": {"Type": "Succeed", "OutputPath": "$.outcome"},
        **_failure_states(d),
    }
    return {
        "Comment": (
            "scm-batch: split a record file into chunks, process them on Lambda or AWS Batch, "
            "aggregate, deliver. Generated by 'scm-batch aws definition'; do not edit."
        ),
        "StartAt": "InitializeBatchProcessing",
        "States": states,
    }


_EXPR = re.compile(r'"\\u0000([^"\\]*)\\u0000"')


def render(definition: dict[str, Any], *, template: bool = False) -> str:
    """The definition as JSON text; for a template, ``Expr`` numbers become ``${…}``."""

    def encode_expr(value: object) -> str:
        if isinstance(value, Expr):
            if not template:
                raise ValueError(f"{value.text!r} has no value outside a template")
            return f"\0{value.text}\0"
        raise TypeError(f"cannot encode {type(value).__name__}")

    text = json.dumps(definition, indent=2, default=encode_expr, ensure_ascii=False)
    if template:
        text = _EXPR.sub(lambda m: "${" + m.group(1) + "}", text)
    return text + "\n"


def choose_map_mode(max_concurrent_chunks: int, requested: Literal["auto"] | MapMode) -> MapMode:
    """``auto``: an inline Map when its 40 iterations at a time are enough, else distributed."""
    if requested != "auto":
        return requested
    return "inline" if max_concurrent_chunks <= INLINE_MAP_MAX_CONCURRENCY else "distributed"
