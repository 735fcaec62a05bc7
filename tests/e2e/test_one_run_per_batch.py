"""One run of a batch at a time (issue 11): two runs started together, one refuses naming the
holder and the other ends as a clean run would; a SIGKILLed run's lease is taken over by resume.
The same on an S3 API server: tests/integration/test_s3_lease.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scm_batch.records.generate import generate_file
from tests.conftest import Cli

PROCESSED_AT = "2026-06-01T00:00:00.000Z"


def run_args(bucket: str, file: str, *extra: str) -> list[str]:
    return [
        "run", "--bucket", bucket, "--file", file, "--customer-id", "c", "--tenant-id", "t",
        "--batch-id", "together", "--processed-at", PROCESSED_AT, "--workers", "1",
        "--max-concurrent-chunks", "8", "--progress", "none", "--json", *extra,
    ]  # fmt: skip


def together(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """The commands started at once, each as a user would start it; when all have ended."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "scm_batch", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for command in commands
    ]
    ended = []
    for process, command in zip(started, commands, strict=True):
        out, err = process.communicate(timeout=300)
        ended.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return ended


def parts(bucket: Path) -> dict[str, bytes]:
    found = sorted(bucket.glob("results/together/*")) + sorted(bucket.glob("errors/together/*"))
    return {str(p.relative_to(bucket)): p.read_bytes() for p in found}


def one_refused(runs: list[subprocess.CompletedProcess[str]]) -> subprocess.CompletedProcess[str]:
    """The run that went ahead, once the other is seen to have refused with one line."""
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 6], [run.stderr for run in runs]
    refused = next(run for run in runs if run.returncode == 6)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, refused.stderr
    assert "batch 'together' is being run by pid " in errors[0]
    assert " since " in errors[0]
    return next(run for run in runs if run.returncode == 0)


@pytest.mark.parametrize("inputs", ["same input", "different inputs"])
def test_two_runs_of_one_batch_started_together(cli: Cli, tmp_path: Path, inputs: str) -> None:
    bucket, reference = tmp_path / "bucket", tmp_path / "reference"
    for root in (bucket, reference):
        generate_file(root / "a.jsonl", 200_000, seed=1)
        generate_file(root / "b.jsonl", 200_000, seed=2)
    second = "a.jsonl" if inputs == "same input" else "b.jsonl"
    runs = together(run_args(str(bucket), "a.jsonl"), run_args(str(bucket), second))
    winner = one_refused(runs)
    file = json.loads(winner.stdout)["source"]["key"]
    clean = cli(*run_args(str(reference), file))
    assert clean.returncode == 0, clean.stderr
    assert parts(bucket) == parts(reference)  # all of one input, nothing of the other


def test_a_killed_run_lease_is_taken_over_by_resume(cli: Cli, tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    generate_file(bucket / "a.jsonl", 50_000, seed=3)
    args = run_args(str(bucket), "a.jsonl")
    killed = cli(*args, env={"SCM_BATCH_FAULTS": "driver=after-chunks:2"})
    assert killed.returncode == -signal.SIGKILL
    assert (bucket / "metadata/together.lease").exists()  # the dead run's claim is still there
    resumed = cli("resume", "--bucket", str(bucket), "--batch-id", "together")
    assert resumed.returncode == 0, resumed.stderr
