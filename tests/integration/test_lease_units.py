"""The batch lease's rules, on a local directory and on an S3 API server."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scm_batch import lease
from scm_batch.errors import BatchBusyError, LeaseLostError
from scm_batch.ledger import Ledger
from scm_batch.storage import LocalStorage, S3Options
from scm_batch.storage.s3 import S3Storage
from tests.integration.servers import MotoServer
from tests.integration.test_s3_pipeline import new_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def claim(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": "2026-01-01T00:00:00.000Z",
        "expires": "2999-01-01T00:00:00.000Z",
    }
    return json.dumps({**fields, **changes}).encode()


def test_a_claim_is_stale_when_expired_its_process_gone_or_its_execution_ended() -> None:
    assert not lease._stale(claim(), None, None)
    assert lease._stale(claim(expires="2000-01-01T00:00:00.000Z"), None, None)
    assert lease._stale(claim(pid=2**22 + 12345), None, None)  # no such process here
    assert not lease._stale(claim(host="elsewhere", pid=2**22 + 12345), None, None)
    aws = {"host": "aws", "pid": None, "execution": "arn:x:execution:m:e1"}
    assert not lease._stale(claim(**aws), lambda arn: True, None)
    assert lease._stale(claim(**aws), lambda arn: False, None)
    assert lease._stale(claim(**aws), lambda arn: True, "arn:x:execution:m:e1")  # its own
    assert not lease._stale(claim(**aws), None, None)  # cannot tell: it stands until it expires
    assert lease._stale(b"not a claim", None, None)


def test_a_local_batch_is_held_by_one_run_at_a_time(tmp_path: Path) -> None:
    first, second = (Ledger(LocalStorage(tmp_path), "b") for _ in range(2))
    busy = pytest.raises(BatchBusyError, match=f"pid {os.getpid()} on ")
    with lease.held(first), busy, lease.held(second):
        pass
    with lease.held(second):  # let go: the next run takes it
        pass


def test_a_run_whose_s3_lease_is_taken_over_stops(s3: S3Client, moto: MotoServer) -> None:
    bucket = new_bucket(s3)
    ledger = Ledger(S3Storage(bucket, S3Options(endpoint_url=moto.endpoint)), "b")
    running = threading.Event()
    lost = pytest.raises(LeaseLostError, match="taken over by another run")
    with lost, lease.held(ledger, seconds=0.6):
        # Another run takes the batch over (as after this one's claim expired unrenewed): this
        # one's next renewal finds the claim is no longer its own, and it stops.
        s3.put_object(Bucket=bucket, Key="metadata/b.lease", Body=claim(pid=1))
        for _ in range(600):  # the run, going on until stopped (30 s at most)
            running.wait(0.05)
    assert json.loads(s3.get_object(Bucket=bucket, Key="metadata/b.lease")["Body"].read()) == (
        json.loads(claim(pid=1))
    )  # the other run's claim is left alone
