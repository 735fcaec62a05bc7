"""The whole pipeline on one machine, through the command line and real worker processes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from scm_batch.config import RunOptions
from scm_batch.executors.base import ChunkExecutor
from scm_batch.executors.local import LocalExecutor
from scm_batch.executors.worker import WorkerSettings
from scm_batch.lifecycle import run_batch
from scm_batch.model import PlanOptions
from scm_batch.records.generate import GenerateStats, generate_file
from tests.conftest import Cli
from tests.helpers import job_input

RECORDS = 200_000
PROCESSED_AT = "2026-01-31T12:00:00.000Z"


def run_flags(bucket: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--bucket", str(bucket),
        "--file", "input/records.jsonl",
        "--customer-id", "cust-1",
        "--tenant-id", "tenant-9",
        "--batch-id", "batch-e2e",
        "--snapshot-id", "snap-1",
        "--progress", "log",
        *extra,
    ]  # fmt: skip


def part_files(bucket: Path, kind: str) -> list[Path]:
    return sorted((bucket / kind / "batch-e2e").glob("chunk_*.jsonl"))


def concatenated(bucket: Path, kind: str) -> bytes:
    return b"".join(p.read_bytes() for p in part_files(bucket, kind))


def line_offsets(data: bytes) -> list[int]:
    offsets, position = [], 0
    for line in data.split(b"\n")[:-1]:
        offsets.append(position)
        position += len(line) + 1
    return offsets


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateStats]:
    path = tmp_path_factory.mktemp("input") / "records.jsonl"
    stats = generate_file(path, RECORDS, seed=7, invalid_rate=0.004, malformed_rate=0.0003)
    return path, stats


def bucket_with_input(root: Path, source: Path) -> Path:
    bucket = root / "bucket"
    (bucket / "input").mkdir(parents=True)
    shutil.copyfile(source, bucket / "input" / "records.jsonl")
    return bucket


@pytest.mark.slow
def test_every_line_accounted_for_and_reruns_identical(
    cli: Cli, tmp_path: Path, generated: tuple[Path, GenerateStats]
) -> None:
    source, stats = generated
    assert stats.invalid > 0
    assert stats.malformed > 0
    first = bucket_with_input(tmp_path / "one", source)
    result = cli(*run_flags(first, "--workers", "2", "--processed-at", PROCESSED_AT))
    assert result.returncode == 0, result.stderr
    assert "aggregated results:" in result.stdout
    assert "progress:" in result.stderr or "done:" in result.stderr

    # Every input line is in exactly one place: a result record (its id carries the line's byte
    # offset) or an error entry (which records the offset).
    data = source.read_bytes()
    expected = line_offsets(data)
    results = [msgspec.json.decode(line) for line in concatenated(first, "results").splitlines()]
    errors = [msgspec.json.decode(line) for line in concatenated(first, "errors").splitlines()]
    seen = [int(r["id"][-12:], 16) for r in results] + [e["offset"] for e in errors]
    assert len(seen) == len(expected) == RECORDS
    assert sorted(seen) == expected
    assert len(results) == stats.valid
    assert len(errors) == stats.invalid + stats.malformed
    assert sum(e["category"] == "malformed" for e in errors) == stats.malformed
    line_number = {offset: number for number, offset in enumerate(expected, start=1)}
    for e in errors:
        raw = e["raw"].encode()
        assert data[e["offset"] : e["offset"] + len(raw) + 1] == raw + b"\n"
        assert e["line"] == line_number[e["offset"]]
    assert all(r["customerId"] == "cust-1" and r["processedAt"] == PROCESSED_AT for r in results)
    assert len({r["id"] for r in results}) == len(results)
    assert len({r["gssId"] for r in results}) == len(results)

    aggregated = json.loads((first / "final-results/batch-e2e/aggregated-results.json").read_text())
    assert aggregated["status"] == "COMPLETED"
    assert aggregated["summary"]["totalRecordsProcessed"] == RECORDS
    assert aggregated["summary"]["totalErrors"] == len(errors)
    assert aggregated["summary"]["successRate"] == round(100 * stats.valid / RECORDS, 4)
    assert aggregated["validationStatus"] == "VALIDATION_FAILED"  # errors, but under the limits
    assert aggregated["resultKeys"] == [
        f"results/batch-e2e/{p.name}" for p in part_files(first, "results")
    ]
    plan = json.loads((first / "metadata/batch-e2e/chunks.json").read_text())
    assert plan["chunkCount"] == len(part_files(first, "results")) == aggregated["chunksTotal"]
    assert plan["totalRecords"] == RECORDS
    validation = json.loads((first / "validation/batch-e2e/validation-results.json").read_text())
    assert len(validation["samples"]) == min(1000, len(errors))
    completion = json.loads((first / "notifications/batch-e2e/kafka.json").read_text())
    assert completion["type"] == "BATCH_COMPLETION_NOTIFICATION"

    # The same batch in a fresh bucket: byte-identical parts.
    second = bucket_with_input(tmp_path / "two", source)
    result = cli(*run_flags(second, "--workers", "2", "--processed-at", PROCESSED_AT))
    assert result.returncode == 0, result.stderr
    for kind in ("results", "errors"):
        names = [p.name for p in part_files(first, kind)]
        assert names == [p.name for p in part_files(second, kind)]
        for name in names:
            assert (first / kind / "batch-e2e" / name).read_bytes() == (
                second / kind / "batch-e2e" / name
            ).read_bytes()

    # Cut differently, with one worker and estimated counts: the same records, byte for byte.
    third = bucket_with_input(tmp_path / "three", source)
    result = cli(
        *run_flags(third, "--workers", "1", "--max-chunk-size", "7000", "--estimate-records"),
        "--processed-at", PROCESSED_AT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(part_files(third, "results")) != len(part_files(first, "results"))
    assert concatenated(third, "results") == concatenated(first, "results")
    assert {
        e["offset"] for e in map(msgspec.json.decode, concatenated(third, "errors").splitlines())
    } == {e["offset"] for e in errors}


def test_a_critical_verdict_exits_3(cli: Cli, bucket: Path) -> None:
    generate_file(bucket / "input" / "records.jsonl", 20_000, seed=3, malformed_rate=0.01)
    result = cli(*run_flags(bucket, "--json"))
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    assert summary["validationStatus"] == "VALIDATION_FAILED_CRITICAL"
    status = json.loads((bucket / "notifications/batch-e2e/batch-proc.json").read_text())
    assert status["batchStatus"] == "SUBMISSION_FAILED"
    assert "validation failed critically" in status["errorMessage"]
    assert not (bucket / "notifications/batch-e2e/kafka.json").exists()


def test_the_execution_input_file_drives_a_run(cli: Cli, bucket: Path, tmp_path: Path) -> None:
    generate_file(bucket / "data" / "60m-records.json", 5_000, seed=5)
    event = {
        "bucket": f"file://{bucket}",
        "file": "data/60m-records.json",
        "customerId": "customer123",
        "tenantId": "tenant456",
        "batchId": "batch-789",
        "deployment": "CORE",
        "snapshotId": "snapshot-001",
        "maxConcurrentChunks": 5,
    }
    (tmp_path / "event.json").write_text(json.dumps(event))
    planned = cli(
        "plan", "--input", str(tmp_path / "event.json"), "--min-chunk-size", "1", "--json"
    )
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert [c["chunkSize"] for c in plan["chunks"]] == [1000] * 5
    assert {c["route"] for c in plan["chunks"]} == {"lambda"}
    assert not (bucket / "metadata").exists()  # plan writes nothing

    ran = cli(
        "run", "--input", str(tmp_path / "event.json"), "--workers", "1", "--progress", "none"
    )
    assert ran.returncode == 0, ran.stderr
    assert (bucket / "notifications/batch-789/sqs_core.json").exists()  # CORE goes to SQS Core
    # Without --min-chunk-size, 5,000 records are one chunk: not worth splitting.
    assert json.loads((bucket / "metadata/batch-789/chunks.json").read_text())["chunkCount"] == 1


class CorruptingExecutor:
    """A real local pool, but two lines of the input are joined after planning, in place and
    with the modification time put back, so only the chunk holding them can tell."""

    def __init__(self, options: RunOptions, path: Path, at: int) -> None:
        before = path.stat()
        data = bytearray(path.read_bytes())
        data[data.index(b"\n", at)] = ord(" ")
        path.write_bytes(bytes(data))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        self._inner = LocalExecutor(options.workers, WorkerSettings(options.block_size))
        self.description = self._inner.description
        self.check_reach = self._inner.check_reach
        self.submit = self._inner.submit
        self.lines_done = self._inner.lines_done
        self.shutdown = self._inner.shutdown


def test_a_failed_chunk_is_reported_and_the_rest_complete(bucket: Path) -> None:
    path = bucket / "input" / "records.jsonl"
    generate_file(path, 3_000, seed=11)
    job = job_input(bucket, "input/records.jsonl", max_concurrent_chunks=3)
    options = RunOptions(workers=2, plan=PlanOptions(min_chunk_size=1))
    middle = path.stat().st_size // 2

    def factory(opts: RunOptions) -> ChunkExecutor:
        return CorruptingExecutor(opts, path, middle)

    report = run_batch(job, options, executor_factory=factory)
    assert report.exit_code == 4
    summary = report.summary
    assert (summary.chunks_succeeded, summary.chunks_failed) == (2, 1)
    failed: list[Any] = [d for d in summary.chunk_details if d.error_type]
    assert failed[0].chunk_id == "chunk_000001"
    assert failed[0].error_type == "InputChangedError"
    assert "changed after planning" in (failed[0].message or "")
    assert not (bucket / "results/b/chunk_000001.jsonl").exists()
    status = json.loads((bucket / "notifications/b/batch-proc.json").read_text())
    assert status["errorMessage"] == "1 of 3 chunks failed"


def test_an_input_replaced_after_planning_fails_every_chunk(bucket: Path) -> None:
    path = bucket / "input" / "records.jsonl"
    generate_file(path, 3_000, seed=11)
    job = job_input(bucket, "input/records.jsonl", max_concurrent_chunks=3)

    def factory(opts: RunOptions) -> ChunkExecutor:
        generate_file(path, 3_000, seed=12)  # same size class, different content and time
        return LocalExecutor(opts.workers, WorkerSettings(opts.block_size))

    report = run_batch(
        job, RunOptions(workers=2, plan=PlanOptions(min_chunk_size=1)), executor_factory=factory
    )
    assert report.exit_code == 4
    assert report.summary.chunks_failed == 3
    assert {d.error_type for d in report.summary.chunk_details} == {"InputChangedError"}
