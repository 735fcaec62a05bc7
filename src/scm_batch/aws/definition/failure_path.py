"""The failure path: how a failed batch is reported, and how the execution then fails::

    any step failing for good → FailureCause → IdentifyFailedBatch → FailureOf… → ReportFailure
    a batch beyond tolerance → DescribeBatchFailure → ReportFailure
    ReportFailure → FailureReported (→ RecordFailureNotified) → FailureName → FailureState

``ReportFailure`` sends a message built by ``Pass`` states from fields that exist on every path
(a Choice tests which do), so reporting a failure cannot itself fail on a missing field; and the
execution fails with the original error even if its report cannot be sent.
"""

from __future__ import annotations

from typing import Any

from scm_batch.aws.definition.resources import Resources
from scm_batch.aws.definition.tasks import (
    catch,
    if_present,
    notified_marker,
    record_notified,
    send_status,
)
from scm_batch.model import StatusWord

FAILURE_STATUS = StatusWord.SUBMISSION_FAILED.value
# The execution's error when the workflow itself failed (a States.* error: a timeout, a Map that
# could not read its items), with the original name and cause in its cause.
WORKFLOW_FAILURE = "WorkflowFailed"
# A function's unhandled error: the Lambda runtime's JSON envelope as the error's Cause.
LAMBDA_ERROR_ENVELOPE = '{"errorMessage"*'


def failure_states(r: Resources) -> dict[str, Any]:
    """Every state of the failure path, in the order the definition lists them."""
    return {
        **_cause_states(),
        **_batch_states(),
        **_report_states(r),
        **_fail_states(),
    }


def _cause_states() -> dict[str, Any]:
    """The caught error as ``$.failure``: its name, and a cause that is always there."""
    return {
        "FailureCause": {
            "Type": "Choice",
            "Comment": (
                "A caught error has an Error; its Cause may be missing, and a function's is the "
                "Lambda runtime's JSON envelope, of which the message is what matters"
            ),
            "Choices": [
                if_present(
                    "$.error.Cause", {"StringMatches": LAMBDA_ERROR_ENVELOPE}, "ParseFunctionError"
                ),
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
                if_present(
                    "$.failure.envelope.errorMessage", {"IsString": True}, "FailureOfFunction"
                )
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
    }


def _batch_states() -> dict[str, Any]:
    """Which batch failed, as far as the execution got to know it, and its failure message."""
    return {
        "IdentifyFailedBatch": {
            "Type": "Choice",
            "Comment": (
                "The checked input if the batch got that far, else the raw input's ids. A batch "
                "id that belongs to another batch, or that another run is running, is not "
                "reported: its status is that batch's, or that run's; nor is a finished batch "
                "whose damaged parts could not be rebuilt: its reported outcome stands."
            ),
            "Choices": [
                *(
                    {"Variable": "$.failure.error", "StringEquals": name, "Next": "FailureName"}
                    for name in ("BatchExistsError", "BatchBusyError", "RebuildFailedError")
                ),
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
    }


def _both_present(*paths: str) -> dict[str, Any]:
    return {"And": [{"Variable": p, "IsPresent": True} for p in paths]}


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


def _report_states(r: Resources) -> dict[str, Any]:
    """The failure message sent, and an aggregated batch's failure marked notified."""
    return {
        "DescribeBatchFailure": {
            "Type": "Pass",
            "Comment": (
                "AggregateResults built the failure message and named the failure; once it is "
                "sent, the batch is marked notified as a local run marks it"
            ),
            "Parameters": {
                "failure.$": "$.outcome.failure",
                "report": {"message.$": "$.outcome.statusMessage"},
                "marker": notified_marker(StatusWord.SUBMISSION_FAILED, "[]"),
            },
            "ResultPath": "$",
            "Next": "ReportFailure",
        },
        "ReportFailure": {
            **send_status(r.status_queue_url, "$.report.message", r.retry),
            # The execution fails with the original error even if its report cannot be sent.
            "Catch": catch("FailureName", "$.reportError"),
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
            **record_notified(r.retry, "$.marker", r.sse_kms_key),
            "Catch": catch("FailureName", "$.recordError"),
            "Next": "FailureName",
        },
    }


def _fail_states() -> dict[str, Any]:
    """The execution's own failure, under the original error's name where a Fail state can
    raise it."""
    return {
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
