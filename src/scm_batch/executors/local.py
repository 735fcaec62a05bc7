"""A local pool of worker processes, one per core by default.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies (SIGKILL, the
out-of-memory killer) the whole pool breaks, every running chunk fails with it, and nothing tells
which chunk was to blame. Here each worker has a pipe of its own: a death fails exactly the chunk
that worker was running (a transient ``WorkerDiedError``, so it is retried), a fresh worker takes
its place, and the others carry on. The pipe also carries progress, a message at most every
tenth of a second.

Workers are started by the ``forkserver`` (``spawn`` where there is none), never by ``fork`` from
this multi-threaded driver. On Linux each worker asks to be killed when the fork server exits,
which it does when the driver dies: a killed driver leaves no orphan writing into the bucket.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, cast

from scm_batch.errors import ExecutorBrokenError, WorkerDiedError
from scm_batch.executors.base import Pace
from scm_batch.executors.worker import (
    ChunkRunner,
    ThrottledProgress,
    WorkerSettings,
    portable_error,
)
from scm_batch.model import Attempt, ChunkResult, ChunkTask

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, SpawnContext

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return


# ---- what goes over a worker's pipe ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Assignment:
    """Driver → worker: run ``task`` as its ``attempt``-th try (``previous``: the failed ones)."""

    task: ChunkTask
    attempt: int
    previous: list[Attempt]


@dataclass(frozen=True, slots=True)
class Progress:
    """Worker → driver: ``lines`` more lines of the running chunk are done."""

    lines: int


@dataclass(frozen=True, slots=True)
class Finished:
    """Worker → driver: the chunk is done; its receipt."""

    result: ChunkResult


@dataclass(frozen=True, slots=True)
class Failed:
    """Worker → driver: the attempt failed with ``error`` (picklable: see
    :func:`scm_batch.executors.worker.portable_error`)."""

    error: BaseException


Reply = Progress | Finished | Failed
STOP = None  # driver → worker: no more chunks; exit


def _worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """A worker's life: receive an assignment, run its chunk, answer; repeat until told to stop."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    runner = ChunkRunner(settings)
    while True:
        try:
            message: Assignment | None = conn.recv()
        except (EOFError, OSError):
            return
        if message is STOP:
            return
        task = message.task
        report = ThrottledProgress(lambda lines: conn.send(Progress(lines)))
        try:
            result = runner.run(task, message.attempt, message.previous, report)
        except BaseException as exc:
            conn.send(Failed(portable_error(exc, task)))
        else:
            conn.send(Finished(result))


@dataclass(slots=True)
class _Job:
    task: ChunkTask
    attempt: int
    previous: list[Attempt]
    future: Future[ChunkResult]
    lines: int = 0
    timeout: float = math.inf  # seconds it may go without progress, set when a worker takes it
    deadline: float = math.inf  # time.monotonic() by which it must progress (or be done)
    timed_out: bool = False


@dataclass(slots=True, eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    job: _Job | None = field(default=None)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (killed, perhaps by the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"terminated by {name}{hint}"
    return f"exited with status {exitcode}"


# What the fork server imports before it forks workers: the worker's own module and so all it
# runs (the record engines, storage, sinks). Not __main__ (multiprocessing's default): a worker
# runs this module's code only, and a script embedding scm-batch is not to be run again.
_WORKER_MODULES = [__name__]


def start_fork_server() -> None:
    """Start the fork server with the workers' modules loaded (a per-process setting of
    multiprocessing's, like the start method; the server's environment is this process's now)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    multiprocessing.set_forkserver_preload(_WORKER_MODULES)
    forkserver.ensure_running()


class LocalExecutor:
    """Chunk tasks on a pool of local worker processes."""

    def __init__(
        self,
        workers: int,
        settings: WorkerSettings,
        *,
        chunk_timeout: float | None = None,
    ) -> None:
        methods = multiprocessing.get_all_start_methods()
        self._context = cast(
            "ForkServerContext | SpawnContext",
            multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn"),
        )
        self._settings = settings
        self._chunk_timeout = chunk_timeout  # None: from the pace (see Pace)
        self._pace = Pace()
        self._lock = threading.Lock()
        self._queue: deque[_Job] = deque()
        self._finished_lines = 0
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._workers = [self._spawn() for _ in range(workers)]
        self._thread = threading.Thread(target=self._dispatch, name="scm-batch-pool", daemon=True)
        self._thread.start()

    # ---- the driver's side ----------------------------------------------------------------
    @property
    def description(self) -> str:
        return f"{len(self._workers)} workers"

    def check_reach(self, task: ChunkTask) -> None:
        """Nothing to check: the workers are this machine's processes, with the driver's
        environment, and the driver has read the input and written to the bucket already."""

    def submit(
        self, task: ChunkTask, attempt: int = 1, previous: Sequence[Attempt] = ()
    ) -> Future[ChunkResult]:
        future: Future[ChunkResult] = Future()
        with self._lock:
            if self._stopping:
                raise RuntimeError("the executor has been shut down")
            self._queue.append(_Job(task, attempt, list(previous), future))
        self._wake()
        return future

    def lines_done(self) -> int:
        with self._lock:
            running = sum(w.job.lines for w in self._workers if w.job is not None)
            return self._finished_lines + running

    def shutdown(self, *, cancel: bool) -> None:
        """Stop. Without ``cancel``, queued and running chunks finish first; with it, queued
        chunks are dropped and running ones are stopped where they are."""
        with self._lock:
            self._stopping = True
            if cancel:
                for job in self._queue:
                    job.future.cancel()
                self._queue.clear()
                for worker in self._workers:
                    if worker.job is not None:
                        worker.process.terminate()
        self._wake()
        self._thread.join()
        for worker in self._workers:
            with suppress(OSError):
                worker.conn.send(STOP)
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---- the dispatcher thread ----------------------------------------------------------------
    def _wake(self) -> None:
        with suppress(BlockingIOError):  # a full pipe already holds enough wake-ups
            os.write(self._wake_w, b"\0")

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._settings),
            name="scm-batch-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _assign(self) -> None:
        for worker in self._workers:
            while worker.job is None and self._queue:
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue  # cancelled while queued
                worker.job = job
                job.timeout = self._chunk_timeout or self._pace.timeout(job.task)
                job.deadline = time.monotonic() + job.timeout
                with suppress(OSError):  # a dying worker: its sentinel will fail the job
                    worker.conn.send(Assignment(job.task, job.attempt, job.previous))

    def _dispatch(self) -> None:
        try:
            self._dispatch_until_stopped()
        except BaseException as exc:  # a dead dispatcher must not leave the driver waiting
            # The pool itself broke (a worker could not be started, say): no chunk's fault. Stop
            # every worker; fail every pending chunk with an error the scheduler re-raises.
            broken = ExecutorBrokenError(
                f"the local worker pool broke: {type(exc).__name__}: {exc}"
            )
            with self._lock:
                self._stopping = True
                jobs = [w.job for w in self._workers if w.job is not None] + list(self._queue)
                self._queue.clear()
                for worker in self._workers:
                    worker.job = None
                    worker.process.kill()
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(broken)

    def _dispatch_until_stopped(self) -> None:
        while True:
            with self._lock:
                self._assign()
                busy = any(w.job is not None for w in self._workers)
                if self._stopping and not busy and not self._queue:
                    return
                by_handle: dict[Any, tuple[str, _Worker | None]] = {self._wake_r: ("wake", None)}
                for worker in self._workers:
                    by_handle[worker.conn] = ("message", worker)
                    by_handle[worker.process.sentinel] = ("death", worker)
                deadline = min((w.job.deadline for w in self._workers if w.job), default=None)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(list(by_handle), timeout=timeout)
            for handle in ready:  # first: a chunk just finished or progressing is not late
                kind, sender = by_handle[handle]
                with self._lock:
                    if kind == "wake":
                        os.read(self._wake_r, 4096)
                    elif (
                        sender is not None
                        and sender in self._workers
                        and (kind == "death" or not self._receive(sender))
                    ):
                        self._bury(sender)
            with self._lock:
                self._stop_the_late()

    def _stop_the_late(self) -> None:
        """Kill every worker whose chunk is past its deadline (no progress for its timeout: stuck
        or stopped): its death then fails the chunk, to be retried, as Lambda does a function past
        its timeout."""
        now = time.monotonic()
        for worker in self._workers:
            job = worker.job
            if job is not None and not job.timed_out and now >= job.deadline:
                job.timed_out = True
                worker.process.kill()

    def _receive(self, worker: _Worker) -> bool:
        """Handle one message from a worker; ``False`` when its pipe is closed."""
        try:
            reply: Reply = worker.conn.recv()
        except (EOFError, OSError):
            return False
        job = worker.job
        if job is None:
            return True
        if isinstance(reply, Progress):
            job.lines += reply.lines
            job.deadline = time.monotonic() + job.timeout
            return True
        worker.job = None
        if isinstance(reply, Finished):
            self._finished_lines += reply.result.lines
            self._pace.record(reply.result)
            job.future.set_result(reply.result)
        else:
            job.future.set_exception(reply.error)
        return True

    def _bury(self, worker: _Worker) -> None:
        """A worker exited: read what it still said, fail its chunk if any, replace it."""
        while _poll(worker.conn) and self._receive(worker):
            pass
        self._workers.remove(worker)
        worker.process.join()
        worker.conn.close()
        job = worker.job
        if job is not None:
            pid = worker.process.pid
            death = (
                f"made no progress on {job.task.chunk_id} for {job.timeout:,.0f} s "
                f"({job.lines:,} lines done) and was killed"
                if job.timed_out
                else _death(worker.process.exitcode)
            )
            job.future.set_exception(
                WorkerDiedError(f"the worker running {job.task.chunk_id} (pid {pid}) {death}")
            )
        if not self._stopping or self._queue:  # queued chunks still need someone to run them
            self._workers.append(self._spawn())


def _poll(conn: Connection) -> bool:
    try:
        return conn.poll()
    except (EOFError, OSError):
        return False
