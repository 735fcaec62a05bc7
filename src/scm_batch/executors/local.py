"""A local process pool: one worker process per core by default.

Workers are started with ``forkserver`` (``spawn`` where that is missing) rather than ``fork``: the
driver runs a progress display thread, and forking a process that has threads can deadlock.

Live progress: every worker adds the lines it has finished to one shared counter, once per block,
so the driver can show records/s while chunks are still running. The counter reaches a worker
through the pool initializer, the only way to hand a shared value to a pool process; it is kept in
a module variable of that worker process and nowhere else.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.sharedctypes import Synchronized

from scm_batch.model import ChunkResult, ChunkTask
from scm_batch.stages.process import process_chunk

_worker_lines: Synchronized[int] | None = None


def _init_worker(counter: Synchronized[int]) -> None:
    global _worker_lines  # noqa: PLW0603 - per-process state handed over by the pool initializer
    _worker_lines = counter
    # Ctrl-C goes to the whole process group; the driver decides what happens, not each worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _count_lines(lines: int) -> None:
    counter = _worker_lines
    if counter is not None:
        with counter.get_lock():
            counter.value += lines


def run_chunk(task: ChunkTask, block_size: int) -> ChunkResult:
    """The function each worker runs: process one chunk, reporting progress per block."""
    return process_chunk(task, on_progress=_count_lines, block_size=block_size)


class LocalExecutor:
    """Chunk tasks on a pool of local worker processes."""

    def __init__(self, workers: int, *, block_size: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._lines: Synchronized[int] = context.Value("q", 0)
        self._block_size = block_size
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._lines,),
        )

    def submit(self, task: ChunkTask) -> Future[ChunkResult]:
        return self._pool.submit(run_chunk, task, self._block_size)

    def lines_done(self) -> int:
        return int(self._lines.value)

    def shutdown(self, *, cancel: bool) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)
