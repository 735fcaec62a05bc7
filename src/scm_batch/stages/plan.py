"""CalculateChunks: cut the input into byte ranges on line boundaries, and route each one.

Two ways to cut, both giving ranges that start at the beginning of a line and end just after a
``\\n`` (or at the end of the object), so every line belongs to exactly one chunk:

* **exact** (the default for local files): one pass counts the newlines block by block, at disk
  speed; chunk ``k`` then starts exactly at line ``k * chunkSize``, and the plan's record indices
  are exact.
* **estimated**: the number of lines is estimated from the sampled bytes per line (or taken from
  ``targetTotalRecords``); the object is cut at evenly spaced byte offsets, each moved forward to
  the next line start by reading a little around it. Indices are marked as estimates.

The chunk size follows the contract, ``min(ceil(total / maxConcurrentChunks), maxChunkSize)``, and
is never below ``minChunkSize`` so a small file is not shredded into pieces that cost more to
schedule than to process.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from datetime import datetime

import msgspec

from scm_batch import layout
from scm_batch.clock import utc_timestamp
from scm_batch.model import (
    PLAN_FORMAT_VERSION,
    ChunkPlan,
    ChunkTask,
    JobInput,
    PlanOptions,
    SourceInfo,
    StatusWord,
)
from scm_batch.records.codecs import NEWLINE
from scm_batch.storage import Storage

COUNT_BLOCK_SIZE = 8 << 20
_SEEK_WINDOW = 64 << 10
_MAX_SEEK_WINDOW = 8 << 20


@dataclass(frozen=True, slots=True)
class LineIndex:
    """Newline counts of an object, block by block: enough to find any line's start quickly."""

    total_lines: int
    block_starts: list[int]
    newlines_before: list[int]  # cumulative newline count before each block; one extra at the end

    def line_start(self, storage: Storage, key: str, line: int) -> int:
        """Byte offset where 0-based ``line`` starts (``line`` >= 1: just after its ``\\n``)."""
        # The block holding the line-th newline is the last one with fewer newlines before it.
        block = bisect.bisect_left(self.newlines_before, line) - 1
        start = self.block_starts[block]
        end = self.block_starts[block + 1]
        data = storage.read_range(key, start, end)
        pos = -1
        for _ in range(line - self.newlines_before[block]):
            pos = data.index(NEWLINE, pos + 1)
        return start + pos + 1


def index_lines(
    storage: Storage, key: str, size: int, block_size: int = COUNT_BLOCK_SIZE
) -> LineIndex:
    """Count the lines of an object in one sequential pass."""
    block_starts: list[int] = []
    newlines_before = [0]
    position = 0
    last = b""
    for block in storage.iter_range(key, 0, size, block_size):
        block_starts.append(position)
        newlines_before.append(newlines_before[-1] + block.count(NEWLINE))
        position += len(block)
        last = block[-1:]
    block_starts.append(position)
    newlines = newlines_before[-1]
    total = newlines + (1 if position and last != NEWLINE else 0)
    return LineIndex(total_lines=total, block_starts=block_starts, newlines_before=newlines_before)


def next_line_start(storage: Storage, key: str, position: int, size: int) -> int:
    """The first offset >= ``position`` at which a line starts (``size`` if there is none)."""
    if position <= 0:
        return 0
    at = position - 1  # a line starts at `position` exactly when the byte before it is "\n"
    window = _SEEK_WINDOW
    while at < size:
        data = storage.read_range(key, at, min(at + window, size))
        found = data.find(NEWLINE)
        if found >= 0:
            return at + found + 1
        at += len(data)
        window = min(window * 2, _MAX_SEEK_WINDOW)
    return size


def chunk_record_count(total: int, job: JobInput, options: PlanOptions) -> int:
    """Records per chunk: the contract's formula, floored at ``minChunkSize``."""
    per_chunk = math.ceil(total / job.max_concurrent_chunks)
    per_chunk = min(max(per_chunk, options.min_chunk_size), job.max_chunk_size)
    return max(1, min(per_chunk, total))


@dataclass(frozen=True, slots=True)
class _Range:
    byte_start: int
    byte_end: int
    start_index: int
    records: int


def _exact_ranges(
    storage: Storage, source: SourceInfo, index: LineIndex, per_chunk: int
) -> list[_Range]:
    total = index.total_lines
    ranges = []
    for first_line in range(0, total, per_chunk):
        last_line = min(first_line + per_chunk, total)
        start = 0 if first_line == 0 else index.line_start(storage, source.key, first_line)
        end = (
            source.size if last_line == total else index.line_start(storage, source.key, last_line)
        )
        ranges.append(_Range(start, end, first_line, last_line - first_line))
    return ranges


def _estimated_ranges(
    storage: Storage, source: SourceInfo, total: int, per_chunk: int
) -> list[_Range]:
    count = math.ceil(total / per_chunk)
    cuts = {
        next_line_start(storage, source.key, source.size * i // count, source.size)
        for i in range(count)
    }
    bounds = sorted(cuts | {0, source.size})
    ranges = []
    first_index = 0
    for start, end in itertools.pairwise(bounds):
        if start >= end:
            continue
        records = max(1, round((end - start) / source.bytes_per_record))
        ranges.append(_Range(start, end, first_index, records))
        first_index += records
    return ranges


def calculate_chunks(
    job: JobInput,
    source: SourceInfo,
    storage: Storage,
    options: PlanOptions,
    *,
    now: datetime | None = None,
) -> ChunkPlan:
    """The chunk plan for ``job``'s input (read-only: writing it is :func:`write_plan`'s job)."""
    created_at = utc_timestamp(now)
    processed_at = job.processed_at or created_at
    if options.count_records:
        index = index_lines(storage, source.key, source.size)
        total = index.total_lines
        per_chunk = chunk_record_count(total, job, options)
        ranges = _exact_ranges(storage, source, index, per_chunk)
    else:
        total = job.target_total_records or max(1, round(source.size / source.bytes_per_record))
        per_chunk = chunk_record_count(total, job, options)
        ranges = _estimated_ranges(storage, source, total, per_chunk)

    routing = options.routing
    per_record = routing.estimated_processing_time_per_record
    chunks = [
        ChunkTask(
            chunk_id=layout.chunk_id(number),
            chunk_number=number + 1,
            start_index=r.start_index,
            end_index=r.start_index + r.records - 1,
            chunk_size=r.records,
            bucket=job.bucket,
            file=job.file,
            customer_id=job.customer_id,
            tenant_id=job.tenant_id,
            batch_id=job.batch_id,
            destination=job.destination,
            estimated_processing_time=round(r.records * per_record, 3),
            created_at=created_at,
            byte_start=r.byte_start,
            byte_end=r.byte_end,
            route=routing.route_for(r.records),
            indices_exact=options.count_records,
            deployment=job.deployment,
            snapshot_id=job.snapshot_id,
            processed_at=processed_at,
        )
        for number, r in enumerate(ranges)
    ]
    return ChunkPlan(
        format_version=PLAN_FORMAT_VERSION,
        status=StatusWord.CHUNKS_CALCULATED,
        batch_id=job.batch_id,
        job=job,
        source=source,
        options=options,
        total_records=total,
        records_exact=options.count_records,
        chunk_size=per_chunk,
        chunk_count=len(chunks),
        processed_at=processed_at,
        created_at=created_at,
        chunks=chunks,
    )


def encode_plan(plan: ChunkPlan) -> bytes:
    """The plan as indented JSON: small, and read by people as often as by programs."""
    return msgspec.json.format(msgspec.json.encode(plan), indent=2)


def write_plan(plan: ChunkPlan, storage: Storage) -> str:
    """Store the plan at ``metadata/{batchId}/chunks.json``; return its key."""
    key = layout.plan_key(plan.batch_id)
    storage.put_bytes(key, encode_plan(plan))
    return key
