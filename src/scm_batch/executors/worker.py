"""What a worker of any executor does with a chunk task: the same code in a local pool's process
and on a Dask worker.

A worker keeps one storage client per bucket and one producer per destination from chunk to
chunk (a producer's connections cost more than a small chunk), runs the chunk at most once
(:func:`scm_batch.stages.process.run_chunk`), and reports progress at most every tenth of a second.
Everything it is configured with arrives as :class:`WorkerSettings`, plain data sent with the task:
a worker's own environment configures nothing but its credentials.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scm_batch.errors import ChunkFailedError
from scm_batch.faults import FaultPlan
from scm_batch.model import Attempt, ChunkResult, ChunkTask
from scm_batch.retry import is_transient
from scm_batch.sinks.base import RecordSink
from scm_batch.sinks.options import DeliveryOptions
from scm_batch.sinks.routing import open_record_sink
from scm_batch.stages.process import run_chunk
from scm_batch.storage import Storage, StorageOptions, open_storage

# Progress goes to the driver at most this often: a message per block cost a twentieth of a
# worker's time once the records were sorted natively. What a chunk did not report is in its result.
PROGRESS_INTERVAL = 0.1  # seconds


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker needs besides the task: how to read, where to deliver, test-only faults."""

    block_size: int
    storage: StorageOptions = field(default_factory=StorageOptions)
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)
    faults: FaultPlan | None = None


def portable_error(error: BaseException, task: ChunkTask) -> BaseException:
    """The error itself if it survives the trip to the driver, else a faithful stand-in."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # any unpicklable error is replaced, whatever breaks
        return ChunkFailedError(
            task.chunk_id, type(error).__name__, str(error), retryable=is_transient(error)
        )
    return error


class ThrottledProgress:
    """Adds up a chunk's lines done and passes them on at most every :data:`PROGRESS_INTERVAL`."""

    def __init__(self, send: Callable[[int], None]) -> None:
        self._send = send
        self._unsent = 0
        self._last_sent = 0.0

    def __call__(self, lines: int) -> None:
        self._unsent += lines
        now = time.monotonic()
        if now - self._last_sent >= PROGRESS_INTERVAL:
            self._send(self._unsent)
            self._unsent, self._last_sent = 0, now


@dataclass(slots=True)
class ChunkRunner:
    """Runs chunk tasks one after another with the clients it keeps (one runner per thread)."""

    settings: WorkerSettings
    buckets: dict[str, Storage] = field(default_factory=dict)
    sinks: dict[str, RecordSink | None] = field(default_factory=dict)

    def storage(self, bucket: str) -> Storage:
        store = self.buckets.get(bucket)
        if store is None:
            store = self.buckets[bucket] = open_storage(bucket, self.settings.storage)
        return store

    def run(
        self,
        task: ChunkTask,
        attempt: int,
        previous: Sequence[Attempt],
        on_progress: Callable[[int], None] | None = None,
    ) -> ChunkResult:
        """Run one attempt at ``task``: its receipt (an earlier one if it was done before)."""
        sink = self.sinks.get(task.destination)
        if sink is None or sink.broken:
            sink = self.sinks[task.destination] = open_record_sink(
                task.destination, self.settings.delivery
            )
        ran = run_chunk(
            task,
            storage=self.storage(task.bucket),
            sink=sink,
            on_progress=on_progress,
            block_size=self.settings.block_size,
            attempt=attempt,
            previous_attempts=previous,
            faults=self.settings.faults,
        )
        return ran.result

    def close(self) -> None:
        """Flush and close the producers (a worker leaving its cluster)."""
        for sink in self.sinks.values():
            if sink is not None:
                sink.close()
        self.sinks.clear()
