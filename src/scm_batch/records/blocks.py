"""What a chunk's records come in and go out as, block by block, whatever the input's format and
whichever engine sorts them: plain values, free of numpy, so that a JSON Lines run never loads
what only JSON arrays need."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ElementBlock:
    """A block's records (lines, or a JSON array's elements) and, for elements, their offsets
    (a line's offset follows from the lengths of the lines before it). A block of elements split
    on its separator text alone (``,`` and a newline) has ``rescan``: the split is right exactly
    when every element then decodes as a JSON value, which the chunk sees as it decodes them; if
    one does not, ``rescan()`` gives the block's elements found by the structural scan instead
    (see :mod:`scm_batch.records.elements`)."""

    elements: list[bytes]
    starts: list[int]
    rescan: Callable[[], ElementBlock] | None = None


class StructureChanged(Exception):
    """The range does not hold whole elements at depth 1 (the array closes in it, or it ends
    inside a string or a nested value): the input is not the one planned."""


class CountedBlocks:
    """Byte blocks passed through, counting their bytes (``count``) as they go."""

    def __init__(self, blocks: Iterable[bytes]) -> None:
        self._blocks = blocks
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        for block in self._blocks:
            self.count += len(block)
            yield block


@dataclass(frozen=True, slots=True)
class Marks:
    """What delivery needs of a block's valid records, in order: each one's line index in the
    chunk, its line's byte offset (its new ids' suffix), and whether it has a ``gssId``."""

    indices: list[int]
    offsets: list[int]
    gss: list[bool]


@dataclass(frozen=True, slots=True)
class SortedBlock:
    """A block of records sorted, by either engine: its valid records transformed, one JSON
    object per line (the result part's bytes and the messages' values), and their marks when
    the chunk delivers. Its error entries are in the scanner's ``bad``, its counts in its tally."""

    encoded: bytes
    marks: Marks | None
