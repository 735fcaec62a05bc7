"""A batch of 10,000 chunks on S3 that answers every request 20-50 ms late, as real S3 does: the
functions that read its whole ledger finish well inside their Lambda timeouts (issue 12).

validate-data (of a finished batch), calculate-chunks (of a batch taken up again) and
aggregate-results each read every chunk's receipt. One at a time, that took 420-520 s each here,
past the 300 s the first two are given; many at a time, 35-50 s (moto's own pace on two cores).
A new plan of 10,000 chunks reads the object at each of its cuts: 428 s one at a time, 32 s now.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest

from scm_batch import layout, lifecycle
from scm_batch.aws import handlers
from scm_batch.aws.handlers import Event
from scm_batch.clock import utc_timestamp
from scm_batch.config import parse_job_input
from scm_batch.ledger import Ledger, NotificationRecord, record_receipt
from scm_batch.model import (
    Attempt,
    ChunkFailure,
    ChunkPlan,
    ChunkResult,
    ChunkTask,
    PartCheck,
    StatusWord,
)
from scm_batch.records.validate import diagnose, error_kind
from scm_batch.settings import aws_settings
from scm_batch.stages.plan import calculate_chunks
from scm_batch.storage import LocalStorage, S3Options
from scm_batch.storage.s3 import S3Storage
from tests.integration.servers import FaultProxy, MotoServer

CHUNKS = 10_000
STALE_FAILURES = 1_000  # chunks that failed in an earlier execution, and were done since
BATCH = "wide"
INPUT = "in/records.jsonl"
LATENCY = (0.020, 0.050)
# Their Lambda timeouts are 300 s (validate-data, calculate-chunks) and 900 s (aggregate-results).
# The bounds leave room for a slow shared machine, and are below what each function's requests
# take one after another, at 20 ms each (the test checks that too).
BOUNDS = {"validate-data": 120.0, "calculate-chunks": 120.0, "aggregate-results": 200.0}
SETUP_THREADS = 8


def execution_input(bucket: str) -> dict[str, Any]:
    """The batch's execution input: one record per chunk."""
    return {
        "bucket": bucket,
        "file": INPUT,
        "customerId": "c1",
        "tenantId": "t1",
        "batchId": BATCH,
        "maxChunkSize": 1,
    }


def record_line(n: int) -> bytes:
    """One record, whose email is not valid: each chunk holds one, so each has one error."""
    record = {
        "id": f"r{n}",
        "name": "Someone",
        "email": f"not-an-email-{n}",
        "status": "active",
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }
    return msgspec.json.encode(record)


def receipt_and_parts(task: ChunkTask, line: bytes) -> tuple[ChunkResult, dict[str, bytes]]:
    """A chunk done, as its worker leaves it: an empty result part, an error part holding the
    chunk's one line, and the receipt naming both."""
    diagnosis = diagnose(msgspec.json.decode(line))
    entry = {
        "line": task.start_index + 1,
        "offset": task.byte_start,
        "category": diagnosis.category,
        "error": diagnosis.error,
        "fieldErrors": diagnosis.field_errors,
        "raw": line.decode(),
    }
    parts = {
        layout.result_key(BATCH, task.chunk_id): b"",
        layout.error_key(BATCH, task.chunk_id): msgspec.json.encode(entry) + b"\n",
    }
    result = ChunkResult(
        chunk_id=task.chunk_id,
        chunk_number=task.chunk_number,
        route=task.route,
        lines=1,
        blank_lines=0,
        valid_records=0,
        records_with_missing_fields=0,
        records_with_empty_fields=0,
        errors_by_category={diagnosis.category: 1},
        field_errors={f: {error_kind(m): 1} for f, m in diagnosis.field_errors.items()},
        bytes_read=task.byte_end - task.byte_start,
        result_key=layout.result_key(BATCH, task.chunk_id),
        error_key=layout.error_key(BATCH, task.chunk_id),
        duration_seconds=0.01,
        worker_peak_rss_bytes=1 << 20,
        attempts=[Attempt(attempt=1, status=StatusWord.CHUNK_PROCESSED, duration_seconds=0.01)],
        parts=[PartCheck(key=k, size=len(v), crc32=zlib.crc32(v)) for k, v in parts.items()],
    )
    return result, parts


def stale_failure(task: ChunkTask) -> ChunkFailure:
    return ChunkFailure(
        chunk_id=task.chunk_id,
        chunk_number=task.chunk_number,
        error_type="States.Timeout",
        message="the task timed out",
        transient=True,
    )


def each(call: Callable[[Any], object], items: list[Any]) -> None:
    """Setup's writes, straight to the server and many at a time (not the code under test)."""
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(call, items))


def planned_batch(payload: dict[str, Any], lines: list[bytes], local: Path) -> Ledger:
    """The batch planned, as CalculateChunks plans it, into 10,000 chunks of one line each; the
    input's lines are counted on a local copy (10,000 ranged reads of the server are slow)."""
    settings = aws_settings(os.environ)
    job = lifecycle.admit(parse_job_input(settings.job_defaults.fill(payload)), settings.run)
    ledger = lifecycle.open_ledger(job.bucket, job.batch_id, settings.run)
    ledger.storage.put_bytes(INPUT, b"\n".join(lines) + b"\n")
    (local / "in").mkdir(parents=True)
    (local / INPUT).write_bytes(b"\n".join(lines) + b"\n")
    source = lifecycle.initialize(job, ledger, settings.run)
    assert source is not None
    target = lifecycle.validate(job, ledger, settings.run)
    plan = calculate_chunks(job, source, LocalStorage(local), settings.run.plan)
    ledger.record_plan(msgspec.structs.replace(plan, delivery=target))
    return ledger


def record_chunks_done(ledger: Ledger, plan: ChunkPlan, lines: list[bytes]) -> None:
    """Every chunk done (parts, then receipt); the first chunks with a failure recorded by an
    earlier execution, superseded since."""

    def done(task: ChunkTask) -> None:
        result, parts = receipt_and_parts(task, lines[task.start_index])
        for key, data in parts.items():
            ledger.storage.put_bytes(key, data)
        record_receipt(ledger.storage, BATCH, result)

    each(lambda task: ledger.record_failure(stale_failure(task)), plan.chunks[:STALE_FAILURES])
    each(done, plan.chunks)


@pytest.fixture
def environment(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The functions' environment: the deployment's settings, S3 at the server itself."""
    for name in list(os.environ):
        if name.startswith(("SCM_BATCH_", "KAFKA_", "SQS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint)
    monkeypatch.setenv("SCM_BATCH_MIN_CHUNK_SIZE", "1")
    monkeypatch.setenv("SCM_BATCH_COUNT_RECORDS", "true")
    monkeypatch.setenv("SCM_BATCH_COMPLETION_OUTBOX_ONLY", "true")
    return monkeypatch


@pytest.fixture
def distant(moto: MotoServer) -> Iterator[FaultProxy]:
    """The server behind a proxy that holds back every request 20-50 ms."""
    proxy = FaultProxy(moto.endpoint, latency=LATENCY, seed=12)
    yield proxy
    proxy.close()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ten_thousand_chunks_fit_the_lambda_timeouts_with_s3_latency(
    s3: Any,
    environment: pytest.MonkeyPatch,
    distant: FaultProxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = f"wide-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    payload = execution_input(bucket)
    lines = [record_line(n) for n in range(CHUNKS)]
    direct = planned_batch(payload, lines, tmp_path / "local")
    plan = direct.stored_plan()
    assert plan.chunk_count == CHUNKS
    record_chunks_done(direct, plan, lines)

    # From here on the functions reach S3 through the proxy, as they reach it across a region.
    environment.setenv("AWS_ENDPOINT_URL_S3", distant.endpoint)
    receipt_get = f"GET /{bucket}/{layout.receipt_prefix(BATCH)}"

    def timed(name: str, handler: handlers.Handler, event: Event) -> Event:
        """The function's answer, once it read every receipt through the proxy within its
        bound; a bound that its requests, made one at a time, could not keep."""
        first = len(distant.requests)
        started = time.perf_counter()
        answer = handler(event, None)
        took = time.perf_counter() - started
        made = distant.requests[first:]
        receipts = sum(1 for request in made if request.startswith(receipt_get))
        with capsys.disabled():
            print(f"\n{name}: {took:.1f} s, {len(made):,} requests, {receipts:,} receipts read")
        assert receipts == CHUNKS
        assert len(made) * LATENCY[0] > BOUNDS[name]
        assert took < BOUNDS[name], f"{name} took {took:.0f} s"
        return answer

    # An execution taken up again once its chunks were done (the first one timed out after).
    initialized = handlers.read_s3(payload, None)
    validated = handlers.validate_data({"batch": initialized}, None)
    planned = timed("calculate-chunks", handlers.calculate_chunks, {"batch": validated})
    assert planned["plan"]["chunksDoneBefore"] == CHUNKS
    assert not direct.storage.list_keys(layout.failure_prefix(BATCH))  # superseded: forgotten
    started = {"batch": planned, "startedAt": utc_timestamp()}
    outcome = timed("aggregate-results", handlers.aggregate_results, started)
    assert outcome["chunksFailed"] == 0
    summary = direct.stored_summary()
    assert (summary.chunks_succeeded, summary.summary.total_errors) == (CHUNKS, CHUNKS)
    samples = direct.stored_validation().samples
    assert [s["lineNumber"] for s in samples] == list(range(1, 1001))
    # SendToSQS records the batch notified; an execution started again finds it finished.
    direct.record_notified(
        NotificationRecord(
            batch_status=StatusWord.SUBMITTED_FOR_PROCESSING, sent_at=utc_timestamp(), channels=[]
        )
    )
    timed("validate-data", handlers.validate_data, {"batch": initialized})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_new_plan_of_ten_thousand_chunks_fits_its_lambda_timeout_with_s3_latency(
    s3: Any,
    environment: pytest.MonkeyPatch,
    distant: FaultProxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Planning cuts the object at 9,999 line starts: one ranged read each, through the proxy.
    bucket = f"cut-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key=INPUT, Body=b"\n".join(record_line(n) for n in range(CHUNKS)) + b"\n"
    )
    payload = execution_input(bucket)
    environment.setenv("AWS_ENDPOINT_URL_S3", distant.endpoint)
    initialized = handlers.read_s3(payload, None)
    validated = handlers.validate_data({"batch": initialized}, None)
    first = len(distant.requests)
    started = time.perf_counter()
    planned = handlers.calculate_chunks({"batch": validated}, None)
    took = time.perf_counter() - started
    made = len(distant.requests) - first
    with capsys.disabled():
        print(f"\ncalculate-chunks (new plan): {took:.1f} s, {made:,} requests")
    assert planned["plan"]["chunkCount"] == CHUNKS
    assert made * LATENCY[0] > BOUNDS["calculate-chunks"]  # one at a time would not fit
    assert took < BOUNDS["calculate-chunks"], f"calculate-chunks took {took:.0f} s"
    # Each chunk starts where a line starts: the cuts were found, not guessed.
    plan = msgspec.json.decode(
        s3.get_object(Bucket=bucket, Key=layout.plan_key(BATCH))["Body"].read()
    )
    starts = [chunk["byteStart"] for chunk in plan["chunks"]]
    lengths = [len(record_line(n)) + 1 for n in range(CHUNKS - 1)]
    assert starts == [0, *itertools.accumulate(lengths)]


class ListsAGhost(S3Storage):
    """A bucket whose listings name one receipt it no longer holds: forgotten since (a rebuild)."""

    def list_keys(self, prefix: str) -> list[str]:
        return sorted([*super().list_keys(prefix), layout.receipt_key(BATCH, layout.chunk_id(3))])


def bare_receipt(n: int) -> ChunkResult:
    chunk_id = layout.chunk_id(n)
    return ChunkResult(
        chunk_id=chunk_id,
        chunk_number=n + 1,
        route="lambda",
        lines=1,
        blank_lines=0,
        valid_records=1,
        records_with_missing_fields=0,
        records_with_empty_fields=0,
        errors_by_category={},
        field_errors={},
        bytes_read=10,
        result_key=layout.result_key(BATCH, chunk_id),
        error_key=layout.error_key(BATCH, chunk_id),
        duration_seconds=0.01,
        worker_peak_rss_bytes=1 << 20,
    )


def test_receipts_read_together_come_in_order_without_the_unreadable_or_the_vanished(
    moto: MotoServer, s3: Any
) -> None:
    bucket = f"ghost-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    storage = ListsAGhost(bucket, S3Options(endpoint_url=moto.endpoint))
    count = 2 * storage.concurrent_requests  # more than are read at once
    for n in range(count):
        if n != 3:
            record_receipt(storage, BATCH, bare_receipt(n))
    unreadable = layout.receipt_key(BATCH, layout.chunk_id(7))
    storage.put_bytes(unreadable, b'{"chunkId": "chunk_0000')  # a write cut short
    done = Ledger(storage, BATCH).done()
    assert list(done) == [layout.chunk_id(n) for n in range(count) if n not in (3, 7)]
    assert done[layout.chunk_id(5)] == bare_receipt(5)
    assert not storage.exists(unreadable)  # dropped: that chunk is done again
