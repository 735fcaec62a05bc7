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

from scm_batch import layout
from scm_batch._version import __version__
from scm_batch.clock import utc_timestamp
from scm_batch.model import (
    CompletionMessage,
    MessageOrigin,
    ResultLocation,
    RunSummary,
    StatusMessage,
    StatusWord,
)
from scm_batch.sinks.base import Notifier
from scm_batch.sinks.routing import STATUS_CHANNEL, completion_channel

SOURCE = "scm-batch"

# Notification ids are derived, not random, so a retried notification carries the same id.
_NOTIFICATION_NAMESPACE = uuid.UUID("6f3f3c1e-8d0a-5b7e-9a51-2c4d6e8f0a1b")


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


def failure_name(summary: RunSummary) -> str:
    """The error a failed batch fails its execution with, following :func:`failure_reason`."""
    if summary.status == StatusWord.CHUNK_FAILED:
        return "ChunksFailed"
    return "ValidationFailedCritical"


def completion_message(
    summary: RunSummary, bucket: str, now: datetime | None = None
) -> CompletionMessage:
    """``BATCH_COMPLETION_NOTIFICATION`` (SendToKafka / SendToSqsCore)."""
    return CompletionMessage(
        batch_id=summary.batch_id,
        customer_id=summary.customer_id,
        tenant_id=summary.tenant_id,
        deployment=summary.deployment,
        snapshot_id=summary.snapshot_id,
        summary=summary.summary,
        result_location=ResultLocation(bucket=bucket, key=layout.aggregated_key(summary.batch_id)),
        timestamp=utc_timestamp(now),
        metadata=MessageOrigin(source=SOURCE, version=__version__),
    )


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
) -> StatusMessage:
    """The ``batch-proc`` status message; every field has a value even when the run failed early."""
    return StatusMessage(
        batch_id=batch_id,
        batch_status=batch_status,
        customer_id=customer_id,
        notification_id=str(
            uuid.uuid5(_NOTIFICATION_NAMESPACE, f"{batch_id}\x00{batch_status}\x00{discriminator}")
        ),
        progress=progress,
        total_records_processed=total_records_processed,
        processing_time=processing_time,
        error_message=error_message,
    )


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where each notification of a run went."""

    channel: str
    location: str


def batch_status_message(summary: RunSummary) -> StatusMessage:
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


def send_completion(
    summary: RunSummary, notifier: Notifier, *, bucket: str, now: datetime | None = None
) -> Delivered | None:
    """``SendToKafka`` / ``SendToSqsCore``: the completion message of a batch that succeeded
    (``None``, nothing sent, for one that failed)."""
    if failure_reason(summary) is not None:
        return None
    channel = completion_channel(summary.deployment)
    return Delivered(channel, notifier.send(channel, completion_message(summary, bucket, now)))


def send_notifications(
    summary: RunSummary, notifier: Notifier, *, bucket: str, now: datetime | None = None
) -> list[Delivered]:
    """Send the completion and status messages for a finished run."""
    completion = send_completion(summary, notifier, bucket=bucket, now=now)
    status = Delivered(STATUS_CHANNEL, notifier.send(STATUS_CHANNEL, batch_status_message(summary)))
    return [status] if completion is None else [completion, status]
