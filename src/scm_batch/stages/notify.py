"""Notifications: the completion message and the status message, in the contract's shapes.

``DeploymentChoiceState``: a ``CORE`` deployment sends its completion message to SQS Core, any
other to Kafka. Then ``SendToSQS`` puts the status message on the ``batch-proc`` queue. A batch
that failed (more chunks failed than tolerated, or a critical validation verdict) sends no
completion message, only the status message's failure form (``ReportFailure``) with an
``errorMessage``. Failed chunks within the tolerance do not make a batch fail: it completes, and
its summary lists them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scm_batch import layout
from scm_batch._version import __version__
from scm_batch.clock import utc_timestamp
from scm_batch.model import Deployment, RunSummary, StatusWord
from scm_batch.sinks.base import Notifier

KAFKA_CHANNEL = "kafka"
SQS_CORE_CHANNEL = "sqs_core"
STATUS_CHANNEL = "batch-proc"
SOURCE = "scm-batch"

# Notification ids are derived, not random, so a retried notification carries the same id.
_NOTIFICATION_NAMESPACE = uuid.UUID("6f3f3c1e-8d0a-5b7e-9a51-2c4d6e8f0a1b")


def completion_channel(deployment: Deployment) -> str:
    """``DeploymentChoiceState``: where the completion message goes."""
    return SQS_CORE_CHANNEL if deployment == "CORE" else KAFKA_CHANNEL


def failure_reason(summary: RunSummary) -> str | None:
    """Why a finished run counts as failed, or ``None`` when it succeeded."""
    if summary.status == StatusWord.CHUNK_FAILED:
        reason = f"{summary.chunks_failed} of {summary.chunks_total} chunks failed"
        if summary.chunks_not_processed:
            reason += f" and {summary.chunks_not_processed} were not started"
        return reason
    if summary.validation_status == StatusWord.VALIDATION_FAILED_CRITICAL:
        return f"validation failed critically; see {summary.validation_key}"
    return None


def completion_message(
    summary: RunSummary, bucket: str, now: datetime | None = None
) -> dict[str, Any]:
    """``BATCH_COMPLETION_NOTIFICATION`` (SendToKafka / SendToSqsCore)."""
    s = summary.summary
    return {
        "type": "BATCH_COMPLETION_NOTIFICATION",
        "batchId": summary.batch_id,
        "customerId": summary.customer_id,
        "tenantId": summary.tenant_id,
        "deployment": summary.deployment,
        "snapshotId": summary.snapshot_id,
        "status": StatusWord.COMPLETED.value,
        "summary": {
            "totalRecordsProcessed": s.total_records_processed,
            "totalErrors": s.total_errors,
            "successRate": s.success_rate,
            "processingTime": s.processing_time,
            "recordsPerSecond": s.records_per_second,
        },
        "resultLocation": {"bucket": bucket, "key": layout.aggregated_key(summary.batch_id)},
        "timestamp": utc_timestamp(now),
        "metadata": {"source": SOURCE, "version": __version__},
    }


def status_message(
    *,
    batch_id: str,
    customer_id: str | None,
    batch_status: StatusWord,
    progress: int,
    total_records_processed: int,
    processing_time: float,
    discriminator: str,
    error_message: str | None = None,
) -> dict[str, Any]:
    """The ``batch-proc`` status message; every field has a value even when the run failed early."""
    message: dict[str, Any] = {
        "batchId": batch_id,
        "batchStatus": batch_status.value,
        "customerId": customer_id,
        "notificationId": str(
            uuid.uuid5(_NOTIFICATION_NAMESPACE, f"{batch_id}\x00{batch_status}\x00{discriminator}")
        ),
        "progress": progress,
        "totalRecordsProcessed": total_records_processed,
        "processingTime": processing_time,
    }
    if error_message is not None:
        message["errorMessage"] = error_message
    return message


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where each notification of a run went."""

    channel: str
    location: str


def batch_status_message(summary: RunSummary) -> dict[str, Any]:
    """The ``batch-proc`` status message of a finished batch: ``SUBMITTED_FOR_PROCESSING``, or
    the failure form with its ``errorMessage`` (``ReportFailure``)."""
    progress = (
        round(100 * summary.chunks_succeeded / summary.chunks_total) if summary.chunks_total else 0
    )
    reason = failure_reason(summary)
    return status_message(
        batch_id=summary.batch_id,
        customer_id=summary.customer_id,
        batch_status=(
            StatusWord.SUBMITTED_FOR_PROCESSING if reason is None else StatusWord.SUBMISSION_FAILED
        ),
        progress=progress,
        total_records_processed=summary.summary.total_records_processed,
        processing_time=summary.summary.processing_time,
        # Same batch and same outcome: same id, so consumers can drop a re-sent duplicate; a
        # resumed batch whose outcome changed gets a new id.
        discriminator=(
            f"{summary.processed_at}|{summary.status}|{summary.chunks_succeeded}|"
            f"{summary.chunks_failed}|{summary.summary.total_records_processed}"
        ),
        error_message=reason,
    )


def send_notifications(
    summary: RunSummary, notifier: Notifier, *, bucket: str, now: datetime | None = None
) -> list[Delivered]:
    """Send the completion and status messages for a finished run."""
    delivered: list[Delivered] = []
    if failure_reason(summary) is None:
        channel = completion_channel(summary.deployment)
        location = notifier.send(channel, completion_message(summary, bucket, now))
        delivered.append(Delivered(channel, location))
    status = batch_status_message(summary)
    delivered.append(Delivered(STATUS_CHANNEL, notifier.send(STATUS_CHANNEL, status)))
    return delivered
