"""The Map over the plan's chunk items (``ProcessChunksInParallel``) and the iteration it runs
for each item::

    ProcessChunk (Choice on the item's route) → ProcessWithLambda | SubmitBatchJob
    a Lambda killed for time or memory → SubmitBatchJob (the chunk's next attempt)
    a failure after retries → RecordChunkFailure → SaveChunkFailure (into the ledger)

A distributed Map reads the items from S3, any number of them; an inline Map, for small
deployments, takes them from the state and runs at most 40 iterations at a time
(:func:`choose_map_mode`). Iterations output nothing and the Map discards its result array: the
ledger in the bucket is the record.
"""

from __future__ import annotations

from typing import Any, Literal

from scm_batch import layout
from scm_batch.aws.batch_planning import PLAN_COMMAND
from scm_batch.aws.definition.resources import MapMode, Resources, plus, times
from scm_batch.aws.definition.tasks import (
    LAMBDA_KILLED,
    SERVICE_CALL_TIMEOUT,
    TASK_TIMEOUT_MARGIN,
    catch,
    encrypted,
    lambda_retry,
    lambda_task,
    retrier,
    service_retry,
)
from scm_batch.aws.payloads import ChunkDone, selector
from scm_batch.model import StatusWord

INLINE_MAP_MAX_CONCURRENCY = 40  # an inline Map runs at most 40 iterations at a time
BATCH_QUEUE_ALLOWANCE = 3600  # time a job may wait in its queue for capacity
BATCH_API_ERRORS = [
    "Batch.AWSBatchException",
    "Batch.ServerException",
    "Batch.SdkClientException",
]


def choose_map_mode(max_concurrent_chunks: int, requested: Literal["auto"] | MapMode) -> MapMode:
    """``auto``: an inline Map when its 40 iterations at a time are enough, else distributed."""
    if requested != "auto":
        return requested
    return "inline" if max_concurrent_chunks <= INLINE_MAP_MAX_CONCURRENCY else "distributed"


def chunk_map(r: Resources, mode: MapMode) -> dict[str, Any]:
    """``ProcessChunksInParallel``: the Map state, in the given mode."""
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemSelector": {"chunk.$": "$$.Map.Item.Value", "bucket.$": "$.batch.plan.bucket"},
        "ItemProcessor": _chunk_processor(r, mode),
        "ResultPath": None,
        "Catch": catch("FailureCause"),
        "Next": "AggregateResults",
    }
    if mode == "distributed":
        state["ItemReader"] = {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket.$": "$.batch.plan.bucket", "Key.$": "$.batch.plan.itemsKey"},
        }
        state["MaxConcurrency"] = r.max_concurrent_chunks
    else:
        state["ItemsPath"] = "$.batch.plan.items"
        limit = r.max_concurrent_chunks
        state["MaxConcurrency"] = (
            min(limit, INLINE_MAP_MAX_CONCURRENCY) if isinstance(limit, int) else limit
        )
    return state


def _chunk_processor(r: Resources, mode: MapMode) -> dict[str, Any]:
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
            "ProcessWithLambda": _process_with_lambda(r),
            "SubmitBatchJob": _submit_batch_job(r),
            **_chunk_failure_states(r),
        },
    }


def _process_with_lambda(r: Resources) -> dict[str, Any]:
    update_records = lambda_task(
        r.lambda_arns["scm-batch-processor-update-records"],
        {"chunk.$": "$.chunk", "attempt.$": "$$.State.RetryCount"},
        selector(ChunkDone, "chunkId", "records", "doneBefore"),
        result_path="$.result",
        timeout=plus(r.lambda_timeout, TASK_TIMEOUT_MARGIN),
        retry=lambda_retry(r.retry, killed=False),
    )
    return {
        **update_records,
        "OutputPath": None,
        "Catch": [
            # Killed for time or memory: the chunk is too big for Lambda, its next attempt is a
            # Batch job (whose retry strategy bounds the attempts from there).
            {"ErrorEquals": LAMBDA_KILLED, "ResultPath": "$.error", "Next": "SubmitBatchJob"},
            *catch("RecordChunkFailure"),
        ],
        "End": True,
    }


def _submit_batch_job(r: Resources) -> dict[str, Any]:
    batch_timeout = plus(times(r.batch_job_timeout, r.batch_job_attempts), BATCH_QUEUE_ALLOWANCE)
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": {
            "JobName.$": "States.Format('scm-batch-{}', $.chunk.chunkId)",
            "JobQueue": r.batch_job_queue,
            "JobDefinition": r.batch_job_definition,
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
        "Retry": [retrier(BATCH_API_ERRORS, r.retry, attempts=max(3, r.retry.attempts))],
        "Catch": catch("RecordChunkFailure"),
        "End": True,
    }


def plan_on_batch_state(r: Resources, next_state: str, failed: str) -> dict[str, Any]:
    """``PlanOnBatch``: the chunk job definition running ``scm-batch aws plan-input`` for an
    input too big to plan in CalculateChunks (:mod:`scm_batch.aws.batch_planning`)."""
    batch_timeout = plus(times(r.batch_job_timeout, r.batch_job_attempts), BATCH_QUEUE_ALLOWANCE)
    command = ", ".join(f"'{word}'" for word in PLAN_COMMAND[:3])
    return {
        "Type": "Task",
        "Comment": "An AWS Batch job plans (stages) the input; CalculateChunks then answers",
        "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": {
            # Not named after the batch: a batch id may hold "." and Batch job names may not.
            "JobName": "scm-batch-plan",
            "JobQueue": r.batch_job_queue,
            "JobDefinition": r.batch_job_definition,
            "ContainerOverrides": {
                "Command.$": (
                    f"States.Array({command}, '--bucket', $.batch.job.bucket, "
                    "'--batch-id', $.batch.job.batchId)"
                )
            },
        },
        "ResultPath": None,
        "TimeoutSeconds": batch_timeout,
        "Retry": [retrier(BATCH_API_ERRORS, r.retry, attempts=max(3, r.retry.attempts))],
        "Catch": catch(failed),
        "Next": next_state,
    }


def _chunk_failure_states(r: Resources) -> dict[str, Any]:
    """``RecordChunkFailure`` → ``SaveChunkFailure``: the failure into the ledger, where the
    local run records it, and the Map goes on."""
    failure_key = layout.failure_key("{}", "{}")  # the ledger's own layout, with the ids to fill
    return {
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
            "Parameters": encrypted(
                {
                    "Bucket.$": "$.failure.Bucket",
                    "Key.$": "$.failure.Key",
                    "Body.$": "States.JsonToString($.failure.Body)",
                    "ContentType": "application/json",
                },
                r.sse_kms_key,
            ),
            "ResultPath": None,
            "OutputPath": None,
            "TimeoutSeconds": SERVICE_CALL_TIMEOUT,
            "Retry": service_retry(r.retry),
            "End": True,
        },
    }
