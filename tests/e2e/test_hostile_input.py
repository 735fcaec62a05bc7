"""What a hostile user found (issue 11): nothing lost, nothing altered, one run per batch.
Each test here failed on the code before its fix."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.test_cli_errors import GOOD_RECORD, assert_one_line_error


def batch_flags(bucket: Path, file: str, batch_id: str = "self") -> list[str]:
    return [
        "--bucket", str(bucket), "--file", file, "--customer-id", "c", "--tenant-id", "t",
        "--batch-id", batch_id, "--progress", "none",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "why"),
    [
        # chunk 0's output would overwrite it
        ("results/self/chunk_000000.jsonl", "is under results/self/, where batch 'self' writes"),
        # --overwrite would delete it before reading it
        ("final-results/self/input.jsonl", "is under final-results/self/"),
        ("metadata/self/chunks/input.jsonl", "is under metadata/self/"),
        ("metadata/self.lease", "is the lease of batch 'self'"),  # the lease would be written in
    ],
)
def test_an_input_under_the_batch_own_outputs_is_refused(
    cli: Cli, bucket: Path, key: str, why: str
) -> None:
    path = bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GOOD_RECORD * 20)
    before = path.read_bytes()
    result = cli("run", *batch_flags(bucket, key), "--overwrite")
    assert_one_line_error(result, 2, why, "input")
    assert path.read_bytes() == before
    # Another batch's outputs are just files: reading them is fine.
    ok = cli("run", *batch_flags(bucket, key, batch_id="other"))
    assert ok.returncode == 0, ok.stderr


def test_a_file_of_blank_lines_is_refused_however_long(cli: Cli, bucket: Path) -> None:
    for name, size in (("short.jsonl", 900), ("long.jsonl", 2 << 20)):
        (bucket / name).write_bytes(b" \n" * (size // 2))
        result = cli("run", *batch_flags(bucket, name, batch_id=name.split(".")[0]))
        assert_one_line_error(result, 2, "holds no records, only blank lines")
    assert not (bucket / "notifications").exists()
    # A record after two MiB of blank lines is found, and the file runs.
    (bucket / "late.jsonl").write_bytes(b"\n" * (2 << 20) + GOOD_RECORD.encode())
    ran = cli("run", *batch_flags(bucket, "late.jsonl", batch_id="late"))
    assert ran.returncode == 0, ran.stderr


def test_generate_never_replaces_what_is_not_a_regular_file(cli: Cli, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = cli("generate", str(fifo), "--records", "5")
    assert_one_line_error(result, 2, "is not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_never_more_workers_than_chunks_and_a_warning_far_beyond_the_cpus(
    cli: Cli, bucket: Path
) -> None:
    (bucket / "in.jsonl").write_text(GOOD_RECORD * 30)
    flags = [*batch_flags(bucket, "in.jsonl", batch_id="w"), "--progress", "log"]
    result = cli("run", *flags, "--workers", "200", "--max-concurrent-chunks", "2",
                 "--min-chunk-size", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 of 2 chunks of up to 15 records on 2 workers" in result.stderr
    assert "warning: 200 workers on" in result.stderr


@pytest.mark.slow
def test_a_worker_memory_and_the_report_stay_small_whatever_the_lines(
    cli: Cli, bucket: Path
) -> None:
    with (bucket / "patho.jsonl").open("wb") as out:
        out.write(GOOD_RECORD.encode())
        for _ in range(20):
            out.write(b'{"x": "' + b"y" * (2 << 20) + b"\n")  # malformed, 2 MiB each
        out.write(b"\x00" * (100 << 20) + b"\n")  # one 100 MiB line of NUL bytes
    result = cli("run", *batch_flags(bucket, "patho.jsonl"), "--json")
    assert result.returncode == 3, result.stderr  # critical: more errors than records
    summary = json.loads(result.stdout)
    assert summary["errorsByCategory"] == {"malformed": 20, "too_long": 1}
    assert summary["maxWorkerPeakRssBytes"] < 150 << 20  # was 922 MiB
    assert (bucket / "validation/self/validation-results.json").stat().st_size < 1 << 20
    entries = (bucket / "errors/self/chunk_000000.jsonl").read_bytes().splitlines()
    assert json.loads(entries[-1])["length"] == 100 << 20
