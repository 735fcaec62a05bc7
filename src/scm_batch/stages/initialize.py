"""InitializeBatchProcessing: look at the input object before any work is planned.

Stats the object, detects its compression (magic bytes) and its format (the first byte that is not
white space) from its first bytes, never from its name, and decodes a sample of records to measure
the average bytes per record, which sizes chunks when records are not counted exactly. Of a
compressed object the sample is its first decompressed bytes, and how much they expanded sizes
the chunks of its staging.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from scm_batch.errors import InputError, InputFormatError, ObjectNotFoundError
from scm_batch.model import Compression, JobInput, SourceInfo
from scm_batch.records.blocks import CountedBlocks
from scm_batch.records.codecs import (
    BOM,
    DECODE_ERRORS,
    JSON_SPACE,
    NEWLINE,
    detect_format,
    is_blank,
)
from scm_batch.records.compression import decompressed, detect_compression
from scm_batch.records.transform import MAX_OFFSET
from scm_batch.storage import Storage

DEFAULT_SAMPLE_BYTES = 1 << 20
_SCAN_BLOCK = 8 << 20


def _anything_after(blocks: Iterable[bytes]) -> bool:
    """Whether the blocks after the sample hold anything but JSON white space: read only when the
    sample held nothing else, and only as far as the first byte that is not."""
    return any(not is_blank(block) for block in blocks)


def _sample(
    storage: Storage, key: str, size: int, compression: Compression, where: str, wanted: int
) -> tuple[bytes, Iterator[bytes], bool, float]:
    """The first ``wanted`` (decompressed) bytes of the object, the blocks after them, whether
    those are all, and how much the compressed bytes read so far expanded."""
    if compression == "none":
        head = storage.read_range(key, 0, min(size, wanted))
        if len(head) >= size:
            return head, iter(()), True, 1.0
        return head, iter(storage.iter_range(key, len(head), size, _SCAN_BLOCK)), False, 1.0
    counted = CountedBlocks(storage.iter_range(key, 0, size, 64 << 10))
    stream = decompressed(counted, compression, where)
    pieces: list[bytes] = []
    got = 0
    complete = True
    for block in stream:
        pieces.append(block)
        got += len(block)
        if got >= wanted:
            complete = False
            break
    head = b"".join(pieces)
    return head, stream, complete, max(1.0, got / max(1, counted.count))


def _array_sample(head: bytes, complete: bool) -> tuple[int, float]:
    """Elements seen in the sample of a JSON array, and the bytes per element."""
    from scm_batch.records.structure import ScanState, scan_block  # noqa: PLC0415 - numpy

    text = head.removeprefix(BOM).lstrip(JSON_SPACE)
    commas = len(scan_block(text[1:], ScanState(1)).commas)
    elements = commas + (1 if complete else 0)
    return elements, round(max(len(head) / max(1, elements), 1.0), 3)


def initialize_batch(
    job: JobInput, storage: Storage, *, sample_bytes: int = DEFAULT_SAMPLE_BYTES
) -> SourceInfo:
    """Stat and sample the input object named by ``job``."""
    where = storage.uri_for(job.file)
    try:
        info = storage.stat(job.file)
    except ObjectNotFoundError as exc:
        raise InputError(f"input file {exc.message}") from exc
    if info.size == 0:
        raise InputError(f"input file {where} is empty")
    if info.size >= MAX_OFFSET:
        raise InputError(f"input file {where} is larger than {MAX_OFFSET} bytes")

    raw_head = storage.read_range(job.file, 0, min(info.size, 64))
    compression = detect_compression(raw_head, where)
    head, rest, complete, expansion = _sample(
        storage, job.file, info.size, compression, where, sample_bytes
    )
    file_format = detect_format(head, where)
    if file_format == "json-array":
        records, bytes_per_record = _array_sample(head, complete)
    else:
        records, bytes_per_record = _lines_sample(head, rest, complete, where)
    return SourceInfo(
        key=job.file,
        size=info.size,
        mtime_ns=info.mtime_ns,
        etag=info.etag,
        version_id=info.version_id,
        format=file_format,
        sample_records=records,
        bytes_per_record=bytes_per_record,
        has_bom=head.startswith(BOM),
        compression=compression,
        expansion=round(expansion, 3),
    )


def _lines_sample(
    head: bytes, rest: Iterator[bytes], complete: bool, where: str
) -> tuple[int, float]:
    """Lines seen in the sample of JSON Lines, and the bytes per line; a sample of blank lines
    only (and nothing after it) or of no JSON object at all is refused."""
    body = head.removeprefix(BOM)
    lines = body.split(NEWLINE)
    # The last line of the sample may be cut short: not sampled, but looked at for blankness.
    partial = b"" if complete else lines.pop()
    non_blank = [line for line in lines if not is_blank(line)]
    if not non_blank and is_blank(partial) and not _anything_after(rest):
        raise InputError(f"input file {where} holds no records, only blank lines")
    # As a chunk reads records: an object whose values are left as they are (a number beyond a
    # double's range is no reason to call the file something else).
    decode = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
    objects = 0
    for line in non_blank:
        try:
            decode(line)
        except DECODE_ERRORS:
            continue
        objects += 1
    if non_blank and objects == 0:
        raise InputFormatError(
            f"{where} does not look like JSON Lines: none of its first {len(non_blank)} "
            "lines is a JSON object"
        )
    sampled_bytes = sum(len(line) + 1 for line in lines)
    bytes_per_record = sampled_bytes / len(lines) if lines else float(len(head))
    return len(lines), round(max(bytes_per_record, 1.0), 3)
