"""Planning on AWS Batch: for an input that must be read whole to be planned and is too big for
the CalculateChunks function's time (a large compressed file to stage, a large JSON array to
scan).

CalculateChunks leaves the request in the bucket and raises :class:`PlanOnBatchError`; the state
machine catches it and runs the chunk job definition with the command ``scm-batch aws plan-input``
(:data:`PLAN_COMMAND`), which plans the batch (staging it) and stores the plan; then CalculateChunks
runs again and answers from the stored plan. A planning job that fails for good records why
(class name and message) and ends normally, so that CalculateChunks fails the execution with that
error, as it would have failed itself; a job that Batch reports failed (killed, out of memory, its
attempts used up) fails the execution in ``PlanOnBatch`` (``States.TaskFailed``, the job's
description as the cause); one that ends without a plan or a record fails it with
:class:`PlanningFailedError` rather than planning again and again. (An execution redriven by Step
Functions keeps its id, so it too ends with :class:`PlanningFailedError`: start a new execution.)
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from scm_batch import layout, lifecycle
from scm_batch.aws.payloads import Validated
from scm_batch.errors import (
    PlanningFailedError,
    PlanOnBatchError,
    ScmBatchError,
    recorded_error,
)
from scm_batch.ledger import Ledger
from scm_batch.model import CamelStruct
from scm_batch.retry import is_transient
from scm_batch.settings import aws_settings

PLAN_COMMAND = ("scm-batch", "aws", "plan-input", "--bucket", "{}", "--batch-id", "{}")


class PlanRequestRecord(CamelStruct, frozen=True):
    execution_id: str | None
    batch: Validated


class PlanFailureRecord(CamelStruct, frozen=True):
    execution_id: str | None
    error_type: str
    message: str


def _read(ledger: Ledger, key: str, kind: type[msgspec.Struct]) -> object | None:
    if not ledger.storage.exists(key):
        return None
    return msgspec.json.decode(ledger.storage.get_bytes(key), type=kind)


def defer_to_batch(ledger: Ledger, batch: Validated, execution_id: str | None) -> None:
    """Raise :class:`PlanOnBatchError` after leaving the request for the job; or, if this
    execution deferred before, the error its job recorded (or that it recorded none)."""
    request_key = layout.plan_request_key(ledger.batch_id)
    before = _read(ledger, request_key, PlanRequestRecord)
    if isinstance(before, PlanRequestRecord) and before.execution_id == execution_id:
        failure = _read(ledger, layout.plan_failure_key(ledger.batch_id), PlanFailureRecord)
        if isinstance(failure, PlanFailureRecord) and failure.execution_id == execution_id:
            raise recorded_error(failure.error_type, failure.message)
        raise PlanningFailedError(
            f"the AWS Batch job planning batch {ledger.batch_id!r} ended without a plan "
            "(see its log); starting the execution again plans it again"
        )
    ledger.storage.delete(layout.plan_failure_key(ledger.batch_id))
    record = PlanRequestRecord(execution_id=execution_id, batch=batch)
    ledger.storage.put_bytes(request_key, msgspec.json.encode(record))
    raise PlanOnBatchError(
        f"{ledger.storage.uri_for(batch.job.file)} is read whole to be planned and is larger "
        "than the CalculateChunks function reads in its time: an AWS Batch job plans it"
    )


def plan_input(bucket: str, batch_id: str, *, env: Mapping[str, str]) -> int:
    """The planning job: plan the batch as CalculateChunks asked; return the number of chunks.
    A failure for good is recorded for CalculateChunks and re-raised; a transient one is only
    re-raised (the job definition retries it)."""
    settings = aws_settings(env)
    ledger = lifecycle.open_ledger(bucket, batch_id, settings.run)
    request = _read(ledger, layout.plan_request_key(batch_id), PlanRequestRecord)
    if not isinstance(request, PlanRequestRecord):
        raise PlanningFailedError(f"batch {batch_id!r} has no plan request in {ledger.storage.uri}")
    batch = request.batch
    try:
        planned = lifecycle.plan(batch.job, batch.source, batch.delivery, ledger, settings.run)
    except ScmBatchError as exc:
        if not is_transient(exc):
            failure = PlanFailureRecord(
                execution_id=request.execution_id,
                error_type=type(exc).__name__,
                message=exc.message,
            )
            ledger.storage.put_bytes(
                layout.plan_failure_key(batch_id), msgspec.json.encode(failure)
            )
        raise
    return planned.plan.chunk_count
