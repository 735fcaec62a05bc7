"""Receipts hold each part's size and checksum (issue 11): resume rebuilds a chunk whose parts
are missing or changed in size, and ``status --verify`` finds one changed in place."""

from __future__ import annotations

import json
from pathlib import Path

from scm_batch.records.generate import generate_file
from tests.conftest import Cli
from tests.e2e.test_moved_bucket import PROCESSED_AT


def run_args(bucket: Path) -> list[str]:
    return [
        "run", "--bucket", str(bucket), "--file", "in.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", "b", "--processed-at", PROCESSED_AT,
        "--max-concurrent-chunks", "4", "--min-chunk-size", "1", "--progress", "none",
    ]  # fmt: skip


def test_resume_redoes_missing_or_resized_parts_and_verify_finds_changed_ones(
    cli: Cli, tmp_path: Path
) -> None:
    bucket, reference = tmp_path / "bucket", tmp_path / "reference"
    for root in (bucket, reference):
        root.mkdir()
        generate_file(root / "in.jsonl", 4_000, seed=9, invalid_rate=0.004)
        assert cli(*run_args(root)).returncode == 0
    results = bucket / "results" / "b"
    (results / "chunk_000001.jsonl").unlink()
    with (results / "chunk_000002.jsonl").open("r+b") as part:
        part.truncate(100)
    changed = bytearray((results / "chunk_000003.jsonl").read_bytes())
    changed[10] ^= 1  # same size, other bytes: only a checksum tells
    (results / "chunk_000003.jsonl").write_bytes(bytes(changed))

    verified = cli("status", "--bucket", str(bucket), "--batch-id", "b", "--verify", "--json")
    assert verified.returncode == 4, verified.stderr
    damaged = json.loads(verified.stdout)["damaged"]
    assert sorted(damaged) == ["chunk_000001", "chunk_000002", "chunk_000003"]
    assert "is missing" in damaged["chunk_000001"]
    assert "holds 100 bytes" in damaged["chunk_000002"]
    assert "changed since it was written" in damaged["chunk_000003"]

    aggregated = bucket / "final-results" / "b" / "aggregated-results.json"
    outcome = aggregated.read_bytes()
    resumed = cli("resume", "--bucket", str(bucket), "--batch-id", "b", "--json")
    assert resumed.returncode == 0, resumed.stderr
    # The batch was finished: its parts are rebuilt, its outcome (and messages) stand.
    summary = json.loads(resumed.stdout)
    assert (summary["status"], summary["chunksSucceeded"]) == ("COMPLETED", 4)
    assert aggregated.read_bytes() == outcome
    for chunk in ("chunk_000001", "chunk_000002"):
        assert (results / f"{chunk}.jsonl").read_bytes() == (
            reference / "results" / "b" / f"{chunk}.jsonl"
        ).read_bytes()
    # Resume checks sizes only: the part changed in place is found by --verify, and redone once
    # it is deleted.
    still = cli("status", "--bucket", str(bucket), "--batch-id", "b", "--verify", "--json")
    assert list(json.loads(still.stdout)["damaged"]) == ["chunk_000003"]
    (results / "chunk_000003.jsonl").unlink()
    assert cli("resume", "--bucket", str(bucket), "--batch-id", "b").returncode == 0
    clean = cli("status", "--bucket", str(bucket), "--batch-id", "b", "--verify")
    assert clean.returncode == 0, clean.stdout
    assert "verified: 4 done chunks intact" in clean.stdout
