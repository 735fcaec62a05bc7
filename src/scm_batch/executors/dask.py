"""Chunks on a Dask cluster: the scheduler at an address, or a local cluster started here.

The chunk task goes to the cluster as it is (plain data) with the worker settings (how to read
the bucket, where to deliver records, as :class:`~scm_batch.executors.worker.WorkerSettings`), and
runs there exactly as in a local worker process (:class:`~scm_batch.executors.worker.ChunkRunner`).
Results come back through Dask's futures; progress through Dask's events (a topic of this run's
own, at most one event per worker every tenth of a second): nothing polls the bucket.

Semantics are the local pool's (``scm_batch.executors.local``), whatever Dask does underneath:

* Retries belong to the scheduler of the run (:mod:`scm_batch.scheduler`), with its backoff and
  attempt count: tasks are submitted without Dask retries, under a key of their own per attempt.
* A worker that dies mid-chunk fails that chunk (a transient ``WorkerDiedError``), which is then
  retried on the workers that remain. The local cluster's scheduler is told so
  (``allowed-failures`` 0); an existing cluster's may first run the task again itself, up to its
  own ``distributed.scheduler.allowed-failures`` (3 by default), as the same attempt.
* A chunk that makes no progress for its timeout is failed and retried, and its worker restarted
  by its nanny, as the local pool kills its worker (Dask cannot stop a running task; a stuck
  thread would hold the worker's slot for good). Other chunks running on that worker are lost with
  it and retried. A worker without a nanny cannot be restarted: its stuck thread carries on, and
  should it ever finish, its chunk is already done (a chunk commits once, see
  :func:`scm_batch.stages.process.run_chunk`; its parts are the same bytes whichever run writes
  them).
* The run's cancellations of its own tasks are chunk failures; a cancellation it did not ask for
  (another client restarting the cluster, this client losing the scheduler) breaks the run
  (``ExecutorBrokenError``: resume it once the cluster is back).
* Before any chunk runs, every worker connected at that moment must be able to read the input
  and write to the bucket, with the same scm-batch as this driver: one error names each worker
  that cannot (a worker joining later is not checked: its chunks fail, and are retried, instead).
"""

from __future__ import annotations

import ctypes
import logging
import math
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import dask.config
import distributed

from scm_batch._version import __version__
from scm_batch.errors import ClusterError, ExecutorBrokenError, WorkerDiedError
from scm_batch.executors.base import Pace
from scm_batch.executors.worker import (
    ChunkRunner,
    ThrottledProgress,
    WorkerSettings,
    portable_error,
)
from scm_batch.model import Attempt, ChunkResult, ChunkTask

WORKERS_TIMEOUT = 120.0  # seconds for a first worker to join a cluster that has none
RESTART_TIMEOUT = 60.0  # seconds for a nanny to restart a worker whose chunk was given up
# Seconds shutdown waits for the watchdog to notice every job settled: it is woken by each, so only
# a defect could make it wait this long (then the client is closed all the same).
WATCHDOG_JOIN_TIMEOUT = 30.0
# Times a chunk is sent again because workers it was queued on died before starting it; past this,
# the death counts as a failed attempt (a cluster losing worker after worker).
MAX_REQUEUES = 3


# ---- on the workers ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DaskAssignment:
    """One attempt at one chunk, as sent to a Dask worker: plain data."""

    task: ChunkTask
    attempt: int
    previous: list[Attempt]
    settings: WorkerSettings
    run: str  # this run's token: its runners' plugin and its progress topic are named after it


class RunnerCache(distributed.WorkerPlugin):
    """A worker plugin holding a run's :class:`ChunkRunner` per worker thread, so that storage
    clients and producers last from chunk to chunk; removed (its producers closed) when the run
    ends. It holds clients only: every setting comes with each assignment."""

    def __init__(self) -> None:
        self._runners: dict[int, ChunkRunner] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {}  # sent empty to each worker; its lock and runners are made there

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def setup(self, worker: distributed.Worker) -> None:
        _restore_malloc_thresholds()

    def runner(self, settings: WorkerSettings) -> ChunkRunner:
        with self._lock:
            runner = self._runners.get(threading.get_ident())
            if runner is None or runner.settings != settings:
                runner = self._runners[threading.get_ident()] = ChunkRunner(settings)
            return runner

    def teardown(self, worker: distributed.Worker) -> None:
        with self._lock:
            runners = list(self._runners.values())
            self._runners.clear()
        for runner in runners:
            with suppress(Exception):  # a producer that cannot flush any more has nothing to lose
                runner.close()


# glibc's malloc raises its mmap threshold as a program frees large blocks (up to 32 MiB on 64-bit
# machines), with the trim threshold at twice that, so that buffers allocated and freed again and
# again come from the heap. Setting MALLOC_TRIM_THRESHOLD_, as Dask's nanny does for every worker
# it starts, switches that off: each block buffer of a chunk (1 MiB and more) is then mapped and
# unmapped, page-faulted block after block: a chunk took 60 % longer on a Dask worker than in the
# local pool for that alone. The thresholds glibc would have reached are set here, on the workers
# a run uses (a process setting: at most 64 MiB freed stays in the worker's heap untrimmed).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20


def _restore_malloc_thresholds() -> None:
    if not sys.platform.startswith("linux"):
        return
    with suppress(OSError, AttributeError):  # not glibc: nothing to restore
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD)


def _plugin_name(run: str) -> str:
    return f"scm-batch-{run}"


def _topic(run: str) -> str:
    return f"scm-batch-progress-{run}"


def run_assignment(assignment: DaskAssignment) -> ChunkResult:
    """The Dask task: one attempt at a chunk on this worker, with progress sent as events."""
    worker = distributed.get_worker()
    task = assignment.task
    key = _job_key(task, assignment.attempt, assignment.run)
    topic = _topic(assignment.run)
    cache = worker.plugins.get(_plugin_name(assignment.run))
    runner = (
        cache.runner(assignment.settings)
        if isinstance(cache, RunnerCache)
        else ChunkRunner(assignment.settings)
    )
    worker.log_event(topic, {"key": key, "started": worker.address})
    report = ThrottledProgress(lambda lines: worker.log_event(topic, {"key": key, "lines": lines}))
    try:
        return runner.run(task, assignment.attempt, assignment.previous, report)
    except BaseException as exc:
        raise portable_error(exc, task) from None


@dataclass(frozen=True, slots=True)
class Reach:
    """What a worker answered to the preflight: its scm-batch, and what it could not do."""

    version: str
    problem: str | None = None


def check_reach_here(task: ChunkTask, settings: WorkerSettings) -> Reach:
    """On a worker: read the chunk's first byte (or its staged copy's) and write, then delete, a
    small object in the bucket."""
    runner = ChunkRunner(settings)
    store = runner.storage(task.bucket)
    key = task.staged_key or task.file
    doing = "read the input"
    try:
        size = store.stat(key).size
        store.read_range(key, 0, min(1, size))
        # Beside the batch's lease, in a folder every bucket in use has.
        probe = f"metadata/{task.batch_id}.reach-check-{secrets.token_hex(8)}"
        doing = "write to the bucket"
        store.put_bytes(probe, b"scm-batch: a worker checking it can write here\n")
        store.delete(probe)
    except Exception as exc:  # any failure is this worker's answer, to be named
        return Reach(__version__, f"cannot {doing}: {exc}")
    return Reach(__version__)


def _job_key(task: ChunkTask, attempt: int, run: str) -> str:
    return f"scm-batch-{task.chunk_id}-attempt-{attempt}-{run}"


# ---- on the driver ---------------------------------------------------------------------------
def start_local_cluster(workers: int) -> distributed.LocalCluster:
    """A Dask cluster of ``workers`` single-threaded processes on this machine, its workers
    loading scm-batch as they start. Its scheduler leaves retries to scm-batch's: a worker's
    death fails its chunk at once, as in the local pool."""
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster: distributed.LocalCluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
                preload=[__name__],
            )
    except Exception as exc:
        raise ClusterError(f"the local Dask cluster did not start: {exc}") from None
    return cluster


@dataclass(slots=True)
class _Job:
    task: ChunkTask
    future: Future[ChunkResult]
    assignment: DaskAssignment
    remote: Any = None  # the distributed.Future
    requeued: int = 0  # times sent again after a worker it was queued on (never started) died
    lines: int = 0
    worker: str | None = None  # where it runs, once started
    timeout: float = math.inf
    deadline: float = math.inf  # time.monotonic() by which it must progress (or be done)
    cancelling: bool = False  # this run cancelled its Dask task (a cancellation not ours breaks)


@dataclass(slots=True)
class _State:
    jobs: dict[str, _Job] = field(default_factory=dict)
    finished_lines: int = 0
    stopping: bool = False


class DaskExecutor:
    """Chunk tasks on a Dask cluster (see the module's docstring for the semantics)."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        address: str | None = None,
        workers: int = 1,
        cluster: distributed.LocalCluster | None = None,
        chunk_timeout: float | None = None,
    ) -> None:
        """On the scheduler at ``address``; else on ``cluster`` (a local cluster someone else
        started and closes); else on a local cluster of ``workers`` started (and closed) here."""
        self._settings = settings
        self._chunk_timeout = chunk_timeout
        self._pace = Pace()
        self._run = secrets.token_hex(6)
        self._lock = threading.Lock()
        self._state = _State()
        self._wake = threading.Event()
        self._cluster: distributed.LocalCluster | None = None  # the one started here
        self._client = self._connect(address, workers, cluster)
        self._address = address
        try:
            self._client.subscribe_topic(_topic(self._run), self._on_event)
            self._client.register_plugin(RunnerCache(), name=_plugin_name(self._run))
        except Exception as exc:
            self._close_client()
            raise ClusterError(f"the Dask cluster refused this run's setup: {exc}") from None
        self._watchdog = threading.Thread(
            target=self._watch, name="scm-batch-dask-watchdog", daemon=True
        )
        self._watchdog.start()

    def _connect(
        self, address: str | None, workers: int, cluster: distributed.LocalCluster | None
    ) -> distributed.Client:
        if address is None:
            if cluster is None:
                cluster = self._cluster = start_local_cluster(workers)
            try:
                return distributed.Client(cluster, set_as_default=False)
            except Exception as exc:
                if self._cluster is not None:
                    with suppress(Exception):
                        self._cluster.close()
                raise ClusterError(f"cannot connect to the local Dask cluster: {exc}") from None
        try:
            # How long to try: Dask's distributed.comm.timeouts.connect (30 s unless configured).
            client = distributed.Client(address, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            client.close()
            raise ClusterError(
                f"no worker joined the Dask cluster at {address} within {WORKERS_TIMEOUT:.0f} s "
                f"({exc or 'timed out'})"
            ) from None
        return client

    # ---- the port ---------------------------------------------------------------------------
    @property
    def description(self) -> str:
        workers = self._workers()
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
        where = f"the Dask cluster at {self._address}" if self._address else "a local Dask cluster"
        shown = f"{len(workers)} workers" + (
            f" ({threads} threads)" if threads != len(workers) else ""
        )
        return f"{where}: {shown}"

    def check_reach(self, task: ChunkTask) -> None:
        try:
            answers = self._client.run(check_reach_here, task, self._settings, on_error="return")
        except Exception as exc:
            raise ClusterError(f"the Dask workers could not be asked: {exc}") from None
        names = {address: str(w.get("name", address)) for address, w in self._workers().items()}
        problems: list[str] = []
        for address, answer in sorted(answers.items()):
            who = f"worker {names.get(address, address)} ({address})"
            if not isinstance(answer, Reach):  # the check itself failed there
                problems.append(f"{who} cannot run scm-batch: {type(answer).__name__}: {answer}")
            elif answer.version != __version__:
                problems.append(
                    f"{who} runs scm-batch {answer.version}, this driver {__version__}: "
                    "install the same version everywhere"
                )
            elif answer.problem is not None:
                problems.append(f"{who} {answer.problem}")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ClusterError(problems[0] + more)

    def submit(
        self, task: ChunkTask, attempt: int = 1, previous: Sequence[Attempt] = ()
    ) -> Future[ChunkResult]:
        future: Future[ChunkResult] = Future()
        key = _job_key(task, attempt, self._run)
        assignment = DaskAssignment(task, attempt, list(previous), self._settings, self._run)
        with self._lock:
            if self._state.stopping:
                raise RuntimeError("the executor has been shut down")
            job = self._state.jobs[key] = _Job(task, future, assignment)
        # A chunk cancelled by the driver while still queued is cancelled on the cluster too.
        future.add_done_callback(lambda f: self._cancel_remote(key) if f.cancelled() else None)
        self._send(key, job)
        return future

    def _send(self, key: str, job: _Job) -> None:
        """Hand the job to the cluster (again, if a worker it never started on died): a Dask key
        of its own each time, never retried by Dask."""
        remote_key = key if not job.requeued else f"{key}-requeued-{job.requeued}"
        try:
            remote = self._client.submit(
                run_assignment, job.assignment, key=remote_key, pure=False, retries=0
            )
        except Exception as exc:
            self._settle(key, error=ExecutorBrokenError(f"the Dask cluster broke: {exc}"))
            return
        with self._lock:
            job.remote = remote
        remote.add_done_callback(lambda done: self._on_done(key, done))

    def lines_done(self) -> int:
        with self._lock:
            return self._state.finished_lines + sum(j.lines for j in self._state.jobs.values())

    def shutdown(self, *, cancel: bool) -> None:
        with self._lock:
            self._state.stopping = True
            jobs = list(self._state.jobs.values())
        if cancel:
            for job in jobs:
                job.future.cancel()  # those still queued
            with self._lock:
                for job in jobs:
                    job.cancelling = True
            with suppress(Exception):
                self._client.cancel([j.remote for j in jobs if j.remote is not None], force=True)
            with self._lock:
                keys = list(self._state.jobs)
            for key in keys:  # those running: Dask lets them end on their own
                self._settle(key, error=WorkerDiedError("the run was stopped"))
        else:
            for job in jobs:
                with suppress(Exception):
                    job.future.exception()  # waits until it is settled, whatever its end
        self._wake.set()
        self._watchdog.join(WATCHDOG_JOIN_TIMEOUT)
        self._close_client()

    # ---- callbacks --------------------------------------------------------------------------
    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker's event (on the client's thread): a chunk started, or progressed."""
        message = event[1]
        with self._lock:
            job = self._state.jobs.get(str(message.get("key")))
            if job is None:
                return
            now = time.monotonic()
            if "started" in message:
                job.worker = str(message["started"])
                job.lines = 0  # a task Dask itself ran again starts from nothing
                job.timeout = self._chunk_timeout or self._pace.timeout(job.task)
                job.deadline = now + job.timeout
                if not job.future.running() and not job.future.done():
                    job.future.set_running_or_notify_cancel()
            else:
                job.lines += int(message.get("lines", 0))
                job.deadline = now + job.timeout
        self._wake.set()  # the watchdog's earliest deadline may have moved

    def _on_done(self, key: str, remote: Any) -> None:
        """A Dask future ended (on Dask's callback thread): settle ours."""
        status = remote.status
        if status == "finished":
            try:
                result = remote.result()
            except Exception as exc:  # lost between finishing and being fetched
                self._settle(key, error=self._lost(key, exc))
                return
            self._settle(key, result=result)
        elif status == "cancelled":
            self._settle(key, error=self._cancelled(key))
        else:
            try:
                error = remote.exception()
            except Exception as exc:  # the cluster itself went away
                self._settle(key, error=self._lost(key, exc))
                return
            if self._requeue(key, error):
                return
            self._settle(key, error=self._worker_error(key, error))

    def _requeue(self, key: str, error: BaseException | None) -> bool:
        """A worker died with this chunk queued on it, never started there (a scheduler hands a
        worker a task or two ahead): the chunk goes back to the cluster as the same attempt, not
        failed. Only the chunk a dying worker was running fails (the local pool's semantics)."""
        if type(error).__name__ != "KilledWorker":
            return False
        with self._lock:
            job = self._state.jobs.get(key)
            if job is None or job.worker is not None or self._state.stopping:
                return False
            if job.future.cancelled():  # the driver no longer wants it
                return False
            if job.requeued >= MAX_REQUEUES:
                return False
            job.requeued += 1
        self._send(key, job)
        return True

    def _named(self, key: str) -> tuple[str, str, bool]:
        """The job's chunk, where it ran (if it started) and whether this run cancelled it."""
        with self._lock:
            job = self._state.jobs.get(key)
        if job is None:
            return key, "", False
        return job.task.chunk_id, f" ({job.worker})" if job.worker else "", job.cancelling

    def _worker_error(self, key: str, error: BaseException) -> BaseException:
        """The chunk's error as the local pool would have it: a worker's death (Dask's
        ``KilledWorker``, or the connection to the worker closed under the task) is a
        ``WorkerDiedError``; the chunk's own errors, OSError and TimeoutError included, are
        themselves."""
        if type(error).__name__ in ("KilledWorker", "CommClosedError"):
            name, where, _ = self._named(key)
            return WorkerDiedError(f"the Dask worker running {name}{where} died: {error}")
        return error

    def _lost(self, key: str, error: BaseException) -> BaseException:
        """Asking Dask for the task's outcome failed: the cluster lost it, or this client lost
        the cluster."""
        name, where, _ = self._named(key)
        if self._client.status != "running":
            return ExecutorBrokenError(
                f"this run lost the Dask scheduler ({self._client.status}) while {name} ran"
                f"{where}: {error}"
            )
        return WorkerDiedError(f"the Dask cluster lost {name}{where}: {error}")

    def _cancelled(self, key: str) -> BaseException:
        name, where, ours = self._named(key)
        if ours:
            return WorkerDiedError(f"the Dask task running {name} was cancelled{where}")
        if self._client.status != "running":
            return ExecutorBrokenError(
                f"this run lost the Dask scheduler ({self._client.status}): {name}{where} "
                "was cancelled with it"
            )
        return ExecutorBrokenError(
            f"the Dask cluster cancelled {name}{where}, which this run did not ask for "
            "(was the cluster restarted?)"
        )

    def _settle(
        self,
        key: str,
        *,
        result: ChunkResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        with self._lock:
            job = self._state.jobs.pop(key, None)
            if job is None:
                return
            if result is not None:
                self._state.finished_lines += result.lines
                self._pace.record(result)
        self._wake.set()  # shutdown's watchdog waits for the last job to settle
        future = job.future
        if future.done():
            return
        if not future.running() and not future.set_running_or_notify_cancel():
            return  # cancelled while queued
        if result is not None:
            future.set_result(result)
        else:
            future.set_exception(error or WorkerDiedError(f"{job.task.chunk_id} was lost"))

    def _cancel_remote(self, key: str) -> None:
        with self._lock:
            job = self._state.jobs.get(key)
            remote = None if job is None else job.remote
            if job is not None:
                job.cancelling = True
        if remote is not None:
            with suppress(Exception):
                self._client.cancel([remote])

    # ---- the watchdog ---------------------------------------------------------------------------
    def _watch(self) -> None:
        """Fail each chunk that went without progress for its timeout, to be retried."""
        while True:
            with self._lock:
                if self._state.stopping and not self._state.jobs:
                    return
                now = time.monotonic()
                late = [(k, j) for k, j in self._state.jobs.items() if j.deadline <= now]
                deadline = min((j.deadline for j in self._state.jobs.values()), default=math.inf)
            for key, job in late:
                # Settled first, so that its cancellation below cannot settle it as cancelled.
                self._settle(
                    key,
                    error=WorkerDiedError(
                        f"{job.task.chunk_id} made no progress on {job.worker} for "
                        f"{job.timeout:,.0f} s ({job.lines:,} lines done): its worker was "
                        "restarted"
                    ),
                )
                if job.remote is not None:
                    with suppress(Exception):
                        self._client.cancel([job.remote])
                if job.worker is not None:
                    self._restart_worker(job.worker)
            wait = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
            self._wake.wait(wait)
            self._wake.clear()

    def _restart_worker(self, worker: str) -> None:
        """Have the worker's nanny restart it (in a thread: it takes seconds), freeing the slot
        its stuck chunk holds; a worker without a nanny stays as it is."""

        def restart() -> None:
            with suppress(Exception):  # no nanny, or the cluster is gone: nothing more to do
                self._client.restart_workers(
                    [worker], timeout=RESTART_TIMEOUT, raise_for_error=False
                )

        threading.Thread(target=restart, name="scm-batch-dask-restart", daemon=True).start()

    # ---- helpers --------------------------------------------------------------------------------
    def _workers(self) -> dict[str, dict[str, Any]]:
        with suppress(Exception):
            workers: dict[str, dict[str, Any]] = self._client.scheduler_info()["workers"]
            return workers
        return {}

    def _close_client(self) -> None:
        with suppress(Exception):
            self._client.unsubscribe_topic(_topic(self._run))
        with suppress(Exception):
            self._client.unregister_worker_plugin(_plugin_name(self._run))
        with suppress(Exception):
            self._client.close()
        if self._cluster is not None:
            with suppress(Exception):
                self._cluster.close()
