"""The ledger: where a batch stands, kept in the bucket itself. Every read and write of a batch's
state goes through here, whoever runs the batch (a local run, the Lambda functions, a Batch job).

What it keeps, under ``metadata/{batchId}/`` and beside it:

* the **plan** (``chunks.json``) and its chunk items alone (``chunk-items.json``, what a Step
  Functions Distributed Map reads); the items are written first, so a plan never stands without
  them;
* a **receipt** per finished chunk (``chunks/{chunkId}.json``, a :class:`ChunkResult`). A chunk
  is done if and only if its receipt exists. The worker writes it last, after the chunk's result
  and error parts are complete under their final names, so a crash at any moment leaves either a
  done chunk or one to redo, never a half-done one that looks done;
* a **failure** record per chunk given up on (``failures/{chunkId}.json``), written by a local run
  or by the state machine, and superseded by a later receipt;
* the batch's **outcome**: the validation report and the aggregated results, written by
  ``AggregateResults``;
* a **notified** marker once the batch's messages went out.

Nothing else is needed to resume or report a batch, on a local directory as on S3, whatever
executor ran the chunks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from scm_batch import layout
from scm_batch.errors import ConfigError, NothingToResumeError, ObjectNotFoundError
from scm_batch.model import (
    CamelStruct,
    ChunkFailure,
    ChunkPlan,
    ChunkResult,
    ChunkTask,
    PartCheck,
    RunSummary,
    StatusWord,
    ValidationReport,
)
from scm_batch.records.native import crc32_function
from scm_batch.storage import Storage
from scm_batch.storage.base import concurrently

T = TypeVar("T")

_VERIFY_BLOCK = 8 << 20
# A failure message longer than this is cut: it is shown to people, one line per chunk.
MAX_FAILURE_MESSAGE = 2000


class NotificationRecord(CamelStruct, frozen=True):
    """What a batch has sent: its outcome and where each message went."""

    batch_status: StatusWord
    sent_at: str
    channels: list[str]


class Rebuild(CamelStruct, frozen=True):
    """A chunk done once whose parts were found damaged and are rebuilt: what it delivered."""

    chunk_id: str
    delivered: int


def _encode(value: object) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value))


def encode_plan(plan: ChunkPlan) -> bytes:
    """The plan as stored: indented JSON, read by people as often as by programs."""
    return msgspec.json.format(msgspec.json.encode(plan), indent=2)


def encode_chunk_items(plan: ChunkPlan) -> bytes:
    """The chunk items as one compact JSON array (``metadata/{batchId}/chunk-items.json``)."""
    return msgspec.json.encode(plan.chunks)


def rebuilt(plan: ChunkPlan, rebuilding: dict[str, int]) -> ChunkPlan:
    """The plan whose chunks being rebuilt say what they delivered the first time."""
    if not rebuilding:
        return plan
    chunks = [
        msgspec.structs.replace(c, delivered_before=rebuilding[c.chunk_id])
        if c.chunk_id in rebuilding
        else c
        for c in plan.chunks
    ]
    return msgspec.structs.replace(plan, chunks=chunks)


def rebased(plan: ChunkPlan, bucket: str) -> ChunkPlan:
    """``plan`` with its bucket, and every chunk's, the one named ``bucket``: everything else in a
    plan is relative to its bucket already (object keys)."""
    if plan.job.bucket == bucket and all(c.bucket == bucket for c in plan.chunks):
        return plan
    replace = msgspec.structs.replace
    return replace(
        plan,
        job=replace(plan.job, bucket=bucket),
        chunks=[replace(c, bucket=bucket) for c in plan.chunks],
    )


def record_receipt(storage: Storage, batch_id: str, result: ChunkResult) -> ChunkResult:
    """Commit a chunk: call only once its parts are complete and its records delivered. A chunk
    commits once: when two runs of it end (a cluster that ran it twice, a worker thought lost),
    the first receipt stands and is returned to both (their parts are the same bytes); only an
    unreadable receipt is replaced."""
    key = layout.receipt_key(batch_id, result.chunk_id)
    data = _encode(result)
    if storage.put_new(key, data):
        return result
    try:
        return msgspec.json.decode(storage.get_bytes(key), type=ChunkResult)
    except msgspec.MsgspecError:  # garbage (a disk that filled up, a hand edit): replaced
        storage.put_bytes(key, data)
        return result
    except ObjectNotFoundError:  # forgotten between the two calls: committed anew, still once
        if storage.put_new(key, data):
            return result
        return msgspec.json.decode(storage.get_bytes(key), type=ChunkResult)


@dataclass(frozen=True, slots=True)
class Ledger:
    """Read and write one batch's ledger entries in its bucket."""

    storage: Storage
    batch_id: str
    # The plan once read or written: a batch's plan never changes (``clear`` forgets it), and a
    # run asks for it at several steps; a large plan is megabytes of JSON.
    _plan: list[ChunkPlan] = field(default_factory=list, repr=False, compare=False)

    def _read(self, key: str, kind: type[T]) -> T:
        return msgspec.json.decode(self.storage.get_bytes(key), type=kind)

    def _read_if_there(self, key: str, kind: type[T]) -> T | None:
        return self._read(key, kind) if self.storage.exists(key) else None

    def _read_all(self, prefix: str, kind: type[T]) -> list[T]:
        """Every entry under ``prefix``, in key order, read many at a time: a batch of thousands
        of chunks has thousands of receipts. An entry that does not decode (a disk that filled up,
        a hand edit) is dropped: for a receipt that means the chunk is simply done again. One
        removed since the listing (a receipt forgotten, a failure superseded) is not there."""
        storage = self.storage
        decode = msgspec.json.Decoder(kind).decode

        def entry(key: str) -> T | None:
            try:
                return decode(storage.get_bytes(key))
            except ObjectNotFoundError:
                return None
            except msgspec.MsgspecError:
                storage.delete(key)
                return None

        entries = concurrently(storage, entry, storage.list_keys(prefix))
        return [e for e in entries if e is not None]

    # ---- the plan -----------------------------------------------------------------------------
    def has_plan(self) -> bool:
        return bool(self._plan) or self.storage.exists(layout.plan_key(self.batch_id))

    def plan(self) -> ChunkPlan | None:
        """The stored plan, in this bucket: a bucket copied or moved elsewhere is carried on
        where it is now, never written back to where it was planned."""
        if not self._plan:
            plan = self._read_if_there(layout.plan_key(self.batch_id), ChunkPlan)
            if plan is None:
                return None
            self._plan.append(rebased(plan, self.storage.uri))
        return self._plan[0]

    def stored_plan(self) -> ChunkPlan:
        """The plan, or ``NothingToResumeError``."""
        plan = self.plan()
        if plan is None:
            raise NothingToResumeError(
                f"batch {self.batch_id!r} has no plan in {self.storage.uri} "
                f"({layout.plan_key(self.batch_id)}): it was never planned, or its objects were "
                "deleted"
            )
        return plan

    def chunk(self, chunk_id: str) -> ChunkTask:
        """One chunk item of the stored plan (what an AWS Batch job is told to process), saying
        what it delivered before if it is being rebuilt (:meth:`rebuild`)."""
        task = next((c for c in self.stored_plan().chunks if c.chunk_id == chunk_id), None)
        if task is None:
            raise ConfigError("--chunk-id", f"batch {self.batch_id!r} has no chunk {chunk_id!r}")
        note = self._read_if_there(layout.rebuild_key(self.batch_id, chunk_id), Rebuild)
        if note is None:
            return task
        return msgspec.structs.replace(task, delivered_before=note.delivered)

    def record_plan(self, plan: ChunkPlan) -> None:
        """Store a new plan, its chunk items first."""
        self.storage.put_bytes(layout.chunk_items_key(self.batch_id), encode_chunk_items(plan))
        self.storage.put_bytes(layout.plan_key(self.batch_id), encode_plan(plan))
        self._plan[:] = [plan]

    def record_chunk_items(self, plan: ChunkPlan) -> None:
        """Write the chunk items of a stored plan taken up again, as they are in this bucket now
        (a plan made by an older version has none; a copied bucket's name the old bucket)."""
        self.storage.put_bytes(layout.chunk_items_key(self.batch_id), encode_chunk_items(plan))

    # ---- chunks -------------------------------------------------------------------------------
    def receipt(self, chunk_id: str) -> ChunkResult | None:
        """The chunk's receipt if it is done; ``None`` if not (or if its receipt is unreadable:
        the chunk is then done again, as a resume would)."""
        try:
            return self._read_if_there(layout.receipt_key(self.batch_id, chunk_id), ChunkResult)
        except msgspec.MsgspecError:
            return None

    def done(self) -> dict[str, ChunkResult]:
        """Receipts of the chunks that are done, by chunk id."""
        results = self._read_all(layout.receipt_prefix(self.batch_id), ChunkResult)
        return {r.chunk_id: r for r in results}

    def intact(self, done: dict[str, ChunkResult]) -> dict[str, ChunkResult]:
        """The receipts whose parts are still there at the size their chunk wrote them (one
        listing of each folder of parts, not a request a part)."""
        folders = {part.key.rpartition("/")[0] + "/" for r in done.values() for part in r.parts}
        sizes: dict[str, int] = {}
        for folder in sorted(folders):
            sizes.update(self.storage.list_sizes(folder))
        return {
            chunk_id: result
            for chunk_id, result in done.items()
            if all(sizes.get(part.key) == part.size for part in result.parts)
        }

    def rebuild(self, broken: dict[str, ChunkResult]) -> None:
        """Forget the receipts of chunks whose parts were damaged, so that they are done again;
        first note what each delivered (:meth:`rebuilding`), so that a rebuild never sends its
        records again, nor makes a finished batch unfinished, whatever crash comes between.
        Chunks are forgotten many at a time (a deleted folder of parts breaks them all), each one's
        note written before its receipt goes."""

        def forget(chunk_id: str) -> None:
            note = Rebuild(chunk_id=chunk_id, delivered=broken[chunk_id].delivered)
            self.storage.put_bytes(layout.rebuild_key(self.batch_id, chunk_id), _encode(note))
            self.storage.delete(layout.receipt_key(self.batch_id, chunk_id))

        concurrently(self.storage, forget, sorted(broken))

    def rebuilding(self) -> dict[str, int]:
        """The chunks ever rebuilt (done once, their parts found damaged since), with how many
        messages they delivered when first done."""
        notes = self._read_all(layout.rebuild_prefix(self.batch_id), Rebuild)
        return {note.chunk_id: note.delivered for note in notes}

    def damaged(self, done: dict[str, ChunkResult]) -> dict[str, str]:
        """What is wrong with the parts of done chunks, by chunk id, every part read whole and
        its checksum compared with its receipt's (``status --verify``)."""
        found = {}
        for chunk_id, result in done.items():
            problems = [p for p in map(self._part_problem, result.parts) if p is not None]
            if problems:
                found[chunk_id] = "; ".join(problems)
        return found

    def _part_problem(self, part: PartCheck) -> str | None:
        try:
            size = self.storage.stat(part.key).size
        except ObjectNotFoundError:
            return f"{part.key} is missing"
        if size != part.size:
            return f"{part.key} holds {size:,} bytes, written with {part.size:,}"
        crc32, checksum = 0, crc32_function()
        for block in self.storage.iter_range(part.key, 0, size, _VERIFY_BLOCK):
            crc32 = checksum(block, crc32)
        return None if crc32 == part.crc32 else f"{part.key} changed since it was written"

    def failures(self) -> dict[str, ChunkFailure]:
        """Chunks whose last session gave up on them (a later success supersedes the record),
        each with a message a person can read."""
        failures = self._read_all(layout.failure_prefix(self.batch_id), ChunkFailure)
        return {f.chunk_id: readable(f) for f in failures}

    def record_failure(self, failure: ChunkFailure) -> None:
        self.storage.put_bytes(
            layout.failure_key(self.batch_id, failure.chunk_id), _encode(failure)
        )

    def forget_failures_of_done_chunks(self, done: Iterable[str]) -> None:
        """Drop failure records that a later success made stale."""
        stale = sorted(set(self.failures()) & set(done))
        keys = [layout.failure_key(self.batch_id, chunk_id) for chunk_id in stale]
        concurrently(self.storage, self.storage.delete, keys)

    # ---- the outcome --------------------------------------------------------------------------
    def summary(self) -> RunSummary | None:
        """The aggregated results, if the batch was aggregated."""
        return self._read_if_there(layout.aggregated_key(self.batch_id), RunSummary)

    def validation(self) -> ValidationReport | None:
        return self._read_if_there(layout.validation_key(self.batch_id), ValidationReport)

    def _recorded(self, value: T | None, key: str) -> T:
        if value is None:
            raise ObjectNotFoundError(
                f"batch {self.batch_id!r} has no {key} in {self.storage.uri}: it was not "
                "aggregated, or the object was deleted"
            )
        return value

    def stored_summary(self) -> RunSummary:
        """The aggregated results, or ``ObjectNotFoundError``."""
        return self._recorded(self.summary(), layout.aggregated_key(self.batch_id))

    def stored_validation(self) -> ValidationReport:
        """The validation report, or ``ObjectNotFoundError``."""
        return self._recorded(self.validation(), layout.validation_key(self.batch_id))

    def record_validation(self, report: ValidationReport) -> None:
        self.storage.put_bytes(layout.validation_key(self.batch_id), _encode(report))

    def record_summary(self, summary: RunSummary) -> str:
        """Store the aggregated results; return their key."""
        key = layout.aggregated_key(self.batch_id)
        self.storage.put_bytes(key, _encode(summary))
        return key

    def notified(self) -> NotificationRecord | None:
        return self._read_if_there(layout.notified_key(self.batch_id), NotificationRecord)

    def record_notified(self, record: NotificationRecord) -> None:
        self.storage.put_bytes(layout.notified_key(self.batch_id), _encode(record))

    def finished(self, plan: ChunkPlan, done: dict[str, ChunkResult] | None = None) -> bool:
        """Every chunk done and the batch's messages sent: nothing left to send, ever. A chunk
        being rebuilt (:meth:`rebuild`) counts as done: its records went out. The receipts
        (``done``, read here when not given) matter only once the marker is there."""
        if self.notified() is None:
            return False
        done = self.done() if done is None else done
        rebuilding = self.rebuilding()
        return all(c.chunk_id in done or c.chunk_id in rebuilding for c in plan.chunks)

    def reopen(self) -> None:
        """Withdraw the batch's recorded outcome (aggregate, verdict, notified marker) before a
        session that will change it, so a crash in between cannot leave a stale one in place."""
        self.storage.delete(layout.notified_key(self.batch_id))
        self.storage.delete(layout.aggregated_key(self.batch_id))
        self.storage.delete(layout.validation_key(self.batch_id))

    # ---- housekeeping -------------------------------------------------------------------------
    def discard_incomplete(self) -> int:
        """Remove what interrupted writes of this batch left behind."""
        return sum(
            self.storage.discard_incomplete(prefix)
            for prefix in layout.batch_prefixes(self.batch_id)
        )

    def clear(self) -> None:
        """Remove everything of the batch (``--overwrite``): it starts afresh. Every prefix is
        checked first, so the batch is deleted whole or not at all."""
        prefixes = layout.batch_prefixes(self.batch_id)
        for prefix in prefixes:
            self.storage.check_deletable(prefix)
        for prefix in prefixes:
            self.storage.delete_prefix(prefix)
        self._plan.clear()


# ---- failures recorded by the state machine ------------------------------------------------------
# When a chunk's task fails for good on AWS, its Catch hands the error to ``RecordChunkFailure``,
# which writes a ChunkFailure with nothing but what the States Language can express: the error
# name, and the whole error object (``Error`` and ``Cause``) as a JSON string in ``message``. The
# cause is itself JSON for a Lambda error (``errorMessage``, ``errorType``, ``stackTrace``) and for
# a Batch job (the job's description). Reading it, the ledger keeps the one line a person needs.
def _batch_reason(job: dict[str, Any]) -> str | None:
    reason = job.get("StatusReason") or job.get("statusReason")
    if not isinstance(reason, str):
        return None
    container = job.get("Container") or job.get("container") or {}
    code = (
        container.get("ExitCode", container.get("exitCode"))
        if isinstance(container, dict)
        else None
    )
    return reason if code is None else f"{reason} (exit code {code})"


def _cause_text(cause: object) -> str:
    if not isinstance(cause, str) or not cause.strip():
        return "no cause given"
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict):
        message = parsed.get("errorMessage")
        if isinstance(message, str):
            return message  # a Lambda error; its stack trace stays in the function's log
        reason = _batch_reason(parsed)
        if reason is not None:
            return reason
    return cause


def readable(failure: ChunkFailure) -> ChunkFailure:
    """``failure`` with its message reduced to the cause's own words, when the state machine
    recorded it; a failure recorded otherwise is returned as it is."""
    try:
        error = json.loads(failure.message)
    except ValueError:
        return failure
    if not isinstance(error, dict) or "Error" not in error:
        return failure
    message = _cause_text(error.get("Cause"))
    if len(message) > MAX_FAILURE_MESSAGE:
        message = message[: MAX_FAILURE_MESSAGE - 1] + "…"
    return msgspec.structs.replace(failure, message=message)
