"""CalculateChunks for a batch whose plan exists: the checks before it is carried on (same batch,
same input object, same delivery, a result format this run writes).

A batch whose plan exists is resumed, locally (``scm-batch run`` / ``resume``) and on AWS (an
execution started again with the same input). Its finished chunks were made from one input object,
delivered to one place and written in one format; these checks refuse to mix them with another.
"""

from __future__ import annotations

import msgspec

from scm_batch.config import RunOptions
from scm_batch.errors import (
    BatchExistsError,
    DeliveryChangedError,
    InputChangedError,
    InputFormatError,
    OutputFormatChangedError,
)
from scm_batch.model import ChunkPlan, JobInput
from scm_batch.records.codecs import detect_format
from scm_batch.records.compression import detect_compression
from scm_batch.records.parts import require_output_format
from scm_batch.sinks.routing import delivery_target
from scm_batch.storage import Storage


def first_difference(planned: JobInput, asked: JobInput) -> str | None:
    """The first field in which ``asked`` differs from the planned input, or ``None``."""
    theirs = msgspec.structs.asdict(planned)
    for name, value in msgspec.structs.asdict(asked).items():
        if name == "processed_at" and value is None:
            continue  # not pinned: the plan's own timestamp is the one to keep
        if theirs[name] != value:
            return f"{name}: planned {theirs[name]!r}, now {value!r}"
    return None


def check_same_batch(plan: ChunkPlan, job: JobInput, storage: Storage) -> None:
    """Refuse to resume a batch that was planned with other input."""
    difference = first_difference(plan.job, job)
    if difference is not None:
        raise BatchExistsError(
            f"batch {job.batch_id!r} in {storage.uri} was planned with other input "
            f"({difference}); resume it as planned, use another batch id, or start it afresh "
            "(delete its objects; on the command line, --overwrite)"
        )


def check_input_unchanged(plan: ChunkPlan, storage: Storage) -> None:
    """The input is the object planned: the same size, time and ETag, and (looked at again in
    its first bytes) the same compression and format: an object replaced by one of another
    format, however alike its size and time, is never read as the one planned."""
    where = storage.uri_for(plan.source.key)
    info = storage.stat(plan.source.key)
    if info.identity != plan.source.identity:
        raise InputChangedError(
            f"{where} changed since batch {plan.batch_id!r} was planned "
            f"(size {info.size:,}, planned {plan.source.size:,}; etag {info.etag}, planned "
            f"{plan.source.etag}); its finished chunks no longer match it: start a new batch id, "
            "or --overwrite this one"
        )
    source = plan.source
    # As when it was planned: its first bytes (decompressed ones are not looked at again).
    head = storage.read_range(source.key, 0, min(source.size, plan.options.sample_bytes))
    planned = _kind(source.compression, source.format)
    try:
        compression = detect_compression(head, where)
        file_format = source.format if compression != "none" else detect_format(head, where)
        found = _kind(compression, file_format)
    except InputFormatError:
        found = "a format that is not read"
    if found != planned:
        raise InputChangedError(
            f"{where} was planned as {planned} and is now {found}: start a new batch id, or "
            "--overwrite this one"
        )


def _kind(compression: str, file_format: str) -> str:
    return file_format if compression == "none" else f"{compression}-compressed {file_format}"


def check_delivery_unchanged(plan: ChunkPlan, options: RunOptions) -> None:
    if plan.delivery is None:
        return
    now = delivery_target(plan.delivery.destination, options.delivery)
    if now != plan.delivery:
        raise DeliveryChangedError(
            f"batch {plan.batch_id!r} was planned to deliver to {plan.delivery.describe()}; this "
            f"run would deliver to {now.describe()}: resume it with the planned settings, or "
            "--overwrite"
        )


def check_output_format_unchanged(
    plan: ChunkPlan, options: RunOptions, *, finished: bool = False
) -> None:
    """The batch keeps the result format it was planned with: asking for another is refused,
    asking for none keeps the planned one, which must be one this run writes (``output_formats``:
    JSON Lines only on AWS) and writable here (pyarrow for Parquet) unless the batch is
    ``finished`` (every chunk done, its messages sent, no part to rebuild): it writes no part any
    more, and is only reported."""
    asked = options.plan.output_format
    if asked is not None and asked != plan.output_format:
        raise OutputFormatChangedError(
            f"batch {plan.batch_id!r} was planned to write {plan.output_format} result parts; "
            f"this run asks for {asked}: resume it with --output-format {plan.output_format} "
            "(or without the option), or --overwrite"
        )
    if finished:
        return
    if plan.output_format not in options.output_formats:
        raise OutputFormatChangedError(
            f"batch {plan.batch_id!r} was planned to write {plan.output_format} result parts, "
            f"and this installation writes {' and '.join(options.output_formats)} only: finish "
            "it with 'scm-batch resume' where pyarrow is installed, or give the batch another id"
        )
    require_output_format(plan.output_format)
