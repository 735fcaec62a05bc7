"""What the Lambda functions take from the state machine's state and hand back to it, typed.

Every function's event and answer is one of these structs; the state machine definition derives
its ``ResultSelector`` from the same types (:func:`selector`), so a field a function stops
answering is a field the definition stops selecting, and a test of the definition sees it.

The state carries small values only (ids, keys, counts); the plan and every result stay in the
bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from scm_batch import layout
from scm_batch.errors import ConfigError
from scm_batch.model import (
    CamelStruct,
    ChunkTask,
    DeliveryTarget,
    JobInput,
    Route,
    SourceInfo,
    StatusMessage,
    StatusWord,
)
from scm_batch.stages.notify import failure_name

if TYPE_CHECKING:  # the lifecycle's answers, described here; importing it would load it all
    from scm_batch.lifecycle import Aggregated, PlannedBatch
    from scm_batch.stages.process import ChunkRun

P = TypeVar("P", bound="Payload")


class Payload(CamelStruct, frozen=True):
    """A value in the state machine's state (or in a function's event)."""


# ---- what the functions answer -------------------------------------------------------------------
class Initialized(Payload, frozen=True):
    """InitializeBatchProcessing (read-s3): the checked input, and what the input object looks
    like (``None`` for a batch that has a plan: nothing was looked at)."""

    job: JobInput
    source: SourceInfo | None


class Validated(Payload, frozen=True):
    """ValidateBatchConfig (validate-data): the batch can run; where its records go."""

    job: JobInput
    source: SourceInfo | None
    delivery: DeliveryTarget


class PlanDescription(Payload, frozen=True, omit_defaults=True):
    """The plan, as the state machine needs it: where its chunk items are, and how far the batch
    had come when it was taken up (``items`` only for an inline Map)."""

    bucket: str  # the bucket's name, as S3 calls and the Map's ItemReader take it
    batch_id: str
    plan_key: str
    items_key: str
    chunk_count: int
    chunk_size: int
    total_records: int
    records_exact: bool
    routes: dict[Route, int]
    resumed: bool
    chunks_done_before: int
    records_done_before: int
    already_notified: bool
    # A finished batch's chunks whose parts were found damaged: the Map runs to rebuild them
    # (sending nothing), and the recorded outcome then stands.
    chunks_to_rebuild: int = 0
    items: list[ChunkTask] | None = None

    @classmethod
    def of(cls, planned: PlannedBatch, bucket: str, *, inline: bool) -> PlanDescription:
        """How CalculateChunks describes the batch it planned (or took up) in ``bucket``."""
        plan = planned.plan
        routes: dict[Route, int] = {"lambda": 0, "batch": 0}
        for chunk in plan.chunks:
            routes[chunk.route] += 1
        return cls(
            bucket=bucket.removeprefix("s3://"),
            batch_id=plan.batch_id,
            plan_key=layout.plan_key(plan.batch_id),
            items_key=layout.chunk_items_key(plan.batch_id),
            chunk_count=plan.chunk_count,
            chunk_size=plan.chunk_size,
            total_records=plan.total_records,
            records_exact=plan.records_exact,
            routes=routes,
            resumed=planned.resumed,
            chunks_done_before=len(planned.done_before),
            records_done_before=planned.records_before,
            already_notified=planned.finished,
            chunks_to_rebuild=len(planned.todo) if planned.finished else 0,
            items=plan.chunks if inline else None,
        )


class Planned(Payload, frozen=True):
    """CalculateChunks (calculate-chunks): the batch as planned."""

    job: JobInput
    delivery: DeliveryTarget | None
    plan: PlanDescription


class ChunkDone(Payload, frozen=True):
    """ProcessWithLambda (update-records): one chunk's counts, as its receipt has them."""

    chunk_id: str
    status: StatusWord
    records: int
    valid_records: int
    delivered: int
    duration_seconds: float
    done_before: bool = False  # an earlier attempt had committed the chunk

    @classmethod
    def of(cls, ran: ChunkRun) -> ChunkDone:
        done = msgspec.convert(ran.result, cls, from_attributes=True)
        return msgspec.structs.replace(done, done_before=ran.done_before)


class FailureName(Payload, frozen=True):
    """The error and cause a failed batch fails its execution with."""

    error: str
    cause: str


class Outcome(Payload, frozen=True):
    """AggregateResults (aggregate-results): the batch's outcome, and the status message
    ``SendToSQS`` / ``ReportFailure`` sends."""

    batch_id: str
    status: StatusWord
    validation_status: StatusWord
    failed: bool
    failure: FailureName | None
    summary_key: str
    chunks_failed: int
    total_records_processed: int
    status_message: StatusMessage
    already_notified: bool

    @classmethod
    def of(cls, aggregated: Aggregated, status: StatusMessage) -> Outcome:
        """How AggregateResults describes the batch's outcome, with its status message."""
        summary, reason = aggregated.summary, aggregated.failure
        failure = None if reason is None else FailureName(error=failure_name(summary), cause=reason)
        return cls(
            batch_id=summary.batch_id,
            status=summary.status,
            validation_status=summary.validation_status,
            failed=reason is not None,
            failure=failure,
            summary_key=layout.aggregated_key(summary.batch_id),
            chunks_failed=summary.chunks_failed,
            total_records_processed=summary.summary.total_records_processed,
            status_message=status,
            already_notified=aggregated.recorded_before,
        )


class CompletionSent(Payload, frozen=True):
    """SendToKafka / SendToSqsCore: where the completion message went."""

    channel: str | None
    location: str | None


# ---- what the functions are given ---------------------------------------------------------------
class ValidateRequest(Payload, frozen=True):
    batch: Initialized
    execution_id: str | None = None  # the execution, which takes the batch's lease


class PlanRequest(Payload, frozen=True):
    batch: Validated
    max_inline_chunks: int | None = None  # set by an inline Map's definition
    execution_id: str | None = None  # whose planning job's outcome to look for


class ChunkRequest(Payload, frozen=True):
    chunk: ChunkTask
    attempt: int = 0  # the state's retry count


class AggregateRequest(Payload, frozen=True):
    batch: Planned
    started_at: str | None = None  # the execution's start


class CompletionRequest(Payload, frozen=True):
    batch: Planned
    outcome: Outcome


# ---- reading and writing them -------------------------------------------------------------------
def decode(event: object, kind: type[P], where: str = "event") -> P:
    """``event`` as ``kind``. Payloads inside are read part by part and contract values whole, so
    a problem is a ``ConfigError`` naming the part: ``event.batch.job: is missing``."""
    if not isinstance(event, Mapping):
        raise ConfigError(where, f"must be a JSON object (got {type(event).__name__})")
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(kind):
        path = f"{where}.{field.encode_name}"
        if field.encode_name not in event:
            if field.required:
                raise ConfigError(path, "is missing")
            continue
        value = event[field.encode_name]
        if isinstance(field.type, type) and issubclass(field.type, Payload):
            values[field.name] = decode(value, field.type, path)
            continue
        try:
            values[field.name] = msgspec.convert(value, field.type)
        except msgspec.ValidationError as exc:
            raise ConfigError(path, str(exc)) from None
    return kind(**values)


def encode(payload: Payload) -> dict[str, Any]:
    """A payload as the JSON object a function answers."""
    answer: dict[str, Any] = msgspec.to_builtins(payload)
    return answer


def selector(kind: type[Payload], *names: str) -> dict[str, str]:
    """The fields of ``kind`` a state keeps of a function's answer (all by default), by their
    JSON names, for its ``ResultSelector``; a name ``kind`` does not have is an error."""
    known = [f.encode_name for f in msgspec.structs.fields(kind)]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{kind.__name__} has no field {', '.join(unknown)}")
    return {name: name for name in (names or known)}
