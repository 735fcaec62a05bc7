"""Whole batches with the bucket on a real S3 API server (moto over HTTP), through the CLI."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from scm_batch.records.generate import generate_file
from tests.conftest import Cli, run_cli
from tests.integration.servers import FaultProxy, MotoServer, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PROCESSED_AT = "2026-04-01T00:00:00.000Z"
BIG = 500_000
# Small batches: six chunks, lines counted (on S3 too) like the local run they are compared with.
SMALL = ("--max-concurrent-chunks", "6", "--min-chunk-size", "1", "--count-records")


def new_bucket(s3: S3Client) -> str:
    name = f"batch-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def run_args(bucket: str, endpoint: str, *extra: str) -> list[str]:
    return [
        "run",
        "--bucket", bucket,
        "--file", "input/records.jsonl",
        "--customer-id", "cust-s3",
        "--tenant-id", "ten-s3",
        "--batch-id", "s3batch",
        "--processed-at", PROCESSED_AT,
        "--endpoint-url", endpoint,
        "--workers", "2",
        "--progress", "none",
        "--json",
        *extra,
    ]  # fmt: skip


def s3_parts(s3: S3Client, bucket: str) -> dict[str, bytes]:
    parts = {}
    for prefix in ("results/s3batch/", "errors/s3batch/"):
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            parts[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return parts


def local_parts(root: Path) -> dict[str, bytes]:
    found = sorted(root.glob("results/s3batch/*")) + sorted(root.glob("errors/s3batch/*"))
    return {str(p.relative_to(root)): p.read_bytes() for p in found}


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("s3input") / "input" / "records.jsonl"
    generate_file(path, BIG, seed=17, invalid_rate=0.002, malformed_rate=0.0001)
    return path


@pytest.fixture(scope="module")
def local_reference(
    big_input: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, bytes], dict[str, Any]]:
    root = big_input.parent.parent
    args = [a for a in run_args(str(root), "unused") if a not in ("--endpoint-url", "unused")]
    # Lines are estimated by default on S3 (counting them would read the object twice): the
    # local run is asked to do the same, so both cut the file at the same places.
    result = run_cli(*args, "--estimate-records")
    assert result.returncode == 0, result.stderr
    return local_parts(root), json.loads(result.stdout)


def upload(s3: S3Client, bucket: str, path: Path, key: str = "input/records.jsonl") -> None:
    s3.upload_file(str(path), bucket, key)


@pytest.mark.slow
def test_a_batch_on_s3_matches_the_same_batch_on_local_disk(
    cli: Cli,
    s3: S3Client,
    moto: MotoServer,
    big_input: Path,
    local_reference: tuple[dict[str, bytes], dict[str, Any]],
) -> None:
    expected_parts, expected = local_reference
    bucket = new_bucket(s3)
    upload(s3, bucket, big_input)
    started = time.perf_counter()
    result = cli(*run_args(f"s3://{bucket}", moto.endpoint))
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rate = summary["summary"]["recordsPerSecond"]
    print(f"\nS3 run of {BIG:,} records: {elapsed:.1f} s wall, {rate:,.0f} records/s")
    assert s3_parts(s3, bucket) == expected_parts
    for key in ("totals", "errorsByCategory", "chunksTotal", "validationStatus"):
        assert summary[key] == expected[key]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    plan = json.loads(
        s3.get_object(Bucket=bucket, Key="metadata/s3batch/chunks.json")["Body"].read()
    )
    assert (
        plan["source"]["etag"] == s3.head_object(Bucket=bucket, Key="input/records.jsonl")["ETag"]
    )
    assert json.loads(
        s3.get_object(Bucket=bucket, Key="notifications/s3batch/kafka.json")["Body"].read()
    )["resultLocation"] == {
        "bucket": f"s3://{bucket}",
        "key": "final-results/s3batch/aggregated-results.json",
    }


@pytest.fixture(scope="module")
def small_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("small")
    path = root / "input" / "records.jsonl"
    generate_file(path, 60_000, seed=8, invalid_rate=0.002)
    args = [a for a in run_args(str(root), "unused") if a not in ("--endpoint-url", "unused")]
    result = run_cli(*args, *SMALL)
    assert result.returncode == 0, result.stderr
    return path, local_parts(root)


def test_connections_dropped_mid_read_lose_and_repeat_nothing(
    cli: Cli, s3: S3Client, moto: MotoServer, small_input: tuple[Path, dict[str, bytes]]
) -> None:
    path, expected = small_input
    bucket = new_bucket(s3)
    upload(s3, bucket, path)
    proxy = FaultProxy(moto.endpoint)
    try:
        # Only chunk reads (a few MB each) are cut, 1 MB into their body; the 1 MiB sample and
        # the line counting's small reads pass.
        proxy.drop_ranged_gets(4, after=1_000_000, longer_than=2_000_000)
        result = cli(*run_args(f"s3://{bucket}", proxy.endpoint, *SMALL))
        assert result.returncode == 0, result.stderr
        assert proxy.drops == 4
        summary = json.loads(result.stdout)
        # Every drop was mended inside the read: no chunk needed a second attempt.
        assert {d["attempts"] for d in summary["chunkDetails"]} == {1}
        chunk_starts = {d["byteStart"] for d in summary["chunkDetails"]}
        starts = [int(r.split("bytes=")[1].split("-")[0]) for r in proxy.requests if "bytes=" in r]
        resumed = [start for start in starts if start not in chunk_starts]
        assert len(resumed) >= 4  # reads picked up mid-chunk, where they broke off
    finally:
        proxy.close()
    assert s3_parts(s3, bucket) == expected


def test_an_upload_left_open_by_a_killed_worker_is_aborted(
    s3: S3Client, moto: MotoServer, tmp_path: Path
) -> None:
    from scm_batch.config import RunOptions
    from scm_batch.faults import parse_faults
    from scm_batch.lifecycle import run_batch
    from scm_batch.model import PlanOptions
    from scm_batch.retry import RetryPolicy
    from scm_batch.storage import S3Options, StorageOptions
    from tests.helpers import job_input

    bucket = new_bucket(s3)
    generate_file(tmp_path / "records.jsonl", 30_000, seed=2)  # ~11 MB: one chunk, two parts
    upload(s3, bucket, tmp_path / "records.jsonl")
    options = RunOptions(
        workers=1,
        retry=RetryPolicy(base_delay_seconds=0.01),
        plan=PlanOptions(min_chunk_size=1),
        storage=StorageOptions(s3=S3Options(endpoint_url=moto.endpoint, part_size=5 << 20)),
        # The worker dies once 7 MiB of results are written: one part is uploaded, the upload open.
        faults=parse_faults("chunk_000000=kill:1@7"),
    )
    job = job_input(f"s3://{bucket}", "input/records.jsonl", max_concurrent_chunks=1)
    report = run_batch(job, options)
    assert report.exit_code == 0
    (detail,) = report.summary.chunk_details
    assert detail.attempts == 2
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    body = s3.get_object(Bucket=bucket, Key="results/b/chunk_000000.jsonl")["Body"].read()
    assert body.count(b"\n") == 30_000


def test_resume_on_s3_and_refusal_after_the_input_is_overwritten(
    cli: Cli, s3: S3Client, moto: MotoServer, small_input: tuple[Path, dict[str, bytes]]
) -> None:
    path, expected = small_input
    bucket = new_bucket(s3)
    upload(s3, bucket, path)
    args = run_args(f"s3://{bucket}", moto.endpoint, *SMALL)
    killed = cli(*args, env={"SCM_BATCH_FAULTS": "chunk_000003=kill-driver"})
    assert killed.returncode == -signal.SIGKILL
    status = cli(
        "status",
        "--bucket",
        f"s3://{bucket}",
        "--batch-id",
        "s3batch",
        "--endpoint-url",
        moto.endpoint,
        "--json",
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["chunksPending"] > 0
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert 2 <= summary["chunksResumed"] < summary["chunksTotal"]
    assert s3_parts(s3, bucket) == expected
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    other = new_bucket(s3)
    upload(s3, other, path)
    args = run_args(f"s3://{other}", moto.endpoint, *SMALL)
    assert (
        cli(*args, env={"SCM_BATCH_FAULTS": "driver=after-chunks:2"}).returncode == -signal.SIGKILL
    )
    s3.put_object(
        Bucket=other, Key="input/records.jsonl", Body=path.read_bytes() + b'{"late": 1}\n'
    )
    refused = cli(
        "resume",
        "--bucket",
        f"s3://{other}",
        "--batch-id",
        "s3batch",
        "--endpoint-url",
        moto.endpoint,
    )
    assert refused.returncode == 2
    assert "changed since batch 's3batch' was planned" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_manifest_trigger_and_its_event(
    cli: Cli, s3: S3Client, moto: MotoServer, tmp_path: Path
) -> None:
    bucket = new_bucket(s3)
    generate_file(tmp_path / "records.jsonl", 2_000, seed=3)
    upload(s3, bucket, tmp_path / "records.jsonl", "data/60m-records.json")
    manifest = {
        "file": "data/60m-records.json",
        "customerId": "customer123",
        "tenantId": "tenant456",
        "batchId": "from-manifest",
        "deployment": "CORE",
        "snapshotId": "snapshot-001",
    }

    def put_manifest(key: str, **changes: str) -> None:
        body = json.dumps({**manifest, **changes}).encode()
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    def trigger(*how: str) -> Any:
        return cli("run", *how, "--endpoint-url", moto.endpoint, "--progress", "none")

    def written(key: str) -> bool:
        return s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 1

    put_manifest("manifests/m1.json")
    ran = trigger("--manifest", f"s3://{bucket}/manifests/m1.json")
    assert ran.returncode == 0, ran.stderr
    assert written("notifications/from-manifest/sqs_core.json")  # deployment CORE

    put_manifest("manifests/m 2.json", batchId="from-event")
    event = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": bucket}, "object": {"key": "manifests/m+2.json"}},
    }
    (tmp_path / "event.json").write_text(json.dumps(event))
    ran = trigger("--event", str(tmp_path / "event.json"))
    assert ran.returncode == 0, ran.stderr
    assert written("final-results/from-event/aggregated-results.json")

    put_manifest("manifests/bad.json", bucket="elsewhere")
    wrong = trigger("--manifest", f"s3://{bucket}/manifests/bad.json")
    assert (wrong.returncode, "its file must be in" in wrong.stderr) == (2, True)
    missing = trigger("--manifest", f"s3://{bucket}/manifests/none.json")
    assert (missing.returncode, "no such object" in missing.stderr) == (2, True)
    (tmp_path / "not-s3.json").write_text(json.dumps({"detail": {}}))
    odd = cli("run", "--event", str(tmp_path / "not-s3.json"))
    assert (odd.returncode, "not an S3 Object Created event" in odd.stderr) == (2, True)


def one_line_error(result: Any, code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


def plan_args(bucket: str, endpoint: str, file: str = "in.jsonl") -> list[str]:
    return [
        "plan",
        "--bucket",
        bucket,
        "--file",
        file,
        "--customer-id",
        "c",
        "--tenant-id",
        "t",
        "--batch-id",
        "b",
        "--endpoint-url",
        endpoint,
    ]


def test_clear_errors_for_s3_trouble(
    cli: Cli, s3: S3Client, moto: MotoServer, locked: tuple[MotoServer, dict[str, str]]
) -> None:
    bucket = new_bucket(s3)
    one_line_error(
        cli(*plan_args("s3://no-such-bucket-xyz", moto.endpoint)),
        2,
        "s3://no-such-bucket-xyz does not exist",
    )
    one_line_error(
        cli(*plan_args(f"s3://{bucket}", moto.endpoint)), 2, "in.jsonl", "no such object"
    )
    one_line_error(cli(*plan_args("s3://Bad_Name", moto.endpoint)), 2, "not an S3 bucket name")
    dead = f"http://127.0.0.1:{free_port()}"
    one_line_error(cli(*plan_args(f"s3://{bucket}", dead)), 6, "cannot reach")
    server, credentials = locked
    one_line_error(
        cli(*plan_args("s3://locked-bucket", server.endpoint), env=credentials), 2, "access denied"
    )
    proxy = FaultProxy(moto.endpoint)
    proxy.answer_with(
        b"HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n"
    )
    try:
        one_line_error(
            cli(*plan_args(f"s3://{bucket}", proxy.endpoint)), 2, "eu-west-1", "--region"
        )
    finally:
        proxy.close()
    busy = FaultProxy(moto.endpoint)
    busy.answer_with(b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n")
    try:
        one_line_error(cli(*plan_args(f"s3://{bucket}", busy.endpoint)), 6, "throttling")
    finally:
        busy.close()
    one_line_error(
        cli(*plan_args(f"s3://{bucket}", moto.endpoint), "--region", "no way"), 2, "--region"
    )
    one_line_error(cli(*plan_args(f"s3://{bucket}", "not a url")), 2, "--endpoint-url")
