"""The Python record engine: a chunk's lines (or a JSON array's elements) sorted, block by block,
into valid records, error entries and blank lines. It is the reference the native engine
(:mod:`scm_batch.stages.native_scan`) is tested against, the fallback where that is not built,
and where the native engine sends every line it is not sure of.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress
from typing import Any

import msgspec

from scm_batch.model import ChunkTask
from scm_batch.records.blocks import ElementBlock, Marks, SortedBlock, StructureChanged
from scm_batch.records.codecs import (
    BOM,
    DECODE_ERRORS,
    JSON_SPACE,
    TooLong,
    is_blank,
    line_length,
    undecodable,
)
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
from scm_batch.stages.chunk_input import changed, record_blocks

ScanOutcome = tuple[list[dict[str, Any]], list[int], list[int]]


@dataclass(slots=True)
class Tally:
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


class SplitWrongly(Exception):
    """A block split on its separator text holds a piece that is not JSON: split it again."""


def scan_block(scanner: Scanner, task: ChunkTask, block: ElementBlock) -> ScanOutcome:
    """The block's records sorted (see :meth:`Scanner.scan`), after splitting it again when
    it was split on its separator text wrongly."""
    starts = block.starts if scanner.elements else None
    try:
        return scanner.scan(block.elements, starts, checked=block.rescan is None)
    except SplitWrongly:
        assert block.rescan is not None
        try:
            again = block.rescan()
        except StructureChanged as exc:
            raise changed(task, exc) from None
        return scanner.scan(again.elements, again.starts)


class Scanner:
    """Sorts a chunk's lines, block by block: valid records out, everything else into ``bad``.

    Keeps the chunk's running byte offset and line count, so each line's offset and number are
    known without a second pass.
    """

    def __init__(self, task: ChunkTask) -> None:
        self.tally = Tally()
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
        decode raises :class:`SplitWrongly`, before anything is counted.

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
                raise SplitWrongly from None
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
        already = len(decoded)
        tally = self.tally
        good: list[dict[str, Any]] = []
        good_offsets: list[int] = []
        good_index: list[int] = []
        first_index = tally.lines
        offset = self.offset
        for i, line in enumerate(lines):
            start = offset if starts is None else starts[i]
            offset += line_length(line) + 1
            rec = self.settle(line, first_index + i, start, decoded[i] if i < already else None)
            if rec is not None:
                good.append(rec)
                good_offsets.append(start)
                good_index.append(first_index + i)
        if starts is None:
            self.offset = offset
        tally.lines += len(lines)
        tally.blocks += 1
        tally.valid_records += len(good)
        return good, good_offsets, good_index

    def settle(
        self, line: bytes, index: int, start: int, decoded: Any = None
    ) -> dict[str, Any] | None:
        """One line (or element), the ``index``-th of the chunk, at byte ``start``: its record
        when it is valid; else ``None``, its error entry written or the blank line counted. The
        caller counts the line and the valid record. ``decoded``: the line's record, when the
        caller decoded it already."""
        kind = self._number_name
        if type(line) is TooLong:
            too_long = Diagnosis(Category.TOO_LONG, {})
            error = f"{_a(kind)} of {line.length:,} bytes, over the limit of {self._max_line:,}"
            self._reject(line, index, start, too_long, error)
            return None
        try:
            rec = _checked_utf8(line, decoded if decoded is not None else self._decode(line))
            valid = is_valid_raw(rec)
        except DECODE_ERRORS:
            try:
                # An element is decoded alone, so that a message's byte is counted from it.
                body = line.strip(JSON_SPACE) if self.elements else line
                rec = _decode_slow(self._decode, body, start)
                valid = isinstance(rec, dict) and is_valid_raw(rec)
            except DECODE_ERRORS as exc:
                malformed = Diagnosis(Category.MALFORMED, {})
                self._reject(line, index, start, malformed, undecodable(exc))
                return None
            if rec is _BLANK and self.elements:  # "[1,,2]": nothing between two commas
                malformed = Diagnosis(Category.MALFORMED, {})
                self._reject(line, index, start, malformed, "an empty element")
                return None
            if rec is _BLANK:
                self.tally.blank_lines += 1
                return None
        if valid:
            return rec  # type: ignore[no-any-return]
        diagnosis, error = diagnose_decoded(rec)
        self._reject(line, index, start, diagnosis, error)
        return None


def _a(kind: str) -> str:
    return "an element" if kind == "element" else "a line"


_encode_lines = msgspec.json.Encoder().encode_lines


def encode_records(
    records: list[dict[str, Any]], offsets: list[int], ctx: TransformContext
) -> bytes:
    """Valid records transformed and encoded, one per line."""
    transform_records(records, offsets, ctx)
    encoded = _encode_lines(records)
    if encoded.count(b"\n") != len(records):  # a pretty-printed element's values
        encoded = _encode_lines(list(map(on_one_line, records)))
    return encoded


def python_blocks(
    task: ChunkTask,
    blocks: Iterable[bytes],
    scanner: Scanner,
    ctx: TransformContext,
    *,
    marks: bool,
) -> Iterator[SortedBlock]:
    """The chunk's blocks sorted by the Python engine."""
    for block in record_blocks(task, blocks):
        good, offsets, indices = scan_block(scanner, task, block)
        encoded = encode_records(good, offsets, ctx) if good else b""
        gss = ["gssId" in rec for rec in good] if marks else []
        yield SortedBlock(encoded, Marks(indices, offsets, gss) if marks else None)
