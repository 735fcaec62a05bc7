"""The executor port: something that runs chunk tasks somewhere and hands back futures."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from scm_batch.model import Attempt, ChunkResult, ChunkTask


class ChunkExecutor(Protocol):
    """Runs chunk tasks; the driver collects the futures as they complete."""

    @property
    def description(self) -> str:
        """Where chunks run, for people: "2 workers", "the Dask cluster at …: 4 workers"."""
        ...

    def check_reach(self, task: ChunkTask) -> None:
        """Before any chunk runs: raise if a worker cannot read ``task``'s input or write to its
        bucket (one error naming the worker, rather than a failure per chunk)."""
        ...

    def submit(
        self, task: ChunkTask, attempt: int = 1, previous: Sequence[Attempt] = ()
    ) -> Future[ChunkResult]:
        """Run ``task`` as its ``attempt``-th try; ``previous`` are the failed tries before it,
        recorded in the chunk's receipt."""
        ...

    def lines_done(self) -> int | None:
        """Lines processed so far across all workers, or ``None`` if this executor cannot tell
        before a chunk completes."""
        ...

    def shutdown(self, *, cancel: bool) -> None:
        """Stop the workers; with ``cancel``, drop queued tasks and stop running ones."""
        ...


# A chunk's timeout, unless one is given: ten times what it should take at the pace an executor's
# chunks went so far (bytes per second of a chunk, from those finished), and at least a minute.
# Before any has finished, a pessimistic pace is assumed (the first chunks may be slow to start).
# The timeout is how long a chunk may go without progress: each progress message of its worker
# (blocks done, at most every tenth of a second) pushes its deadline on, so a chunk slowed by its
# destination (Kafka pushing back, SQS throttling) is never killed while it moves, only one that
# is stuck or stopped.
MIN_CHUNK_TIMEOUT = 60.0
TIMEOUT_FACTOR = 10.0
UNMEASURED_PACE = float(1 << 20)


@dataclass(slots=True)
class Pace:
    """How fast an executor's chunks went: what the next one may take."""

    bytes: int = 0
    seconds: float = 0.0

    def record(self, result: ChunkResult) -> None:
        self.bytes += result.bytes_read
        self.seconds += result.duration_seconds

    def timeout(self, task: ChunkTask) -> float:
        pace = self.bytes / self.seconds if self.bytes and self.seconds > 0 else UNMEASURED_PACE
        return max(MIN_CHUNK_TIMEOUT, TIMEOUT_FACTOR * (task.byte_end - task.byte_start) / pace)
