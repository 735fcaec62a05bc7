"""The delivery ports: where records go (a record sink) and where notifications go (a notifier)."""

from __future__ import annotations

from typing import Protocol

import msgspec

from scm_batch.model import ChunkTask
from scm_batch.sinks.messages import MessageBlock
from scm_batch.sinks.options import MessageFormat


class ChunkDelivery(Protocol):
    """One chunk's records on their way to a sink."""

    def send(self, block: MessageBlock) -> None:
        """Hand over a block of messages; blocks while the sink's buffers are full."""
        ...

    def finish(self) -> int:
        """Wait until every message is acknowledged; return how many were delivered, or raise
        ``DeliveryError`` if any was not."""
        ...

    def abort(self) -> None:
        """The chunk failed: stop caring about its pending messages."""
        ...


class RecordSink(Protocol):
    """A destination for records (Kafka topic, SQS queue), reused chunk after chunk."""

    @property
    def message_format(self) -> MessageFormat: ...

    @property
    def broken(self) -> bool:
        """Whether the sink can no longer be used and must be replaced."""
        ...

    def begin(self, task: ChunkTask) -> ChunkDelivery: ...

    def close(self) -> None: ...


class Notifier(Protocol):
    """Delivers one message to a named channel (a Kafka topic, an SQS queue, an outbox file)."""

    def send(self, channel: str, message: msgspec.Struct) -> str:
        """Deliver ``message``; return where it went, for the run report."""
        ...
