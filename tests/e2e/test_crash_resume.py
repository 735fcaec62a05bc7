"""The driver killed with SIGKILL at every stage of a 500,000-record batch, resumed each time.

One batch is interrupted again and again (while planning, right after the plan, in the middle of
processing, while a worker is writing a chunk's parts, during aggregation, before the
notifications) and resumed after each crash with the same command. At the end its result and
error parts must be byte-identical to those of an uninterrupted run of the same batch, its summary
must count the same, and no temporary file may be left anywhere in the bucket.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from scm_batch.records.generate import generate_file
from tests.conftest import Cli

RECORDS = 500_000
PROCESSED_AT = "2026-03-01T00:00:00.000Z"

# Where the driver dies, in the order a run reaches those points.
CRASHES = [
    "driver=during-planning",
    "driver=after-plan",
    "driver=after-chunks:5",
    "chunk_000030=kill-driver",  # driver and worker die while that chunk's parts are written
    "driver=after-chunks:4",
    "driver=during-aggregation",
    "driver=before-notify",
]


def run_args(bucket: Path) -> list[str]:
    return [
        "run",
        "--bucket", str(bucket),
        "--file", "input/records.jsonl",
        "--customer-id", "cust-7",
        "--tenant-id", "ten-7",
        "--batch-id", "crash",
        "--processed-at", PROCESSED_AT,
        "--workers", "2",
        "--progress", "log",
        "--json",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "records.jsonl"
    generate_file(path, RECORDS, seed=99, invalid_rate=0.003, malformed_rate=0.0001)
    return path


def new_bucket(root: Path, source: Path) -> Path:
    (root / "input").mkdir(parents=True)
    shutil.copyfile(source, root / "input" / "records.jsonl")
    return root


def parts(bucket: Path) -> dict[str, bytes]:
    found = sorted(bucket.glob("results/crash/*")) + sorted(bucket.glob("errors/crash/*"))
    return {str(p.relative_to(bucket)): p.read_bytes() for p in found}


def debris(bucket: Path) -> list[str]:
    return [str(p) for p in bucket.rglob(".*") if p.name.endswith(".tmp")]


def counts(summary: dict[str, Any]) -> dict[str, Any]:
    keep = [
        "status",
        "validationStatus",
        "totals",
        "errorsByCategory",
        "fieldErrors",
        "chunksTotal",
    ]
    return {k: summary[k] for k in keep} | {
        "records": summary["summary"]["totalRecordsProcessed"],
        "errors": summary["summary"]["totalErrors"],
        "successRate": summary["summary"]["successRate"],
    }


@pytest.mark.slow
def test_a_batch_killed_at_every_stage_ends_exactly_like_an_uninterrupted_one(
    cli: Cli, tmp_path: Path, source: Path
) -> None:
    reference = new_bucket(tmp_path / "reference", source)
    clean = cli(*run_args(reference))
    assert clean.returncode == 0, clean.stderr
    expected = json.loads(clean.stdout)
    assert expected["chunksTotal"] >= 40

    bucket = new_bucket(tmp_path / "crashed", source)
    for crash in CRASHES:
        killed = cli(*run_args(bucket), env={"SCM_BATCH_FAULTS": crash})
        assert killed.returncode == -signal.SIGKILL, f"{crash}: {killed.stderr}"
        if crash == "driver=after-chunks:5":
            status = cli("status", "--bucket", str(bucket), "--batch-id", "crash", "--json")
            assert status.returncode == 0, status.stderr
            state = json.loads(status.stdout)
            assert state["phase"] == "processing"
            assert 5 <= state["chunksDone"] < state["chunksTotal"]
            assert state["chunksPending"] == state["chunksTotal"] - state["chunksDone"]
            assert state["recordsDone"] < state["recordsTotal"] == RECORDS

    resumed = cli(*run_args(bucket))
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["chunksResumed"] == summary["chunksTotal"]  # all done before this last session

    assert parts(bucket) == parts(reference)
    assert counts(summary) == counts(expected)
    assert debris(bucket) == []
    assert json.loads((bucket / "notifications/crash/kafka.json").read_text())["batchId"] == "crash"
    final = cli("status", "--bucket", str(bucket), "--batch-id", "crash", "--json")
    state = json.loads(final.stdout)
    assert (state["phase"], state["chunksDone"], state["recordsDone"]) == (
        "notified",
        state["chunksTotal"],
        RECORDS,
    )

    sent = (bucket / "metadata/crash/notified.json").read_bytes()
    again = cli(*run_args(bucket))  # a finished batch is reported, not redone
    assert again.returncode == 0, again.stderr
    assert "batch crash is already complete" in again.stderr
    assert counts(json.loads(again.stdout)) == counts(expected)
    assert (bucket / "metadata/crash/notified.json").read_bytes() == sent


@pytest.mark.slow
def test_resume_after_a_crash_while_parts_are_written(
    cli: Cli, tmp_path: Path, source: Path
) -> None:
    bucket = new_bucket(tmp_path / "b", source)
    killed = cli(*run_args(bucket), env={"SCM_BATCH_FAULTS": "chunk_000002=kill-driver"})
    assert killed.returncode == -signal.SIGKILL
    half_written = debris(bucket)
    assert any("chunk_000002.jsonl" in path for path in half_written), half_written
    assert not (bucket / "metadata/crash/chunks/chunk_000002.json").exists()
    resumed = cli("resume", "--bucket", str(bucket), "--batch-id", "crash", "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    assert debris(bucket) == []
    assert "batch crash: COMPLETED" in resumed.stdout


@pytest.mark.slow
def test_a_batch_begun_by_one_engine_and_resumed_by_the_other_writes_the_same_bytes(
    cli: Cli, tmp_path: Path, source: Path
) -> None:
    """The Python engine dies after some chunks; the native engine finishes the batch. Its
    parts equal those of a clean run with either engine, and the summary names both engines."""
    pytest.importorskip("scm_batch_native", reason="the native engine is not installed")
    reference = new_bucket(tmp_path / "reference", source)
    clean = cli(*run_args(reference), env={"SCM_BATCH_ENGINE": "python"})
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["engines"] == {
        "python": json.loads(clean.stdout)["chunksTotal"]
    }

    bucket = new_bucket(tmp_path / "b", source)
    faults = {"SCM_BATCH_FAULTS": "driver=after-chunks:6", "SCM_BATCH_ENGINE": "python"}
    killed = cli(*run_args(bucket), env=faults)
    assert killed.returncode == -signal.SIGKILL
    resumed = cli(
        "resume", "--bucket", str(bucket), "--batch-id", "crash", "--progress", "none", "--json",
        env={"SCM_BATCH_ENGINE": "native"},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["engines"]["python"] >= 6
    assert summary["engines"]["native"] >= 1
    assert sum(summary["engines"].values()) == summary["chunksTotal"]
    assert parts(bucket) == parts(reference)
    assert counts(summary) == counts(json.loads(clean.stdout))
