"""ProcessChunk's input: a chunk's bytes (its range of the input object, or its staged copy of a
compressed input, decompressed) and its records in blocks (lines, or a JSON array's elements);
and the checks that they are the bytes the plan was made from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from scm_batch.errors import InputChangedError
from scm_batch.model import ChunkTask
from scm_batch.records.blocks import ElementBlock, StructureChanged
from scm_batch.records.codecs import iter_line_blocks
from scm_batch.records.compression import decompressed, regrouped
from scm_batch.storage import ObjectInfo, Storage


def check_source(task: ChunkTask, info: ObjectInfo) -> None:
    """Refuse to start on an input object that is not the one the plan was made from."""
    if info.identity != task.source_identity:
        raise InputChangedError(
            f"{task.chunk_id}: {task.file} is no longer the object the plan was made from "
            f"(size {info.size:,}, planned {task.source_size:,}); the input changed after planning"
        )


def check_consumed(task: ChunkTask, *, consumed: int, lines: int) -> None:
    """Refuse a chunk whose bytes no longer match the plan (the input changed while it ran)."""
    expected = task.byte_end - task.byte_start
    # The count adds one "\n" per line, one too many when the object's last line has none (a
    # staged chunk's end is in the decompressed input, whose size the task does not carry).
    last = task.byte_end == task.source_size or task.staged_key is not None
    slack = (0, 1) if last and task.input_format == "jsonl" else (0,)
    if consumed - expected not in slack:
        raise InputChangedError(
            f"{task.chunk_id}: expected {expected:,} bytes of whole lines at offset "
            f"{task.byte_start:,} of {task.file}; the input changed after planning"
        )
    if task.indices_exact and lines != task.chunk_size:
        raise InputChangedError(
            f"{task.chunk_id}: expected {task.chunk_size:,} lines at offset {task.byte_start:,} "
            f"of {task.file}, found {lines:,}; the input changed after planning"
        )


def chunk_bytes(task: ChunkTask, store: Storage, block_size: int) -> Iterator[bytes]:
    """The chunk's bytes: its range of the input, or its staged copy decompressed."""
    if task.staged_key is None:
        check_source(task, store.stat(task.file))
        return iter(
            store.iter_range(
                task.file, task.byte_start, task.byte_end, block_size, etag=task.source_etag
            )
        )
    staged = store.stat(task.staged_key)
    copy = store.iter_range(task.staged_key, 0, staged.size, block_size, etag=staged.etag)
    return regrouped(decompressed(copy, "zstd", store.uri_for(task.staged_key)), block_size)


def record_blocks(task: ChunkTask, blocks: Iterable[bytes]) -> Iterator[ElementBlock]:
    """The chunk's records block by block: lines (their offsets follow from their lengths), or
    a JSON array's elements with their offsets."""
    if task.input_format == "jsonl":
        for lines in iter_line_blocks(blocks, task.max_line_bytes):
            yield ElementBlock(lines, [])
        return
    # Loaded here: the split of elements needs numpy, which a JSON Lines run never loads.
    from scm_batch.records.elements import iter_element_blocks  # noqa: PLC0415

    try:
        yield from iter_element_blocks(blocks, task.byte_start, task.max_line_bytes)
    except StructureChanged as exc:
        raise changed(task, exc) from None


def changed(task: ChunkTask, exc: StructureChanged) -> InputChangedError:
    return InputChangedError(
        f"{task.chunk_id}: {exc} of {task.file}; the input changed after planning"
    )
