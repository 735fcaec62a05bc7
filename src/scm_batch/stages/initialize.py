"""InitializeBatchProcessing: look at the input object before any work is planned.

Stats the object, detects its format from the first bytes, and decodes a sample of lines to
measure the average bytes per line, which sizes chunks when lines are not counted exactly.
"""

from __future__ import annotations

import msgspec

from scm_batch.errors import InputError, InputFormatError, ObjectNotFoundError
from scm_batch.model import JobInput, SourceInfo
from scm_batch.records.codecs import BOM, DECODE_ERRORS, NEWLINE, detect_format, is_blank
from scm_batch.records.transform import MAX_OFFSET
from scm_batch.storage import Storage

DEFAULT_SAMPLE_BYTES = 1 << 20
_SCAN_BLOCK = 8 << 20


def _anything_after(storage: Storage, key: str, start: int, size: int) -> bool:
    """Whether the object holds anything but JSON white space from ``start`` on: read only when
    its sample held nothing else, and only as far as the first byte that is not."""
    blocks = storage.iter_range(key, start, size, _SCAN_BLOCK) if start < size else ()
    return any(not is_blank(block) for block in blocks)


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

    head = storage.read_range(job.file, 0, min(info.size, sample_bytes))
    file_format = detect_format(head, where)
    has_bom = head.startswith(BOM)
    body = head[len(BOM) :] if has_bom else head
    lines = body.split(NEWLINE)
    # The last line of the sample may be cut short: not sampled, but looked at for blankness.
    partial = lines.pop() if len(head) < info.size else b""
    non_blank = [line for line in lines if not is_blank(line)]
    if (
        not non_blank
        and is_blank(partial)
        and not _anything_after(storage, job.file, len(head), info.size)
    ):
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
    return SourceInfo(
        key=job.file,
        size=info.size,
        mtime_ns=info.mtime_ns,
        etag=info.etag,
        version_id=info.version_id,
        format=file_format,
        sample_records=len(lines),
        bytes_per_record=round(max(bytes_per_record, 1.0), 3),
        has_bom=has_bom,
    )
