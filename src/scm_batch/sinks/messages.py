"""Per-record messages, in the contract's envelope or the production variant's bare form.

Envelope (the contract): ``{"record": <transformed record>, "metadata": {batchId, chunkId,
recordIndex, customerId, tenantId, processedAt, source, destination}}``. ``recordIndex`` is the
index of the record's line within its chunk (0-based), so ``(chunkId, recordIndex)`` names the line;
its absolute line is the chunk's ``startIndex`` plus it when the plan counted lines.

Bare (the production variant): the transformed record itself, with the headers (Kafka) or message
attributes (SQS) ``batchId`` and ``correlationId`` (the record's ``gssId``).

The record's JSON is the very bytes written to the result part, so a message and its result line
never differ; the envelope around it is assembled from pieces encoded once per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from scm_batch.model import ChunkTask
from scm_batch.records.blocks import Marks
from scm_batch.records.transform import TransformContext
from scm_batch.sinks.options import MessageFormat

SOURCE = "scm-batch"


@dataclass(frozen=True, slots=True)
class MessageBlock:
    """The messages of one block of records, as parallel lists."""

    keys: list[str]  # the record's new id: the Kafka key, the SQS deduplication source
    values: list[bytes]
    correlation_ids: list[str | None]  # gssId, for the bare form's headers

    def __len__(self) -> int:
        return len(self.values)


class MessageBuilder:
    """Builds a chunk's messages from its valid records' encoded lines and their marks (no
    record object: the native engine makes none)."""

    def __init__(
        self, task: ChunkTask, message_format: MessageFormat, ctx: TransformContext
    ) -> None:
        self._bare = message_format == "bare"
        self._id_prefix = ctx.id_prefix
        self._gss_prefix = ctx.gss_prefix
        encode = msgspec.json.encode
        self._head = b'{"record":'
        self._middle = (
            b',"metadata":{"batchId":'
            + encode(task.batch_id)
            + b',"chunkId":'
            + encode(task.chunk_id)
            + b',"recordIndex":'
        )
        self._tail = (
            b',"customerId":'
            + encode(task.customer_id)
            + b',"tenantId":'
            + encode(task.tenant_id)
            + b',"processedAt":'
            + encode(task.processed_at)
            + b',"source":'
            + encode(SOURCE)
            + b',"destination":'
            + encode(task.destination)
            + b"}}"
        )

    def build(self, lines: list[bytes], marks: Marks) -> MessageBlock:
        """``lines[i]`` is the i-th valid record of the block encoded, ``marks`` what is known
        of it: its line's index in the chunk and its offset, from which its new ``id`` (the key)
        and ``gssId`` (the correlation id, when it has one) follow as the transform made them."""
        id_prefix, gss_prefix = self._id_prefix, self._gss_prefix
        suffixes = [f"{offset:012x}" for offset in marks.offsets]
        keys = [id_prefix + suffix for suffix in suffixes]
        correlation = [
            gss_prefix + suffix if has_gss else None
            for suffix, has_gss in zip(suffixes, marks.gss, strict=True)
        ]
        if self._bare:
            values = lines
        else:
            head, middle, tail = self._head, self._middle, self._tail
            values = [
                b"".join((head, line, middle, str(index).encode(), tail))
                for line, index in zip(lines, marks.indices, strict=True)
            ]
        return MessageBlock(keys, values, correlation)
