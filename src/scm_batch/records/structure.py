"""The structural scan of a JSON array: where its elements end, found without parsing them.

A JSON array's elements are separated by the commas at depth 1 that are not inside a string. The
scan finds them the way simdjson's first stage does, on whole blocks at once rather than byte by
byte (numpy, no Python loop over bytes):

1. the quotes that are not escaped: a quote is escaped when an odd run of backslashes precedes it
   (backslashes are rare, so the runs are measured only at the quotes that follow one);
2. the bytes inside strings: the prefix XOR of the quote bits, word by word (six shifts on 64-bit
   words), with each word's start state carried from the parity of the quotes before it;
3. brackets and commas outside strings: a running sum of ``+1`` for ``[``/``{`` and ``-1`` for
   ``]``/``}`` gives the depth after each; the commas where it is 1 separate elements, and the
   bracket that brings it to 0 closes the array.

Bracket kinds are not matched: ``{"a": [1}`` keeps the count balanced and is a malformed element
(the parser says so when the element is decoded), never a shifted boundary. A raw newline cannot be
inside a valid string, but an unterminated string in a malformed element runs on, as a parser
would read it; the scan of the plan and the scan of the chunk agree on it, since they are one scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scm_batch.records.native import native_engine

QUOTE = 0x22
BACKSLASH = 0x5C
COMMA = 0x2C
OPEN_ARRAY = 0x5B
CLOSE_ARRAY = 0x5D

# ``byte | 0x26 == 0x7F`` holds for [ ] { } and for Y _ y DEL, which are never structural: their
# depth step is 0 and they are not commas, so one comparison finds every bracket.
_BRACKET_OR = 0x26
_BRACKET_IS = 0x7F
_LOWER = 0x20
_OPEN_LOWERED = 0x7B  # [ or { with bit 0x20 set
_CLOSE_LOWERED = 0x7D  # ] or }
_ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_SHIFTS = tuple(np.uint64(1 << k) for k in range(6))
_PAD = 64

Positions = npt.NDArray[np.int64]


@dataclass(slots=True)
class ScanState:
    """Where a scan stands between blocks: the next byte's offset, the depth (1 inside the
    array), whether that byte is inside a string, and the parity of the backslashes just before it
    (odd: it is escaped)."""

    position: int
    depth: int = 1
    in_string: bool = False
    backslashes: int = 0


@dataclass(frozen=True, slots=True)
class BlockScan:
    """What one block held: the offsets of its element-separating commas, and the offset of the
    bracket that closed the array (``None`` while it is open) with that bracket's byte."""

    commas: Positions
    close: int | None = None
    close_byte: int = 0


def _bits(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint64]:
    return np.packbits(mask, bitorder="little").view(np.uint64)


def _escaped_quotes(
    data: npt.NDArray[np.uint8], quotes: npt.NDArray[np.bool_], carried: int
) -> Positions:
    """The offsets (in the block) of quotes preceded by an odd run of backslashes; ``carried``
    is the parity of the run that ended the previous block."""
    found = np.flatnonzero(quotes[1:] & (data[:-1] == BACKSLASH)) + 1
    if carried and quotes[0]:
        found = np.concatenate([np.zeros(1, np.int64), found])
    run = np.zeros(len(found), np.int64)
    alive = np.ones(len(found), bool)
    back = 1
    while alive.any():
        at = found - back
        within = at >= 0
        hit = np.zeros(len(found), bool)
        hit[within] = data[at[within]] == BACKSLASH
        run[alive & ~within] += carried  # the run goes on into the previous block
        alive &= hit
        run += alive
        back += 1
    escaped: Positions = found[(run & 1) == 1]
    return escaped


def scan_block(block: bytes, state: ScanState) -> BlockScan:
    """Scan the next block of an array's bytes, from ``state`` (updated to the block's end).

    After the array closes, nothing more is scanned: the caller looks at what follows itself.
    The native engine scans when it is installed (a byte loop in Rust, several times as fast),
    else numpy (:func:`scan_block_numpy`); a test holds the two to one answer.
    """
    engine = native_engine()
    if engine is None:
        return scan_block_numpy(block, state)
    commas, close, close_byte, after = engine.scan_structure(
        block, state.position, state.depth, state.in_string, state.backslashes
    )
    state.position, state.depth, state.in_string, state.backslashes = after
    return BlockScan(np.frombuffer(commas, np.int64), close=close, close_byte=close_byte)


def scan_block_numpy(block: bytes, state: ScanState) -> BlockScan:
    """:func:`scan_block` in numpy: simdjson's first stage, on whole blocks at once."""
    size = len(block)
    data = np.frombuffer(block, np.uint8)
    if size % _PAD:
        data = np.concatenate([data, np.full(_PAD - size % _PAD, 0x20, np.uint8)])
    quotes = data == QUOTE
    if state.backslashes or b"\\" in block:  # memchr: a fraction of a numpy pass
        quotes[_escaped_quotes(data, quotes, state.backslashes)] = False
    quote_words = _bits(quotes)
    inside = quote_words.copy()
    for shift in _SHIFTS:
        inside ^= inside << shift
    parity = np.bitwise_count(quote_words) & 1
    before = (np.cumsum(parity, dtype=np.int64) - parity + state.in_string) & 1
    inside ^= before.astype(np.uint64) * _ALL_ONES
    brackets = _bits((data | _BRACKET_OR) == _BRACKET_IS)
    structural = (brackets | _bits(data == COMMA)) & ~inside
    at = np.flatnonzero(np.unpackbits(structural.view(np.uint8), bitorder="little").view(bool))
    kinds = data[at]
    lowered = kinds | _LOWER
    step = (lowered == _OPEN_LOWERED).view(np.int8) - (lowered == _CLOSE_LOWERED).view(np.int8)
    depth = np.cumsum(step, dtype=np.int64)
    depth += state.depth
    separators = (kinds == COMMA) & (depth == 1)
    start = state.position
    closed = np.flatnonzero(depth <= 0)
    if len(closed):
        end = int(closed[0])
        commas = at[:end][separators[:end]] + start
        state.depth = 0
        return BlockScan(commas, close=int(at[end]) + start, close_byte=int(kinds[end]))
    trailing = size - len(block.rstrip(b"\\"))
    carried = state.backslashes + trailing if trailing == size else trailing
    state.position = start + size
    state.depth = int(depth[-1]) if len(depth) else state.depth
    state.in_string = bool((before[-1] + parity[-1]) & 1) if len(before) else state.in_string
    state.backslashes = carried & 1
    return BlockScan(at[separators] + start)
