"""The Dask executor on a real cluster: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, each worker in a working directory of its own, the bucket on the S3 API server (moto
over HTTP).

The workers are started with credentials only: the S3 endpoint, the queues and every other setting
reach them with the tasks. The scheduler is started as the README advises
(``allowed-failures`` 0), so that a worker's death is scm-batch's to retry, attempt by attempt.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import distributed
import msgspec
import psutil
import pytest

from scm_batch import layout
from scm_batch.config import RunOptions
from scm_batch.errors import ExitCode
from scm_batch.faults import parse_faults
from scm_batch.ledger import Ledger
from scm_batch.lifecycle import RunReport, run_batch
from scm_batch.model import PlanOptions, RunSummary, StatusWord, Tolerance
from scm_batch.records.generate import generate_file
from scm_batch.retry import RetryPolicy
from scm_batch.sinks.options import DeliveryOptions, SqsOptions
from scm_batch.storage import StorageOptions, open_storage
from scm_batch.storage.options import S3Options
from tests.conftest import run_cli
from tests.helpers import job_input
from tests.integration.servers import DaskCluster, MotoServer, dask_cluster, moto_server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.slow

RECORDS = 200_000
PROCESSED_AT = "2026-03-01T00:00:00.000Z"
FAST_RETRY = RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05)
# What the scheduler is started with: a dead worker's task fails at once, for scm-batch to retry.
SCHEDULER_ENV = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
# Settings a worker must not have: everything but credentials comes with the tasks.
NOT_FOR_WORKERS = ("AWS_ENDPOINT_URL", "SCM_BATCH_", "KAFKA_", "SQS_")


def worker_env(**credentials: str) -> dict[str, str]:
    """A worker's environment: this one's without any setting, with ``credentials``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(NOT_FOR_WORKERS)}
    return {**kept, **credentials}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    root = tmp_path_factory.mktemp("dask")
    workers = {"w1": worker_env(), "w2": worker_env()}
    with dask_cluster(root, workers, SCHEDULER_ENV) as started:
        yield started


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "records.jsonl"
    generate_file(path, RECORDS, seed=15, invalid_rate=0.004)
    return path


def new_bucket(s3: S3Client, source: Path) -> str:
    name = f"dask-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.upload_file(str(source), name, "input/records.jsonl")
    return f"s3://{name}"


def options(moto: MotoServer, cluster: DaskCluster | None, **changes: Any) -> RunOptions:
    """The run's options: the local pool without ``cluster``, the Dask cluster with it."""
    base = RunOptions(
        workers=2,
        retry=FAST_RETRY,
        plan=PlanOptions(min_chunk_size=1, count_records=True),
        storage=StorageOptions(s3=S3Options(endpoint_url=moto.endpoint)),
    )
    if cluster is not None:
        base = msgspec.structs.replace(base, executor="dask", dask_scheduler=cluster.address)
    return msgspec.structs.replace(base, **changes)


def run(bucket: str, opts: RunOptions, faults: str | None = None) -> RunReport:
    job = job_input(
        bucket, "input/records.jsonl", max_concurrent_chunks=10, processed_at=PROCESSED_AT
    )
    return run_batch(job, msgspec.structs.replace(opts, faults=parse_faults(faults)))


def parts(bucket: str, moto: MotoServer) -> dict[str, bytes]:
    store = open_storage(bucket, StorageOptions(s3=S3Options(endpoint_url=moto.endpoint)))
    keys = store.list_keys("results/b/") + store.list_keys("errors/b/")
    return {key: store.get_bytes(key) for key in sorted(keys)}


def outcome(summary: RunSummary) -> dict[str, Any]:
    """What a run's summary says that does not depend on time, memory or the machine."""
    return {
        "status": summary.status,
        "totals": msgspec.to_builtins(summary.totals),
        "succeeded": summary.chunks_succeeded,
        "failed": summary.chunks_failed,
        "not processed": summary.chunks_not_processed,
        "failures": [
            (f.chunk_id, f.error_type, f.transient, [a.status for a in f.attempts])
            for f in summary.failed_chunks
        ],
        "attempts": {d.chunk_id: d.attempts for d in summary.chunk_details},
    }


@pytest.fixture(scope="module")
def reference(s3: S3Client, moto: MotoServer, source: Path) -> tuple[RunReport, dict[str, bytes]]:
    """The batch run by the local pool: what every Dask run must give, byte for byte."""
    bucket = new_bucket(s3, source)
    report = run(bucket, options(moto, None))
    assert report.exit_code == ExitCode.OK
    return report, parts(bucket, moto)


def test_200k_records_on_the_cluster_equal_the_local_pools(
    s3: S3Client,
    moto: MotoServer,
    source: Path,
    cluster: DaskCluster,
    reference: tuple[RunReport, dict[str, bytes]],
) -> None:
    bucket = new_bucket(s3, source)
    report = run(bucket, options(moto, cluster))
    assert report.exit_code == ExitCode.OK
    expected, expected_parts = reference
    assert report.summary.totals.lines == RECORDS
    assert outcome(report.summary) == outcome(expected.summary)
    got = parts(bucket, moto)
    assert len(got) == 20  # a result and an error part for each of the ten chunks
    assert got == expected_parts


def test_a_worker_killed_mid_chunk_fails_only_that_chunk_which_is_retried(
    s3: S3Client,
    moto: MotoServer,
    source: Path,
    cluster: DaskCluster,
    reference: tuple[RunReport, dict[str, bytes]],
) -> None:
    bucket = new_bucket(s3, source)
    # The worker process running chunk 4's first attempt SIGKILLs itself after its first block
    # (of about four): its nanny starts a new one; the chunk is tried again.
    report = run(bucket, options(moto, cluster), "chunk_000004=kill:1")
    assert report.exit_code == ExitCode.OK
    assert parts(bucket, moto) == reference[1]
    details = {d.chunk_id: d for d in report.summary.chunk_details}
    assert details["chunk_000004"].attempts == 2
    assert all(d.attempts == 1 for c, d in details.items() if c != "chunk_000004")
    receipt = Ledger(open_storage(bucket, options(moto, None).storage), "b").receipt("chunk_000004")
    assert receipt is not None
    first, second = receipt.attempts
    assert (first.status, first.error_type) == (StatusWord.CHUNK_FAILED, "WorkerDiedError")
    assert "died" in (first.message or "")
    assert second.status == StatusWord.CHUNK_PROCESSED


def test_a_stuck_chunk_is_given_up_and_its_worker_restarted(
    s3: S3Client,
    moto: MotoServer,
    source: Path,
    cluster: DaskCluster,
    reference: tuple[RunReport, dict[str, bytes]],
) -> None:
    """The worker process running chunk 2's first attempt stops itself (SIGSTOP) after a block:
    past its timeout the chunk is failed and retried, the stopped worker restarted by its nanny
    (else it would hold its slot, and the chunks queued on it, for good)."""
    client = distributed.Client(cluster.address, set_as_default=False)  # type: ignore[no-untyped-call]
    with client:
        workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    bucket = new_bucket(s3, source)
    report = run(bucket, options(moto, cluster, chunk_timeout_seconds=5.0), "chunk_000002=stall:1")
    assert report.exit_code == ExitCode.OK
    assert parts(bucket, moto) == reference[1]
    receipt = Ledger(open_storage(bucket, options(moto, None).storage), "b").receipt("chunk_000002")
    assert receipt is not None
    first, second = receipt.attempts
    assert (first.status, first.error_type) == (StatusWord.CHUNK_FAILED, "WorkerDiedError")
    assert "made no progress" in (first.message or "")
    assert "its worker was restarted" in (first.message or "")
    assert second.status == StatusWord.CHUNK_PROCESSED
    # The stopped worker process is killed by its nanny (which starts another), not left stopped.
    for process in workers:
        with suppress(psutil.NoSuchProcess):
            if process.status() == psutil.STATUS_STOPPED:
                process.wait(timeout=60)
    assert sum(not process.is_running() for process in workers) == 1


def test_tolerated_and_terminal_failures_end_as_on_the_local_pool(
    s3: S3Client, moto: MotoServer, source: Path, cluster: DaskCluster
) -> None:
    tolerated = "chunk_000001=transient:1,chunk_000003=terminal"
    ends = {}
    for name, where in (("local", None), ("dask", cluster)):
        report = run(new_bucket(s3, source), options(moto, where, tolerance=Tolerance(count=1)),
                     tolerated)  # fmt: skip
        ends[name] = (report.exit_code, outcome(report.summary))
    assert ends["dask"] == ends["local"]
    code, summary = ends["dask"]
    assert code == ExitCode.COMPLETED_WITH_TOLERATED_FAILURES
    assert summary["failures"] == [
        ("chunk_000003", "InjectedTerminalError", False, [StatusWord.CHUNK_FAILED])
    ]
    assert summary["attempts"]["chunk_000001"] == 2

    # Beyond the tolerance: the run fails fast. How many chunks were already running when it did
    # is the machine's timing; the rest of the ending is the same on both.
    failing = "chunk_000000=terminal"
    for name, where in (("local", None), ("dask", cluster)):
        failed = run(new_bucket(s3, source), options(moto, where), failing)
        assert failed.exit_code == ExitCode.CHUNKS_FAILED, name
        assert failed.summary.status == StatusWord.CHUNK_FAILED, name
        assert [(f.chunk_id, f.error_type) for f in failed.summary.failed_chunks] == [
            ("chunk_000000", "InjectedTerminalError")
        ], name
        assert failed.summary.chunks_succeeded + failed.summary.chunks_not_processed == 9, name


def test_a_killed_driver_resumes_on_the_cluster_to_the_same_bytes(
    s3: S3Client,
    moto: MotoServer,
    source: Path,
    cluster: DaskCluster,
    reference: tuple[RunReport, dict[str, bytes]],
) -> None:
    bucket = new_bucket(s3, source)
    common = ("--bucket", bucket, "--endpoint-url", moto.endpoint, "--executor", "dask",
              "--dask-scheduler", cluster.address, "--progress", "none", "--json")  # fmt: skip
    killed = run_cli(
        "run", *common, "--file", "input/records.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", "b", "--processed-at", PROCESSED_AT,
        "--max-concurrent-chunks", "10", "--min-chunk-size", "1", "--count-records",
        env={"SCM_BATCH_FAULTS": "driver=after-chunks:3"},
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_cli("resume", *common, "--batch-id", "b")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["chunksResumed"] >= 3
    assert summary["totals"]["lines"] == RECORDS
    assert parts(bucket, moto) == reference[1]


def test_records_go_to_sqs_from_the_workers_configured_by_the_task(
    s3: S3Client, moto: MotoServer, cluster: DaskCluster, tmp_path: Path
) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto.endpoint)
    core = sqs.create_queue(QueueName=f"core-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    small = tmp_path / "small.jsonl"
    # 400 records: moto's queue slows down in proportion to what it holds.
    generate_file(small, 400, seed=4, invalid_rate=0.01)
    bucket = new_bucket(s3, small)
    delivery = DeliveryOptions(sqs=SqsOptions(core_queue_url=core, endpoint_url=moto.endpoint))
    job = job_input(bucket, "input/records.jsonl", max_concurrent_chunks=4,
                    destination="sqs_core", processed_at=PROCESSED_AT)  # fmt: skip
    report = run_batch(job, options(moto, cluster, delivery=delivery))
    assert report.exit_code == ExitCode.OK
    bodies = []
    while batch := sqs.receive_message(QueueUrl=core, MaxNumberOfMessages=10).get("Messages"):
        bodies += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=core,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    records = [b["record"]["id"] for b in bodies if "record" in b]
    assert len(records) == len(set(records)) == report.summary.totals.valid_records > 380
    assert {b["metadata"]["chunkId"] for b in bodies if "record" in b} == {
        f"chunk_00000{i}" for i in range(4)
    }


# ---- a worker that cannot reach the bucket -------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """An S3 server that checks credentials after its first seven requests: a bucket holding an
    input, a user allowed everything on S3 (its keys returned) and one allowed nothing."""
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="7") as server:
        s3 = boto3.client("s3", endpoint_url=server.endpoint)
        iam = boto3.client("iam", endpoint_url=server.endpoint)
        s3.create_bucket(Bucket="guarded")
        s3.put_object(Bucket="guarded", Key="input/records.jsonl", Body=b'{"a": 1}\n' * 50)
        iam.create_user(UserName="runner")
        allow = {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}  # fmt: skip
        iam.put_user_policy(UserName="runner", PolicyName="s3", PolicyDocument=json.dumps(allow))
        runner = iam.create_access_key(UserName="runner")["AccessKey"]
        iam.create_user(UserName="nobody")
        nobody = iam.create_access_key(UserName="nobody")["AccessKey"]
        keys = {
            "runner": (runner["AccessKeyId"], runner["SecretAccessKey"]),
            "nobody": (nobody["AccessKeyId"], nobody["SecretAccessKey"]),
        }
        yield (
            server,
            {
                f"{who}:{part}": value
                for who, (key, secret) in keys.items()
                for part, value in (("key", key), ("secret", secret))
            },
        )


def credentials(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": keys[f"{who}:key"], "AWS_SECRET_ACCESS_KEY": keys[f"{who}:secret"]}


def test_a_worker_without_access_to_the_bucket_fails_the_preflight_in_one_line(
    guarded: tuple[MotoServer, dict[str, str]], tmp_path: Path
) -> None:
    server, keys = guarded
    workers = {
        "able": worker_env(**credentials(keys, "runner")),
        "unable": worker_env(**credentials(keys, "nobody")),
    }
    with dask_cluster(tmp_path, workers, SCHEDULER_ENV) as cluster:
        ran = run_cli(
            "run", "--bucket", "s3://guarded", "--file", "input/records.jsonl",
            "--customer-id", "c", "--tenant-id", "t", "--batch-id", "b",
            "--endpoint-url", server.endpoint, "--executor", "dask",
            "--dask-scheduler", cluster.address, "--progress", "none",
            env=credentials(keys, "runner"),
        )  # fmt: skip
    assert ran.returncode == ExitCode.UNAVAILABLE, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("error: worker unable (tcp://127.0.0.1:")
    assert lines[0].endswith(
        "cannot read the input: s3://guarded/input/records.jsonl: access denied (403)"
    )
    assert "worker able" not in lines[0]
    # Not a chunk failure per chunk: nothing ran, nothing failed.
    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=keys["runner:key"],
        aws_secret_access_key=keys["runner:secret"],
    )
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="guarded").get("Contents", [])]
    assert "input/records.jsonl" in listed
    ran_or_failed = (layout.receipt_prefix("b"), layout.failure_prefix("b"), "results/", "errors/")
    assert not [key for key in listed if key.startswith(ran_or_failed)]


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    generate_file(bucket / "input" / "records.jsonl", 100, seed=1)
    ran = run_cli(
        "run", "--bucket", str(bucket), "--file", "input/records.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", "b", "--executor", "dask",
        "--dask-scheduler", "tcp://127.0.0.1:9", "--progress", "none",
        env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )  # fmt: skip
    assert ran.returncode == ExitCode.UNAVAILABLE, ran.stderr
    (line,) = ran.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def test_without_a_scheduler_a_local_cluster_runs_the_batch(tmp_path: Path) -> None:
    """``--executor dask`` alone: a local cluster of ``--workers`` processes, started while the
    batch is planned, closed after; a local directory as the bucket."""
    outputs = {}
    for name, extra in (("pool", ()), ("dask", ("--executor", "dask"))):
        bucket = tmp_path / name
        generate_file(bucket / "input" / "records.jsonl", 20_000, seed=8, invalid_rate=0.002)
        ran = run_cli(
            "run", "--bucket", str(bucket), "--file", "input/records.jsonl",
            "--customer-id", "c", "--tenant-id", "t", "--batch-id", "b",
            "--processed-at", PROCESSED_AT, "--workers", "2", "--max-concurrent-chunks", "6",
            "--min-chunk-size", "1", "--progress", "log", *extra,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        outputs[name] = {
            str(p.relative_to(bucket)): p.read_bytes()
            for p in sorted(bucket.glob("results/b/*")) + sorted(bucket.glob("errors/b/*"))
        }
        if name == "dask":
            assert "6 of 6 chunks of up to 3,334 records on a local Dask cluster: 2 workers" in (
                ran.stderr
            )
            assert not list(bucket.glob("metadata/b.reach-check-*"))  # the probes are gone
    assert len(outputs["dask"]) == 12
    assert outputs["dask"] == outputs["pool"]
