"""A bucket interrupted mid-run, copied elsewhere and resumed there (issue 11): the copy ends
exactly like an uninterrupted run, and nothing is written to the original."""

from __future__ import annotations

import hashlib
import shutil
import signal
from pathlib import Path

from scm_batch.records.generate import generate_file
from tests.conftest import Cli

PROCESSED_AT = "2026-03-01T00:00:00.000Z"


def run_args(bucket: Path) -> list[str]:
    return [
        "run", "--bucket", str(bucket), "--file", "input/records.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", "moved", "--processed-at", PROCESSED_AT,
        "--max-concurrent-chunks", "6", "--min-chunk-size", "1", "--workers", "2",
        "--progress", "none",
    ]  # fmt: skip


def tree(bucket: Path) -> dict[str, tuple[int, str]]:
    """Every file below ``bucket``: its modification time and content."""
    return {
        str(p.relative_to(bucket)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(bucket.rglob("*"))
        if p.is_file()
    }


def parts(bucket: Path) -> dict[str, bytes]:
    found = sorted(bucket.glob("results/moved/*")) + sorted(bucket.glob("errors/moved/*"))
    return {str(p.relative_to(bucket)): p.read_bytes() for p in found}


def test_a_copied_bucket_resumes_in_the_copy_and_leaves_the_original_alone(
    cli: Cli, tmp_path: Path
) -> None:
    source = tmp_path / "records.jsonl"
    generate_file(source, 30_000, seed=5, invalid_rate=0.004, malformed_rate=0.0005)
    reference, first = tmp_path / "reference", tmp_path / "first"
    for bucket in (reference, first):
        (bucket / "input").mkdir(parents=True)
        shutil.copyfile(source, bucket / "input" / "records.jsonl")
    assert cli(*run_args(reference)).returncode == 0

    killed = cli(*run_args(first), env={"SCM_BATCH_FAULTS": "driver=after-chunks:2"})
    assert killed.returncode == -signal.SIGKILL
    copy = tmp_path / "copy"
    shutil.copytree(first, copy, symlinks=True)
    before = tree(first)

    resumed = cli("resume", "--bucket", str(copy), "--batch-id", "moved", "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    assert parts(copy) == parts(reference)
    assert tree(first) == before  # nothing written to, or deleted from, the original
    assert str(first) not in (copy / "final-results/moved/aggregated-results.json").read_text()

    shutil.rmtree(first)  # the original gone: the copy is whole on its own
    again = cli("status", "--bucket", str(copy), "--batch-id", "moved")
    assert again.returncode == 0, again.stderr
    assert "notified" in again.stdout
