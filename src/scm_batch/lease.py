"""One run of a batch at a time: a lease on the batch, held while a run goes on.

The lease is one object beside the batch's folders, ``metadata/{batchId}.lease`` (outside them:
``--overwrite`` keeps it), holding who runs the batch: host and pid (or the AWS execution), since
when, and until when the claim stands unless renewed. How it is held is the storage's
(:meth:`scm_batch.storage.Storage.hold`): an exclusive lock on a local file, which the kernel lets
go of when its holder dies however it dies; a conditional create on S3 (``If-None-Match: *``),
renewed every third of its time by the run holding it.

A claim another run holds stops this one with one line naming the holder. A claim is taken over
when it is stale: past its expiry, or held by a process of this host that is gone (a run that was
SIGKILLed: its ``resume`` takes the batch over at once), or by an AWS execution that is no longer
running.
"""

from __future__ import annotations

import _thread
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import msgspec

from scm_batch import layout
from scm_batch.clock import utc_timestamp
from scm_batch.errors import BatchBusyError, LeaseLostError
from scm_batch.ledger import Ledger
from scm_batch.model import CamelStruct
from scm_batch.storage import HeldLease

LEASE_SECONDS = 60.0  # a run's claim stands this long unless renewed (every third of it)
EXECUTION_LEASE_SECONDS = 2 * 86_400.0  # an AWS execution's, checked against the execution


class Claim(CamelStruct, frozen=True):
    """Who runs a batch, as the lease object holds it."""

    host: str
    since: str
    expires: str
    pid: int | None = None
    execution: str | None = None  # an AWS Step Functions execution's ARN

    def describe(self) -> str:
        who = f"execution {self.execution}" if self.execution else f"pid {self.pid} on {self.host}"
        return f"{who} since {self.since}"


def _now() -> datetime:
    return datetime.now(UTC)


def _claim_of(data: bytes) -> Claim | None:
    try:
        return msgspec.json.decode(data, type=Claim)
    except msgspec.MsgspecError:
        return None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _stale(data: bytes, is_running: Callable[[str], bool] | None, ours: str | None) -> bool:
    """Whether the claim ``data`` may be taken over."""
    claim = _claim_of(data)
    if claim is None:  # not a claim this version wrote: nobody's
        return True
    if claim.execution is not None and claim.execution == ours:
        return True  # this very execution's, from a retried step
    if datetime.fromisoformat(claim.expires.replace("Z", "+00:00")) <= _now():
        return True
    if claim.execution is not None:
        return is_running is not None and not is_running(claim.execution)
    return claim.host == socket.gethostname() and claim.pid is not None and _gone(claim.pid)


def _busy(ledger: Ledger, data: bytes) -> BatchBusyError:
    claim = _claim_of(data)
    holder = claim.describe() if claim is not None else "another run"
    until = f" (its claim stands until {claim.expires} unless renewed)" if claim else ""
    return BatchBusyError(
        f"batch {ledger.batch_id!r} is being run by {holder}{until}: one run of a batch at a "
        "time; resume it once that run is over"
    )


class _Renewer(threading.Thread):
    """Renews a held claim until stopped; if it was taken over, stops the run."""

    def __init__(self, held: HeldLease, claim: Callable[[], Claim], every: float) -> None:
        super().__init__(name="scm-batch-lease", daemon=True)
        self._held = held
        self._claim = claim
        self._every = every
        self._done = threading.Event()
        self.lost: LeaseLostError | None = None

    def run(self) -> None:
        while not self._done.wait(self._every):
            try:
                self._held.renew(msgspec.json.encode(self._claim()))
            except LeaseLostError as lost:
                self.lost = lost
                _thread.interrupt_main()  # the driver stops, as on Ctrl-C
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


@contextmanager
def held(ledger: Ledger, *, seconds: float = LEASE_SECONDS) -> Iterator[None]:
    """Hold the batch's lease while the block runs (``BatchBusyError`` if another run holds
    it); renewed every third of ``seconds``, let go at the end."""
    since = utc_timestamp()

    def claim() -> Claim:
        expires = utc_timestamp(_now() + timedelta(seconds=seconds))
        return Claim(host=socket.gethostname(), pid=os.getpid(), since=since, expires=expires)

    key = layout.lease_key(ledger.batch_id)
    got = ledger.storage.hold(
        key, msgspec.json.encode(claim()), lambda data: _stale(data, None, None)
    )
    if isinstance(got, bytes):
        raise _busy(ledger, got)
    renewer = _Renewer(got, claim, seconds / 3)
    renewer.start()
    try:
        yield
    except KeyboardInterrupt:
        if renewer.lost is not None:
            raise renewer.lost from None
        raise
    finally:
        renewer.stop()
        got.release()


def claim_for_execution(ledger: Ledger, execution: str, is_running: Callable[[str], bool]) -> None:
    """Take the batch's lease for an AWS execution (``BatchBusyError`` if another run holds
    it). It is held until the execution ends, never let go: the next execution of the batch
    finds it stale by asking whether this one still runs (``is_running``)."""
    now = _now()
    claim = Claim(
        host="aws",
        execution=execution,
        since=utc_timestamp(now),
        expires=utc_timestamp(now + timedelta(seconds=EXECUTION_LEASE_SECONDS)),
    )
    key = layout.lease_key(ledger.batch_id)
    got = ledger.storage.hold(
        key, msgspec.json.encode(claim), lambda data: _stale(data, is_running, execution)
    )
    if isinstance(got, bytes):
        raise _busy(ledger, got)
