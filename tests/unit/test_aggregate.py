"""AggregateResults: the verdict under the original thresholds, and the summary arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from scm_batch.model import (
    ChunkFailure,
    ChunkResult,
    StatusWord,
    Totals,
    ValidationThresholds,
)
from scm_batch.stages.aggregate import aggregate_results, judge
from scm_batch.stages.process import process_chunk
from tests.helpers import job_input, plan_input


def totals(
    records: int,
    errors: int = 0,
    missing: int = 0,
    empty: int = 0,
    malformed: int = 0,
    empty_records: int = 0,
) -> Totals:
    return Totals(
        lines=records,
        blank_lines=0,
        records=records,
        valid_records=records - errors,
        errors=errors,
        malformed_lines=malformed,
        empty_records=empty_records,
        records_with_missing_fields=missing,
        records_with_empty_fields=empty,
        bytes_read=0,
    )


@pytest.mark.parametrize(
    ("t", "verdict", "reason"),
    [
        (totals(100_000), StatusWord.VALIDATION_PASSED, None),
        (
            totals(100_000, errors=1_000),
            StatusWord.VALIDATION_FAILED,
            None,
        ),  # exactly 1 % is allowed
        (totals(100_000, errors=1_001), StatusWord.VALIDATION_FAILED_CRITICAL, "error rate"),
        (
            totals(100_000, errors=501, missing=501),
            StatusWord.VALIDATION_FAILED_CRITICAL,
            "missing-field rate",
        ),
        (totals(100_000, errors=500, missing=500), StatusWord.VALIDATION_FAILED, None),
        (
            totals(100_000, errors=501, empty=501),
            StatusWord.VALIDATION_FAILED_CRITICAL,
            "empty-field rate",
        ),
        (
            totals(100_000, errors=101, malformed=101),
            StatusWord.VALIDATION_FAILED_CRITICAL,
            "malformed lines 101 > 100",
        ),
        (totals(100_000, errors=100, malformed=100), StatusWord.VALIDATION_FAILED, None),
        (
            totals(10_000_000, errors=1_001, empty_records=1_001),
            StatusWord.VALIDATION_FAILED_CRITICAL,
            "empty records",
        ),
    ],
)
def test_verdicts(t: Totals, verdict: StatusWord, reason: str | None) -> None:
    status, reasons = judge(t, ValidationThresholds())
    assert status == verdict
    if reason is None:
        assert reasons == []
    else:
        assert len(reasons) == 1
        assert reasons[0].startswith(reason)


def test_summary_samples_and_failures(bucket: Path) -> None:
    lines = []
    for n in range(3300):
        email = "bad" if n % 2 else f"u{n}@example.com"
        lines.append(
            f'{{"id":"R{n}","name":"Name","email":"{email}","status":"active",'
            f'"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z"}}'
        )
    (bucket / "in.jsonl").write_text("\n".join(lines) + "\n")
    storage, plan = plan_input(bucket, job_input(bucket, max_concurrent_chunks=3), min_chunk_size=1)
    assert plan.chunk_count == 3
    results: list[ChunkResult] = [process_chunk(t, storage=storage) for t in plan.chunks[:2]]
    failure = ChunkFailure(
        chunk_id="chunk_000002",
        chunk_number=3,
        error_type="StorageError",
        message="disk full",
        transient=True,
    )
    now = datetime.now(UTC)
    summary, report = aggregate_results(
        plan,
        list(reversed(results)),
        [failure],
        storage=storage,
        started_at=now,
        finished_at=now,
        elapsed_seconds=2.0,
    )
    assert summary.status == StatusWord.CHUNK_FAILED
    assert (summary.chunks_total, summary.chunks_succeeded, summary.chunks_failed) == (3, 2, 1)
    assert summary.summary.total_records_processed == 2200
    assert summary.summary.total_errors == 1100
    assert summary.summary.success_rate == 50.0
    assert summary.summary.records_per_second == 1100.0
    assert summary.result_keys == ["results/b/chunk_000000.jsonl", "results/b/chunk_000001.jsonl"]
    failed = summary.chunk_details[2]
    assert (failed.status, failed.error_type, failed.message) == (
        StatusWord.CHUNK_FAILED,
        "StorageError",
        "disk full",
    )
    assert summary.field_errors == {"email": {"invalid": 1100}}

    # At most 1000 samples, the first ones in file order, in the contract's shape.
    assert report.samples_truncated
    assert len(report.samples) == 1000
    assert [s["lineNumber"] for s in report.samples[:3]] == [2, 4, 6]
    assert report.samples[0]["record"] == msgspec.json.decode(lines[1])
    assert report.validation_status == StatusWord.VALIDATION_FAILED_CRITICAL
    assert report.error_rate == 0.5


def test_an_invalid_first_record_after_a_byte_order_mark_is_sampled(bucket: Path) -> None:
    bad = (
        '{"id":"R0","name":"Name","email":"bad","status":"active",'
        '"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z"}'
    )
    (bucket / "in.jsonl").write_bytes(b"\xef\xbb\xbf" + bad.encode() + b"\n")
    storage, plan = plan_input(bucket, job_input(bucket))
    results = [process_chunk(t, storage=storage) for t in plan.chunks]
    now = datetime.now(UTC)
    _, report = aggregate_results(
        plan, results, [], storage=storage, started_at=now, finished_at=now, elapsed_seconds=1.0
    )
    assert report.samples[0]["record"] == msgspec.json.decode(bad)
    assert report.samples[0]["fieldErrors"] == {"email": "invalid: not an email address"}
