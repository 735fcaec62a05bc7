"""The main path, around the Map over chunks (:mod:`~scm_batch.aws.definition.chunk_map`)::

    InitializeBatchProcessing → ValidateBatchConfig → CalculateChunks (⇄ PlanOnBatch)
      → ChunksLeftCheck → ProcessChunksInParallel → AggregateResults → ToleratedFailureCheck
          ├ within tolerance → DeploymentChoiceState → SendToKafka | SendToSqsCore
          │                    → SendToSQS (status message) → RecordNotified → SuccessState
          └ beyond it ───────→ DescribeBatchFailure (the failure path)

``AggregateResults`` applies the deployment's tolerance exactly as the local run does, and
``ToleratedFailureCheck`` acts on its verdict. A step failing for good goes to ``FailureCause``.
Each Task keeps the fields of its function's answer that the answer's type declares
(:func:`scm_batch.aws.payloads.selector`).
"""

from __future__ import annotations

from typing import Any

from scm_batch.aws.definition.chunk_map import plan_on_batch_state
from scm_batch.aws.definition.resources import LAMBDA_MAX_TIMEOUT, Resources
from scm_batch.aws.definition.tasks import (
    TASK_TIMEOUT_MARGIN,
    catch,
    if_present,
    lambda_retry,
    lambda_task,
    notified_marker,
    record_notified,
    send_status,
)
from scm_batch.aws.payloads import (
    CompletionSent,
    Initialized,
    Outcome,
    Planned,
    Validated,
    selector,
)
from scm_batch.model import StatusWord

# The configured lambda_timeout is update-records' alone; these steps allow Lambda's maximum.
STEP_TIMEOUT = LAMBDA_MAX_TIMEOUT + TASK_TIMEOUT_MARGIN


def _step(
    r: Resources,
    name: str,
    payload: dict[str, Any] | str,
    selected: dict[str, str],
    result: str,
    next_state: str,
    *,
    killed: bool = True,
) -> dict[str, Any]:
    """A contract function's Task on the main path: a failure for good is reported; a function
    Lambda killed is tried again unless ``killed`` is false."""
    return {
        **lambda_task(
            r.lambda_arns[name],
            payload,
            selected,
            result_path=result,
            timeout=STEP_TIMEOUT,
            retry=lambda_retry(r.retry, killed=killed),
        ),
        "Catch": catch("FailureCause"),
        "Next": next_state,
    }


def _on_batch(state: dict[str, Any]) -> dict[str, Any]:
    """CalculateChunks, sending an input it cannot plan in its time to ``PlanOnBatch``."""
    to_batch = {"ErrorEquals": ["PlanOnBatchError"], "ResultPath": None, "Next": "PlanOnBatch"}
    return {**state, "Catch": [to_batch, *state["Catch"]]}


def preparation_states(r: Resources) -> dict[str, Any]:
    """From the execution input to the plan: read, checked and planned (by an AWS Batch job when
    the input is too big for CalculateChunks to read whole: it raises PlanOnBatchError)."""
    plan_payload: dict[str, Any] = {"batch.$": "$.batch", "executionId.$": "$$.Execution.Id"}
    if r.map_mode == "inline":
        plan_payload["maxInlineChunks"] = r.max_inline_chunks
    return {
        "InitializeBatchProcessing": _step(
            r,
            "scm-batch-processor-read-s3",
            "$",  # the execution input (or the S3 event) is the function's event
            selector(Initialized),
            "$.batch",
            "ValidateBatchConfig",
        ),
        "ValidateBatchConfig": _step(
            r,
            "scm-batch-processor-validate-data",
            # The execution takes the batch's lease: one run of a batch at a time.
            {"batch.$": "$.batch", "executionId.$": "$$.Execution.Id"},
            selector(Validated),
            "$.batch",
            "CalculateChunks",
        ),
        "CalculateChunks": _on_batch(
            _step(
                r,
                "scm-batch-processor-calculate-chunks",
                plan_payload,
                selector(Planned),
                "$.batch",
                "ChunksLeftCheck",
            )
        ),
        "PlanOnBatch": plan_on_batch_state(r, "CalculateChunks", "FailureCause"),
        "ChunksLeftCheck": {
            "Type": "Choice",
            "Comment": (
                "A batch done and notified before (started again) is not rerun, unless parts of "
                "it were found damaged: those chunks are rebuilt, and nothing is sent again"
            ),
            "Choices": [
                if_present(
                    "$.batch.plan.chunksToRebuild",
                    {"NumericGreaterThan": 0},
                    "ProcessChunksInParallel",
                ),
                if_present(
                    "$.batch.plan.alreadyNotified", {"BooleanEquals": True}, "AggregateResults"
                ),
            ],
            "Default": "ProcessChunksInParallel",
        },
    }


def verdict_states(r: Resources) -> dict[str, Any]:
    """The results aggregated, and the way on chosen from the verdict."""
    return {
        "AggregateResults": _step(
            r,
            "scm-batch-processor-aggregate-results",
            {"batch.$": "$.batch", "startedAt.$": "$$.Execution.StartTime"},
            selector(Outcome),
            "$.outcome",
            "ToleratedFailureCheck",
        ),
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
    }


def delivery_states(r: Resources) -> dict[str, Any]:
    """A successful batch's completion sent by its deployment's channel, its status message
    sent, and the batch marked notified."""
    completion = selector(CompletionSent)
    sent = {"batch.$": "$.batch", "outcome.$": "$.outcome"}
    return {
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
        # A killed sender may have sent already: not tried again (the completion goes once).
        "SendToKafka": _step(
            r,
            "scm-batch-processor-send-to-kafka",
            sent,
            completion,
            "$.completion",
            "SendToSQS",
            killed=False,
        ),
        "SendToSqsCore": _step(
            r,
            "scm-batch-processor-send-to-sqs-core",
            sent,
            completion,
            "$.completion",
            "SendToSQS",
            killed=False,
        ),
        "SendToSQS": {
            **send_status(r.status_queue_url, "$.outcome.statusMessage", r.retry),
            "Catch": catch("FailureCause"),
            "Next": "DescribeNotification",
        },
        "DescribeNotification": {
            "Type": "Pass",
            "Comment": "The ledger's notified marker, as a local run writes it",
            "Parameters": notified_marker(
                StatusWord.SUBMITTED_FOR_PROCESSING, "$.completion.channel"
            ),
            "ResultPath": "$.marker",
            "Next": "RecordNotified",
        },
        "RecordNotified": {
            **record_notified(r.retry, "$.marker", r.sse_kms_key),
            "Comment": "So that starting the execution again sends nothing twice",
            # Every message went out: a marker that cannot be written costs a repeat, no more.
            "Catch": catch("SuccessState", "$.recordError"),
            "Next": "SuccessState",
        },
        "SuccessState": {"Type": "Succeed", "OutputPath": "$.outcome"},
    }
