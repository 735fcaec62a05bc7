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
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from scm_batch import layout
from scm_batch.clock import utc_timestamp
from scm_batch.model import (
    DEFAULT_OUTPUT_FORMAT,
    PLAN_FORMAT_VERSION,
    ChunkPlan,
    ChunkTask,
    JobInput,
    PlanOptions,
    SourceInfo,
    StatusWord,
)
from scm_batch.records.codecs import NEWLINE
from scm_batch.records.native import native_engine
from scm_batch.stages.sizing import MAX_CHUNKS, check_chunk_count, chunk_record_count
from scm_batch.stages.staging import StagedChunk, stage_input
from scm_batch.storage import Storage
from scm_batch.storage.base import concurrently

__all__ = ["MAX_CHUNKS", "calculate_chunks", "chunk_record_count", "index_lines"]

COUNT_BLOCK_SIZE = 8 << 20
INDEX_GRANULE = 256 << 10
_SEEK_WINDOW = 64 << 10
_MAX_SEEK_WINDOW = 8 << 20


@dataclass(frozen=True, slots=True)
class LineIndex:
    """Newline counts of an object per granule of bytes: any line's start is then found by
    reading one granule, however large the object."""

    size: int
    granule: int
    total_lines: int
    # [g]: newlines in bytes [0, g * granule); one entry per granule, plus one.
    newlines_before: array[int]

    def line_start(self, storage: Storage, key: str, line: int) -> int:
        """Byte offset where 0-based ``line`` starts (``line`` >= 1: just after its ``\\n``)."""
        # The granule holding the line-th newline: the last one with fewer newlines before it.
        g = bisect.bisect_left(self.newlines_before, line) - 1
        start = g * self.granule
        data = storage.read_range(key, start, min(start + self.granule, self.size))
        pos = -1
        for _ in range(line - self.newlines_before[g]):
            pos = data.index(NEWLINE, pos + 1)
        return start + pos + 1


def index_lines(
    storage: Storage,
    key: str,
    size: int,
    *,
    block_size: int = COUNT_BLOCK_SIZE,
    granule: int = INDEX_GRANULE,
) -> LineIndex:
    """Count the lines of an object in one sequential pass, noting the count at every granule.
    The native engine counts with SIMD when it is installed (this pass reads the whole input
    before any chunk starts: its speed is the run's)."""
    engine = native_engine()
    count = engine.count_newlines if engine is not None else _count_newlines
    newlines_before = array("q", [0])
    newlines = 0
    position = 0
    last = b""
    for block in storage.iter_range(key, 0, size, block_size):
        offset = 0
        while offset < len(block):
            granule_end = (position // granule + 1) * granule
            take = min(len(block) - offset, granule_end - position)
            newlines += count(block, offset, offset + take)
            offset += take
            position += take
            if position == granule_end:
                newlines_before.append(newlines)
        last = block[-1:]
    if position % granule:
        newlines_before.append(newlines)
    total = newlines + (1 if position and last != NEWLINE else 0)
    return LineIndex(
        size=position, granule=granule, total_lines=total, newlines_before=newlines_before
    )


def _count_newlines(block: bytes, start: int, end: int) -> int:
    return block.count(NEWLINE, start, end)


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
    firsts = range(0, total, per_chunk)
    # One ranged read per boundary, many at a time: a 10,000-chunk plan of an S3 object would
    # otherwise spend minutes in round trips (CalculateChunks has 300 s).
    found = concurrently(
        storage, lambda line: index.line_start(storage, source.key, line), firsts[1:]
    )
    starts = [0, *found, source.size]
    return [
        _Range(starts[i], starts[i + 1], first, min(first + per_chunk, total) - first)
        for i, first in enumerate(firsts)
    ]


def _estimated_ranges(
    storage: Storage, source: SourceInfo, total: int, per_chunk: int
) -> list[_Range]:
    count = min(math.ceil(total / per_chunk), source.size)
    positions = [source.size * i // count for i in range(count)]
    cuts = set(
        concurrently(
            storage, lambda at: next_line_start(storage, source.key, at, source.size), positions
        )
    )
    bounds = sorted(cuts | {0, source.size})
    # Records per range from the same total the chunk size came from, so the two agree.
    bytes_per_record = source.size / total
    ranges = []
    first_index = 0
    for start, end in itertools.pairwise(bounds):
        if start >= end:
            continue
        records = max(1, round((end - start) / bytes_per_record))
        ranges.append(_Range(start, end, first_index, records))
        first_index += records
    return ranges


def _array_ranges(
    storage: Storage, source: SourceInfo, job: JobInput, options: PlanOptions, scan_workers: int
) -> tuple[int, list[_Range]]:
    """A JSON array scanned whole (in ``scan_workers`` ranges at once) and cut between elements:
    the records per chunk and the ranges."""
    # numpy, loaded for arrays only: a JSON Lines run never pays for it.
    from scm_batch.stages.array_index import (  # noqa: PLC0415
        SCAN_BLOCK,
        element_end,
        index_in_parallel,
    )

    index = index_in_parallel(
        lambda lo, hi: storage.iter_range(source.key, lo, hi, SCAN_BLOCK, etag=source.etag),
        lambda lo, hi: storage.read_range(source.key, lo, hi),
        source.size,
        storage.uri_for(source.key),
        scan_workers,
        storage.local_file(source.key),
    )
    per_chunk = chunk_record_count(index.total, job, options)
    check_chunk_count(index.total, per_chunk)
    firsts = range(0, index.total, per_chunk)

    def read(start: int, end: int) -> bytes:
        return storage.read_range(source.key, start, end)

    # The comma after each chunk's last element, many ranged reads at a time (as for lines).
    ends = concurrently(
        storage, lambda first: element_end(index, read, first + per_chunk - 1), firsts
    )
    starts = [index.open + 1, *(end + 1 for end in ends[:-1])]
    return per_chunk, [
        _Range(start, end, first, min(first + per_chunk, index.total) - first)
        for start, end, first in zip(starts, ends, firsts, strict=True)
    ]


def _staged_ranges(staged: list[StagedChunk]) -> list[_Range]:
    return [_Range(s.byte_start, s.byte_end, s.start_index, s.records) for s in staged]


def calculate_chunks(
    job: JobInput,
    source: SourceInfo,
    storage: Storage,
    options: PlanOptions,
    *,
    now: datetime | None = None,
    stage: bool = False,
    on_staged: Callable[[int], None] = lambda _: None,
    scan_workers: int = 1,
) -> ChunkPlan:
    """The chunk plan for ``job``'s input (the ledger stores it). A compressed input is staged
    (:mod:`scm_batch.stages.staging`) when ``stage`` is set, else only cut (a preview); a JSON
    array is scanned whole (in ``scan_workers`` ranges at once) and cut between elements; JSON
    Lines are cut between lines."""
    created_at = utc_timestamp(now)
    processed_at = job.processed_at or created_at
    exact = options.count_records
    if exact is None:
        exact = not job.bucket.startswith("s3://")
    staged: list[StagedChunk] = []
    if source.compression != "none":
        exact = True
        per_chunk, staged = stage_input(
            job, source, storage, options, write=stage, on_staged=on_staged
        )
        check_chunk_count(sum(s.records for s in staged), per_chunk)
        ranges = _staged_ranges(staged)
    elif source.format == "json-array":
        exact = True
        per_chunk, ranges = _array_ranges(storage, source, job, options, scan_workers)
    elif exact:
        index = index_lines(storage, source.key, source.size)
        per_chunk = chunk_record_count(index.total_lines, job, options)
        check_chunk_count(index.total_lines, per_chunk)
        ranges = _exact_ranges(storage, source, index, per_chunk)
    else:
        estimate = job.target_total_records or round(source.size / source.bytes_per_record)
        per_chunk = chunk_record_count(max(1, estimate), job, options)
        check_chunk_count(max(1, estimate), per_chunk)
        ranges = _estimated_ranges(storage, source, max(1, estimate), per_chunk)
    total = sum(r.records for r in ranges)
    # The format is fixed here, for the whole batch: a resumed batch keeps it.
    output_format = options.output_format or DEFAULT_OUTPUT_FORMAT

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
            destination=job.destination or "none",
            estimated_processing_time=round(r.records * per_record, 3),
            created_at=created_at,
            byte_start=r.byte_start,
            byte_end=r.byte_end,
            route=routing.route_for(r.records),
            indices_exact=exact,
            deployment=job.deployment,
            snapshot_id=job.snapshot_id,
            processed_at=processed_at,
            source_size=source.size,
            source_mtime_ns=source.mtime_ns,
            source_etag=source.etag,
            source_version_id=source.version_id,
            output_format=output_format,
            max_line_bytes=options.max_line_bytes,
            input_format=source.format,
            staged_key=staged[number].key if staged and stage else None,
        )
        for number, r in enumerate(ranges)
    ]
    return ChunkPlan(
        format_version=PLAN_FORMAT_VERSION,
        status=StatusWord.CHUNKS_CALCULATED,
        batch_id=job.batch_id,
        job=job,
        source=source,
        options=msgspec.structs.replace(options, output_format=output_format),
        total_records=total,
        records_exact=exact,
        chunk_size=per_chunk,
        chunk_count=len(chunks),
        processed_at=processed_at,
        created_at=created_at,
        chunks=chunks,
    )
