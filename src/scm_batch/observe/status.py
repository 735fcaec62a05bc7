"""Where a batch stands, read from its bucket alone: plan, chunk receipts, failures, aggregate.

Works while the batch runs (from another terminal), after it finished, and after a crash, since
everything it reads is what the run commits as it goes.
"""

from __future__ import annotations

from typing import Literal

from scm_batch.ledger import Ledger
from scm_batch.model import CamelStruct, ChunkFailure, StatusWord
from scm_batch.storage import StorageOptions, open_storage

Phase = Literal["planned", "processing", "aggregated", "notified"]


class BatchStatus(CamelStruct, frozen=True):
    """A batch's progress according to its ledger."""

    batch_id: str
    bucket: str
    file: str
    phase: Phase
    planned_at: str
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    chunks_pending: int
    records_total: int
    records_exact: bool
    records_done: int
    failed_chunks: list[ChunkFailure]
    batch_status: StatusWord | None
    validation_status: StatusWord | None
    notification_status: StatusWord | None
    # With verification: what is wrong with done chunks' parts, by chunk id (empty: all intact).
    damaged: dict[str, str] | None = None


def batch_status(
    bucket: str, batch_id: str, options: StorageOptions | None = None, *, verify: bool = False
) -> BatchStatus:
    """The status of ``batch_id`` in ``bucket``; ``NothingToResumeError`` if it has no plan. With
    ``verify``, every part of every done chunk is read and held to its receipt's checksum."""
    ledger = Ledger(open_storage(bucket, options), batch_id)
    plan = ledger.stored_plan()
    done = ledger.done()
    failed = [f for f in ledger.failures().values() if f.chunk_id not in done]
    summary = ledger.summary()
    notified = ledger.notified()
    phase: Phase = "processing" if done or failed else "planned"
    if summary is not None:
        phase = "aggregated"
    if notified is not None:
        phase = "notified"
    return BatchStatus(
        batch_id=batch_id,
        bucket=ledger.storage.uri,
        file=plan.job.file,
        phase=phase,
        planned_at=plan.created_at,
        chunks_total=len(plan.chunks),
        chunks_done=len(done),
        chunks_failed=len(failed),
        chunks_pending=len(plan.chunks) - len(done) - len(failed),
        records_total=plan.total_records,
        records_exact=plan.records_exact,
        records_done=sum(r.lines for r in done.values()),
        failed_chunks=sorted(failed, key=lambda f: f.chunk_number),
        batch_status=summary.status if summary else None,
        validation_status=summary.validation_status if summary else None,
        notification_status=notified.batch_status if notified else None,
        damaged=ledger.damaged(done) if verify else None,
    )
