"""ProcessChunk: one chunk's byte range in, its result and error parts out.

The chunk is streamed in blocks; each block is split into lines, decoded, validated, transformed
and re-encoded as a whole, so memory stays at a few blocks whatever the chunk or file size. Every
line ends up in exactly one place: the result part (valid records), the error part (with its line
number, byte offset, category, field errors and the raw line), or the blank-line count.
"""

from __future__ import annotations

import base64
import functools
import gc
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress
from typing import Any, ParamSpec, TypeVar

import msgspec

from scm_batch import layout
from scm_batch.faults import FaultPlan
from scm_batch.ledger import Ledger, record_receipt
from scm_batch.model import Attempt, ChunkResult, ChunkTask, StatusWord
from scm_batch.records.blocks import CountedBlocks, ElementBlock, StructureChanged
from scm_batch.records.codecs import (
    BOM,
    DECODE_ERRORS,
    JSON_SPACE,
    TooLong,
    is_blank,
    line_length,
    undecodable,
)
from scm_batch.records.parts import checked_writer, open_result_part
from scm_batch.records.transform import TransformContext, on_one_line, transform_records
from scm_batch.records.validate import (
    EMPTY,
    MISSING,
    Category,
    Diagnosis,
    diagnose_decoded,
    error_kind,
    is_valid_raw,
)
from scm_batch.sinks.base import RecordSink
from scm_batch.sinks.messages import MessageBuilder
from scm_batch.stages.chunk_input import (
    changed,
    check_consumed,
    chunk_bytes,
    record_blocks,
)
from scm_batch.storage import Storage, open_storage

DEFAULT_BLOCK_SIZE = 1 << 20
P = ParamSpec("P")
R = TypeVar("R")

ScanOutcome = tuple[list[dict[str, Any]], list[int], list[int]]
ProgressCallback = Callable[[int], None]
"""Told how many more lines of the chunk are done, once per block."""


@dataclass(slots=True)
class _Tally:
    lines: int = 0
    blocks: int = 0
    blank_lines: int = 0
    valid_records: int = 0
    records_with_missing_fields: int = 0
    records_with_empty_fields: int = 0
    errors_by_category: dict[str, int] = field(default_factory=dict)
    field_errors: dict[str, dict[str, int]] = field(default_factory=dict)

    def count_error(self, diagnosis: Diagnosis) -> None:
        by_category = self.errors_by_category
        by_category[diagnosis.category] = by_category.get(diagnosis.category, 0) + 1
        kinds = set()
        for name, message in diagnosis.field_errors.items():
            kind = error_kind(message)
            kinds.add(kind)
            per_field = self.field_errors.setdefault(name, {})
            per_field[kind] = per_field.get(kind, 0) + 1
        if MISSING in kinds:
            self.records_with_missing_fields += 1
        if EMPTY in kinds:
            self.records_with_empty_fields += 1


def _raw_fields(line: bytes) -> dict[str, str | int]:
    """The line itself, losslessly: as text when it is UTF-8 and JSON's escaping would not more
    than double it (a line of control characters or NUL bytes grows sixfold), else base64; a
    line over the length limit by its length only (its bytes stay in the input)."""
    if type(line) is TooLong:
        return {"length": line.length}
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if len(msgspec.json.encode(text)) <= 2 * len(line) + 2:
            return {"raw": text}
    return {"rawBase64": base64.b64encode(line).decode("ascii")}


def _error_entry(
    line: bytes, where: tuple[str, int | None], offset: int, diagnosis: Diagnosis, error: str
) -> dict[str, Any]:
    name, number = where
    return {
        name: number,
        "offset": offset,
        "category": diagnosis.category,
        "error": error,
        "fieldErrors": diagnosis.field_errors,
        **_raw_fields(line),
    }


_BLANK = object()
_PLUS_ONE = (1).__add__  # a line's length with its "\n", without a Python-level call


_decode_value = msgspec.json.Decoder().decode


def _decode_slow(decode: Callable[[bytes], Any], line: bytes, start: int) -> Any:
    """Decode a line the fast path refused: ``_BLANK`` for a blank line, the record when only
    the file's byte order mark was in the way, the JSON value when it is not an object (a
    record that :func:`diagnose` rejects), else one of ``DECODE_ERRORS`` (malformed)."""
    body = line[len(BOM) :] if start == 0 and line.startswith(BOM) else line
    if is_blank(body):
        return _BLANK
    try:
        return _checked_utf8(body, decode(body))
    except msgspec.ValidationError:  # JSON, but not an object: null, an array, a number…
        return _decode_value(body)


def _checked_utf8(line: bytes, record: Any) -> Any:
    """``record``, if ``line`` is UTF-8: decoding values raw does not look inside the strings
    it leaves as they are, and a line that is not UTF-8 is malformed."""
    if not line.isascii():
        line.decode("utf-8")
    return record


class _SplitWrongly(Exception):
    """A block split on its separator text holds a piece that is not JSON: split it again."""


def _scan_block(scanner: _Scanner, task: ChunkTask, block: ElementBlock) -> ScanOutcome:
    """The block's records sorted (see :meth:`_Scanner.scan`), after splitting it again when
    it was split on its separator text wrongly."""
    starts = block.starts if scanner.elements else None
    try:
        return scanner.scan(block.elements, starts, checked=block.rescan is None)
    except _SplitWrongly:
        assert block.rescan is not None
        try:
            again = block.rescan()
        except StructureChanged as exc:
            raise changed(task, exc) from None
        return scanner.scan(again.elements, again.starts)


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _Scanner:
    """Sorts a chunk's lines, block by block: valid records out, everything else into ``bad``.

    Keeps the chunk's running byte offset and line count, so each line's offset and number are
    known without a second pass.
    """

    def __init__(self, task: ChunkTask) -> None:
        self.tally = _Tally()
        self.bad: list[dict[str, Any]] = []
        self.offset = task.byte_start
        # Line numbers in error entries are 1-based and absolute when the plan counted exactly;
        # a JSON array's elements are numbered as its indices are, from 0, always exactly.
        self.elements = task.input_format == "json-array"
        self._number_name = "element" if self.elements else "line"
        if self.elements:
            self._number_base: int | None = task.start_index
        else:
            self._number_base = task.start_index + 1 if task.indices_exact else None
        self._max_line = task.max_line_bytes
        # Records with their top-level values as the input wrote them: what the transform does
        # not set is written out byte for byte (a number keeps its spelling, 1E2 stays 1E2).
        self._decode = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode

    def _reject(self, line: bytes, index: int, at: int, diagnosis: Diagnosis, error: str) -> None:
        number = None if self._number_base is None else self._number_base + index
        if self.elements and type(line) is not TooLong:
            # The white space around an element is not part of it: the entry holds the element
            # alone. Its offset is where the element begins, just after the comma before it
            # (the offset its record's ids would come from), however the block was split.
            line = line.strip(JSON_SPACE)
        self.bad.append(_error_entry(line, (self._number_name, number), at, diagnosis, error))
        self.tally.count_error(diagnosis)

    def scan(
        self, lines: list[bytes], starts: list[int] | None = None, *, checked: bool = True
    ) -> ScanOutcome:
        """The block's valid records, their lines' byte offsets, and their lines' chunk indices.
        ``starts``: the offsets of a JSON array's elements (lines' offsets follow from their
        lengths). Elements not ``checked`` were split on their separator text: one that does not
        decode raises :class:`_SplitWrongly`, before anything is counted.

        Most blocks are all well-formed JSON: they are decoded and checked with no Python loop of
        their own (``map``), and only the rare block holding a blank or malformed line takes the
        line-by-line path.
        """
        records: list[Any] = []
        try:
            records.extend(map(self._decode, lines))
            if not all(map(bytes.isascii, lines)):
                for line in lines:
                    _checked_utf8(line, None)
            verdicts = list(map(is_valid_raw, records))
        except DECODE_ERRORS:  # the lines decoded before the refused one are kept: not redone
            if not checked:
                raise _SplitWrongly from None
            return self._scan_lines(lines, records, starts)
        tally = self.tally
        first_index = tally.lines
        if starts is None:  # line i starts after every earlier line and its "\n"
            starts = list(accumulate(map(_PLUS_ONE, map(len, lines)), initial=self.offset))
            self.offset = starts.pop()
        indices = list(range(first_index, first_index + len(lines)))
        if False in verdicts:
            i = verdicts.index(False)
            while True:
                diagnosis, error = diagnose_decoded(records[i])
                self._reject(lines[i], first_index + i, starts[i], diagnosis, error)
                try:
                    i = verdicts.index(False, i + 1)
                except ValueError:
                    break
            records = list(compress(records, verdicts))
            starts = list(compress(starts, verdicts))
            indices = list(compress(indices, verdicts))
        tally.lines += len(lines)
        tally.blocks += 1
        tally.valid_records += len(records)
        return records, starts, indices

    def _scan_lines(
        self, lines: list[bytes], decoded: Sequence[Any] = (), starts: list[int] | None = None
    ) -> ScanOutcome:
        """:meth:`scan` line by line, for a block with a line the decoder refuses; ``decoded``
        holds the records of the block's first lines, already decoded."""
        decode = self._decode
        already = len(decoded)
        tally = self.tally
        good: list[dict[str, Any]] = []
        good_offsets: list[int] = []
        good_index: list[int] = []
        first_index = tally.lines
        offset = self.offset
        kind = self._number_name
        elements = self.elements
        for i, line in enumerate(lines):
            start = offset if starts is None else starts[i]
            offset += line_length(line) + 1
            if type(line) is TooLong:
                too_long = Diagnosis(Category.TOO_LONG, {})
                error = f"{_a(kind)} of {line.length:,} bytes, over the limit of {self._max_line:,}"
                self._reject(line, first_index + i, start, too_long, error)
                continue
            try:
                rec = _checked_utf8(line, decoded[i] if i < already else decode(line))
                valid = is_valid_raw(rec)
            except DECODE_ERRORS:
                try:
                    # An element is decoded alone, so that a message's byte is counted from it.
                    rec = _decode_slow(decode, line.strip(JSON_SPACE) if elements else line, start)
                    valid = isinstance(rec, dict) and is_valid_raw(rec)
                except DECODE_ERRORS as exc:
                    malformed = Diagnosis(Category.MALFORMED, {})
                    self._reject(line, first_index + i, start, malformed, undecodable(exc))
                    continue
                if rec is _BLANK and self.elements:  # "[1,,2]": nothing between two commas
                    malformed = Diagnosis(Category.MALFORMED, {})
                    self._reject(line, first_index + i, start, malformed, "an empty element")
                    continue
                if rec is _BLANK:
                    tally.blank_lines += 1
                    continue
            if valid:
                good.append(rec)
                good_offsets.append(start)
                good_index.append(first_index + i)
            else:
                diagnosis, error = diagnose_decoded(rec)
                self._reject(line, first_index + i, start, diagnosis, error)
        if starts is None:
            self.offset = offset
        tally.lines += len(lines)
        tally.blocks += 1
        tally.valid_records += len(good)
        return good, good_offsets, good_index


def _a(kind: str) -> str:
    return "an element" if kind == "element" else "a line"


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


@_without_cyclic_gc
def process_chunk(
    task: ChunkTask,
    *,
    storage: Storage | None = None,
    sink: RecordSink | None = None,
    on_progress: ProgressCallback | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    attempt: int = 1,
    previous_attempts: Sequence[Attempt] = (),
    fault_hook: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Process one chunk task: write its parts, deliver its records to ``sink`` (if any), then
    write its receipt; return its counts.

    The receipt comes only after the parts are complete and every message is acknowledged, so a
    chunk with a receipt is done and delivered. ``attempt`` and ``previous_attempts`` are recorded
    in it. ``fault_hook`` is the test-only fault switch (:mod:`scm_batch.faults`), told the number
    of blocks written so far. A chunk whose parts are rebuilt (``task.delivered_before``) sends
    nothing: its records went out when it was first done.
    """
    started = time.perf_counter()
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
    blocks = CountedBlocks(chunk_bytes(task, store, block_size))
    scanner = _Scanner(task)
    delivery = sink.begin(task) if sink is not None else None
    messages = MessageBuilder(task, sink.message_format) if sink is not None else None
    try:
        with (
            checked_writer(store, result_key) as result_object,
            open_result_part(task.output_format, result_object) as results,
            checked_writer(store, error_key) as errors,
        ):
            for block in record_blocks(task, blocks):
                done_before = scanner.tally.lines
                good, offsets, indices = _scan_block(scanner, task, block)
                if good:
                    transform_records(good, offsets, ctx)
                    encoded = encode_lines(good)
                    if encoded.count(b"\n") != len(good):  # a pretty-printed element's values
                        encoded = encode_lines(list(map(on_one_line, good)))
                    results.write(encoded)
                    if delivery is not None and messages is not None:
                        delivery.send(messages.build(good, encoded.split(b"\n")[:-1], indices))
                if scanner.bad:
                    errors.write(encode_lines(scanner.bad))
                    scanner.bad.clear()
                if on_progress is not None:
                    on_progress(scanner.tally.lines - done_before)
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
    result = msgspec.structs.replace(result, parts=[result_object.check(), errors.check()])
    record_receipt(store, task.batch_id, result)  # the commit: last, after parts and delivery
    return result


def _result(
    task: ChunkTask,
    tally: _Tally,
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
    result = process_chunk(
        task,
        storage=storage,
        sink=sink,
        on_progress=on_progress,
        block_size=block_size,
        attempt=attempt,
        previous_attempts=previous_attempts,
        fault_hook=faults.hook(task.chunk_id, attempt) if faults is not None else None,
    )
    return ChunkRun(result, done_before=False)
