"""A session: one invocation that runs a batch's chunks from here, on an executor (the local worker
pool by default), with progress, time and chance of its own.

``ProcessChunksInParallel`` for every driver that holds the chunks' futures itself (the local
run; a cluster executor). On AWS the state machine's Map is that step, and runs each chunk with
the same :func:`scm_batch.stages.process.run_chunk`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from scm_batch.config import RunOptions
from scm_batch.errors import ConfigError
from scm_batch.executors.base import ChunkExecutor
from scm_batch.executors.worker import WorkerSettings
from scm_batch.faults import FaultPlan
from scm_batch.ledger import Ledger
from scm_batch.model import ChunkPlan, ChunkResult, ChunkTask
from scm_batch.observe.progress import NullProgress, ProgressReporter, ProgressSnapshot
from scm_batch.scheduler import ChunkCounts, ChunkScheduler, Clock, Outcome, SystemClock, Tally

ExecutorFactory = Callable[[RunOptions], ChunkExecutor]


def worker_settings(options: RunOptions) -> WorkerSettings:
    """What every worker is sent with its tasks, from the run's options."""
    return WorkerSettings(
        block_size=options.block_size,
        storage=options.storage,
        delivery=options.delivery,
        faults=options.faults,
    )


def local_executor(options: RunOptions) -> ChunkExecutor:
    """The local pool of worker processes, one per ``options.workers``."""
    from scm_batch.executors.local import LocalExecutor  # noqa: PLC0415 - only where chunks run

    return LocalExecutor(
        options.workers, worker_settings(options), chunk_timeout=options.chunk_timeout_seconds
    )


def _import_dask_executor() -> None:
    """Import the Dask executor, or say in one line what to install."""
    try:
        import scm_batch.executors.dask  # noqa: F401, PLC0415 - an optional dependency
    except ImportError as exc:
        raise ConfigError(
            "--executor", f"dask needs scm-batch[dask] installed here and on the workers ({exc})"
        ) from None


def dask_executor(options: RunOptions) -> ChunkExecutor:
    """A Dask cluster: the scheduler at ``options.dask_scheduler``, or a local cluster of
    ``options.workers`` processes."""
    _import_dask_executor()
    from scm_batch.executors.dask import DaskExecutor  # noqa: PLC0415 - optional dependency

    return DaskExecutor(
        worker_settings(options),
        address=options.dask_scheduler,
        workers=options.workers,
        chunk_timeout=options.chunk_timeout_seconds,
    )


def configured_executor(options: RunOptions) -> ChunkExecutor:
    """The executor the options name (``--executor``)."""
    return dask_executor(options) if options.executor == "dask" else local_executor(options)


@contextmanager
def prepared_executor(options: RunOptions) -> Iterator[ExecutorFactory]:
    """The executor the options name, its workers starting now, while the driver validates and
    plans: the local pool's fork server with the workers' modules loaded, or a local Dask cluster
    (closed when the block ends). An existing Dask cluster's workers are already there."""
    if options.executor == "local":
        prepare_local_workers()
        yield configured_executor
        return
    if options.dask_scheduler is not None:
        yield configured_executor
        return
    starting = _ClusterStart(options.workers)

    def on_the_cluster(opts: RunOptions) -> ChunkExecutor:
        from scm_batch.executors.dask import DaskExecutor  # noqa: PLC0415 - imported by now

        return DaskExecutor(
            worker_settings(opts),
            cluster=starting.cluster(),
            chunk_timeout=opts.chunk_timeout_seconds,
        )

    try:
        yield on_the_cluster
    finally:
        starting.close()


class _ClusterStart:
    """A local Dask cluster started in a thread of its own, from importing distributed on (half
    a second) to its workers joining, while the driver validates and plans the batch."""

    def __init__(self, workers: int) -> None:
        self._started: Future[Any] = Future()  # the distributed.LocalCluster
        threading.Thread(
            target=self._start, args=(workers,), name="scm-batch-dask-start", daemon=True
        ).start()

    def _start(self, workers: int) -> None:
        try:
            _import_dask_executor()
            from scm_batch.executors.dask import start_local_cluster  # noqa: PLC0415

            self._started.set_result(start_local_cluster(workers))
        except BaseException as exc:  # raised to whoever asks for the cluster
            self._started.set_exception(exc)

    def cluster(self) -> Any:
        return self._started.result()

    def close(self) -> None:
        with suppress(BaseException):  # a cluster that never started has nothing to close
            self._started.result().close()


def prepare_local_workers() -> None:
    """Have the local pool's workers start with their code loaded: the fork server (which forks
    them) is started now, importing the workers' modules, while this process validates and
    plans. Call it first thing in a command that will run chunks locally; without it the pool
    starts its fork server itself, and each worker imports its modules when the chunks are due.
    """
    from scm_batch.executors.local import start_fork_server  # noqa: PLC0415

    start_fork_server()


@dataclass(frozen=True, slots=True)
class Session:
    """How this invocation runs: options, progress, where chunks go, time and chance."""

    options: RunOptions
    progress: ProgressReporter = field(default_factory=NullProgress)
    executor_factory: ExecutorFactory = configured_executor
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.perf_counter)  # perf_counter() at the start

    @classmethod
    def start(
        cls,
        options: RunOptions,
        *,
        progress: ProgressReporter | None = None,
        executor_factory: ExecutorFactory | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> Session:
        """A session starting now; what is not given is the default (the local pool…)."""
        if options.faults is not None:  # workers that kill the driver need to know who it is
            options = msgspec.structs.replace(
                options, faults=msgspec.structs.replace(options.faults, driver_pid=os.getpid())
            )
        return cls(
            options=options,
            progress=progress or NullProgress(),
            executor_factory=executor_factory or configured_executor,
            clock=clock or SystemClock(),
            rng=rng or random.Random(),
        )

    @property
    def faults(self) -> FaultPlan:
        return self.options.faults or FaultPlan()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def _summed(first: Mapping[str, int], second: Mapping[str, int]) -> dict[str, int]:
    """Counts by key of both."""
    summed = dict(first)
    for key, count in second.items():
        summed[key] = summed.get(key, 0) + count
    return summed


def process_in_parallel(
    plan: ChunkPlan,
    todo: list[ChunkTask],
    done_before: dict[str, ChunkResult],
    ledger: Ledger,
    session: Session,
    checkpoint: Callable[[], None] | None = None,
) -> Outcome:
    """ProcessChunksInParallel for the chunks ``todo`` (the others are ``done_before``): run them
    on the session's executor, retrying, tolerating and failing fast as the options say, with
    progress on the way. ``checkpoint`` is asked while chunks run; what it raises stops them."""
    lines_before = sum(r.lines for r in done_before.values())
    before = ChunkCounts()  # what earlier sessions did, for the counts a snapshot carries
    for result in done_before.values():
        before.add_result(result)
    # Never more workers than chunks: a worker with nothing to do costs a process all the same.
    workers = min(session.options.workers, len(todo))
    executor = session.executor_factory(msgspec.structs.replace(session.options, workers=workers))
    try:
        executor.check_reach(todo[0])
    except BaseException:
        executor.shutdown(cancel=True)
        raise
    session.progress.phase(
        f"ProcessChunksInParallel: {len(todo)} of {plan.chunk_count} chunks of up to "
        f"{plan.chunk_size:,} records on {executor.description}"
    )

    def snapshot(tally: Tally) -> ProgressSnapshot:
        return ProgressSnapshot(
            lines_done=min(plan.total_records, lines_before + tally.lines_done),
            lines_total=plan.total_records,
            chunks_done=len(done_before) + tally.results,
            chunks_failed=tally.failures,
            chunks_total=len(plan.chunks),
            elapsed=session.elapsed,
            lines_resumed=lines_before,
            records_done=before.records + tally.records,
            valid_records=before.valid_records + tally.valid_records,
            errors_by_category=_summed(before.errors_by_category, tally.errors_by_category),
            chunk_retries=before.retries + tally.retries,
        )

    scheduler = ChunkScheduler(
        executor=executor,
        ledger=ledger,
        retry=session.options.retry,
        tolerance=session.options.tolerance,
        total_chunks=len(plan.chunks),
        clock=session.clock,
        rng=session.rng,
        interval=session.progress.interval,
        on_tick=lambda tally: session.progress.update(snapshot(tally)),
        on_commit=lambda done: session.faults.crash_driver_at("after-chunks", chunks_done=done),
        checkpoint=checkpoint,
    )
    try:
        outcome = scheduler.run(todo)
    except BaseException:
        executor.shutdown(cancel=True)
        # Workers stopped mid-write leave temporary files or open uploads; remove them now if
        # the storage lets us (a resume would otherwise do it).
        with suppress(Exception):
            ledger.discard_incomplete()
        raise
    executor.shutdown(cancel=False)
    session.progress.finish(snapshot(outcome.tally(executor.lines_done() or 0)))
    # What attempts killed mid-write left behind (temporary files, open uploads) goes now, once
    # no worker is writing, rather than chunk by chunk. On Dask a task given up may still be
    # running (Dask cannot stop one): its parts may go with this; it then fails unseen, and its
    # chunk, without a receipt, is done again by the next run. Never a receipt without its parts.
    ledger.discard_incomplete()
    return outcome
