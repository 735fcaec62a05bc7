"""One run of a batch at a time on an S3 API server (issue 11): the lease is a conditional create
(If-None-Match: *) renewed by its holder; a killed holder's claim is taken over by resume."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from scm_batch.records.generate import generate_file
from tests.conftest import Cli
from tests.e2e.test_one_run_per_batch import one_refused, run_args, together
from tests.integration.servers import MotoServer
from tests.integration.test_s3_pipeline import new_bucket, upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def parts(s3: S3Client, bucket: str) -> dict[str, bytes]:
    found = {}
    for prefix in ("results/together/", "errors/together/"):
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            found[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def test_two_runs_on_s3_one_refuses_and_a_killed_one_is_taken_over(
    cli: Cli, s3: S3Client, moto: MotoServer, tmp_path: Path
) -> None:
    generate_file(tmp_path / "a.jsonl", 100_000, seed=4)
    generate_file(tmp_path / "b.jsonl", 100_000, seed=5)
    bucket, reference = new_bucket(s3), new_bucket(s3)
    for name in (bucket, reference):
        upload(s3, name, tmp_path / "a.jsonl", "a.jsonl")
        upload(s3, name, tmp_path / "b.jsonl", "b.jsonl")
    endpoint = ("--endpoint-url", moto.endpoint, "--count-records")

    runs = together(
        run_args(f"s3://{bucket}", "a.jsonl", *endpoint),
        run_args(f"s3://{bucket}", "b.jsonl", *endpoint),
    )
    winner = one_refused(runs)
    file = json.loads(winner.stdout)["source"]["key"]
    assert cli(*run_args(f"s3://{reference}", file, *endpoint)).returncode == 0
    assert parts(s3, bucket) == parts(s3, reference)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="metadata/together.lease")

    killed_bucket = new_bucket(s3)
    upload(s3, killed_bucket, tmp_path / "a.jsonl", "a.jsonl")
    args = run_args(f"s3://{killed_bucket}", "a.jsonl", *endpoint)
    killed = cli(*args, env={"SCM_BATCH_FAULTS": "driver=after-chunks:2"})
    assert killed.returncode == -signal.SIGKILL
    lease = s3.get_object(Bucket=killed_bucket, Key="metadata/together.lease")["Body"].read()
    assert json.loads(lease)["pid"] > 0  # the dead run's claim, not expired yet
    resumed = cli("resume", "--bucket", f"s3://{killed_bucket}", "--batch-id", "together",
                  "--endpoint-url", moto.endpoint)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
