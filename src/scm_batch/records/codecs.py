"""Byte-level handling of record files: format detection and splitting a byte stream into lines.

A line is what lies between two ``\\n`` bytes. A ``\\r`` before the ``\\n`` stays part of the line;
JSON treats it as white space, so CRLF files decode unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from scm_batch.errors import InputFormatError
from scm_batch.model import InputFormat

BOM = b"\xef\xbb\xbf"
NEWLINE = b"\n"
# JSON's white space: a line of nothing else is blank. (Form feed and vertical tab are not: such
# a line is malformed, as a JSON parser says.)
JSON_SPACE = b" \t\r\n"


def is_blank(line: bytes) -> bool:
    return not line.strip(JSON_SPACE)


# What decoding one line can raise: msgspec.DecodeError and UnicodeDecodeError are ValueErrors;
# a line nested about a thousand levels deep raises RecursionError.
DECODE_ERRORS = (ValueError, RecursionError)


def undecodable(error: BaseException) -> str:
    """The error message of a line that could not be decoded."""
    if isinstance(error, RecursionError):
        return "cannot decode: nested too deeply"
    return f"cannot decode: {error}"


def detect_format(head: bytes, where: str) -> InputFormat:
    """The container of (decompressed) record bytes from their first bytes: a JSON array when
    the first byte that is not white space is ``[`` (unless the text is JSON Lines whose first
    record happens to be an array), else JSON Lines. A JSON object spread over several lines
    (a single document, not one object per line) is refused, saying so."""
    text = head.removeprefix(BOM).lstrip(JSON_SPACE)
    if text.startswith(b"[") and not _array_line_then_more_lines(text):
        return "json-array"
    if text.startswith(b"{") and _object_over_lines(text):
        raise InputFormatError(
            f"{where} is one JSON object spread over several lines, neither JSON Lines (one "
            "object per line) nor a JSON array of objects"
        )
    return "jsonl"


def _object_over_lines(text: bytes) -> bool:
    """Whether text starting with ``{`` begins with an object that does not fit on its first
    line yet closes on a later one (a pretty-printed document), as far as ``text`` shows."""
    first = text.partition(NEWLINE)[0]
    try:
        msgspec.json.decode(first)
    except DECODE_ERRORS:
        pass
    else:
        return False
    # numpy only here, where a JSON Lines file that looks like a document needs it.
    from scm_batch.records.structure import ScanState, scan_block  # noqa: PLC0415

    closed = scan_block(bytes(text), ScanState(0, depth=0)).close
    return closed is not None and closed > len(first)


def _array_line_then_more_lines(text: bytes) -> bool:
    """Whether text starting with ``[`` is JSON Lines whose first record happens to be an array:
    the first line is a whole JSON value and another line decodes too. A JSON array file either
    spreads over lines (its first line alone does not decode) or is one line only."""
    first, _, rest = text.partition(NEWLINE)
    decode = msgspec.json.Decoder().decode
    try:
        decode(first)
    except DECODE_ERRORS:
        return False
    for line in rest.split(NEWLINE)[:100]:
        if not is_blank(line):
            try:
                decode(line)
            except DECODE_ERRORS:
                continue
            return True
    return False


class TooLong(bytes):
    """In place of a line longer than the limit: no bytes (they stay in the input), its length."""

    length: int

    def __new__(cls, length: int) -> TooLong:
        line = super().__new__(cls)
        line.length = length
        return line


def line_length(line: bytes) -> int:
    """A line's length in the input (a :class:`TooLong` has none of its bytes)."""
    return line.length if type(line) is TooLong else len(line)


class _Unended:
    """The start of a line that has not ended yet, carried from block to block: its length so
    far, and its pieces unless it is already longer than the limit (then only counted)."""

    __slots__ = ("held", "limit", "pieces")

    def __init__(self, max_line: int | None) -> None:
        self.limit = max_line if max_line is not None else 1 << 62
        self.pieces: list[bytes] = []
        self.held = 0

    def add(self, piece: bytes) -> None:
        """A block without a newline: all of it belongs to the line."""
        self.held += len(piece)
        if self.held <= self.limit:
            self.pieces.append(piece)
        else:
            self.pieces = []

    def begin(self, tail: bytes) -> None:
        """A new line starts with ``tail`` (the bytes after a block's last newline)."""
        self.held = len(tail)
        self.pieces = [tail] if tail and self.held <= self.limit else []

    def rest(self) -> bytes | None:
        """The input's last line when it does not end with a newline (a :class:`TooLong` when
        it is too long), else ``None``."""
        if self.held > self.limit:
            return TooLong(self.held)
        return b"".join(self.pieces) if self.pieces else None


def iter_line_blocks(blocks: Iterable[bytes], max_line: int | None = None) -> Iterator[list[bytes]]:
    """Regroup consecutive byte blocks into lists of complete lines, without their ``\\n``.

    The concatenation of the yielded lines, each followed by ``\\n``, is the input, except that a
    final line without ``\\n`` is yielded as it is, and that a line longer than ``max_line`` is a
    :class:`TooLong` holding its length only: its bytes are counted, never held, so memory stays
    at a block and ``max_line`` whatever the input. A line longer than a block is carried over as
    a list of pieces, so very long lines cost linear, not quadratic, time.
    """
    unended = _Unended(max_line)
    for block in blocks:
        end = block.find(NEWLINE)
        if end < 0:
            unended.add(block)
            continue
        if unended.held + end > unended.limit:
            lines: list[bytes] = [TooLong(unended.held + end), *block[end + 1 :].split(NEWLINE)]
        elif unended.pieces:
            lines = b"".join([*unended.pieces, block]).split(NEWLINE)
        else:
            lines = block.split(NEWLINE)
        unended.begin(lines.pop())
        if max_line is not None and max(map(len, lines)) > max_line:
            lines = [TooLong(len(line)) if len(line) > max_line else line for line in lines]
        yield lines
    rest = unended.rest()
    if rest is not None:
        yield [rest]


def iter_line_buffers(blocks: Iterable[bytes], max_line: int | None = None) -> Iterator[bytes]:
    """Regroup byte blocks into buffers of whole lines, for an engine that splits lines itself.

    Each buffer holds whole lines, each ending in ``\\n`` but perhaps the input's last; their
    concatenation is the input, except that a line longer than ``max_line`` that spans blocks
    comes as a :class:`TooLong` (its length only, its bytes never held). A too-long line inside
    one block stays in its buffer: the engine measures lines too. Memory stays at a block and
    ``max_line``, as in :func:`iter_line_blocks`.
    """
    unended = _Unended(max_line)
    for block in blocks:
        end = block.find(NEWLINE)
        if end < 0:
            unended.add(block)
            continue
        start = 0
        if unended.held:  # the line begun in earlier blocks ends here
            if unended.held + end > unended.limit:
                yield TooLong(unended.held + end)
            else:
                yield b"".join([*unended.pieces, block[: end + 1]])
            start = end + 1
        last = block.rfind(NEWLINE) + 1
        if last > start:
            yield block if start == 0 and last == len(block) else block[start:last]
        unended.begin(block[last:])
    rest = unended.rest()
    if rest is not None:
        yield rest
