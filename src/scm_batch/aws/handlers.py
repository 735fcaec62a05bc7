"""The Lambda functions of the AWS deployment: each runs one step of the batch lifecycle.

One handler per contract function name (``deploy/terraform`` wires ``scm_batch.aws.handlers.X``
to ``scm-batch-processor-X``); the state machine runs them in the lifecycle's order:

==============================  ===========================  ===================================
function                        state                        lifecycle step
==============================  ===========================  ===================================
``read-s3``                     InitializeBatchProcessing    ``admit``, ``initialize`` (of the
                                                             input, or a manifest event's)
``validate-data``               ValidateBatchConfig          ``validate``
``calculate-chunks``            CalculateChunks              ``plan``
``update-records``              ProcessWithLambda            ``run_chunk``
``aggregate-results``           AggregateResults             ``aggregate``
``send-to-kafka``               SendToKafka                  ``send_completion``
``send-to-sqs-core``            SendToSqsCore                ``send_completion``
==============================  ===========================  ===================================

A handler turns its event into typed values (:mod:`scm_batch.aws.payloads`), calls its step with
the deployment's settings, and answers a typed value; it sequences nothing itself. A handler that
cannot do its job *raises*: the error's class name is what the state machine's Retry and Catch
match (``scm_batch.retry.transient_error_names`` lists the retried ones), never a success-shaped
answer with an error inside. Clients (S3, Kafka, SQS) are made per invocation and closed after
it: a chunk runs for minutes, a client costs a tenth of a second, and nothing lingers between
invocations.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from scm_batch import lease, lifecycle
from scm_batch.aws import payloads
from scm_batch.aws.batch_planning import defer_to_batch
from scm_batch.aws.chunks import run_chunk
from scm_batch.aws.executions import execution_running
from scm_batch.aws.payloads import (
    AggregateRequest,
    ChunkDone,
    ChunkRequest,
    CompletionRequest,
    CompletionSent,
    Initialized,
    Outcome,
    Payload,
    PlanDescription,
    Planned,
    PlanRequest,
    Validated,
    ValidateRequest,
)
from scm_batch.aws.telemetry import Metric, Telemetry
from scm_batch.config import (
    is_object_created_event,
    load_manifest,
    manifest_ref_of_event,
    parse_job_input,
)
from scm_batch.errors import ConfigError, ScmBatchError
from scm_batch.ledger import Ledger
from scm_batch.model import JobInput
from scm_batch.retry import is_transient
from scm_batch.settings import DEFAULT_NAMESPACE, Settings, aws_settings
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.sinks.routing import STATUS_CHANNEL
from scm_batch.stages.notify import batch_status_message

Event = dict[str, Any]
Handler = Callable[[Event, object], Event]
Step = Callable[[Any, Settings, Telemetry], Payload]


def _stage(state: str, request: type[Payload] | None = None) -> Callable[[Step], Handler]:
    """A Lambda handler of a step: settings from the environment, the event read as ``request``
    (a JSON object as it is when ``None``), the answer written out; one log line on failure (the
    error's name and, for the project's own errors, its message: never record contents)."""

    def wrap(step: Step) -> Handler:
        @functools.wraps(step)
        def handler(event: Event, context: object = None) -> Event:
            telemetry = Telemetry(state, DEFAULT_NAMESPACE)
            try:
                settings = aws_settings(os.environ)
                telemetry = Telemetry(state, settings.metrics_namespace)
                given = payloads.decode(event, request) if request else _json_object(event)
                return payloads.encode(step(given, settings, telemetry))
            except Exception as exc:
                details: dict[str, object] = {"error": type(exc).__name__}
                if isinstance(exc, ScmBatchError):
                    details["message"] = exc.message
                details["transient"] = is_transient(exc)
                telemetry.log("failed", **details)
                raise

        return handler

    return wrap


def _json_object(event: object) -> Mapping[str, Any]:
    if not isinstance(event, Mapping):
        raise ConfigError("event", f"must be a JSON object (got {type(event).__name__})")
    return event


def _ledger(job: JobInput, settings: Settings) -> Ledger:
    return lifecycle.open_ledger(job.bucket, job.batch_id, settings.run)


@_stage("InitializeBatchProcessing")
def read_s3(event: Mapping[str, Any], settings: Settings, telemetry: Telemetry) -> Initialized:
    """The execution input (or an S3 Object Created event naming a manifest) in; the checked
    input and what the input object looks like out."""
    if is_object_created_event(event):
        ref = manifest_ref_of_event(event, source="event", where="the execution input")
        fields = load_manifest(ref, settings.run.storage)
    else:
        fields = dict(event)
    # The ids become object keys: they are checked before anything touches the bucket.
    job = lifecycle.admit(parse_job_input(settings.job_defaults.fill(fields)), settings.run)
    source = lifecycle.initialize(job, _ledger(job, settings), settings.run)
    size = source.size if source is not None else None  # a batch with a plan looks at nothing
    telemetry.log(
        "initialized", batchId=job.batch_id, key=job.file, size=size, planned=source is None
    )
    return Initialized(job=job, source=source)


@_stage("ValidateBatchConfig", ValidateRequest)
def validate_data(request: ValidateRequest, settings: Settings, telemetry: Telemetry) -> Validated:
    """The batch can run as asked: no plan of other input under its id, and every broker and
    queue it will deliver to answers."""
    job, source = request.batch.job, request.batch.source
    ledger = _ledger(job, settings)
    if request.execution_id is not None:  # one run of a batch at a time: fail fast
        lease.claim_for_execution(ledger, request.execution_id, execution_running)
    target = lifecycle.validate(job, ledger, settings.run)
    telemetry.log(
        "validated", batchId=job.batch_id, destination=target.destination, resumed=source is None
    )
    return Validated(job=job, source=source, delivery=target)


@_stage("CalculateChunks", PlanRequest)
def calculate_chunks(request: PlanRequest, settings: Settings, telemetry: Telemetry) -> Planned:
    """The plan, stored with its chunk items; a batch planned before (an execution started again)
    keeps its plan, so its finished chunks stay finished.

    ``maxInlineChunks`` in the event means the state machine passes the items through its state
    (an inline Map): they are answered too, and a plan with more chunks is refused. An input too
    big to plan here is planned by an AWS Batch job (:mod:`scm_batch.aws.batch_planning`)."""
    batch = request.batch
    ledger = _ledger(batch.job, settings)
    inline = request.max_inline_chunks
    source = batch.source
    if source is not None and settings.run.plan.planned_on_batch(source) and not ledger.has_plan():
        telemetry.log("planning-on-batch", batchId=batch.job.batch_id, size=source.size)
        defer_to_batch(ledger, batch, request.execution_id)
    planned = lifecycle.plan(
        batch.job, batch.source, batch.delivery, ledger, settings.run, inline_limit=inline
    )
    described = PlanDescription.of(planned, ledger.storage.uri, inline=inline is not None)
    # The description without its items: ids, keys and counts only.
    telemetry.log("planned", **payloads.encode(msgspec.structs.replace(described, items=None)))
    return Planned(job=planned.plan.job, delivery=planned.plan.delivery, plan=described)


@_stage("ProcessWithLambda", ChunkRequest)
def update_records(request: ChunkRequest, settings: Settings, telemetry: Telemetry) -> ChunkDone:
    """One chunk item in (with ``attempt``, the state's retry count); its counts out."""
    attempt = request.attempt + 1 if request.attempt >= 0 else 1
    ran = run_chunk(request.chunk, settings, attempt=attempt, telemetry=telemetry)
    return ChunkDone.of(ran)


def _started_at(raw: str | None) -> datetime:
    if raw is not None:
        try:
            started = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return started if started.tzinfo else started.replace(tzinfo=UTC)
    return datetime.now(UTC)


@_stage("AggregateResults", AggregateRequest)
def aggregate_results(
    request: AggregateRequest, settings: Settings, telemetry: Telemetry
) -> Outcome:
    """Every chunk's receipt and recorded failure in; the aggregated results and validation
    report recorded; the outcome, with the status message ``SendToSQS`` / ``ReportFailure``
    sends (a copy stays in the bucket's outbox), out."""
    described = request.batch.plan
    ledger = _ledger(request.batch.job, settings)
    stored = ledger.stored_plan()
    aggregated = lifecycle.aggregate(
        stored,
        ledger,
        settings.run,
        finished=described.already_notified,
        chunks_before=described.chunks_done_before,
        records_before=described.records_done_before,
        started_at=_started_at(request.started_at),
    )
    if described.chunks_to_rebuild:  # the outcome stands; an execution tells if it is whole
        lifecycle.check_rebuilt(stored, ledger)
    summary = aggregated.summary
    status = batch_status_message(summary)
    if not aggregated.recorded_before:
        OutboxNotifier(ledger.storage, ledger.batch_id).send(STATUS_CHANNEL, status)
        telemetry.metrics(
            [
                Metric("BatchRecords", summary.summary.total_records_processed),
                Metric("BatchErrors", summary.summary.total_errors),
                Metric("ChunksFailed", summary.chunks_failed + summary.chunks_not_processed),
                Metric("BatchDuration", summary.summary.processing_time, "Seconds"),
            ],
            batchId=summary.batch_id,
            status=summary.status.value,
            validationStatus=summary.validation_status.value,
        )
    return Outcome.of(aggregated, status)


def _send_completion(
    request: CompletionRequest, settings: Settings, telemetry: Telemetry
) -> CompletionSent:
    ledger = _ledger(request.batch.job, settings)
    sent = lifecycle.send_completion(ledger.stored_summary(), ledger, settings.run)
    channel, location = (sent.channel, sent.location) if sent is not None else (None, None)
    telemetry.log("completion-sent", batchId=ledger.batch_id, channel=channel, location=location)
    return CompletionSent(channel=channel, location=location)


@_stage("SendToKafka", CompletionRequest)
def send_to_kafka(
    request: CompletionRequest, settings: Settings, telemetry: Telemetry
) -> CompletionSent:
    """``BATCH_COMPLETION_NOTIFICATION`` to the Kafka notification topic (a copy stays in the
    bucket's outbox; with no broker configured, only the copy is made)."""
    return _send_completion(request, settings, telemetry)


@_stage("SendToSqsCore", CompletionRequest)
def send_to_sqs_core(
    request: CompletionRequest, settings: Settings, telemetry: Telemetry
) -> CompletionSent:
    """``BATCH_COMPLETION_NOTIFICATION`` to the SQS Core queue (a copy stays in the outbox)."""
    return _send_completion(request, settings, telemetry)


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
