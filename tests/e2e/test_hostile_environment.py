"""What a hostile environment does to a run (issue 11): links out of the bucket, a full disk, a
closed standard output, SIGTERM. Each test here failed on the code before its fix."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scm_batch.records.generate import generate_file
from tests.conftest import Cli, run_cli
from tests.e2e.test_cli_errors import GOOD_RECORD, assert_one_line_error
from tests.e2e.test_hostile_input import batch_flags


@pytest.mark.parametrize("linked", ["results", "results/self"])
def test_overwrite_never_deletes_through_a_link_out_of_the_bucket(
    cli: Cli, tmp_path: Path, linked: str
) -> None:
    bucket, outside = tmp_path / "bucket", tmp_path / "outside"
    bucket.mkdir()
    outside.mkdir()
    (bucket / "in.jsonl").write_text(GOOD_RECORD * 10)
    (bucket / linked).parent.mkdir(parents=True, exist_ok=True)
    (bucket / linked).symlink_to(outside, target_is_directory=True)
    first = cli("run", *batch_flags(bucket, "in.jsonl"))  # writing through the link is fine
    assert first.returncode == 0, first.stderr
    results = outside / "self" if linked == "results" else outside
    foreign = results / "someone-elses.txt"
    foreign.write_text("not the batch's")
    again = cli("run", *batch_flags(bucket, "in.jsonl"), "--overwrite")
    assert_one_line_error(again, 2, "leads out of the bucket", "through a link")
    assert foreign.read_text() == "not the batch's"
    assert (results / "chunk_000000.jsonl").exists()
    assert (bucket / "metadata/self/chunks.json").exists()  # checked first: nothing deleted


def _small_files_only() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # the plan cannot be written
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, as on a full disk


def test_a_write_the_disk_refuses_is_an_environment_failure_not_a_bug(bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 100, seed=4)  # before the limit: the input is whole
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "scm_batch", "run", *batch_flags(bucket, "in.jsonl")],
        capture_output=True,
        text=True,
        env=environment,
        preexec_fn=_small_files_only,
        check=False,
    )
    assert_one_line_error(result, 6, "File too large")


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_a_closed_standard_output_ends_the_command_quietly(bucket: Path, output: list[str]) -> None:
    (bucket / "in.jsonl").write_text(GOOD_RECORD * 3000)
    command = [sys.executable, "-m", "scm_batch", "plan", *batch_flags(bucket, "in.jsonl")[:-2]]
    command += ["--max-concurrent-chunks", "3000", "--min-chunk-size", "1", *output]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
    # `… | head -1`, its reader gone before anything is written: every write meets a closed pipe.
    gone, pipe = os.pipe()
    os.close(gone)
    try:
        result = subprocess.run(
            command, stdout=pipe, stderr=subprocess.PIPE, env=environment, check=False
        )
    finally:
        os.close(pipe)
    assert (result.returncode, result.stderr) == (141, b"")


@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does(bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 1_500_000, seed=6)
    command = [sys.executable, "-m", "scm_batch", "run", *batch_flags(bucket, "in.jsonl")]
    command[-1] = "log"  # --progress log: the line that says chunks are being processed
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
    with subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True
    ) as run:
        assert run.stderr is not None
        for line in run.stderr:
            if "ProcessChunksInParallel" in line:
                break
        os.killpg(run.pid, signal.SIGTERM)  # as a container runtime stops a job: every process
        rest = run.stderr.read()
        assert run.wait(timeout=60) == 143
    errors = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert errors == ["error: terminated"], rest
    assert "Traceback" not in rest
    assert list(bucket.rglob(".*.tmp")) == []
    resumed = run_cli("resume", "--bucket", str(bucket), "--batch-id", "self", "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr


def test_a_stuck_worker_is_stopped_at_its_chunk_timeout_and_the_chunk_retried(
    cli: Cli, bucket: Path
) -> None:
    generate_file(bucket / "in.jsonl", 4_000, seed=7)
    flags = [*batch_flags(bucket, "in.jsonl"), "--max-concurrent-chunks", "4"]
    flags += ["--min-chunk-size", "1", "--chunk-timeout", "3", "--json"]
    # The worker running chunk 2 stops itself (SIGSTOP), as a stuck one would: without a
    # timeout the run waited for it forever.
    result = cli("run", *flags, env={"SCM_BATCH_FAULTS": "chunk_000002=stall:1"}, timeout=120)
    assert result.returncode == 0, result.stderr
    receipt = json.loads((bucket / "metadata/self/chunks/chunk_000002.json").read_text())
    first, second = receipt["attempts"]
    assert first["errorType"] == "WorkerDiedError"
    assert "made no progress on chunk_000002 for 3 s" in first["message"]
    assert second["status"] == "CHUNK_PROCESSED"


def test_a_slow_chunk_that_progresses_is_never_killed(cli: Cli, bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 100_000, seed=7)  # about 20 blocks of 1 MiB
    flags = [*batch_flags(bucket, "in.jsonl"), "--max-concurrent-chunks", "1"]
    flags += ["--chunk-timeout", "2", "--json"]
    # Each block of the chunk takes a quarter of a second more (a destination pushing back):
    # about 5 s in all, over twice its timeout; it moves all the while, so it is left to finish.
    result = cli("run", *flags, env={"SCM_BATCH_FAULTS": "chunk_000000=slow:1"}, timeout=120)
    assert result.returncode == 0, result.stderr
    receipt = json.loads((bucket / "metadata/self/chunks/chunk_000000.json").read_text())
    assert [a["status"] for a in receipt["attempts"]] == ["CHUNK_PROCESSED"]
    assert receipt["durationSeconds"] > 4
