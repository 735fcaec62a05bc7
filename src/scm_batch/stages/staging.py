"""Staging: compressed input decompressed once, streamed, and cut into chunks kept in the bucket.

A compressed stream cannot be read from the middle, so its chunks cannot be byte ranges of the
object. Staging reads it once from the start, in bounded memory (a block at a time), cuts the
decompressed bytes into chunks on record boundaries (exactly ``perChunk`` lines, or elements of a
JSON array), and writes each chunk to ``staged/{batchId}/{chunk}.zst`` (zstd level 1, ~0.2 of the
JSON's size, at several hundred MB/s). The chunks then run in parallel, each reading its staged
copy, as they would read ranges of an uncompressed file; offsets and ids are those of the
decompressed input, so a gzip of a JSON Lines file gives the same ids as the file itself.

Why staging and not a seekable index: resuming a gzip or bzip2 stream mid-way needs the
decompressor's bit position and window (zlib's ``inflatePrime``), which Python's zlib does not
expose, and zstd files are one frame unless their writer chose otherwise. Staging costs one extra
zstd compression (measured in BENCHMARKS.md) and works for all three.

Staging is part of the ledger. ``metadata/{batchId}/staging.json`` fixes the chunk size first
(from the sampled expansion, since the total is known only at the end); each staged chunk gets a
receipt after its copy is complete. Staging again after a crash reads the stream again (it cannot
be entered mid-way) but writes only the chunks not staged yet, checking each one staged before
against its receipt (offsets and CRC-32 of its bytes). The staged copies are deleted when the
batch completes, unless asked to keep them; a finished batch whose damaged parts need rebuilding
stages the chunks it needs again.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import msgspec
import zstandard

from scm_batch import layout
from scm_batch.errors import InputChangedError, InputError
from scm_batch.model import CamelStruct, JobInput, PlanOptions, RunSummary, SourceInfo
from scm_batch.records.codecs import NEWLINE
from scm_batch.records.compression import decompressed
from scm_batch.stages.sizing import chunk_record_count
from scm_batch.storage import ObjectWriter, Storage
from scm_batch.storage.base import concurrently

STAGED_LEVEL = 1
READ_BLOCK = 8 << 20


class StagingRecord(CamelStruct, frozen=True):
    """Fixed before the first chunk is staged: the same input is cut the same way again, and a
    batch stopped while staging (it has no plan yet) can be resumed from it."""

    job: JobInput
    size: int
    mtime_ns: int
    etag: str | None
    per_chunk: int


class StagedChunk(CamelStruct, frozen=True):
    """A staged chunk: where its bytes are in the decompressed input, and their checksum."""

    chunk_id: str
    key: str
    byte_start: int
    byte_end: int
    start_index: int
    records: int
    crc32: int


@dataclass(slots=True)
class _Chunk:
    """The chunk being cut: its offsets, records and checksum, counted here; its bytes go to
    the writer (unless it was staged before, or nothing is written)."""

    number: int
    byte_start: int
    start_index: int
    before: StagedChunk | None
    writer: _Writer | None
    crc32: int = 0
    records: int = 0
    size: int = 0
    ends_line: bool = True

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.ends_line = data.endswith(NEWLINE)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.size += len(data)
        if self.writer is not None:
            self.writer.put(data)


@dataclass(frozen=True, slots=True)
class _Open:
    key: str


@dataclass(frozen=True, slots=True)
class _Close:
    staged: StagedChunk
    receipt_key: str
    count: int  # chunks staged with this one


class _Abandon:
    """Leave the staged copy being written uncommitted."""


_Message = _Open | _Close | _Abandon | bytes
_QUEUED_BLOCKS = 4  # decompressed blocks waiting for the writer at most: bounded memory
_WAIT = 0.5  # seconds between looks at whether the writer stopped, while waiting on it


class _Writer:
    """Compresses and writes staged chunks in a thread of its own, while the stream is read and
    cut in the caller's: zstd and the zlib decompressor let go of the GIL, so the two overlap
    and staging takes about the time of decompressing alone. A chunk's receipt is written once
    its copy is complete; an error here is raised in the caller at its next step."""

    def __init__(self, storage: Storage, on_staged: Callable[[int], None]) -> None:
        self._storage = storage
        self._on_staged = on_staged
        self._queue: queue.Queue[_Message | None] = queue.Queue(maxsize=_QUEUED_BLOCKS)
        self._error: BaseException | None = None
        self._copy: ExitStack | None = None
        self._out: ObjectWriter | None = None
        self._packer: zstandard.ZstdCompressionObj | None = None
        # In a copy of the caller's context: what it writes, it writes as the caller would.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="staging-writer", daemon=True
        )
        self._thread.start()

    def put(self, message: _Message) -> None:
        """Hand the writer its next message; raise what stopped it, if anything."""
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(message, timeout=_WAIT)
            except queue.Full:
                continue  # the writer is slower; or stopped: looked at again above
            return

    def close(self) -> None:
        """Wait for every chunk to be written; raise what stopped the writer, if anything."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=_WAIT)
            except queue.Full:
                continue
            break
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop after an error elsewhere: the copy being written stays uncommitted; what stopped
        the writer itself, if anything, is not raised over the error being handled."""
        with contextlib.suppress(Exception):
            self.put(_Abandon())
        with contextlib.suppress(Exception):
            self.close()

    def _run(self) -> None:
        # The queue is always emptied to its end, even after an error, so that the reader
        # never waits on it; an error is kept for the reader to raise.
        while (message := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._handle(message)
            except BaseException as exc:
                self._error = exc
                self._discard()

    def _discard(self) -> None:
        """The copy being written left uncommitted, whatever leaving it raises."""
        copy, self._copy = self._copy, None
        if copy is not None:
            with contextlib.suppress(BaseException):
                copy.__exit__(RuntimeError, RuntimeError("staging stopped"), None)

    def _handle(self, message: _Message) -> None:
        if isinstance(message, bytes):
            assert self._out is not None
            assert self._packer is not None
            self._out.write(self._packer.compress(message))
        elif isinstance(message, _Open):
            self._copy = ExitStack()
            self._out = self._copy.enter_context(self._storage.open_writer(message.key))
            packer = zstandard.ZstdCompressor(level=STAGED_LEVEL, write_checksum=True)
            self._packer = packer.compressobj()
        elif isinstance(message, _Close):
            assert self._copy is not None
            assert self._out is not None
            assert self._packer is not None
            self._out.write(self._packer.flush())
            self._copy.close()  # the staged copy complete, then its receipt
            self._copy = None
            self._storage.put_bytes(message.receipt_key, msgspec.json.encode(message.staged))
            self._on_staged(message.count)
        else:  # abandoned
            self._discard()


@dataclass(slots=True)
class _Stager:
    """Cuts the decompressed stream into chunks of ``per_chunk`` records and stages them."""

    storage: Storage
    batch_id: str
    per_chunk: int
    write: bool
    staged_before: dict[str, StagedChunk]
    on_staged: Callable[[int], None]
    done: list[StagedChunk] = field(default_factory=list)
    _writer: _Writer | None = None
    _writing: bool = False

    def open(self, byte_start: int, start_index: int) -> _Chunk:
        number = len(self.done)
        chunk_id = layout.chunk_id(number)
        before = self.staged_before.get(chunk_id)
        writer = None
        if self.write and before is None:
            if self._writer is None:
                self._writer = _Writer(self.storage, self.on_staged)
            writer = self._writer
            writer.put(_Open(layout.staged_key(self.batch_id, chunk_id)))
            self._writing = True
        return _Chunk(number, byte_start, start_index, before, writer)

    def close(self, chunk: _Chunk) -> None:
        staged = StagedChunk(
            chunk_id=layout.chunk_id(chunk.number),
            key=layout.staged_key(self.batch_id, layout.chunk_id(chunk.number)),
            byte_start=chunk.byte_start,
            byte_end=chunk.byte_start + chunk.size,
            start_index=chunk.start_index,
            records=chunk.records,
            crc32=chunk.crc32,
        )
        if chunk.before is not None and chunk.before != staged:
            raise InputChangedError(
                f"{staged.chunk_id} was staged from other bytes than the input holds now "
                f"(offset {staged.byte_start:,}): the input changed since staging began"
            )
        self.done.append(staged)
        if chunk.writer is not None:
            receipt = layout.staged_receipt_key(self.batch_id, staged.chunk_id)
            chunk.writer.put(_Close(staged, receipt, len(self.done)))
            self._writing = False
        else:
            self.on_staged(len(self.done))

    def abandon(self) -> None:
        """Leave the chunk being written uncommitted: the input ended just after a cut."""
        if self._writer is not None and self._writing:
            self._writer.put(_Abandon())
            self._writing = False

    def finish(self) -> None:
        """Wait until every staged chunk is written, with its receipt."""
        if self._writer is not None:
            self._writer.close()

    def stop(self) -> None:
        """After an error: the chunk being written stays uncommitted, the writer ends."""
        if self._writer is not None:
            self._writer.stop()


def _cut_lines(stager: _Stager, blocks: Iterator[bytes]) -> None:
    """Cut JSON Lines after every ``per_chunk``-th newline; the last chunk takes the rest."""
    position = 0
    chunk = stager.open(0, 0)
    for block in blocks:
        at = 0
        while at < len(block):
            need = stager.per_chunk - chunk.records
            found = block.count(NEWLINE, at)
            if found < need:
                chunk.write(block[at:])
                chunk.records += found
                break
            end = at - 1
            for _ in range(need):
                end = block.index(NEWLINE, end + 1)
            chunk.write(block[at : end + 1])
            chunk.records += need
            stager.close(chunk)
            at = end + 1
            chunk = stager.open(position + at, chunk.start_index + chunk.records)
        position += len(block)
    if not chunk.size:  # the input ended with the last chunk cut
        stager.abandon()
        return
    chunk.records += 0 if chunk.ends_line else 1  # a last line without its newline
    stager.close(chunk)


def _cut_elements(stager: _Stager, blocks: Iterator[bytes], where: str) -> None:
    """Cut a JSON array after every ``per_chunk``-th element (between its comma and the next
    element); the array is checked as a whole, as an uncompressed one is when planned."""
    from scm_batch.stages.array_index import ArrayScan  # noqa: PLC0415 - numpy, for arrays only

    scan = ArrayScan(where)
    position = 0
    chunk: _Chunk | None = None
    for block in blocks:
        commas = scan.feed(block)
        if chunk is None and scan.opened_at >= 0:
            chunk = stager.open(scan.opened_at + 1, 0)
        if chunk is None:
            position += len(block)
            continue
        at = max(chunk.byte_start, position) - position
        first_number = scan.elements_done - len(commas)
        for i, comma in enumerate(commas.tolist()):
            if (first_number + i + 1) % stager.per_chunk:
                continue
            chunk.write(block[at : comma - position])
            chunk.records = first_number + i + 1 - chunk.start_index
            stager.close(chunk)
            chunk = stager.open(comma + 1, first_number + i + 1)
            at = comma + 1 - position
        end = min(len(block), scan.closed_at - position) if scan.closed_at >= 0 else len(block)
        if end > at:
            chunk.write(block[at:end])
        position += len(block)
    index = scan.finish()
    if chunk is not None:
        chunk.records = index.total - chunk.start_index
        stager.close(chunk)


def _staged_before(storage: Storage, batch_id: str) -> dict[str, StagedChunk]:
    """The chunks staged earlier whose copies are still there."""
    copies = storage.list_sizes(layout.staged_prefix(batch_id))
    keys = storage.list_keys(layout.staged_receipt_prefix(batch_id))
    receipts = concurrently(
        storage, lambda key: msgspec.json.decode(storage.get_bytes(key), type=StagedChunk), keys
    )
    return {r.chunk_id: r for r in receipts if r.key in copies}


def read_staging_record(storage: Storage, batch_id: str) -> StagingRecord | None:
    """The staging record of a batch, if its staging began."""
    key = layout.staging_key(batch_id)
    if not storage.exists(key):
        return None
    return msgspec.json.decode(storage.get_bytes(key), type=StagingRecord)


def missing_copies(storage: Storage, batch_id: str, keys: list[str]) -> list[str]:
    """Which of these staged copies are not (or no longer) in the bucket."""
    there = storage.list_sizes(layout.staged_prefix(batch_id))
    return [key for key in keys if key not in there]


def drop_staged_when_done(summary: RunSummary, storage: Storage, *, keep: bool) -> None:
    """Delete the staged chunks of a compressed input and their receipts once every chunk is
    done, unless asked to ``keep`` them. Its staging record stays: a rebuild of damaged parts
    stages what it needs again, cut the same way."""
    if summary.source.compression == "none" or keep:
        return
    if summary.chunks_failed == 0 and summary.chunks_not_processed == 0:
        storage.delete_prefix(layout.staged_prefix(summary.batch_id))
        storage.delete_prefix(layout.staged_receipt_prefix(summary.batch_id))


def _staging_record(
    storage: Storage, job: JobInput, source: SourceInfo, options: PlanOptions, *, write: bool
) -> StagingRecord:
    """How this input is cut: as recorded when its staging began, or decided now from the
    expected number of records (the sampled expansion, or ``targetTotalRecords``)."""
    key = layout.staging_key(job.batch_id)
    record = read_staging_record(storage, job.batch_id) if write else None
    if record is not None:
        planned = (record.size, record.mtime_ns, record.etag)
        if planned == (source.size, source.mtime_ns, source.etag):
            return record
        raise InputChangedError(
            f"{storage.uri_for(job.file)} changed since batch {job.batch_id!r} began staging it "
            "(size, time or ETag differ): start the batch again with --overwrite"
        )
    expected = job.target_total_records or round(
        source.size * source.expansion / source.bytes_per_record
    )
    per_chunk = chunk_record_count(max(1, expected), job, options)
    record = StagingRecord(
        job=job, size=source.size, mtime_ns=source.mtime_ns, etag=source.etag, per_chunk=per_chunk
    )
    if write:
        storage.put_bytes(key, msgspec.json.encode(record))
    return record


def stage_input(
    job: JobInput,
    source: SourceInfo,
    storage: Storage,
    options: PlanOptions,
    *,
    write: bool = True,
    on_staged: Callable[[int], None] = lambda _: None,
) -> tuple[int, list[StagedChunk]]:
    """Decompress ``job``'s input once and stage its chunks; return the records per chunk and
    the staged chunks. ``write=False`` cuts without writing anything (a plan's preview).
    ``on_staged`` is told the number of chunks staged so far, after each one."""
    where = storage.uri_for(job.file)
    record = _staging_record(storage, job, source, options, write=write)
    before = _staged_before(storage, job.batch_id) if write else {}
    stager = _Stager(storage, job.batch_id, record.per_chunk, write, before, on_staged)
    compressed = storage.iter_range(job.file, 0, source.size, READ_BLOCK, etag=source.etag)
    blocks = decompressed(compressed, source.compression, where)
    try:
        if source.format == "json-array":
            _cut_elements(stager, blocks, where)
        else:
            _cut_lines(stager, blocks)
    except BaseException:
        stager.stop()
        raise
    stager.finish()
    if not stager.done:
        raise InputError(f"{where} holds no records: it decompresses to nothing")
    return record.per_chunk, stager.done
