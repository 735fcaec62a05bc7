"""ProcessChunk: one chunk's byte range in, its result and error parts out.

The chunk is streamed in blocks; each block is split into lines, decoded, validated, transformed
and re-encoded as a whole, so memory stays at a few blocks whatever the chunk or file size. Every
line ends up in exactly one place: the result part (valid records), the error part (with its line
number, byte offset, category, field errors and the raw line), or the blank-line count.
"""

from __future__ import annotations

import functools
import gc
import os
import resource
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypedDict, TypeVar, Unpack

import msgspec

from scm_batch import layout
from scm_batch.faults import FaultPlan
from scm_batch.ledger import Ledger, record_receipt
from scm_batch.model import Attempt, ChunkResult, ChunkTask, StatusWord
from scm_batch.records.blocks import CountedBlocks
from scm_batch.records.native import engine_name, native_engine
from scm_batch.records.parts import checked_writer, open_result_part
from scm_batch.records.transform import TransformContext
from scm_batch.sinks.base import RecordSink
from scm_batch.sinks.messages import MessageBuilder
from scm_batch.stages.chunk_input import check_consumed, chunk_bytes
from scm_batch.stages.native_scan import native_blocks
from scm_batch.stages.scan import Scanner, Tally, python_blocks
from scm_batch.storage import Storage, open_storage

DEFAULT_BLOCK_SIZE = 1 << 20
P = ParamSpec("P")
R = TypeVar("R")
ProgressCallback = Callable[[int], None]
"""Told how many more lines of the chunk are done, once per block."""


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def worker_name() -> str:
    """Where a chunk ran, for the report's timeline: the Batch job, the Lambda's execution
    environment (its log stream: one per environment, reused across invocations), or host:pid."""
    if job := os.environ.get("AWS_BATCH_JOB_ID"):
        return f"batch:{job}"
    if stream := os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"):
        return f"lambda:{stream.rsplit(']', 1)[-1]}"
    return f"{socket.gethostname()}:{os.getpid()}"


def _without_cyclic_gc(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with the cyclic garbage collector paused.

    A chunk's records are trees of dicts, lists and strings, freed by reference counting as each
    block is done; no cycle is made. The collector would still wake every 700 allocations and walk
    every record of the block in hand, again and again: about a sixth of a chunk's time measured
    here. It is paused for the chunk and resumed after it; the rare cycle an error leaves (an
    exception and its traceback, also in a sink's threads) waits until then. The pause is
    process-wide and a worker runs one chunk at a time; two chunks in threads of one process would
    see it resumed when the first ends: slower, never wrong.
    """

    @functools.wraps(function)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            gc.enable()

    return paused


class ChunkOptions(TypedDict, total=False):
    """How :func:`process_chunk` runs a chunk, beyond the task (see :func:`_process_chunk`)."""

    storage: Storage | None
    sink: RecordSink | None
    on_progress: ProgressCallback | None
    block_size: int
    attempt: int
    previous_attempts: Sequence[Attempt]
    fault_hook: Callable[[int], None] | None


def process_chunk(task: ChunkTask, **options: Unpack[ChunkOptions]) -> ChunkResult:
    """Process one chunk task: write its parts, deliver its records to ``sink`` (if any), then
    write its receipt; return the chunk's receipt (see :func:`_process_chunk`)."""
    return _process_chunk(task, **options).result


@_without_cyclic_gc
def _process_chunk(
    task: ChunkTask,
    *,
    storage: Storage | None = None,
    sink: RecordSink | None = None,
    on_progress: ProgressCallback | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    attempt: int = 1,
    previous_attempts: Sequence[Attempt] = (),
    fault_hook: Callable[[int], None] | None = None,
) -> ChunkRun:
    """Process one chunk task: write its parts, deliver its records to ``sink`` (if any), then
    write its receipt; return its counts, or the receipt of another run of the chunk that
    committed first (``done_before``: the chunk was run twice at once; the same bytes).

    The receipt comes only after the parts are complete and every message is acknowledged, so a
    chunk with a receipt is done and delivered. ``attempt`` and ``previous_attempts`` are recorded
    in it. ``fault_hook`` is the test-only fault switch (:mod:`scm_batch.faults`), told the number
    of blocks written so far. A chunk whose parts are rebuilt (``task.delivered_before``) sends
    nothing: its records went out when it was first done.
    """
    started = time.perf_counter()
    started_at = time.time()
    if task.delivered_before is not None:
        sink = None
    store = storage if storage is not None else open_storage(task.bucket)
    ctx = TransformContext.create(
        batch_id=task.batch_id,
        customer_id=task.customer_id,
        tenant_id=task.tenant_id,
        processed_at=task.processed_at,
    )
    encode_lines = msgspec.json.Encoder().encode_lines
    result_key = layout.result_key(task.batch_id, task.chunk_id, task.output_format)
    error_key = layout.error_key(task.batch_id, task.chunk_id)
    engine = native_engine()
    blocks = CountedBlocks(chunk_bytes(task, store, block_size))
    scanner = Scanner(task)
    delivery = sink.begin(task) if sink is not None else None
    messages = MessageBuilder(task, sink.message_format, ctx) if sink is not None else None
    marks = delivery is not None
    if engine is None:
        sorted_blocks = python_blocks(task, blocks, scanner, ctx, marks=marks)
    else:
        sorted_blocks = native_blocks(engine, task, blocks, scanner, ctx, marks=marks)
    try:
        with (
            checked_writer(store, result_key) as result_object,
            open_result_part(task.output_format, result_object) as results,
            checked_writer(store, error_key) as errors,
        ):
            done_before = 0
            for block in sorted_blocks:
                if block.encoded:
                    results.write(block.encoded)
                    if messages is not None and delivery is not None and block.marks:
                        lines = block.encoded.split(b"\n")[:-1]
                        delivery.send(messages.build(lines, block.marks))
                if scanner.bad:
                    errors.write(encode_lines(scanner.bad))
                    scanner.bad.clear()
                if on_progress is not None:
                    on_progress(scanner.tally.lines - done_before)
                done_before = scanner.tally.lines
                if fault_hook is not None:
                    fault_hook(scanner.tally.blocks)
            # Checked before the parts commit, so a chunk of a changed file leaves none behind.
            consumed = blocks.count if scanner.elements else scanner.offset - task.byte_start
            check_consumed(task, consumed=consumed, lines=scanner.tally.lines)
            # The result part complete before delivery is confirmed: failing to finish it fails
            # the chunk while its messages can still be aborted.
            results.finish()
            # Every message acknowledged, or the parts are not committed either.
            delivered = delivery.finish() if delivery is not None else task.delivered_before or 0
    except BaseException:
        if delivery is not None:
            delivery.abort()
        raise

    duration = round(time.perf_counter() - started, 6)
    result = _result(task, scanner.tally, duration, previous_attempts, attempt, delivered)
    result = msgspec.structs.replace(
        result,
        engine=engine_name(engine),
        parts=[result_object.check(), errors.check()],
        started_at=round(started_at, 3),
        worker=worker_name(),
    )
    # The commit: last, after parts and delivery; the receipt that stands if another run of this
    # chunk committed first.
    standing = record_receipt(store, task.batch_id, result)
    return ChunkRun(standing, done_before=standing is not result)


def _result(
    task: ChunkTask,
    tally: Tally,
    duration: float,
    failed: Sequence[Attempt],
    attempt: int,
    delivered: int,
) -> ChunkResult:
    """The chunk's receipt: its counts, its parts' keys, and every attempt at it."""
    done = Attempt(attempt=attempt, status=StatusWord.CHUNK_PROCESSED, duration_seconds=duration)
    return ChunkResult(
        chunk_id=task.chunk_id,
        chunk_number=task.chunk_number,
        route=task.route,
        lines=tally.lines,
        blank_lines=tally.blank_lines,
        valid_records=tally.valid_records,
        records_with_missing_fields=tally.records_with_missing_fields,
        records_with_empty_fields=tally.records_with_empty_fields,
        errors_by_category=dict(sorted(tally.errors_by_category.items())),
        field_errors={k: dict(sorted(v.items())) for k, v in sorted(tally.field_errors.items())},
        bytes_read=task.byte_end - task.byte_start,
        result_key=layout.result_key(task.batch_id, task.chunk_id, task.output_format),
        error_key=layout.error_key(task.batch_id, task.chunk_id),
        duration_seconds=duration,
        worker_peak_rss_bytes=_peak_rss_bytes(),
        attempts=[*failed, done],
        delivered=delivered,
    )


@dataclass(frozen=True, slots=True)
class ChunkRun:
    """A chunk's receipt, and whether an earlier attempt had committed it already."""

    result: ChunkResult
    done_before: bool


def run_chunk(
    task: ChunkTask,
    *,
    storage: Storage,
    sink: RecordSink | None,
    attempt: int = 1,
    previous_attempts: Sequence[Attempt] = (),
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_progress: ProgressCallback | None = None,
    faults: FaultPlan | None = None,
    on_start: Callable[[], None] | None = None,
) -> ChunkRun:
    """ProcessChunk at most once: a chunk whose receipt exists is done (a retried task, an
    execution started again, a Batch job attempt after a Spot interruption, a chunk run twice by
    a cluster), and its receipt is returned without processing or delivering anything again.
    ``on_start`` is told when processing really starts; ``faults`` is the test-only switch."""
    earlier = Ledger(storage, task.batch_id).receipt(task.chunk_id)
    if earlier is not None:
        return ChunkRun(earlier, done_before=True)
    if on_start is not None:
        on_start()
    return _process_chunk(
        task,
        storage=storage,
        sink=sink,
        on_progress=on_progress,
        block_size=block_size,
        attempt=attempt,
        previous_attempts=previous_attempts,
        fault_hook=faults.hook(task.chunk_id, attempt) if faults is not None else None,
    )
