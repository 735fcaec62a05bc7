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


_COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}


def detect_format(head: bytes, where: str) -> InputFormat:
    """The format of an object from its first bytes, or ``InputFormatError`` saying what it is."""
    for magic, name in _COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            raise InputFormatError(
                f"{where} is {name}-compressed; this version reads uncompressed JSON Lines only"
            )
    text = head.removeprefix(BOM).lstrip(JSON_SPACE)
    if text.startswith(b"[") and not _array_line_then_more_lines(text):
        raise InputFormatError(
            f"{where} is a JSON array file; this version reads JSON Lines only "
            "(one JSON object per line) - convert it, e.g. with: jq -c '.[]' FILE > FILE.jsonl"
        )
    return "jsonl"


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


def iter_line_blocks(blocks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Regroup consecutive byte blocks into lists of complete lines, without their ``\\n``.

    The concatenation of the yielded lines, each followed by ``\\n``, is the input, except that a
    final line without ``\\n`` is yielded as it is. A line longer than a block is carried over as a
    list of pieces, so very long lines cost linear, not quadratic, time.
    """
    pending: list[bytes] = []
    for block in blocks:
        if NEWLINE not in block:
            pending.append(block)
            continue
        if pending:
            pending.append(block)
            data = b"".join(pending)
            pending = []
        else:
            data = block
        lines = data.split(NEWLINE)
        tail = lines.pop()
        if tail:
            pending.append(tail)
        yield lines
    if pending:
        yield [b"".join(pending)]
