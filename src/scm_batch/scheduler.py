"""ProcessChunksInParallel: run chunks on an executor, retry transient failures, fail fast.

Every chunk is submitted at once; the executor runs as many as it has workers. A chunk that
fails with a transient error (see :func:`scm_batch.retry.is_transient`) is submitted again after
a jittered exponential backoff, until the retry policy's attempts are spent; a terminal error
gives up at once. Chunks given up on are recorded in the ledger. When they exceed the tolerance,
the run fails fast: chunks not yet started are cancelled and retries abandoned, while chunks
already running may finish (stopping them mid-write would only leave debris).

Time passes only through an injectable clock and an injectable wait for futures, so tests drive
the backoff without waiting for it.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from concurrent.futures import FIRST_COMPLETED, Future
from dataclasses import dataclass, field
from typing import Protocol

from scm_batch.errors import ChunkFailedError, ExecutorBrokenError
from scm_batch.executors.base import ChunkExecutor
from scm_batch.ledger import Ledger
from scm_batch.model import Attempt, ChunkFailure, ChunkResult, ChunkTask, StatusWord, Tolerance
from scm_batch.retry import RetryPolicy, is_transient


class Clock(Protocol):
    """Where the scheduler reads time and waits for a backoff to pass."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


Waiter = Callable[[Iterable[Future[ChunkResult]], float], set[Future[ChunkResult]]]
"""Waits up to ``timeout`` seconds for at least one future to finish; returns the finished ones."""


def wait_first(pending: Iterable[Future[ChunkResult]], timeout: float) -> set[Future[ChunkResult]]:
    done, _ = futures.wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
    return done


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Tally:
    """How far the session has come, for progress reports."""

    results: int
    failures: int
    lines_done: int
    # Of the chunks this session finished (done or given up on), for a metrics file: records,
    # valid ones and errors by category of the done chunks; attempts beyond the first of both.
    records: int = 0
    valid_records: int = 0
    errors_by_category: Mapping[str, int] = field(default_factory=dict)
    retries: int = 0


@dataclass(slots=True)
class ChunkCounts:
    """Sums over finished chunks, kept as each one finishes, so that a progress tick costs a
    copy of a few numbers rather than a pass over every result."""

    records: int = 0
    valid_records: int = 0
    errors_by_category: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    def add_result(self, result: ChunkResult) -> None:
        self.records += result.records
        self.valid_records += result.valid_records
        for category, count in result.errors_by_category.items():
            self.errors_by_category[category] = self.errors_by_category.get(category, 0) + count
        # A receipt lists the failed attempts and the one that succeeded.
        self.retries += max(0, len(result.attempts) - 1)

    def add_failure(self, failure: ChunkFailure) -> None:
        self.retries += max(0, len(failure.attempts) - 1)


@dataclass(slots=True)
class Outcome:
    """What the session did with its chunks."""

    results: list[ChunkResult] = field(default_factory=list)
    failures: list[ChunkFailure] = field(default_factory=list)
    not_started: list[ChunkTask] = field(default_factory=list)
    failed_fast: bool = False
    counts: ChunkCounts = field(default_factory=ChunkCounts)  # over results and failures

    def tally(self, lines_done: int) -> Tally:
        """Where the session stands, with ``lines_done`` lines read so far."""
        counts = self.counts
        return Tally(
            len(self.results),
            len(self.failures),
            lines_done,
            records=counts.records,
            valid_records=counts.valid_records,
            errors_by_category=dict(counts.errors_by_category),  # a copy: the sums go on
            retries=counts.retries,
        )


@dataclass(order=True, slots=True)
class _Retry:
    ready_at: float
    sequence: int
    task: ChunkTask = field(compare=False)
    attempt: int = field(compare=False)
    history: list[Attempt] = field(compare=False)


def describe_error(error: BaseException) -> tuple[str, str]:
    """(error class name, message) as reported for a failed attempt."""
    if isinstance(error, ChunkFailedError):  # an error that could not travel: its stand-in
        return error.error_type, error.detail
    return type(error).__name__, str(error)


@dataclass
class ChunkScheduler:
    """Runs one session's chunks to completion, failure or fail-fast."""

    executor: ChunkExecutor
    ledger: Ledger
    retry: RetryPolicy
    tolerance: Tolerance
    total_chunks: int
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    interval: float = 1.0
    on_tick: Callable[[Tally], None] | None = None
    on_commit: Callable[[int], None] | None = None
    checkpoint: Callable[[], None] | None = None  # asked every round; what it raises stops the run
    waiter: Waiter = wait_first

    def run(self, tasks: list[ChunkTask]) -> Outcome:
        outcome = Outcome()
        in_flight: dict[Future[ChunkResult], tuple[ChunkTask, int, list[Attempt]]] = {}
        waiting: list[_Retry] = []
        sequence = 0

        def submit(task: ChunkTask, attempt: int, history: list[Attempt]) -> None:
            in_flight[self.executor.submit(task, attempt, history)] = (task, attempt, history)

        for task in tasks:
            submit(task, 1, [])
        while in_flight or waiting:
            if self.checkpoint is not None:
                self.checkpoint()
            now = self.clock.monotonic()
            while waiting and waiting[0].ready_at <= now:
                due = heapq.heappop(waiting)
                submit(due.task, due.attempt, due.history)
            if not in_flight:
                self.clock.sleep(waiting[0].ready_at - now)
                continue
            timeout = self.interval
            if waiting:
                timeout = min(timeout, max(0.0, waiting[0].ready_at - now))
            done = self.waiter(list(in_flight), timeout)
            now = self.clock.monotonic()  # backoffs count from when the failures were seen
            # In plan order, so that what happens does not depend on which future finished first.
            for future in sorted(done, key=lambda f: in_flight[f][0].chunk_number):
                task, attempt, history = in_flight.pop(future)
                if future.cancelled():
                    outcome.not_started.append(task)
                    continue
                error = future.exception()
                if error is None:
                    outcome.results.append(future.result())
                    outcome.counts.add_result(outcome.results[-1])
                    if self.on_commit is not None:
                        self.on_commit(len(outcome.results))
                    continue
                if isinstance(error, ExecutorBrokenError):
                    raise error  # not this chunk's failure: the run stops, to be resumed
                error_type, message = describe_error(error)
                transient = is_transient(error)
                history = [
                    *history,
                    Attempt(
                        attempt=attempt,
                        status=StatusWord.CHUNK_FAILED,
                        duration_seconds=None,
                        error_type=error_type,
                        message=message,
                        transient=transient,
                        finished_at=round(time.time(), 3),  # the report's timeline
                    ),
                ]
                if transient and self.retry.allows(attempt + 1):
                    if outcome.failed_fast:  # it would be retried, but nothing new starts now
                        outcome.not_started.append(task)
                        continue
                    delay = self.retry.delay_before(attempt + 1, self.rng)
                    heapq.heappush(
                        waiting, _Retry(now + delay, sequence, task, attempt + 1, history)
                    )
                    sequence += 1
                    continue
                self._give_up(outcome, task, history)
                if not outcome.failed_fast and self.tolerance.exceeded(
                    len(outcome.failures), self.total_chunks
                ):
                    self._fail_fast(outcome, in_flight, waiting)
            if self.on_tick is not None:
                self.on_tick(outcome.tally(self.executor.lines_done() or 0))
        return outcome

    def _give_up(self, outcome: Outcome, task: ChunkTask, history: list[Attempt]) -> None:
        last = history[-1]
        failure = ChunkFailure(
            chunk_id=task.chunk_id,
            chunk_number=task.chunk_number,
            error_type=last.error_type or "Error",
            message=last.message or "",
            transient=bool(last.transient),
            attempts=history,
        )
        outcome.failures.append(failure)
        outcome.counts.add_failure(failure)
        self.ledger.record_failure(failure)

    def _fail_fast(
        self,
        outcome: Outcome,
        in_flight: dict[Future[ChunkResult], tuple[ChunkTask, int, list[Attempt]]],
        waiting: list[_Retry],
    ) -> None:
        """Too many failures: start nothing new; what is running may finish. Chunks still queued
        and chunks waiting for a retry are aborted, not failed, as a Distributed Map aborts its
        pending items: a resume runs them."""
        outcome.failed_fast = True
        for future, (task, _, _) in list(in_flight.items()):
            # Only chunks still queued can be cancelled. A cancelled future is not "done" for
            # concurrent.futures.wait until its executor notices, so it is settled here.
            if future.cancel():
                del in_flight[future]
                outcome.not_started.append(task)
        outcome.not_started.extend(retry.task for retry in waiting)
        waiting.clear()
