"""One run of a batch at a time: a lease on the batch, held while a run goes on.

The lease is one object beside the batch's folders, ``metadata/{batchId}.lease`` (outside them:
``--overwrite`` keeps it), holding who runs the batch: host and pid (or the AWS execution), since
when, and how long the claim stands unless renewed. How it is held is the storage's
(:meth:`scm_batch.storage.Storage.hold`): an exclusive lock on a local file, which the kernel lets
go of when its holder dies however it dies; a conditional create on S3 (``If-None-Match: *``),
renewed every third of its time by the run holding it.

A claim another run holds stops this one with one line naming the holder. A claim is taken over
when it is stale: its time up by the storage's clock (S3's, never a machine's own: clocks drift),
or held by a process of this very host and PID namespace that is gone (a run that was SIGKILLed:
its ``resume`` takes the batch over at once), or by an AWS execution that is no longer running.

A run that cannot renew its claim (taken over, or the storage not answering for two thirds of the
claim's time) is told at its next checkpoint (:class:`Held`): between chunks, before it
aggregates, before it notifies; it stops with ``LeaseLostError`` before another run may start.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from scm_batch import layout
from scm_batch.clock import utc_timestamp
from scm_batch.errors import BatchBusyError, LeaseLostError
from scm_batch.ledger import Ledger
from scm_batch.model import CamelStruct
from scm_batch.storage import HeldLease

LEASE_SECONDS = 60.0  # a run's claim stands this long unless renewed (every third of it)
# An AWS execution's claim: what Step Functions says of the execution decides; its age only
# where Step Functions cannot be asked.
EXECUTION_LEASE_SECONDS = 2 * 86_400.0

# Whether an AWS execution (its ARN) still runs; None when that cannot be told.
IsRunning = Callable[[str], bool | None]


class Claim(CamelStruct, frozen=True):
    """Who runs a batch, as the lease object holds it."""

    host: str
    since: str
    expires: str  # by the writer's clock, for people; the storage's clock decides (``seconds``)
    pid: int | None = None
    execution: str | None = None  # an AWS Step Functions execution's ARN
    seconds: float | None = None  # how long the claim stands from each write of it
    # This host's boot and PID namespace: where ``pid`` names the process (containers sharing a
    # host name do not share their pids).
    space: str | None = None

    def describe(self) -> str:
        who = f"execution {self.execution}" if self.execution else f"pid {self.pid} on {self.host}"
        return f"{who} since {self.since}"


def _now() -> datetime:
    return datetime.now(UTC)


def _pid_space() -> str | None:
    """This boot of this host and this process's PID namespace, or ``None`` where unknown."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


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


def _expired(claim: Claim, age: float | None) -> bool:
    """Whether the claim's time is up: by its age on the storage's clock where both are known
    (no two machines' clocks compared), else by its expiry."""
    if age is not None and claim.seconds is not None:
        return age > claim.seconds
    return datetime.fromisoformat(claim.expires.replace("Z", "+00:00")) <= _now()


def _stale(data: bytes, age: float | None, is_running: IsRunning | None, ours: str | None) -> bool:
    """Whether the claim ``data``, written ``age`` seconds ago, may be taken over."""
    claim = _claim_of(data)
    if claim is None:  # not a claim this version wrote: nobody's
        return True
    if claim.execution is not None and claim.execution == ours:
        return True  # this very execution's, from a retried step
    if claim.execution is not None:
        # Asked first: an execution may run for days (throttles are waited out), so its claim's
        # age says nothing while Step Functions can say whether it still runs.
        running = is_running(claim.execution) if is_running is not None else None
        return _expired(claim, age) if running is None else not running
    if _expired(claim, age):
        return True
    here = claim.host == socket.gethostname() and claim.space is not None
    return here and claim.space == _pid_space() and claim.pid is not None and _gone(claim.pid)


def _busy(ledger: Ledger, data: bytes) -> BatchBusyError:
    claim = _claim_of(data)
    holder = claim.describe() if claim is not None else "another run"
    until = f" (its claim stands until {claim.expires} unless renewed)" if claim else ""
    hint = "resume it once that run is over"
    if claim is not None and claim.execution is not None:
        hint += (
            " (if that execution has ended and this machine may not ask Step Functions about it, "
            f"delete {ledger.storage.uri_for(layout.lease_key(ledger.batch_id))})"
        )
    return BatchBusyError(
        f"batch {ledger.batch_id!r} is being run by {holder}{until}: one run of a batch at a "
        f"time; {hint}"
    )


def _execution_running(execution_arn: str) -> bool | None:
    """Ask Step Functions (boto is there: a bucket an execution ran on is on S3)."""
    from scm_batch.aws.executions import execution_running  # noqa: PLC0415 - boto, only if asked

    return execution_running(execution_arn)


class Held:
    """A held lease, renewed in the background until let go. The run asks :meth:`check` at its
    checkpoints: renewing happens in a thread, stopping the run is the run's own doing."""

    def __init__(self, lease: HeldLease, claim: Callable[[], Claim], seconds: float) -> None:
        self._lease = lease
        self._claim = claim
        self._seconds = seconds
        self._done = threading.Event()
        self._lost: LeaseLostError | None = None
        self._thread = threading.Thread(target=self._renew, name="scm-batch-lease", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Go on, or ``LeaseLostError`` if this run no longer holds the batch (or may not)."""
        if self._lost is not None:
            raise self._lost

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self._done.wait(self._seconds / 3):
            try:
                self._lease.renew(msgspec.json.encode(self._claim()))
                renewed = time.monotonic()
            except LeaseLostError as lost:
                self._lost = lost
                return
            except Exception as error:  # the storage not answering: try again, for a while
                # Two renewals missed: a third of the claim's time is left to stop in.
                if time.monotonic() - renewed >= 2 * self._seconds / 3:
                    self._lost = LeaseLostError(
                        f"the batch's lease could not be renewed for {self._seconds * 2 / 3:.0f} "
                        f"s ({type(error).__name__}: {error}): another run may take the batch "
                        "over, so this one stops; resume it"
                    )
                    return

    def release(self) -> None:
        self._done.set()
        self._thread.join()
        with suppress(Exception):  # let go as well as can be: a claim not let go expires
            self._lease.release()


@contextmanager
def held(
    ledger: Ledger,
    *,
    seconds: float = LEASE_SECONDS,
    is_running: IsRunning = _execution_running,
) -> Iterator[Held]:
    """Hold the batch's lease while the block runs (``BatchBusyError`` if another run holds
    it); renewed every third of ``seconds``, let go at the end. A claim an AWS execution holds
    is taken over once ``is_running`` says the execution ended."""
    since = utc_timestamp()
    space = _pid_space()

    def claim() -> Claim:
        expires = utc_timestamp(_now() + timedelta(seconds=seconds))
        return Claim(
            host=socket.gethostname(),
            pid=os.getpid(),
            since=since,
            expires=expires,
            seconds=seconds,
            space=space,
        )

    key = layout.lease_key(ledger.batch_id)
    got = ledger.storage.hold(
        key, msgspec.json.encode(claim()), lambda data, age: _stale(data, age, is_running, None)
    )
    if isinstance(got, bytes):
        raise _busy(ledger, got)
    lease = Held(got, claim, seconds)
    try:
        yield lease
    finally:
        lease.release()


def claim_for_execution(ledger: Ledger, execution: str, is_running: IsRunning) -> None:
    """Take the batch's lease for an AWS execution (``BatchBusyError`` if another run holds
    it). It is held until the execution ends, never let go: the next execution of the batch
    finds it stale by asking whether this one still runs (``is_running``)."""
    now = _now()
    claim = Claim(
        host="aws",
        execution=execution,
        since=utc_timestamp(now),
        expires=utc_timestamp(now + timedelta(seconds=EXECUTION_LEASE_SECONDS)),
        seconds=EXECUTION_LEASE_SECONDS,
    )
    key = layout.lease_key(ledger.batch_id)
    got = ledger.storage.hold(
        key,
        msgspec.json.encode(claim),
        lambda data, age: _stale(data, age, is_running, execution),
    )
    if isinstance(got, bytes):
        raise _busy(ledger, got)
