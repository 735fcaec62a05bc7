"""Byte-level handling of record files: format detection and splitting a byte stream into lines.

A line is what lies between two ``\\n`` bytes. A ``\\r`` before the ``\\n`` stays part of the line;
JSON treats it as white space, so CRLF files decode unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from scm_batch.errors import InputFormatError
from scm_batch.model import InputFormat

BOM = b"\xef\xbb\xbf"
NEWLINE = b"\n"

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
    text = head.removeprefix(BOM).lstrip(b" \t\r\n")
    if text.startswith(b"["):
        raise InputFormatError(
            f"{where} is a JSON array file; this version reads JSON Lines only "
            "(one JSON object per line) - convert it, e.g. with: jq -c '.[]' FILE > FILE.jsonl"
        )
    return "jsonl"


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
