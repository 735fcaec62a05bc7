"""The notification port: where completion and status messages go."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Notifier(Protocol):
    """Delivers one message to a named channel (a Kafka topic, an SQS queue, an outbox file)."""

    def send(self, channel: str, message: Mapping[str, Any]) -> str:
        """Deliver ``message``; return where it went, for the run report."""
        ...
