"""Compressed input: what an object is compressed with (from its first bytes, never its name), and
its decompressed bytes as a stream of blocks, in bounded memory.

gzip (several members, as ``cat a.gz b.gz`` and pigz make), zstd (several frames) and bzip2
(several streams, as pbzip2 makes) are read; xz and zip are named and refused. A stream that is
corrupt or ends before its end marker raises :class:`InputStructureError` naming how far it got,
in compressed and decompressed bytes: a truncated export is never taken for a shorter one.

Output is bounded per step: ``max_length`` for gzip and bzip2; zstd, which has no such bound, is
fed 1 KiB at a time, and 1 KiB of zstd blocks holds at most 32 MiB (256 blocks of 128 KiB, for a
crafted bomb; real data gives a few KiB). A decompression bomb costs time, not more memory.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Generator, Iterable, Iterator
from typing import Any

import zstandard

from scm_batch.errors import InputFormatError, InputStructureError
from scm_batch.model import Compression

MAGIC: dict[bytes, Compression] = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
}
_UNSUPPORTED = {b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip"}
OUTPUT_LIMIT = 8 << 20  # decompressed bytes per step at most
_ZSTD_FEED = 1 << 10  # compressed bytes per zstd step (see above; costs ~6 % of its speed)
_PADDING = b"\x00"  # tape-style zero padding after the last gzip member, as gzip(1) allows

# What the decompressors raise on bad data: zlib.error, OSError (bz2), zstandard.ZstdError.
_CORRUPT = (zlib.error, OSError, zstandard.ZstdError, EOFError)


def detect_compression(head: bytes, where: str) -> Compression:
    """The compression of an object from its first bytes (``none`` when it has no known magic)."""
    for magic, name in _UNSUPPORTED.items():
        if head.startswith(magic):
            raise InputFormatError(
                f"{where} is {name}-compressed; gzip, zstd and bzip2 are read: recompress it"
            )
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return "none"


class _Decoder:
    """Decompresses one member after another, ``OUTPUT_LIMIT`` bytes at most per step."""

    def __init__(self, kind: Compression) -> None:
        self.kind = kind
        self._member = self._new()
        self._fed = False  # data went into the current member

    def _new(self) -> Any:  # zlib's, bz2's or zstandard's decompressor: one per member
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.kind == "bzip2":
            return bz2.BZ2Decompressor()
        return zstandard.ZstdDecompressor().decompressobj()

    @property
    def mid_member(self) -> bool:
        return self._fed and not self._member.eof

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._member.eof:  # what follows a member is the next one (or gzip's padding)
                if self.kind == "gzip" and not data.strip(_PADDING):
                    return
                self._member = self._new()
            self._fed = True
            data = yield from self._step(data)

    def _step(self, data: bytes) -> Generator[bytes, None, bytes]:
        """Decompress from ``data`` until it is used up or the member ends; return what is left
        for the next member."""
        member = self._member
        if self.kind == "zstd":
            for at in range(0, len(data), _ZSTD_FEED):
                out = member.decompress(data[at : at + _ZSTD_FEED])
                if out:
                    yield out
                if member.eof:
                    rest: bytes = member.unused_data + data[at + _ZSTD_FEED :]
                    return rest
            return b""
        if self.kind == "bzip2":
            out = member.decompress(data, OUTPUT_LIMIT)
            while True:
                if out:
                    yield out
                if member.eof or member.needs_input:
                    return bytes(member.unused_data) if member.eof else b""
                out = member.decompress(b"", OUTPUT_LIMIT)
        out = member.decompress(data, OUTPUT_LIMIT)
        while True:
            if out:
                yield out
            if member.eof or not member.unconsumed_tail:
                return bytes(member.unused_data) if member.eof else b""
            out = member.decompress(member.unconsumed_tail, OUTPUT_LIMIT)


def decompressed(blocks: Iterable[bytes], kind: Compression, where: str) -> Iterator[bytes]:
    """The decompressed bytes of the compressed ``blocks`` of the object at ``where``."""
    decoder = _Decoder(kind)
    consumed = produced = 0
    try:
        for block in blocks:
            for out in decoder.feed(block):
                produced += len(out)
                yield out
            consumed += len(block)
    except _CORRUPT as exc:
        raise InputStructureError(
            f"{where}: the {kind} data is corrupt in the compressed block read from byte "
            f"{consumed:,} on ({produced:,} bytes decompressed before it): {exc}"
        ) from None
    if decoder.mid_member or consumed == 0:
        raise InputStructureError(
            f"{where}: the {kind} data ends at compressed byte {consumed:,} before its end marker "
            f"({produced:,} bytes decompressed): the file is cut short"
        )


def regrouped(blocks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in blocks of about ``size`` (decompressors hand out small pieces)."""
    pieces: list[bytes] = []
    held = 0
    for block in blocks:
        pieces.append(block)
        held += len(block)
        if held >= size:
            yield b"".join(pieces)
            pieces, held = [], 0
    if pieces:
        yield b"".join(pieces)
