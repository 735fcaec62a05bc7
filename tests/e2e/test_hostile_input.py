"""What a hostile user found (issue 11): nothing lost, nothing altered, one run per batch.
Each test here failed on the code before its fix."""

from __future__ import annotations

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
    "key",
    [
        "results/self/chunk_000000.jsonl",  # chunk 0's output would overwrite it
        "final-results/self/input.jsonl",  # --overwrite would delete it before reading it
        "metadata/self/chunks/input.jsonl",
    ],
)
def test_an_input_under_the_batch_own_outputs_is_refused(cli: Cli, bucket: Path, key: str) -> None:
    path = bucket / key
    path.parent.mkdir(parents=True)
    path.write_text(GOOD_RECORD * 20)
    before = path.read_bytes()
    result = cli("run", *batch_flags(bucket, key), "--overwrite")
    assert_one_line_error(result, 2, f"is under {key.rsplit('/', 2)[0]}/", "its own input")
    assert path.read_bytes() == before
    # Another batch's outputs are just files: reading them is fine.
    ok = cli("run", *batch_flags(bucket, key, batch_id="other"))
    assert ok.returncode == 0, ok.stderr
