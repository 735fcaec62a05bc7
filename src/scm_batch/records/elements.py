"""A JSON array's chunk split into its elements, block by block, as JSON Lines are split into lines.

A chunk of a JSON array is a byte range ``e1 , e2 , … , en``: the planner cut it just after the
comma that ends the element before it (or after the ``[``) and just before the comma after its
last element (or before the ``]``). Its elements are what lies between its depth-1 commas. An
element's offset is where it begins: the byte after the separator that precedes it. That offset
is what the record's id is derived from, as a line's offset is for JSON Lines.

Three ways to find them, with the same answer:

* **by lines** (an array of one element per line, the most common layout of large exports):
  everything up to the block's last ``},`` and newline is split on ``,`` and newline. Inside a
  valid element that text can only sit between the tokens of a nested value, which would leave
  a piece that is not JSON: the split is right exactly when every piece decodes, which the chunk
  learns anyway as it decodes them (else it asks for the block scanned, below).
* **fast** (most other blocks): everything up to the block's last ``},`` is handed to msgspec as one
  array of raw values. If that parses, the cut was between elements (valid JSON tokenizes one way
  only, the way the structural scan reads it), and when the elements are separated alike (``,``,
  ``,\\n``, ``,\\n  ``…: checked by joining them again) their offsets follow from their lengths.
* **structural scan** (:mod:`scm_batch.records.structure`), for a block where that fails: one
  holding a malformed element, separators that differ, an element longer than the limit. Its
  elements keep the white space around them (the decoder ignores it).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field

import msgspec

from scm_batch.records.blocks import ElementBlock, StructureChanged
from scm_batch.records.codecs import DECODE_ERRORS, JSON_SPACE, TooLong
from scm_batch.records.structure import ScanState, scan_block

Elements = tuple[list[bytes], list[int]]


_RAW_VALUES = msgspec.json.Decoder(list[msgspec.Raw]).decode
_OBJECT_END = b"},"  # a record ends with "}"; the comma after it is where a fast cut is tried
_GAP_WINDOW = 64
_LINE_SEPARATOR = b",\n"


def _line_split(data: bytes, base: int, max_element: int) -> tuple[Elements, int] | None:
    """The elements of ``data`` up to its last ``},`` and newline, split on ``,`` and newline
    (an array of one element per line), and how many bytes they and that comma take; unchecked,
    see :class:`ElementBlock`."""
    cut = data.rfind(b"}" + _LINE_SEPARATOR) + 1
    if cut <= 0:
        return None
    body = data[:cut]
    elements = body.split(_LINE_SEPARATOR)
    if max(map(len, elements)) + len(_LINE_SEPARATOR) > max_element:
        return None  # near the limit: the scan decides, as it always would
    step = len(_LINE_SEPARATOR)
    ends = itertools.accumulate((len(e) + step for e in elements), initial=base)
    starts = [end - 1 for end in ends]  # each element begins just after its comma
    starts[0] = base
    starts.pop()
    return (elements, starts), cut + 1


def _fast_split(data: bytes, base: int, max_element: int) -> tuple[Elements, int] | None:
    """The whole elements of ``data`` (which starts just after a separator, at offset ``base``)
    up to its last ``},``, and how many bytes they and that comma take; ``None`` when the block
    must be scanned instead."""
    cut = data.rfind(_OBJECT_END) + 1
    if cut <= 0:
        return None
    body = data[:cut]
    try:
        raws = _RAW_VALUES(b"[" + body + b"]")
    except DECODE_ERRORS:
        return None
    lead = len(body) - len(body.lstrip(JSON_SPACE))
    sep, gap = b",", 0
    if len(raws) > 1:
        after_first = lead + len(raws[0])
        comma = body.find(b",", after_first)
        following = body[comma + 1 : comma + 1 + _GAP_WINDOW]
        gap = len(following) - len(following.lstrip(JSON_SPACE))
        sep = body[after_first : comma + 1 + gap]
    if body[:lead] + sep.join(raws) != body:
        return None  # separated unlike one another: the scan places each element
    elements = list(map(bytes, raws))
    if max(map(len, elements)) + len(sep) + lead > max_element:
        return None  # near the limit: the scan decides, as it always would
    step = len(sep)
    ends = itertools.accumulate((len(e) + step for e in elements), initial=base + lead)
    starts = [start - gap for start in ends]
    starts[0] = base
    starts.pop()
    return (elements, starts), cut + 1


@dataclass(slots=True)
class _Splitter:
    """Where the split stands between blocks. Normally every byte before ``carry`` is split and
    ``carry`` starts just after a separator (at ``at``); while an element too long to hold goes
    on, the structural scan's state (``slow``) carries over instead."""

    at: int
    max_element: int
    carry: bytes = b""
    slow: ScanState | None = None
    held: int = 0  # bytes of the too-long element so far (while ``slow``)
    pending: list[bytes] = field(default_factory=list)

    def feed(self, block: bytes) -> Iterator[ElementBlock]:
        if self.slow is not None and self.carry:  # left by a rescan: scanned from ``at``
            block, self.carry = self.carry + block, b""
        if self.slow is None:
            data = self.carry + block if self.carry else block
            by_lines = _line_split(data, self.at, self.max_element)
            if by_lines is not None:
                (elements, starts), used = by_lines
                base, self.carry, self.at = self.at, data[used:], self.at + used
                yield ElementBlock(elements, starts, lambda: self._rescan(data[:used], base))
                return
            fast = _fast_split(data, self.at, self.max_element)
            if fast is not None:
                (elements, starts), used = fast
                self.carry = data[used:]
                self.at += used
                yield ElementBlock(elements, starts)
                return
            self.carry = b""
            self.slow, self.pending, self.held = ScanState(self.at), [], 0
            block = data
        cut = yield from self._scan(block)
        if cut and self.held <= self.max_element:
            # What is not split yet starts just after a separator, and is short enough to
            # hold: the next block goes the fast way again, from there.
            self.carry = b"".join(self.pending)
            self.slow, self.pending, self.held = None, [], 0

    def _rescan(self, taken: bytes, base: int) -> ElementBlock:
        """A block split by lines wrongly, split again by the structural scan: its elements up to
        its last real separator; what follows goes back in front of the bytes not split yet.
        (Only ever asked before the next block is split.)"""
        state = ScanState(base)
        scan = scan_block(taken, state)
        if scan.close is not None:
            raise StructureChanged(f"the array closes at byte {scan.close:,}, inside the chunk")
        cuts = (scan.commas - base).tolist()
        self.carry = taken[cuts[-1] + 1 if cuts else 0 :] + self.carry
        self.at = base + cuts[-1] + 1 if cuts else base
        if not cuts:
            # One element longer than the block, that separator text appears in (a
            # pretty-printed one): the scan goes on block by block from here, holding it only
            # while it is short enough, rather than splitting ever more bytes again.
            self.slow, self.pending, self.held = ScanState(self.at), [], 0
        limit = self.max_element
        elements: list[bytes] = [
            TooLong(b - a - 1) if b - a - 1 > limit else taken[a + 1 : b]
            for a, b in itertools.pairwise([-1, *cuts])
        ]
        return ElementBlock(elements, [base + a + 1 for a in [-1, *cuts[:-1]]] if cuts else [])

    def _scan(self, block: bytes) -> Generator[ElementBlock, None, bool]:
        """The structural scan of the next block, from ``slow``; returns whether an element
        ended in it."""
        state = self.slow
        assert state is not None
        scan = scan_block(block, state)
        if scan.close is not None:
            raise StructureChanged(f"the array closes at byte {scan.close:,}, inside the chunk")
        block_start = state.position - len(block)
        cuts = (scan.commas - block_start).tolist()
        limit = self.max_element
        if not cuts:
            self.held += len(block)
            self.pending = [*self.pending, block] if self.held <= limit else []
            return False
        first = cuts[0]
        elements: list[bytes] = []
        if self.held + first > limit:
            elements.append(TooLong(self.held + first))
        else:
            elements.append(b"".join([*self.pending, block[:first]]))
        starts = [self.at, *(block_start + cut + 1 for cut in cuts)]
        elements.extend(block[a + 1 : b] for a, b in itertools.pairwise(cuts))
        if limit < len(block) and max(map(len, elements)) > limit:
            elements = [TooLong(len(e)) if len(e) > limit else e for e in elements]
        self.at = starts.pop()
        tail = block[cuts[-1] + 1 :]
        self.held = len(tail)
        self.pending = [tail] if tail and self.held <= limit else []
        yield ElementBlock(elements, starts)
        return True

    def finish(self) -> Iterator[ElementBlock]:
        """The last element: what follows the last separator. The range must end between
        elements (outside strings, at the array's own depth)."""
        carry, self.carry = self.carry, b""
        if self.slow is None:
            self.slow, self.pending, self.held = ScanState(self.at), [], 0
        if carry:
            yield from self._scan(carry)
        state = self.slow
        if state.in_string or state.depth != 1:
            where = "inside a string" if state.in_string else f"at depth {state.depth - 1}"
            raise StructureChanged(f"the chunk ends {where} of an element")
        last = TooLong(self.held) if self.held > self.max_element else b"".join(self.pending)
        yield ElementBlock([last], [self.at])


def iter_element_blocks(
    blocks: Iterable[bytes], start: int, max_element: int
) -> Iterator[ElementBlock]:
    """The elements of a chunk's range, block by block, each list with its elements' offsets.

    An element longer than ``max_element`` bytes is a :class:`TooLong` holding its length only:
    its bytes are counted, never held, so memory stays at a block whatever the element's size.
    """
    splitter = _Splitter(start, max_element)
    for block in blocks:
        yield from splitter.feed(block)
    yield from splitter.finish()
