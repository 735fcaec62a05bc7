"""A JSON array's chunk split into its elements, block by block, as JSON Lines are split into lines.

A chunk of a JSON array is a byte range ``e1 , e2 , … , en``: the planner cut it just after the
comma that ends the element before it (or after the ``[``) and just before the comma after its
last element (or before the ``]``). Its elements are what lies between its depth-1 commas, found
by the structural scan (:mod:`scm_batch.records.structure`); each keeps the white space around it
(the decoder ignores it), and its offset is where it begins: the byte after the separator that
precedes it. That offset is what the record's id is derived from, as a line's offset is for JSON
Lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from scm_batch.records.codecs import TooLong
from scm_batch.records.structure import ScanState, scan_block


class StructureChanged(Exception):
    """The range does not hold whole elements at depth 1 (the array closes in it, or it ends
    inside a string or a nested value): the input is not the one planned."""


def iter_element_blocks(
    blocks: Iterable[bytes], start: int, max_element: int
) -> Iterator[tuple[list[bytes], list[int]]]:
    """The elements of a chunk's range, block by block, each list with its elements' offsets.

    An element longer than ``max_element`` bytes is a :class:`TooLong` holding its length only:
    its bytes are counted, never held, so memory stays at a block whatever the element's size.
    """
    state = ScanState(start)
    pending: list[bytes] = []  # the start of the element not ended yet, unless it is too long
    held = 0
    element_start = start
    for block in blocks:
        scan = scan_block(block, state)
        if scan.close is not None:
            raise StructureChanged(f"the array closes at byte {scan.close:,}, inside the chunk")
        block_start = state.position - len(block)
        cuts = (scan.commas - block_start).tolist()
        if not cuts:
            held += len(block)
            pending = [*pending, block] if held <= max_element else []
            continue
        elements: list[bytes] = []
        first = cuts[0]
        if held + first > max_element:
            elements.append(TooLong(held + first))
        else:
            elements.append(b"".join([*pending, block[:first]]) if pending else block[:first])
        starts = [element_start]
        starts.extend(block_start + cut + 1 for cut in cuts)
        elements.extend(block[a + 1 : b] for a, b in itertools.pairwise(cuts))
        if max_element < len(block) and max(map(len, elements)) > max_element:
            elements = [TooLong(len(e)) if len(e) > max_element else e for e in elements]
        element_start = starts.pop()
        tail = block[cuts[-1] + 1 :]
        held = len(tail)
        pending = [tail] if tail and held <= max_element else []
        yield elements, starts
    if state.in_string or state.depth != 1:
        where = "inside a string" if state.in_string else f"at depth {state.depth - 1}"
        raise StructureChanged(f"the chunk ends {where} of an element")
    last = TooLong(held) if held > max_element else b"".join(pending)
    yield [last], [element_start]
