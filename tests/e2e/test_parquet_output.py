"""``--output-format parquet`` through the command line and real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from scm_batch.records.generate import GenerateStats, generate_file
from tests.conftest import Cli
from tests.e2e.test_cli_errors import assert_one_line_error
from tests.helpers import assert_parquet_holds, parquet_records

RECORDS = 30_000
PROCESSED_AT = "2026-01-31T12:00:00.000Z"
BATCH = "batch-pq"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, GenerateStats]:
    path = tmp_path_factory.mktemp("input") / "records.jsonl"
    stats = generate_file(path, RECORDS, seed=7, invalid_rate=0.004, malformed_rate=0.0003)
    return path.read_bytes(), stats


def bucket_with(root: Path, data: bytes) -> Path:
    (root / "input").mkdir(parents=True)
    (root / "input" / "records.jsonl").write_bytes(data)
    return root


def run_args(bucket: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--bucket", str(bucket),
        "--file", "input/records.jsonl",
        "--customer-id", "cust-1",
        "--tenant-id", "tenant-9",
        "--batch-id", BATCH,
        "--processed-at", PROCESSED_AT,
        "--max-chunk-size", "7000",
        "--workers", "2",
        "--progress", "none",
        *extra,
    ]  # fmt: skip


def parts(bucket: Path, kind: str) -> list[Path]:
    return sorted(p for p in (bucket / kind / BATCH).iterdir() if not p.name.startswith("."))


def aggregated(bucket: Path) -> dict[str, object]:
    path = bucket / "final-results" / BATCH / "aggregated-results.json"
    result: dict[str, object] = json.loads(path.read_text())
    return result


def test_parquet_parts_hold_the_records_of_the_jsonl_parts(
    cli: Cli, tmp_path: Path, generated: tuple[bytes, GenerateStats]
) -> None:
    data, stats = generated
    jsonl = bucket_with(tmp_path / "jsonl", data)
    parquet = bucket_with(tmp_path / "parquet", data)
    again = bucket_with(tmp_path / "again", data)
    for bucket, extra in [(jsonl, []), (parquet, ["--output-format", "parquet"])]:
        result = cli(*run_args(bucket, *extra))
        assert result.returncode == 0, result.stderr
    result = cli(*run_args(again), env={"SCM_BATCH_OUTPUT_FORMAT": "parquet"})
    assert result.returncode == 0, result.stderr

    expected = [
        [msgspec.json.decode(line) for line in part.read_bytes().splitlines()]
        for part in parts(jsonl, "results")
    ]
    assert sum(map(len, expected)) == stats.valid
    result_parts = parts(parquet, "results")
    assert len(result_parts) == 5
    assert all(p.suffix == ".parquet" for p in result_parts)
    # Part by part, values and types alike.
    for part, records in zip(result_parts, expected, strict=True):
        assert_parquet_holds(part, records)
    # The generated records all fit the inferred schema: nothing is rescued.
    for part in result_parts:
        assert pq.read_table(part).column("_rescued_data").null_count == len(pq.read_table(part))

    # zstd in every column chunk, and the aggregate names the Parquet parts.
    for part in result_parts:
        metadata = pq.ParquetFile(part).metadata
        assert {
            metadata.row_group(g).column(c).compression
            for g in range(metadata.num_row_groups)
            for c in range(metadata.num_columns)
        } == {"ZSTD"}
    summary = aggregated(parquet)
    assert summary["resultKeys"] == [f"results/{BATCH}/{p.name}" for p in result_parts]
    assert summary["totals"] == aggregated(jsonl)["totals"]
    plan = json.loads((parquet / "metadata" / BATCH / "chunks.json").read_text())
    assert plan["options"]["outputFormat"] == "parquet"
    assert {c["outputFormat"] for c in plan["chunks"]} == {"parquet"}

    # Error parts stay JSON Lines, the same bytes; and a rerun gives the same Parquet bytes.
    assert [p.read_bytes() for p in parts(parquet, "errors")] == [
        p.read_bytes() for p in parts(jsonl, "errors")
    ]
    assert [p.read_bytes() for p in parts(again, "results")] == [
        p.read_bytes() for p in result_parts
    ]


def test_a_resumed_batch_keeps_parquet_and_refuses_another_format(
    cli: Cli, tmp_path: Path, generated: tuple[bytes, GenerateStats]
) -> None:
    data, stats = generated
    bucket = bucket_with(tmp_path / "bucket", data)
    failed = cli(
        *run_args(bucket, "--output-format", "parquet", "--retry-attempts", "1"),
        env={"SCM_BATCH_FAULTS": "chunk_000001=terminal"},
    )
    assert failed.returncode == 4, failed.stderr
    done_before = sorted(p.name for p in parts(bucket, "results"))
    assert "chunk_000001.parquet" not in done_before

    resume = ["resume", "--bucket", str(bucket), "--batch-id", BATCH, "--progress", "none"]
    for refused in (
        cli(*resume, "--output-format", "jsonl"),
        cli(*resume, env={"SCM_BATCH_OUTPUT_FORMAT": "jsonl"}),
        cli(*run_args(bucket, "--output-format", "jsonl")),
    ):
        assert_one_line_error(refused, 2, "planned to write parquet", "asks for jsonl")
    assert sorted(p.name for p in parts(bucket, "results")) == done_before

    resumed = cli(*resume)
    assert resumed.returncode == 0, resumed.stderr
    result_parts = parts(bucket, "results")
    assert [p.name for p in result_parts] == [f"chunk_{i:06d}.parquet" for i in range(5)]
    assert sum(len(parquet_records(p)) for p in result_parts) == stats.valid
    summary = aggregated(bucket)
    assert summary["resultKeys"] == [f"results/{BATCH}/{p.name}" for p in result_parts]
    assert summary["chunksFailed"] == 0

    # --overwrite starts the batch afresh with the options given: without --output-format, that
    # is JSON Lines, whatever the batch was before.
    overwritten = cli(*run_args(bucket, "--overwrite"))
    assert overwritten.returncode == 0, overwritten.stderr
    assert [p.name for p in parts(bucket, "results")] == [f"chunk_{i:06d}.jsonl" for i in range(5)]
    plan = json.loads((bucket / "metadata" / BATCH / "chunks.json").read_text())
    assert plan["options"]["outputFormat"] == "jsonl"


def run_without_pyarrow(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line in a Python where ``import pyarrow`` fails, as on a default install."""
    code = "import sys; sys.modules['pyarrow'] = None; from scm_batch.cli import main; main()"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=environment,
    )


def test_parquet_without_pyarrow_is_refused_before_any_work(tmp_path: Path) -> None:
    record = (
        '{"id":"R1","name":"Name","email":"a@example.com","status":"active",'
        '"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z"}\n'
    )
    bucket = bucket_with(tmp_path / "bucket", record.encode() * 10)
    for refused in (
        run_without_pyarrow(*run_args(bucket, "--output-format", "parquet")),
        run_without_pyarrow(*run_args(bucket), env={"SCM_BATCH_OUTPUT_FORMAT": "parquet"}),
    ):
        assert_one_line_error(
            refused, 2, "--output-format", "pyarrow", "pip install 'scm-batch[parquet]'"
        )
        assert sorted(p.name for p in bucket.iterdir()) == ["input"]  # nothing planned or written

    # JSON Lines never needs pyarrow.
    result = run_without_pyarrow(*run_args(bucket))
    assert result.returncode == 0, result.stderr
    assert [p.suffix for p in parts(bucket, "results")] == [".jsonl"]


def test_a_finished_parquet_batch_is_reported_without_pyarrow(cli: Cli, tmp_path: Path) -> None:
    record = (
        '{"id":"R1","name":"Name","email":"a@example.com","status":"active",'
        '"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z"}\n'
    )
    bucket = bucket_with(tmp_path / "bucket", record.encode() * 10)
    done = cli(*run_args(bucket, "--output-format", "parquet"))
    assert done.returncode == 0, done.stderr
    before = {p: p.read_bytes() for p in bucket.rglob("*") if p.is_file()}

    # Nothing is left to write: the batch is reported, where pyarrow is missing too.
    for again in (
        run_without_pyarrow("resume", "--bucket", str(bucket), "--batch-id", BATCH),
        run_without_pyarrow(*run_args(bucket)),
    ):
        assert again.returncode == 0, again.stderr
        assert "already complete" in again.stdout
    assert {p: p.read_bytes() for p in bucket.rglob("*") if p.is_file()} == before

    # A batch with work left still needs it.
    (bucket / "metadata" / BATCH / "notified.json").unlink()
    (bucket / "metadata" / BATCH / "chunks" / "chunk_000000.json").unlink()
    refused = run_without_pyarrow("resume", "--bucket", str(bucket), "--batch-id", BATCH)
    assert_one_line_error(refused, 2, "pyarrow", "pip install 'scm-batch[parquet]'")


def test_an_unknown_format_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    bucket = bucket_with(tmp_path / "bucket", b"{}\n")
    assert_one_line_error(
        cli(*run_args(bucket, "--output-format", "csv")), 2, "--output-format", "jsonl or parquet"
    )
