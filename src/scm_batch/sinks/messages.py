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
from typing import Any

import msgspec

from scm_batch.model import ChunkTask
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
    """Builds a chunk's messages from its transformed records and their encoded lines."""

    def __init__(self, task: ChunkTask, message_format: MessageFormat) -> None:
        self._bare = message_format == "bare"
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

    def build(
        self, records: list[dict[str, Any]], lines: list[bytes], indices: list[int]
    ) -> MessageBlock:
        """``lines[i]`` is ``records[i]`` encoded; ``indices[i]`` its line's index in the chunk."""
        keys = [str(rec.get("id", "")) for rec in records]
        correlation = [rec.get("gssId") for rec in records]
        if self._bare:
            values = lines
        else:
            head, middle, tail = self._head, self._middle, self._tail
            values = [
                b"".join((head, line, middle, str(index).encode(), tail))
                for line, index in zip(lines, indices, strict=True)
            ]
        return MessageBlock(keys, values, correlation)
