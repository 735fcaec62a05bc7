"""CalculateChunks for a JSON array: one structural scan checks the whole array and counts its
elements; chunks are then cut between elements at exact element numbers.

The scan (:mod:`scm_batch.records.structure`) reads the object once, at hundreds of MB/s, and
refuses a broken array before any chunk runs, naming the byte where it breaks: an array never
closed (cut short, or a bracket missing), closed by ``}``, or followed by anything but white
space. It keeps the offset of every ``STRIDE``-th separating comma; the comma after any element is
then found by scanning on from the nearest kept one, where the state is known (outside strings,
depth 1) - a few hundred kilobytes per cut, whatever the object's size.
"""

from __future__ import annotations

import bisect
import dataclasses
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from scm_batch.errors import InputChangedError, InputError, InputStructureError
from scm_batch.records.codecs import BOM, JSON_SPACE
from scm_batch.records.structure import (
    CLOSE_ARRAY,
    OPEN_ARRAY,
    Positions,
    ScanState,
    scan_block,
)

STRIDE = 4096
SCAN_BLOCK = 8 << 20
_SEEK_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class ElementIndex:
    """A checked JSON array: where it opens and closes, how many elements it has, and, for about
    every ``STRIDE``-th element ``k`` (``numbers``), the offset of the comma after it
    (``marks``)."""

    open: int  # offset of the "["
    close: int  # offset of the "]"
    total: int
    marks: list[int]
    numbers: list[int]


class ArrayScan:
    """The scan of a whole array, fed block by block from its start (the planner reads an object;
    staging feeds decompressed blocks); :meth:`finish` checks its end and returns its index."""

    def __init__(self, where: str, state: ScanState | None = None) -> None:
        """``state``: scan from there (inside the array, as one range of it) rather than from
        the object's start."""
        self._where = where
        self._state = state
        self._position = 0 if state is None else state.position
        self._open = -1
        self._close = -1
        self._after_close = False
        self._commas = 0
        self._marks: list[int] = []
        self._numbers: list[int] = []
        self._content = False  # anything but white space inside the array

    @property
    def opened_at(self) -> int:
        """The offset of the array's ``[`` (-1 until it is found)."""
        return self._open

    @property
    def closed_at(self) -> int:
        """The offset of the array's ``]`` (-1 until it is found)."""
        return self._close

    @property
    def elements_done(self) -> int:
        """Elements known to be complete so far (each followed by its comma)."""
        return self._commas

    def feed(self, block: bytes) -> Positions:
        """Scan the next block; return the offsets of the separating commas it held."""
        start = self._position
        self._position += len(block)
        if self._after_close:
            self._check_blank(block, start)
            return np.zeros(0, np.int64)
        if self._state is None:
            block, start = self._find_open(block, start)
            if self._state is None:
                return np.zeros(0, np.int64)
        scan = scan_block(block, self._state)
        commas = scan.commas
        if not self._content:
            inside = block if scan.close is None else block[: scan.close - start]
            self._content = bool(len(commas)) or bool(inside.strip(JSON_SPACE))
        if len(commas):
            numbers = np.arange(self._commas, self._commas + len(commas))
            kept = numbers % STRIDE == 0
            self._marks.extend(commas[kept].tolist())
            self._numbers.extend(numbers[kept].tolist())
            self._commas += len(commas)
        if scan.close is not None:
            self._closed(scan.close, scan.close_byte)
            self._after_close = True
            self._check_blank(block[scan.close - start + 1 :], scan.close + 1)
        return commas

    def _find_open(self, block: bytes, start: int) -> tuple[bytes, int]:
        body = block[len(BOM) :] if start == 0 and block.startswith(BOM) else block
        skipped = len(block) - len(body)
        text = body.lstrip(JSON_SPACE)
        if not text:
            return b"", start + len(block)
        at = start + skipped + len(body) - len(text)
        if text[0] != OPEN_ARRAY:
            raise InputStructureError(
                f"{self._where}: a JSON array starts with '[', this one with {text[:1]!r} at "
                f"byte {at:,}"
            )
        self._open = at
        self._state = ScanState(at + 1)
        return text[1:], at + 1

    def _closed(self, at: int, byte: int) -> None:
        if byte != CLOSE_ARRAY:
            raise InputStructureError(
                f"{self._where}: the array is closed by {chr(byte)!r} at byte {at:,} (a bracket "
                "is missing or one too many before it)"
            )
        self._close = at

    def _check_blank(self, rest: bytes, at: int) -> None:
        text = rest.lstrip(JSON_SPACE)
        if text:
            where = at + len(rest) - len(text)
            raise InputStructureError(
                f"{self._where}: data after the array's closing ']' at byte {where:,} "
                f"({text[:20]!r}): one JSON array per file"
            )

    def finish(self) -> ElementIndex:
        """The index of the array scanned; refused if it never opened or closed, or is empty."""
        if self._state is None:
            raise InputError(f"{self._where} holds no records, only white space")
        if not self._after_close:
            state = self._state
            if state.in_string:
                inside = "inside a string"
            elif state.depth == 1:
                inside = "before its closing ']'"
            else:
                inside = f"inside an element, {state.depth - 1} bracket(s) open"
            raise InputStructureError(
                f"{self._where}: the array is not closed: the data ends at byte "
                f"{self._position:,}, {inside} (the file is cut short, or a bracket is missing)"
            )
        if not self._content:
            raise InputError(f"{self._where} holds no records: the array is empty")
        return ElementIndex(self._open, self._close, self._commas + 1, self._marks, self._numbers)

    def part(self) -> RangeScan:
        """What the scan of one range found (see :func:`index_in_parallel`)."""
        assert self._state is not None
        return RangeScan(
            end=dataclasses.replace(self._state),
            commas=self._commas,
            marks=self._marks,
            numbers=self._numbers,
            close=self._close,
            content=self._content,
        )

    def take(self, part: RangeScan, start: int, end: int) -> bool:
        """Carry on over the range [start, end) that ``part`` scanned from a guessed state, if
        that guess is where this scan stands; ``False`` (nothing taken) if not."""
        state = self._state
        if (
            state is None
            or self._after_close
            or (state.position, state.depth, state.in_string, state.backslashes)
            != (start, 1, False, 0)
        ):
            return False
        self._marks.extend(part.marks)
        self._numbers.extend(self._commas + n for n in part.numbers)
        self._commas += part.commas
        self._content = self._content or part.content
        self._state = part.end
        self._position = end
        if part.close >= 0:
            self._close, self._after_close = part.close, True
        return True


@dataclass(frozen=True, slots=True)
class RangeScan:
    """One range of an array, scanned from an assumed state: where the scan ended (or the close),
    its commas (marks numbered from the range's first), and whether it held anything."""

    end: ScanState
    commas: int
    marks: list[int]
    numbers: list[int]
    close: int
    content: bool


def index_elements(blocks: Iterable[bytes], where: str) -> ElementIndex:
    """Scan a whole array from its ``blocks``."""
    scan = ArrayScan(where)
    for block in blocks:
        scan.feed(block)
    return scan.finish()


ReadRange = Callable[[int, int], bytes]
"""Reads bytes [start, end) of the indexed object."""


def element_end(index: ElementIndex, read: ReadRange, k: int) -> int:
    """The offset of the comma that ends element ``k`` (``close`` for the last element)."""
    if k >= index.total - 1:
        return index.close
    mark = bisect.bisect_right(index.numbers, k) - 1
    if mark >= 0:
        at, more = index.marks[mark], k - index.numbers[mark]
        if more == 0:
            return at
    else:
        at, more = index.open, k + 1
    state = ScanState(at + 1)
    while True:
        start = state.position
        block = read(start, min(start + _SEEK_BLOCK, index.close))
        if not block:
            raise InputChangedError(
                f"element {k:,} is not where the scan found it: the input changed while planned"
            )
        commas = scan_block(block, state).commas
        if len(commas) >= more:
            return int(commas[more - 1])
        more -= len(commas)


# Below this size one scan is quick enough (starting processes costs a few tenths of a second);
# above it a local array is scanned in ranges at once.
PARALLEL_MIN_BYTES = 256 << 20
_NEWLINE_WINDOW = 1 << 20

ReadBlocks = Callable[[int, int], Iterable[bytes]]
"""Reads bytes [start, end) of the indexed object, block by block."""


def _range_starts(read: ReadRange, size: int, parts: int) -> list[int]:
    """Where ranges start: just after a newline near each nth of the object. Outside strings a
    valid array has its newlines between tokens, most often between elements (one per line):
    where that guess is wrong, the range is scanned again from the state actually reached."""
    starts = [0]
    for i in range(1, parts):
        nominal = size * i // parts
        window = read(nominal, min(nominal + _NEWLINE_WINDOW, size))
        found = window.find(b"\n")
        if found >= 0 and nominal + found + 1 > starts[-1]:
            starts.append(nominal + found + 1)
    return starts


def _read_file(path: str, lo: int, hi: int) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as handle:
        handle.seek(lo)
        while lo < hi:
            block = handle.read(min(SCAN_BLOCK, hi - lo))
            if not block:
                return
            lo += len(block)
            yield block


def _guessed_range(path: str, lo: int, hi: int, where: str) -> RangeScan | None:
    """One range of a local file scanned from the state guessed at its start (a newline):
    outside strings, depth 1. ``None`` when that guess led to a broken structure."""
    scanner = ArrayScan(where, ScanState(lo))
    try:
        for block in _read_file(path, lo, hi):
            scanner.feed(block)
    except (InputStructureError, OSError):
        # From a wrong guess, maybe; or the file could not be read here: the range is scanned
        # again in order, through the storage (which says what went wrong, if anything).
        return None
    return scanner.part()


def index_in_parallel(
    read_blocks: ReadBlocks, read: ReadRange, size: int, where: str, workers: int, path: str | None
) -> ElementIndex:
    """:func:`index_elements` of an object; of a large local file (``path``), its ranges
    scanned by ``workers`` processes at once, each from the state a range start at a newline
    most likely has: outside strings, depth 1. The ranges are then put together in order; a range
    whose start state was not the one the previous range ended in is scanned again from the
    right one, so the answer is exactly that of one scan from the start. (Threads would not do:
    much of the scan holds the GIL.)"""
    if workers <= 1 or size < PARALLEL_MIN_BYTES or path is None:
        return index_elements(read_blocks(0, size), where)
    starts = _range_starts(read, size, workers)
    bounds = list(zip(starts, [*starts[1:], size], strict=True))
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    head = ArrayScan(where)
    with ProcessPoolExecutor(max_workers=max(1, len(bounds) - 1), mp_context=context) as pool:
        parts = [pool.submit(_guessed_range, path, lo, hi, where) for lo, hi in bounds[1:]]
        for block in read_blocks(*bounds[0]):
            head.feed(block)
        for (lo, hi), future in zip(bounds[1:], parts, strict=True):
            part = future.result()
            if part is None or not head.take(part, lo, hi):
                for block in read_blocks(lo, hi):  # again, from the state really reached
                    head.feed(block)
    return head.finish()
