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

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from scm_batch.errors import InputError, InputStructureError
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
    """A checked JSON array: where it opens and closes, how many elements it has, and the offset
    of the comma after element ``k * STRIDE`` for every ``k``."""

    open: int  # offset of the "["
    close: int  # offset of the "]"
    total: int
    marks: list[int]


class ArrayScan:
    """The scan of a whole array, fed block by block from its start (the planner reads an object;
    staging feeds decompressed blocks); :meth:`finish` checks its end and returns its index."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._state: ScanState | None = None
        self._position = 0
        self._open = -1
        self._close = -1
        self._after_close = False
        self._commas = 0
        self._marks: list[int] = []
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
            self._marks.extend(commas[numbers % STRIDE == 0].tolist())
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
        return ElementIndex(self._open, self._close, self._commas + 1, self._marks)


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
    mark = k // STRIDE
    at = index.marks[mark]
    more = k - mark * STRIDE
    if more == 0:
        return at
    state = ScanState(at + 1)
    while True:
        start = state.position
        block = read(start, min(start + _SEEK_BLOCK, index.close))
        commas = scan_block(block, state).commas
        if len(commas) >= more:
            return int(commas[more - 1])
        more -= len(commas)
