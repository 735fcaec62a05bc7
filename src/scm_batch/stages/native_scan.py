"""A chunk's blocks sorted by the native engine (:mod:`scm_batch.records.native`).

The engine takes a buffer of whole lines (or a JSON array's elements) and returns the result
lines of the records it is sure of, with no Python object per record. The lines it is not sure
of (malformed, rejected by a rule, too long, unusual in a way the two engines might read
differently) come back as positions: the Python engine (:class:`Scanner.settle`) decides each,
writes its error entry, or transforms it, and its result line is spliced in where it belongs.
So the result part is the Python engine's, byte for byte, whichever engine ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import msgspec

from scm_batch.model import ChunkTask
from scm_batch.records.blocks import ElementBlock, Marks, SortedBlock, StructureChanged
from scm_batch.records.codecs import DECODE_ERRORS, TooLong, iter_line_buffers
from scm_batch.records.native import Answer, NativeEngine
from scm_batch.records.transform import TransformContext
from scm_batch.stages.chunk_input import changed, record_blocks
from scm_batch.stages.scan import Scanner, encode_records

LineOf = Callable[[int, int, int, bool], bytes]
"""A deferred line's bytes from its index, offset, length and whether it is too long to hold."""


def native_blocks(
    engine: NativeEngine,
    task: ChunkTask,
    blocks: Iterable[bytes],
    scanner: Scanner,
    ctx: TransformContext,
    *,
    marks: bool,
) -> Iterator[SortedBlock]:
    """The chunk's blocks sorted by the native engine, its doubts settled by ``scanner``."""
    sorter = _NativeSorter(engine, task, scanner, ctx, marks=marks)
    if task.input_format == "jsonl":
        for buffer in iter_line_buffers(blocks, task.max_line_bytes):
            yield sorter.lines(buffer)
        return
    for block in record_blocks(task, blocks):
        yield sorter.elements(block)


def _stamps(engine: NativeEngine, ctx: TransformContext) -> object:
    """The transform's values JSON-encoded by msgspec, as the Python engine writes them; the
    id prefixes without their closing quote."""
    encode = msgspec.json.encode
    return engine.Stamps(
        encode(ctx.processed_at),
        encode(ctx.customer_id),
        encode(ctx.tenant_id),
        encode(ctx.gss_prefix)[:-1],
        encode(ctx.id_prefix)[:-1],
    )


class _NativeSorter:
    def __init__(
        self,
        engine: NativeEngine,
        task: ChunkTask,
        scanner: Scanner,
        ctx: TransformContext,
        *,
        marks: bool,
    ) -> None:
        self._engine = engine
        self._task = task
        self._scanner = scanner
        self._ctx = ctx
        self._marks = marks
        self._stamps = _stamps(engine, ctx)
        self._max_line = task.max_line_bytes
        self._decode = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode

    def lines(self, buffer: bytes) -> SortedBlock:
        """A buffer of whole lines (or a line too long to hold) sorted."""
        scanner = self._scanner
        base = scanner.offset
        if type(buffer) is TooLong:
            nothing: tuple[list[int], list[int], bytes] | None = None
            if self._marks:
                nothing = ([], [], b"")
            answer: Answer = (b"", 1, 0, 0, [(0, base, buffer.length, 0, True)], nothing)
            scanner.offset += buffer.length + 1
        else:
            answer = self._engine.sort_lines(
                buffer, base, self._max_line, self._stamps, self._marks
            )
            # Every line and its "\n" (counted for the input's last line too, as the Python
            # engine counts it: check_consumed allows for it).
            scanner.offset += len(buffer) + (0 if buffer.endswith(b"\n") else 1)

        def line_of(index: int, offset: int, length: int, too_long: bool) -> bytes:
            if too_long:
                return TooLong(length)
            return buffer[offset - base : offset - base + length]

        return self._settled(answer, line_of)

    def elements(self, block: ElementBlock) -> SortedBlock:
        """A block of a JSON array's elements sorted. A block split on its separator text is
        split again by the structural scan when an element the engine could not take does not
        decode: the split was wrong (as :func:`scm_batch.stages.scan.scan_block` does)."""
        answer = self._sort_elements(block)
        if block.rescan is not None and not all(
            self._decodes(block.elements[d[0]]) for d in answer[4]
        ):
            try:
                block = block.rescan()
            except StructureChanged as exc:
                raise changed(self._task, exc) from None
            answer = self._sort_elements(block)
        elements = block.elements

        def element_of(index: int, offset: int, length: int, too_long: bool) -> bytes:
            return elements[index]

        return self._settled(answer, element_of)

    def _sort_elements(self, block: ElementBlock) -> Answer:
        return self._engine.sort_elements(block.elements, block.starts, self._stamps, self._marks)

    def _decodes(self, element: bytes) -> bool:
        if type(element) is TooLong:
            return False
        try:
            self._decode(element)
        except DECODE_ERRORS:
            return False
        return True

    def _settled(self, answer: Answer, line_of: LineOf) -> SortedBlock:
        """The engine's answer with each deferred line decided by the Python engine and the
        result line of each valid one put in its place."""
        encoded, lines, blanks, valid, deferred, native_marks = answer
        scanner = self._scanner
        tally = scanner.tally
        first = tally.lines
        pieces: list[bytes] = []
        taken = 0
        settled: list[tuple[int, int, bool]] = []
        for index, offset, length, out_pos, too_long in deferred:
            record = scanner.settle(line_of(index, offset, length, too_long), first + index, offset)
            if record is None:
                continue
            pieces += (encoded[taken:out_pos], encode_records([record], [offset], self._ctx))
            taken = out_pos
            settled.append((index, offset, "gssId" in record))
        if pieces:
            pieces.append(encoded[taken:])
            encoded = b"".join(pieces)
        tally.lines += lines
        tally.blocks += 1
        tally.blank_lines += blanks
        tally.valid_records += valid + len(settled)
        marks = None
        if self._marks:
            marks = _merged(first, native_marks, settled)
        return SortedBlock(encoded, marks)


def _merged(
    first: int, native: tuple[list[int], list[int], bytes], settled: list[tuple[int, int, bool]]
) -> Marks:
    """The marks of the engine's records and of the ones Python settled, in line order."""
    indices, offsets, gss = native
    rows = list(zip(indices, offsets, map(bool, gss), strict=True))
    if settled:
        rows = sorted(rows + settled)
    return Marks(
        [first + index for index, _, _ in rows],
        [offset for _, offset, _ in rows],
        [has_gss for _, _, has_gss in rows],
    )
