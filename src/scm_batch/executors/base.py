"""The executor port: something that runs chunk tasks somewhere and hands back futures."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol

from scm_batch.model import Attempt, ChunkResult, ChunkTask


class ChunkExecutor(Protocol):
    """Runs chunk tasks; the driver collects the futures as they complete."""

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
