"""A local outbox: each message becomes ``notifications/{batchId}/{channel}.json`` in the bucket.

This is what a run on one machine delivers to until Kafka and SQS sinks are configured; the
files hold exactly the messages those sinks would send.
"""

from __future__ import annotations

import msgspec

from scm_batch import layout
from scm_batch.storage import Storage


class OutboxNotifier:
    """Writes each message as an indented JSON object into the working bucket."""

    def __init__(self, storage: Storage, batch_id: str) -> None:
        self._storage = storage
        self._batch_id = batch_id

    def send(self, channel: str, message: msgspec.Struct) -> str:
        key = layout.notification_key(self._batch_id, channel)
        self._storage.put_bytes(key, msgspec.json.format(msgspec.json.encode(message)))
        return self._storage.uri_for(key)
