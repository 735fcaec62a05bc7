"""The ledger: where a batch stands, kept in the bucket itself.

A chunk is done if and only if its manifest, ``metadata/{batchId}/chunks/{chunkId}.json``, exists.
The worker writes it last, after the chunk's result and error parts are complete under their final
names, so a crash at any moment leaves either a done chunk or one to redo, never a half-done one
that looks done. Failed attempts that exhausted their retries are recorded beside it, and a small
marker says the batch's notifications went out. Nothing else is needed to resume or report a batch,
on a local directory as on S3, whatever executor ran the chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import msgspec

from scm_batch import layout
from scm_batch.model import ChunkFailure, ChunkPlan, ChunkResult, Record, StatusWord
from scm_batch.storage import Storage

T = TypeVar("T")


class NotificationRecord(Record, frozen=True):
    """What a batch has sent: its outcome and where each message went."""

    batch_status: StatusWord
    sent_at: str
    channels: list[str]


def _encode(value: object) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value))


def write_manifest(storage: Storage, batch_id: str, result: ChunkResult) -> None:
    """Commit a chunk: call only once its parts are complete."""
    storage.put_bytes(layout.manifest_key(batch_id, result.chunk_id), _encode(result))


class Ledger:
    """Read and write a batch's ledger entries in its bucket."""

    def __init__(self, storage: Storage, batch_id: str) -> None:
        self._storage = storage
        self._batch_id = batch_id

    def _read(self, key: str, kind: type[T]) -> T:
        return msgspec.json.decode(self._storage.get_bytes(key), type=kind)

    def _read_all(self, prefix: str, kind: type[T]) -> list[T]:
        """Every entry under ``prefix``. An entry that does not decode (a disk that filled up, a
        hand edit) is dropped: for a manifest that means the chunk is simply done again."""
        entries = []
        for key in self._storage.list_keys(prefix):
            try:
                entries.append(self._read(key, kind))
            except msgspec.MsgspecError:
                self._storage.delete(key)
        return entries

    def load_plan(self) -> ChunkPlan | None:
        key = layout.plan_key(self._batch_id)
        return self._read(key, ChunkPlan) if self._storage.exists(key) else None

    def done(self) -> dict[str, ChunkResult]:
        """Manifests of the chunks that are done, by chunk id."""
        results = self._read_all(layout.manifest_prefix(self._batch_id), ChunkResult)
        return {r.chunk_id: r for r in results}

    def failures(self) -> dict[str, ChunkFailure]:
        """Chunks whose last session gave up on them (a later success supersedes the record)."""
        failures = self._read_all(layout.failure_prefix(self._batch_id), ChunkFailure)
        return {f.chunk_id: f for f in failures}

    def record_failure(self, failure: ChunkFailure) -> None:
        self._storage.put_bytes(
            layout.failure_key(self._batch_id, failure.chunk_id), _encode(failure)
        )

    def forget_failures_of_done_chunks(self, done: Iterable[str]) -> None:
        """Drop failure records that a later success made stale."""
        for chunk_id in set(self.failures()) & set(done):
            self._storage.delete(layout.failure_key(self._batch_id, chunk_id))

    def reopen(self) -> None:
        """Withdraw the batch's recorded outcome (aggregate, verdict, notified marker) before a
        session that will change it, so a crash in between cannot leave a stale one in place."""
        self._storage.delete(layout.notified_key(self._batch_id))
        self._storage.delete(layout.aggregated_key(self._batch_id))
        self._storage.delete(layout.validation_key(self._batch_id))

    def notified(self) -> NotificationRecord | None:
        key = layout.notified_key(self._batch_id)
        return self._read(key, NotificationRecord) if self._storage.exists(key) else None

    def record_notified(self, record: NotificationRecord) -> None:
        self._storage.put_bytes(layout.notified_key(self._batch_id), _encode(record))

    def discard_incomplete(self) -> int:
        """Remove what interrupted writes of this batch left behind."""
        return sum(
            self._storage.discard_incomplete(prefix)
            for prefix in layout.batch_prefixes(self._batch_id)
        )
