"""The Lambda functions of the AWS deployment: thin adapters from a state's input to the stages.

One handler per contract function name (``deploy/terraform`` wires ``scm_batch.aws.handlers.X``
to ``scm-batch-processor-X``):

==============================  ===========================  ===================================
function                        state                        does
==============================  ===========================  ===================================
``read-s3``                     InitializeBatchProcessing    input (or manifest event) checked,
                                                             input object found and sampled
``validate-data``               ValidateBatchConfig          no conflicting plan; brokers and
                                                             queues answer
``calculate-chunks``            CalculateChunks              plan + chunk items written (or the
                                                             stored plan reused: a resume)
``update-records``              ProcessWithLambda            one chunk, as a local worker does
``aggregate-results``           AggregateResults             summary, verdict, status message
``send-to-kafka``               SendToKafka                  completion message to Kafka
``send-to-sqs-core``            SendToSqsCore                completion message to SQS Core
==============================  ===========================  ===================================

The state carries small values only (ids, keys, counts); the plan and every result stay in the
bucket. A handler that cannot do its job *raises*: the error's class name is what the state
machine's Retry and Catch match (``scm_batch.retry.transient_error_names`` lists the retried
ones), never a success-shaped answer with an error inside.

Clients (S3, Kafka, SQS) are made per invocation and closed after it: a chunk runs for minutes
and a client costs a tenth of a second, and nothing then lingers between invocations.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from scm_batch import layout
from scm_batch.aws.chunks import run_chunk
from scm_batch.aws.failures import explain
from scm_batch.aws.settings import DEFAULT_NAMESPACE, AwsSettings, settings_from_env
from scm_batch.aws.telemetry import Metric, Telemetry
from scm_batch.config import (
    is_object_created_event,
    load_manifest,
    manifest_ref_of_event,
    parse_job_input,
)
from scm_batch.errors import (
    ConfigError,
    OutputFormatChangedError,
    PlanTooLargeError,
    ScmBatchError,
)
from scm_batch.ledger import Ledger
from scm_batch.model import (
    DEFAULT_OUTPUT_FORMAT,
    ChunkPlan,
    ChunkTask,
    DeliveryTarget,
    JobInput,
    RunSummary,
    SourceInfo,
    StatusWord,
)
from scm_batch.retry import is_transient
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.sinks.routing import DeliveringNotifier, delivery_target
from scm_batch.sinks.routing import preflight as delivery_preflight
from scm_batch.stages import aggregate as aggregation
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.notify import (
    KAFKA_CHANNEL,
    SQS_CORE_CHANNEL,
    STATUS_CHANNEL,
    batch_status_message,
    completion_message,
    failure_reason,
)
from scm_batch.stages.plan import calculate_chunks as plan_chunks
from scm_batch.stages.plan import encode_chunk_items, write_plan
from scm_batch.stages.reuse import (
    check_delivery_unchanged,
    check_input_unchanged,
    check_same_batch,
)
from scm_batch.stages.validate_config import validate_batch_config
from scm_batch.storage import Storage, open_storage

Event = dict[str, Any]
Handler = Callable[[Event, object], Event]
Stage = Callable[[Event, AwsSettings, Telemetry], Event]
T = TypeVar("T")

_encode = msgspec.to_builtins
RESUME_HINT = "give the batch another id, or delete its objects to start it afresh"


def _stage(name: str) -> Callable[[Stage], Handler]:
    """Make a Lambda handler of a stage: settings from the environment, one log line on failure
    (the error's name and, for the project's own errors, its message: never record contents)."""

    def wrap(stage: Stage) -> Handler:
        @functools.wraps(stage)
        def handler(event: Event, context: object = None) -> Event:
            telemetry = Telemetry(name, DEFAULT_NAMESPACE)
            try:
                settings = settings_from_env(os.environ)
                telemetry = Telemetry(name, settings.metrics_namespace)
                return stage(_require_object(event), settings, telemetry)
            except Exception as exc:
                details: dict[str, object] = {"error": type(exc).__name__}
                if isinstance(exc, ScmBatchError):
                    details["message"] = exc.message
                details["transient"] = is_transient(exc)
                telemetry.log("failed", **details)
                raise

        return handler

    return wrap


def _require_object(event: object) -> Event:
    if not isinstance(event, dict):
        raise ConfigError("event", f"must be a JSON object (got {type(event).__name__})")
    return event


def _part(event: Mapping[str, Any], path: str, kind: type[T]) -> T:
    """``event[a][b]…`` as ``kind``; a missing or malformed part is a ``ConfigError`` naming it."""
    value: Any = event
    for name in path.split("."):
        if not isinstance(value, Mapping) or name not in value:
            raise ConfigError(f"event.{path}", "is missing")
        value = value[name]
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"event.{path}", str(exc)) from None


def _storage(job: JobInput, settings: AwsSettings) -> Storage:
    return open_storage(job.bucket, settings.run.storage)


# ---- InitializeBatchProcessing ----------------------------------------------------------------
@_stage("InitializeBatchProcessing")
def read_s3(event: Event, settings: AwsSettings, telemetry: Telemetry) -> Event:
    """The execution input (or an S3 Object Created event naming a manifest) in; the checked
    input and what the input object looks like out."""
    if is_object_created_event(event):
        ref = manifest_ref_of_event(event, source="event", where="the execution input")
        fields = load_manifest(ref, settings.run.storage)
    else:
        fields = dict(event)
    job = parse_job_input({**settings.input_defaults(), **fields})
    # The ids become object keys: they are checked before anything touches the bucket.
    job = validate_batch_config(job, settings.run)
    source = initialize_batch(
        job, _storage(job, settings), sample_bytes=settings.run.plan.sample_bytes
    )
    telemetry.log("initialized", batchId=job.batch_id, key=source.key, size=source.size)
    return {"job": _encode(job), "source": _encode(source)}


# ---- ValidateBatchConfig ----------------------------------------------------------------------
@_stage("ValidateBatchConfig")
def validate_data(event: Event, settings: AwsSettings, telemetry: Telemetry) -> Event:
    """The batch can run as asked: no plan of other input under its id, and every broker and
    queue it will deliver to answers."""
    job = validate_batch_config(_part(event, "batch.job", JobInput), settings.run)
    source = _part(event, "batch.source", SourceInfo)
    storage = _storage(job, settings)
    ledger = Ledger(storage, job.batch_id)
    planned = ledger.load_plan()
    if planned is not None:
        check_same_batch(planned, job, storage, RESUME_HINT)
    target = delivery_target(job.destination or "none", settings.run.delivery)
    # A batch done and notified before sends nothing: its channels need not answer (as locally).
    if planned is None or not _already_notified(ledger, planned):
        _check_completion_channel(job, settings)
        delivery_preflight(target.destination, job.deployment, settings.run.delivery)
    telemetry.log(
        "validated", batchId=job.batch_id, destination=target.destination, resumed=bool(planned)
    )
    return {"job": _encode(job), "source": _encode(source), "delivery": _encode(target)}


def _check_completion_channel(job: JobInput, settings: AwsSettings) -> None:
    """The completion message has somewhere to go besides the bucket's outbox (or the deployment
    says the outbox is enough): a batch is not run to tell nobody it finished."""
    if settings.completion_outbox_only:
        return
    delivery = settings.run.delivery
    if job.deployment == "CORE" and not delivery.sqs.core_queue_url:
        raise ConfigError(
            "SQS_CORE_QUEUE",
            "is not set, and a CORE deployment's completion message goes there "
            "(set SCM_BATCH_COMPLETION_OUTBOX_ONLY=true to keep it in the bucket only)",
        )
    if job.deployment != "CORE" and not delivery.kafka.configured:
        raise ConfigError(
            "KAFKA_BROKERS",
            f"is not set, and a {job.deployment} deployment's completion message goes to Kafka "
            "(set SCM_BATCH_COMPLETION_OUTBOX_ONLY=true to keep it in the bucket only)",
        )


def _already_notified(
    ledger: Ledger, plan: ChunkPlan, done: Mapping[str, object] | None = None
) -> bool:
    """Every chunk done and the batch's messages sent: what a local run answers from its store."""
    done = ledger.done() if done is None else done
    return len(done) == plan.chunk_count and ledger.notified() is not None


# ---- CalculateChunks --------------------------------------------------------------------------
def _reuse(plan: ChunkPlan, job: JobInput, storage: Storage, settings: AwsSettings) -> None:
    check_same_batch(plan, job, storage, RESUME_HINT)
    check_input_unchanged(plan, storage)
    check_delivery_unchanged(plan, settings.run)
    _check_json_lines(plan)


def _check_json_lines(plan: ChunkPlan) -> None:
    """The deployment writes JSON Lines only (its Lambda package and job image have no pyarrow):
    a batch planned with another result format (by a local run) is refused before any chunk."""
    if plan.output_format != DEFAULT_OUTPUT_FORMAT:
        raise OutputFormatChangedError(
            f"batch {plan.batch_id!r} was planned to write {plan.output_format} result parts, "
            f"and the AWS deployment writes {DEFAULT_OUTPUT_FORMAT} only: finish it with "
            "'scm-batch resume' where pyarrow is installed, or give the batch another id"
        )


@_stage("CalculateChunks")
def calculate_chunks(event: Event, settings: AwsSettings, telemetry: Telemetry) -> Event:
    """The plan, stored with its chunk items; a batch planned before (an execution started again)
    keeps its plan, so its finished chunks stay finished.

    ``maxInlineChunks`` in the event means the state machine passes the items through its state
    (an inline Map): they are returned too, and a plan with more chunks is refused."""
    job = validate_batch_config(_part(event, "batch.job", JobInput), settings.run)
    source = _part(event, "batch.source", SourceInfo)
    target = _part(event, "batch.delivery", DeliveryTarget)
    storage = _storage(job, settings)
    ledger = Ledger(storage, job.batch_id)
    plan = ledger.load_plan()
    resumed = plan is not None
    if plan is not None:
        _reuse(plan, job, storage, settings)
        ledger.discard_incomplete()  # uploads that killed attempts left open
    else:
        plan = plan_chunks(job, source, storage, settings.run.plan)
        plan = msgspec.structs.replace(plan, delivery=target)
    inline_limit = event.get("maxInlineChunks")
    if isinstance(inline_limit, int) and plan.chunk_count > inline_limit:
        raise PlanTooLargeError(
            f"batch {plan.batch_id!r} has {plan.chunk_count} chunks; this state machine passes at "
            f"most {inline_limit} through its state: deploy the definition with a distributed Map "
            "(scm-batch aws definition --map distributed), or raise maxChunkSize"
        )
    items_key = layout.chunk_items_key(plan.batch_id)
    if not resumed:
        # The items first: a plan is only ever stored with its items beside it.
        storage.put_bytes(items_key, encode_chunk_items(plan))
        write_plan(plan, storage)
    elif not storage.exists(items_key):  # planned by a local run, which writes no items
        storage.put_bytes(items_key, encode_chunk_items(plan))
    done = ledger.done() if resumed else {}
    # Done and notified before: nothing is rerun or sent again. Otherwise the recorded outcome
    # is withdrawn first, as a local resume does, so a crash cannot leave a stale one standing.
    already_notified = resumed and _already_notified(ledger, plan, done)
    if resumed and not already_notified:
        ledger.reopen()
    routes = {"lambda": 0, "batch": 0}
    for chunk in plan.chunks:
        routes[chunk.route] += 1
    telemetry.log(
        "planned",
        batchId=plan.batch_id,
        chunks=plan.chunk_count,
        chunkSize=plan.chunk_size,
        routes=routes,
        resumed=resumed,
        chunksDone=len(done),
    )
    described: Event = {
        "bucket": storage.uri.removeprefix("s3://"),
        "batchId": plan.batch_id,
        "planKey": layout.plan_key(plan.batch_id),
        "itemsKey": items_key,
        "chunkCount": plan.chunk_count,
        "chunkSize": plan.chunk_size,
        "totalRecords": plan.total_records,
        "recordsExact": plan.records_exact,
        "routes": routes,
        "resumed": resumed,
        "chunksDoneBefore": len(done),
        "recordsDoneBefore": sum(r.records for r in done.values()),
        "alreadyNotified": already_notified,
    }
    if isinstance(inline_limit, int):
        described["items"] = _encode(plan.chunks)
    return {"job": _encode(plan.job), "delivery": _encode(plan.delivery), "plan": described}


# ---- ProcessWithLambda ------------------------------------------------------------------------
@_stage("ProcessWithLambda")
def update_records(event: Event, settings: AwsSettings, telemetry: Telemetry) -> Event:
    """One chunk item in (with ``attempt``, the state's retry count); its counts out."""
    task = _part(event, "chunk", ChunkTask)
    retries = event.get("attempt", 0)
    attempt = retries + 1 if isinstance(retries, int) and retries >= 0 else 1
    result, earlier = run_chunk(task, settings, attempt=attempt, telemetry=telemetry)
    return {
        "chunkId": result.chunk_id,
        "status": result.status.value,
        "records": result.records,
        "validRecords": result.valid_records,
        "delivered": result.delivered,
        "durationSeconds": result.duration_seconds,
        "doneBefore": earlier,
    }


# ---- AggregateResults -------------------------------------------------------------------------
def _started_at(event: Event) -> datetime:
    raw = event.get("startedAt")
    if isinstance(raw, str):
        try:
            started = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return started if started.tzinfo else started.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _failure_name(summary: RunSummary) -> str:
    """The execution's error name for a failed batch, following :func:`failure_reason`."""
    if summary.status == StatusWord.CHUNK_FAILED:
        return "ChunksFailed"
    return "ValidationFailedCritical"


@_stage("AggregateResults")
def aggregate_results(event: Event, settings: AwsSettings, telemetry: Telemetry) -> Event:
    """Every chunk's manifest and recorded failure in; the aggregated results and validation
    report written; the outcome, with the status message ``SendToSQS`` / ``ReportFailure``
    sends, out."""
    job = _part(event, "batch.job", JobInput)
    storage = _storage(job, settings)
    ledger = Ledger(storage, job.batch_id)
    plan = ledger.load_plan()
    if plan is None:
        raise ConfigError("batchId", f"batch {job.batch_id!r} has no plan in {storage.uri}")
    described = event.get("batch", {}).get("plan", {})
    if isinstance(described, dict) and described.get("alreadyNotified") is True:
        return _stored_outcome(plan, storage)
    done = ledger.done()
    ledger.forget_failures_of_done_chunks(done)
    failures = [explain(f) for f in ledger.failures().values()]
    done_before = described.get("chunksDoneBefore", 0) if isinstance(described, dict) else 0
    records_before = described.get("recordsDoneBefore", 0) if isinstance(described, dict) else 0
    started = _started_at(event)
    finished = datetime.now(UTC)
    summary, report = aggregation.aggregate_results(
        plan,
        done.values(),
        failures,
        storage=storage,
        started_at=started,
        finished_at=finished,
        elapsed_seconds=(finished - started).total_seconds(),
        tolerance=settings.run.tolerance,
        chunks_resumed=done_before,
        session_records=sum(r.records for r in done.values()) - records_before,
    )
    summary_key = aggregation.write_aggregate(summary, report, storage)
    status = batch_status_message(summary)
    OutboxNotifier(storage, plan.batch_id).send(STATUS_CHANNEL, status)
    telemetry.metrics(
        [
            Metric("BatchRecords", summary.summary.total_records_processed),
            Metric("BatchErrors", summary.summary.total_errors),
            Metric("ChunksFailed", summary.chunks_failed + summary.chunks_not_processed),
            Metric("BatchDuration", summary.summary.processing_time, "Seconds"),
        ],
        batchId=plan.batch_id,
        status=summary.status.value,
        validationStatus=summary.validation_status.value,
    )
    return _outcome(summary, summary_key, status, already_notified=False)


def _outcome(
    summary: RunSummary, summary_key: str, status: Event, *, already_notified: bool
) -> Event:
    reason = failure_reason(summary)
    return {
        "batchId": summary.batch_id,
        "status": summary.status.value,
        "validationStatus": summary.validation_status.value,
        "failed": reason is not None,
        "failure": None if reason is None else {"error": _failure_name(summary), "cause": reason},
        "summaryKey": summary_key,
        "chunksFailed": summary.chunks_failed,
        "totalRecordsProcessed": summary.summary.total_records_processed,
        "statusMessage": status,
        "alreadyNotified": already_notified,
    }


def _stored_outcome(plan: ChunkPlan, storage: Storage) -> Event:
    """The outcome of a batch that was aggregated and notified before, unchanged."""
    key = layout.aggregated_key(plan.batch_id)
    summary = msgspec.json.decode(storage.get_bytes(key), type=RunSummary)
    return _outcome(summary, key, batch_status_message(summary), already_notified=True)


# ---- SendToKafka / SendToSqsCore --------------------------------------------------------------
def _send_completion(
    event: Event, settings: AwsSettings, telemetry: Telemetry, channel: str
) -> Event:
    job = _part(event, "batch.job", JobInput)
    storage = _storage(job, settings)
    summary = msgspec.json.decode(
        storage.get_bytes(layout.aggregated_key(job.batch_id)), type=RunSummary
    )
    message = completion_message(summary, job.bucket)  # as the local run names it
    notifier = DeliveringNotifier(
        OutboxNotifier(storage, job.batch_id), settings.run.delivery, job.batch_id
    )
    location = notifier.send(channel, message)
    telemetry.log("completion-sent", batchId=job.batch_id, channel=channel, location=location)
    return {"channel": channel, "location": location}


@_stage("SendToKafka")
def send_to_kafka(event: Event, settings: AwsSettings, telemetry: Telemetry) -> Event:
    """``BATCH_COMPLETION_NOTIFICATION`` to the Kafka notification topic (a copy stays in the
    bucket's outbox; with no broker configured, only the copy is made)."""
    return _send_completion(event, settings, telemetry, KAFKA_CHANNEL)


@_stage("SendToSqsCore")
def send_to_sqs_core(event: Event, settings: AwsSettings, telemetry: Telemetry) -> Event:
    """``BATCH_COMPLETION_NOTIFICATION`` to the SQS Core queue (a copy stays in the outbox)."""
    return _send_completion(event, settings, telemetry, SQS_CORE_CHANNEL)


# The contract's function names, in workflow order, with their handlers.
FUNCTIONS: dict[str, Handler] = {
    "scm-batch-processor-read-s3": read_s3,
    "scm-batch-processor-validate-data": validate_data,
    "scm-batch-processor-calculate-chunks": calculate_chunks,
    "scm-batch-processor-update-records": update_records,
    "scm-batch-processor-aggregate-results": aggregate_results,
    "scm-batch-processor-send-to-kafka": send_to_kafka,
    "scm-batch-processor-send-to-sqs-core": send_to_sqs_core,
}
