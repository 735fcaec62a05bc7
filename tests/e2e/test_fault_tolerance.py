"""Retries, tolerated failures and resume, with real worker processes and injected faults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest

from scm_batch.config import RunOptions
from scm_batch.errors import ExitCode, InputChangedError
from scm_batch.faults import parse_faults
from scm_batch.lifecycle import RunReport, resume_batch, run_batch
from scm_batch.model import ChunkResult, PlanOptions, StatusWord, Tolerance
from scm_batch.observe.status import batch_status
from scm_batch.records.generate import generate_file
from scm_batch.retry import RetryPolicy
from tests.conftest import Cli
from tests.helpers import job_input, plan_input

FAST_RETRY = RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05)
PROCESSED_AT = "2026-02-01T00:00:00.000Z"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "records.jsonl"
    generate_file(path, 20_000, seed=21, invalid_rate=0.004, malformed_rate=0.0005)
    return path


@pytest.fixture
def bucket_with(tmp_path: Path, source: Path) -> Path:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    shutil.copyfile(source, bucket / "records.jsonl")
    return bucket


def options(
    faults: str | None = None, *, workers: int = 2, tolerance: Tolerance | None = None
) -> RunOptions:
    return RunOptions(
        workers=workers,
        retry=FAST_RETRY,
        tolerance=tolerance or Tolerance(),
        plan=PlanOptions(min_chunk_size=1),
        faults=parse_faults(faults),
    )


def run(bucket: Path, faults: str | None = None, **kwargs: object) -> RunReport:
    job = job_input(bucket, "records.jsonl", max_concurrent_chunks=10, processed_at=PROCESSED_AT)
    return run_batch(job, options(faults, **kwargs))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, source: Path) -> dict[str, bytes]:
    bucket = tmp_path_factory.mktemp("reference")
    shutil.copyfile(source, bucket / "records.jsonl")
    assert run(bucket).exit_code == ExitCode.OK
    return parts(bucket)


def parts(bucket: Path) -> dict[str, bytes]:
    found = sorted(bucket.glob("results/b/*")) + sorted(bucket.glob("errors/b/*"))
    return {str(p.relative_to(bucket)): p.read_bytes() for p in found}


def debris(bucket: Path) -> list[Path]:
    return [p for p in bucket.rglob(".*") if p.name.endswith(".tmp")]


def manifest(bucket: Path, chunk: str) -> ChunkResult:
    return msgspec.json.decode(
        (bucket / f"metadata/b/chunks/{chunk}.json").read_bytes(), type=ChunkResult
    )


def test_a_worker_killed_mid_chunk_is_replaced_and_the_chunk_retried(
    bucket_with: Path, reference: dict[str, bytes]
) -> None:
    report = run(bucket_with, "chunk_000002=kill:1")
    assert report.exit_code == ExitCode.OK
    attempts = manifest(bucket_with, "chunk_000002").attempts
    assert [(a.attempt, a.status, a.error_type, a.transient) for a in attempts] == [
        (1, StatusWord.CHUNK_FAILED, "WorkerDiedError", True),
        (2, StatusWord.CHUNK_PROCESSED, None, None),
    ]
    assert "SIGKILL" in (attempts[0].message or "")
    assert [d.attempts for d in report.summary.chunk_details if d.chunk_id == "chunk_000002"] == [2]
    assert parts(bucket_with) == reference
    assert debris(bucket_with) == []


def test_a_transient_failure_recovers_on_the_second_attempt(
    bucket_with: Path, reference: dict[str, bytes]
) -> None:
    report = run(bucket_with, "chunk_000005=transient:1")
    assert report.exit_code == ExitCode.OK
    attempts = manifest(bucket_with, "chunk_000005").attempts
    assert [(a.attempt, a.error_type) for a in attempts] == [
        (1, "InjectedTransientError"),
        (2, None),
    ]
    assert report.summary.chunks_failed == 0
    assert parts(bucket_with) == reference
    assert debris(bucket_with) == []


def test_transient_failures_that_outlast_the_retries_fail_the_chunk(bucket_with: Path) -> None:
    report = run(bucket_with, "chunk_000005=transient:9", tolerance=Tolerance(count=1))
    assert report.exit_code == ExitCode.COMPLETED_WITH_TOLERATED_FAILURES
    (failure,) = report.summary.failed_chunks
    assert (failure.chunk_id, failure.error_type, failure.transient) == (
        "chunk_000005",
        "InjectedTransientError",
        True,
    )
    assert [a.attempt for a in failure.attempts] == [1, 2, 3]


def test_a_terminal_failure_beyond_tolerance_fails_fast(bucket_with: Path) -> None:
    report = run(bucket_with, "chunk_000000=terminal", workers=1)
    assert report.exit_code == ExitCode.CHUNKS_FAILED
    summary = report.summary
    assert summary.status == StatusWord.CHUNK_FAILED
    (failure,) = summary.failed_chunks
    assert (failure.chunk_id, failure.error_type, failure.transient, len(failure.attempts)) == (
        "chunk_000000",
        "InjectedTerminalError",
        False,
        1,
    )
    # One worker: at most the chunk it picked up next was already running; nothing else started.
    assert summary.chunks_succeeded <= 1
    assert summary.chunks_not_processed == 10 - 1 - summary.chunks_succeeded
    status = json.loads((bucket_with / "notifications/b/batch-proc.json").read_text())
    assert status["batchStatus"] == "SUBMISSION_FAILED"
    assert status["errorMessage"].startswith("1 of 10 chunks failed and ")
    assert not (bucket_with / "notifications/b/kafka.json").exists()
    assert debris(bucket_with) == []


def test_failures_within_tolerance_complete_the_batch_and_resume_finishes_it(
    bucket_with: Path, reference: dict[str, bytes]
) -> None:
    report = run(
        bucket_with, "chunk_000003=terminal,chunk_000007=terminal", tolerance=Tolerance(count=2)
    )
    assert report.exit_code == ExitCode.COMPLETED_WITH_TOLERATED_FAILURES
    summary = report.summary
    assert summary.status == StatusWord.COMPLETED
    assert [f.chunk_id for f in summary.failed_chunks] == ["chunk_000003", "chunk_000007"]
    assert (summary.chunks_succeeded, summary.chunks_failed, summary.chunks_not_processed) == (
        8,
        2,
        0,
    )
    assert (bucket_with / "notifications/b/kafka.json").exists()  # the batch completed

    state = batch_status(str(bucket_with), "b")
    assert (state.chunks_done, state.chunks_failed, state.chunks_pending) == (8, 2, 0)
    assert [f.chunk_id for f in state.failed_chunks] == ["chunk_000003", "chunk_000007"]

    resumed = resume_batch(str(bucket_with), "b", options())
    assert resumed.exit_code == ExitCode.OK
    assert resumed.summary.chunks_resumed == 8
    assert resumed.summary.failed_chunks == []
    assert parts(bucket_with) == reference
    assert batch_status(str(bucket_with), "b").chunks_failed == 0


def test_beyond_the_tolerated_percentage(bucket_with: Path) -> None:
    report = run(
        bucket_with,
        "chunk_000001=terminal,chunk_000002=terminal",
        tolerance=Tolerance(percentage=10.0),
    )
    assert report.exit_code == ExitCode.CHUNKS_FAILED  # 2 of 10 is 20 %
    assert {f.chunk_id for f in report.summary.failed_chunks} >= {"chunk_000001", "chunk_000002"}


def test_resume_refuses_an_input_that_changed(bucket_with: Path) -> None:
    assert run(bucket_with, "chunk_000004=terminal").exit_code == ExitCode.CHUNKS_FAILED
    with (bucket_with / "records.jsonl").open("ab") as out:
        out.write(b'{"appended": true}\n')
    with pytest.raises(InputChangedError, match="changed since batch 'b' was planned"):
        resume_batch(str(bucket_with), "b", options())


def test_the_only_worker_dying_is_replaced(bucket_with: Path, reference: dict[str, bytes]) -> None:
    report = run(bucket_with, "chunk_000000=kill:2", workers=1)
    assert report.exit_code == ExitCode.OK
    assert [a.error_type for a in manifest(bucket_with, "chunk_000000").attempts] == [
        "WorkerDiedError",
        "WorkerDiedError",
        None,
    ]
    assert parts(bucket_with) == reference


def test_shutdown_finishes_queued_chunks_even_when_a_worker_dies(bucket_with: Path) -> None:
    from scm_batch.errors import WorkerDiedError
    from scm_batch.executors.local import LocalExecutor
    from scm_batch.executors.worker import WorkerSettings

    _, plan = plan_input(
        bucket_with,
        job_input(bucket_with, "records.jsonl", max_concurrent_chunks=10),
        min_chunk_size=1,
    )
    settings = WorkerSettings(1 << 20, faults=parse_faults("chunk_000000=kill"))
    pool = LocalExecutor(1, settings)
    futures = [pool.submit(task) for task in plan.chunks[:3]]
    pool.shutdown(cancel=False)  # returns only when every queued chunk has run
    assert isinstance(futures[0].exception(timeout=0), WorkerDiedError)
    assert [f.result(timeout=0).chunk_id for f in futures[1:]] == ["chunk_000001", "chunk_000002"]


def test_a_finished_batch_is_reported_not_redone(bucket_with: Path) -> None:
    first = run(bucket_with)
    marker = bucket_with / "metadata/b/notified.json"
    sent = marker.read_bytes()
    again = run(bucket_with)
    assert again.already_complete
    assert again.exit_code == first.exit_code
    assert marker.read_bytes() == sent  # nothing re-sent


def test_a_critical_batch_is_final_too(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    generate_file(bucket / "records.jsonl", 5_000, seed=4, malformed_rate=0.05)
    assert run(bucket).exit_code == ExitCode.VALIDATION_CRITICAL
    sent = (bucket / "notifications/b/batch-proc.json").read_bytes()
    again = run(bucket)
    assert (again.already_complete, again.exit_code) == (True, ExitCode.VALIDATION_CRITICAL)
    assert (bucket / "notifications/b/batch-proc.json").read_bytes() == sent


def test_a_resumed_batch_never_reports_an_outcome_older_than_its_ledger(
    bucket_with: Path, reference: dict[str, bytes], cli: Cli
) -> None:
    # Session 1 completes with a tolerated failure and notifies; session 2 fixes the chunk but is
    # killed during aggregation; session 3 must aggregate afresh, not reuse session 1's outcome.
    args = [
        "run", "--bucket", str(bucket_with), "--file", "records.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", "b", "--max-concurrent-chunks", "10",
        "--min-chunk-size", "1", "--processed-at", PROCESSED_AT, "--retry-base-delay", "0.01",
        "--tolerated-failure-count", "1", "--progress", "none", "--json",
    ]  # fmt: skip
    first = cli(*args, env={"SCM_BATCH_FAULTS": "chunk_000003=terminal"})
    assert first.returncode == ExitCode.COMPLETED_WITH_TOLERATED_FAILURES, first.stderr
    first_id = json.loads((bucket_with / "notifications/b/batch-proc.json").read_text())[
        "notificationId"
    ]
    killed = cli(*args, env={"SCM_BATCH_FAULTS": "driver=during-aggregation"})
    assert killed.returncode < 0
    state = batch_status(str(bucket_with), "b")
    assert (state.phase, state.chunks_done, state.batch_status) == ("processing", 10, None)

    final = cli(*args)
    assert final.returncode == ExitCode.OK, final.stderr
    summary = json.loads(final.stdout)
    assert (summary["chunksFailed"], summary["failedChunks"]) == (0, [])
    assert summary["summary"]["totalRecordsProcessed"] == 20_000
    completion = json.loads((bucket_with / "notifications/b/kafka.json").read_text())
    assert completion["summary"]["totalRecordsProcessed"] == 20_000
    status = json.loads((bucket_with / "notifications/b/batch-proc.json").read_text())
    assert status["notificationId"] != first_id  # a different outcome is a different message
    assert parts(bucket_with) == reference
