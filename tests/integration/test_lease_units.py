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
from scm_batch.errors import BatchBusyError, LeaseLostError, StorageUnavailableError
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
        "space": lease._pid_space(),
    }
    return json.dumps({**fields, **changes}).encode()


GONE = 2**22 + 12345  # no such process here
EXECUTION = {"host": "aws", "pid": None, "execution": "arn:x:execution:m:e1"}


def test_a_claim_is_stale_when_expired_its_process_gone_or_its_execution_ended() -> None:
    assert not lease._stale(claim(), None, None, None)
    assert lease._stale(claim(expires="2000-01-01T00:00:00.000Z"), None, None, None)
    assert lease._stale(claim(pid=GONE), None, None, None)
    assert not lease._stale(claim(host="elsewhere", pid=GONE), None, None, None)
    # The same host name, another PID namespace (a container): its pids are not ours to judge.
    assert not lease._stale(claim(pid=GONE, space="another-boot/pid:[1]"), None, None, None)
    assert not lease._stale(claim(pid=GONE, space=None), None, None, None)
    assert not lease._stale(claim(**EXECUTION), None, lambda arn: True, None)
    assert lease._stale(claim(**EXECUTION), None, lambda arn: False, None)
    assert lease._stale(claim(**EXECUTION), None, lambda arn: True, "arn:x:execution:m:e1")
    assert not lease._stale(claim(**EXECUTION), None, None, None)  # cannot tell: it stands
    assert not lease._stale(claim(**EXECUTION), None, lambda arn: None, None)


def test_a_running_execution_keeps_its_claim_however_old_and_an_unanswered_one_expires() -> None:
    # An execution waits out throttles for days: past its claim's time, it still runs.
    old = claim(**EXECUTION, expires="2000-01-01T00:00:00.000Z", seconds=172_800.0)
    assert not lease._stale(old, 400_000.0, lambda arn: True, None)
    assert lease._stale(old, 400_000.0, lambda arn: False, None)
    # Where Step Functions cannot be asked, the claim's time decides.
    assert lease._stale(old, 400_000.0, lambda arn: None, None)
    assert lease._stale(old, None, None, None)
    assert not lease._stale(old, 100.0, lambda arn: None, None)
    assert lease._stale(b"not a claim", None, None, None)


def test_a_claim_time_is_judged_by_the_storage_clock_where_it_is_known() -> None:
    # Its writer's clock ran behind (an expiry long past) or ahead (one far off): the claim's
    # age on the storage's clock decides, against its own duration.
    past, future = "2000-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z"
    elsewhere = {"host": "elsewhere", "seconds": 60.0}
    assert not lease._stale(claim(**elsewhere, expires=past), 59.0, None, None)
    assert lease._stale(claim(**elsewhere, expires=future), 61.0, None, None)
    assert lease._stale(claim(**elsewhere, expires=past), None, None, None)  # age unknown


def test_a_local_batch_is_held_by_one_run_at_a_time(tmp_path: Path) -> None:
    first, second = (Ledger(LocalStorage(tmp_path), "b") for _ in range(2))
    busy = pytest.raises(BatchBusyError, match=f"pid {os.getpid()} on ")
    with lease.held(first), busy, lease.held(second):
        pass
    with lease.held(second):  # let go: the next run takes it
        pass


def s3_ledger(s3: S3Client, moto: MotoServer) -> tuple[str, Ledger]:
    bucket = new_bucket(s3)
    return bucket, Ledger(S3Storage(bucket, S3Options(endpoint_url=moto.endpoint)), "b")


def test_a_run_whose_s3_lease_is_taken_over_stops(s3: S3Client, moto: MotoServer) -> None:
    bucket, ledger = s3_ledger(s3, moto)
    renewed = threading.Event()
    lost = pytest.raises(LeaseLostError, match="taken over by another run")
    with lost, lease.held(ledger, seconds=0.6) as held:
        # Another run takes the batch over (as after this one's claim expired unrenewed): this
        # one's next renewal finds the claim is no longer its own, and its next check stops it.
        s3.put_object(Bucket=bucket, Key="metadata/b.lease", Body=claim(pid=1))
        for _ in range(600):  # the run, going on until stopped (30 s at most)
            held.check()
            renewed.wait(0.05)
    assert json.loads(s3.get_object(Bucket=bucket, Key="metadata/b.lease")["Body"].read()) == (
        json.loads(claim(pid=1))
    )  # the other run's claim is left alone


def test_a_claim_on_s3_is_judged_by_s3_clock(s3: S3Client, moto: MotoServer) -> None:
    bucket, ledger = s3_ledger(s3, moto)
    key = "metadata/b.lease"
    # Written a moment ago by S3's clock, though its writer's clock says it expired long ago.
    behind = claim(host="elsewhere", seconds=3600.0, expires="2000-01-01T00:00:00.000Z")
    s3.put_object(Bucket=bucket, Key=key, Body=behind)
    with pytest.raises(BatchBusyError, match=r"pid \d+ on elsewhere"), lease.held(ledger):
        pass
    # Its time up by S3's clock, though its writer's clock says it stands for centuries.
    s3.put_object(Bucket=bucket, Key=key, Body=claim(host="elsewhere", seconds=-1.0))
    with lease.held(ledger):
        taken = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert taken["pid"] == os.getpid()


def test_an_ended_execution_claim_is_taken_over_by_a_local_run(
    s3: S3Client, moto: MotoServer
) -> None:
    bucket, ledger = s3_ledger(s3, moto)
    s3.put_object(Bucket=bucket, Key="metadata/b.lease", Body=claim(**EXECUTION))
    busy = pytest.raises(BatchBusyError, match=f"delete s3://{bucket}/metadata/b.lease")
    with busy, lease.held(ledger, is_running=lambda arn: True):
        pass
    with lease.held(ledger, is_running=lambda arn: arn != EXECUTION["execution"]):
        pass


class Flaky:
    """A held lease whose storage fails to answer ``failures`` renewals, then answers."""

    def __init__(self, failures: int, calls: int) -> None:
        self.failures = failures
        self.renewals = 0
        self.called = threading.Event()  # set at the ``calls``-th renewal
        self._calls = calls

    def renew(self, claim: bytes) -> None:
        self.renewals += 1
        if self.renewals >= self._calls:
            self.called.set()
        if self.renewals <= self.failures:
            raise StorageUnavailableError("s3://b/metadata/b.lease: no answer")

    def release(self) -> None:
        pass


def make_claim() -> lease.Claim:
    return lease.Claim(host="h", since="s", expires="e")


def test_a_renewal_that_fails_once_is_tried_again() -> None:
    flaky = Flaky(failures=1, calls=3)
    held = lease.Held(flaky, make_claim, seconds=1.5)  # a renewal every 0.5 s
    assert flaky.called.wait(30)
    held.release()
    held.check()  # never lost: the second renewal went through


def test_a_lease_not_renewed_for_two_thirds_of_its_time_is_lost() -> None:
    flaky = Flaky(failures=1_000, calls=2)
    held = lease.Held(flaky, make_claim, seconds=0.3)
    assert flaky.called.wait(30)
    held.release()  # the renewing thread has ended
    with pytest.raises(LeaseLostError, match=r"could not be renewed .*StorageUnavailableError"):
        held.check()
