"""Completion and status messages: contract shapes, the deployment choice, the failure form."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scm_batch.model import ChunkFailure, Deployment, RunSummary, StatusWord
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.stages.aggregate import aggregate_results
from scm_batch.stages.notify import send_notifications, status_message
from scm_batch.stages.process import process_chunk
from scm_batch.storage import LocalStorage
from tests.helpers import job_input, plan_input

RECORD = (
    '{"id":"R1","name":"Name","email":"a@example.com","status":"active",'
    '"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z"}\n'
)


def finished(bucket: Path, deployment: Deployment, *, fail_one: bool = False) -> RunSummary:
    (bucket / "in.jsonl").write_text(RECORD * 40)
    job = job_input(
        bucket,
        customer_id="cust",
        tenant_id="ten",
        batch_id="b1",
        snapshot_id="snap-1",
        deployment=deployment,
        max_concurrent_chunks=4,
    )
    storage, plan = plan_input(bucket, job, min_chunk_size=1)
    tasks = plan.chunks[1:] if fail_one else plan.chunks
    results = [process_chunk(t, storage=storage) for t in tasks]
    failures = (
        [
            ChunkFailure(
                chunk_id="chunk_000000",
                chunk_number=1,
                error_type="X",
                message="m",
                transient=False,
            )
        ]
        if fail_one
        else []
    )
    now = datetime.now(UTC)
    summary, _ = aggregate_results(
        plan,
        results,
        failures,
        storage=storage,
        started_at=now,
        finished_at=now,
        elapsed_seconds=1.0,
    )
    return summary


def outbox(bucket: Path) -> dict[str, dict[str, object]]:
    folder = bucket / "notifications" / "b1"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


@pytest.mark.parametrize(("deployment", "channel"), [("WORKSPACE", "kafka"), ("CORE", "sqs_core")])
def test_completion_goes_where_the_deployment_says(
    bucket: Path, deployment: Deployment, channel: str
) -> None:
    summary = finished(bucket, deployment)
    sent = send_notifications(
        summary, OutboxNotifier(LocalStorage(bucket), "b1"), bucket="my-bucket"
    )
    assert [s.channel for s in sent] == [channel, "batch-proc"]
    messages = outbox(bucket)
    assert set(messages) == {channel, "batch-proc"}
    completion = messages[channel]
    assert set(completion) == {
        "type", "batchId", "customerId", "tenantId", "deployment", "snapshotId", "status",
        "summary", "resultLocation", "timestamp", "metadata",
    }  # fmt: skip
    assert completion["type"] == "BATCH_COMPLETION_NOTIFICATION"
    assert completion["status"] == "COMPLETED"
    assert completion["deployment"] == deployment
    assert completion["snapshotId"] == "snap-1"
    assert completion["resultLocation"] == {
        "bucket": "my-bucket",
        "key": "final-results/b1/aggregated-results.json",
    }
    assert completion["summary"] == {
        "totalRecordsProcessed": 40,
        "totalErrors": 0,
        "successRate": 100.0,
        "processingTime": 1.0,
        "recordsPerSecond": 40.0,
    }
    status = messages["batch-proc"]
    assert status["batchStatus"] == "SUBMITTED_FOR_PROCESSING"
    assert status["progress"] == 100
    assert "errorMessage" not in status
    uuid.UUID(str(status["notificationId"]))


def test_a_failed_run_sends_only_the_failure_status(bucket: Path) -> None:
    summary = finished(bucket, "WORKSPACE", fail_one=True)
    send_notifications(summary, OutboxNotifier(LocalStorage(bucket), "b1"), bucket="my-bucket")
    messages = outbox(bucket)
    assert set(messages) == {"batch-proc"}
    status = messages["batch-proc"]
    assert status["batchStatus"] == "SUBMISSION_FAILED"
    assert status["errorMessage"] == "1 of 4 chunks failed"
    assert status["progress"] == 75


def test_status_message_never_needs_more_than_a_batch_id() -> None:
    fields: dict[str, Any] = {
        "batch_id": "b",
        "customer_id": None,
        "batch_status": StatusWord.SUBMISSION_FAILED,
        "progress": 0,
        "total_records_processed": 0,
        "processing_time": 0.0,
        "discriminator": "",
    }
    message = status_message(**fields, error_message="bucket missing")
    assert message.customer_id is None
    assert message.error_message == "bucket missing"
    again = status_message(**fields)
    assert again.notification_id == message.notification_id  # retries carry the same id
