"""The command line's settings: each command reads the settings it has a use for, from flags
and variables alike, and a missing or bad one is one line naming it."""

from __future__ import annotations

from pathlib import Path

from scm_batch.records.generate import generate_file
from tests.conftest import Cli
from tests.e2e.test_cli_errors import assert_one_line_error

JOB = ["--file", "in.jsonl", "--customer-id", "c", "--tenant-id", "t", "--batch-id", "b"]


def test_a_batch_command_without_its_bucket_or_id_is_a_usage_error(cli: Cli, bucket: Path) -> None:
    assert_one_line_error(cli("resume", "--batch-id", "b"), 2, "Missing option '--bucket'")
    assert_one_line_error(cli("status", "--bucket", str(bucket)), 2, "--batch-id")


def test_a_variable_is_read_by_the_commands_that_use_it_and_named_when_bad(
    cli: Cli, bucket: Path
) -> None:
    generate_file(bucket / "in.jsonl", 200, seed=2)
    bad_retries = {"SCM_BATCH_RETRY_ATTEMPTS": "three"}
    # plan has no use for retries: the variable is not read.
    planned = cli("plan", "--bucket", str(bucket), *JOB, env=bad_retries)
    assert planned.returncode == 0, planned.stderr
    # run does: one line naming the variable, nothing written.
    ran = cli("run", "--bucket", str(bucket), *JOB, "--progress", "none", env=bad_retries)
    assert_one_line_error(ran, 2, "SCM_BATCH_RETRY_ATTEMPTS", "a whole number", "'three'")
    assert not (bucket / "metadata").exists()
    # A flag wins over its variable; the variable's default over the built-in one.
    flagged = cli(
        "plan", "--bucket", str(bucket), *JOB, "--min-chunk-size", "50", "--json",
        env={"SCM_BATCH_MIN_CHUNK_SIZE": "100", "SCM_BATCH_MAX_CONCURRENT_CHUNKS": "8"},
    )  # fmt: skip
    assert flagged.returncode == 0, flagged.stderr
    assert '"chunkSize": 50' in flagged.stdout  # 200 records, 8 ways, at least 50 a chunk
    ran = cli("run", "--bucket", str(bucket), *JOB, "--progress", "none")
    assert ran.returncode == 0, ran.stderr
    # status reads where the bucket is, nothing else.
    state = cli("status", "--bucket", str(bucket), "--batch-id", "b", env=bad_retries)
    assert state.returncode == 0, state.stderr
    assert "notified" in state.stdout
