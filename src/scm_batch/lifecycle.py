"""The batch lifecycle, once: every step of a batch, and their order, for every place it runs.

The steps carry the workflow's state names, and run in the workflow's order (:data:`STATES`):

=======================  ==============================  =========================================
step                     state                           does
=======================  ==============================  =========================================
:func:`admit`            ValidateBatchConfig (checks)    input fields and options checked; nothing
                                                         is touched with an unsafe name
:func:`initialize`       InitializeBatchProcessing       the input object found and sampled (not
                                                         for a batch that has a plan)
:func:`validate`         ValidateBatchConfig             no other batch under this id; the
                                                         completion has somewhere to go; every
                                                         broker and queue answers
:func:`plan`             CalculateChunks                 the plan made and stored, or the stored
                                                         one checked and carried on
:func:`run_chunk`        ProcessChunk                    one chunk, at most once
``process_in_parallel``  ProcessChunksInParallel         the chunks not done, on an executor
:func:`aggregate`        AggregateResults                the outcome recorded
:func:`send_completion`  SendToKafka / SendToSqsCore     the completion message
:func:`notify`           … SendToSQS                     completion and status, then the marker
=======================  ==============================  =========================================

Drivers are thin: :func:`run_batch` and :func:`resume_batch` (the command line, any executor) call
the steps in this order; on AWS the state machine does, one Lambda function per step
(``scm_batch.aws.handlers``) and ``scm_batch.aws.batch_job`` for a chunk too big for Lambda. A
batch that is finished (every chunk done, its messages sent) is reported, never rerun or resent.
Steps take the run's options (:class:`~scm_batch.config.RunOptions`), never a place's settings.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict, Unpack

import msgspec

from scm_batch import layout, lease
from scm_batch.clock import utc_timestamp
from scm_batch.config import RunOptions
from scm_batch.errors import (
    ConfigError,
    ExitCode,
    InputChangedError,
    NothingToResumeError,
    PlanTooLargeError,
    RebuildFailedError,
)
from scm_batch.ledger import Ledger, NotificationRecord, rebuilt
from scm_batch.model import (
    ChunkFailure,
    ChunkPlan,
    ChunkResult,
    ChunkTask,
    DeliveryTarget,
    JobInput,
    RunSummary,
    SourceInfo,
    StatusWord,
    ValidationReport,
)
from scm_batch.observe.progress import ProgressReporter
from scm_batch.scheduler import Clock
from scm_batch.session import ExecutorFactory, Session, process_in_parallel
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.sinks.routing import DeliveringNotifier, delivery_target, preflight
from scm_batch.stages import notify as notifications
from scm_batch.stages.aggregate import aggregate_results
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.notify import Delivered, failure_reason
from scm_batch.stages.plan import calculate_chunks
from scm_batch.stages.process import run_chunk
from scm_batch.stages.resume import (
    check_delivery_unchanged,
    check_input_unchanged,
    check_output_format_unchanged,
    check_same_batch,
)
from scm_batch.stages.staging import drop_staged_when_done, missing_copies, read_staging_record
from scm_batch.stages.validate_config import validate_batch_config
from scm_batch.storage import Storage, open_storage

__all__ = [
    "STATES",
    "Aggregated",
    "PlannedBatch",
    "RunReport",
    "admit",
    "aggregate",
    "initialize",
    "notify",
    "open_ledger",
    "plan",
    "preview_plan",
    "resume_batch",
    "run_batch",
    "run_chunk",
    "send_completion",
    "validate",
]

# The workflow's states a batch passes through, in order, on every driver (a WORKSPACE batch;
# a CORE one sends its completion with SendToSqsCore instead of SendToKafka).
STATES = (
    "InitializeBatchProcessing",
    "ValidateBatchConfig",
    "CalculateChunks",
    "ProcessChunksInParallel",
    "AggregateResults",
    "SendToKafka",
    "SendToSQS",
)


def open_ledger(bucket: str, batch_id: str, options: RunOptions) -> Ledger:
    """The batch's ledger in its bucket."""
    return Ledger(open_storage(bucket, options.storage), batch_id)


# ---- InitializeBatchProcessing, ValidateBatchConfig ----------------------------------------------
def admit(job: JobInput, options: RunOptions) -> JobInput:
    """The input fields and options checked before anything is touched; the input returned with
    its bucket in canonical form and its destination resolved."""
    return validate_batch_config(job, options)


def initialize(job: JobInput, ledger: Ledger, options: RunOptions) -> SourceInfo | None:
    """InitializeBatchProcessing: what the input object looks like. A batch that has a plan looks
    at nothing (``None``): its plan says what the input was, and :func:`plan` checks that it has
    not changed."""
    if ledger.has_plan():
        return None
    return initialize_batch(job, ledger.storage, sample_bytes=options.plan.sample_bytes)


def validate(job: JobInput, ledger: Ledger, options: RunOptions) -> DeliveryTarget:
    """ValidateBatchConfig: the batch can run as asked. No plan of other input under its id, and,
    unless the batch is finished (it sends nothing any more), its completion message has
    somewhere to go and every broker and queue it will use answers. Returns where its records go.
    """
    stored = ledger.plan()
    if stored is not None:
        _check_stored_plan(stored, job, ledger, options)
    target = delivery_target(job.destination or "none", options.delivery)
    if stored is None or not ledger.finished(stored):
        _check_completion_channel(job, options)
        preflight(target.destination, job.deployment, options.delivery)
    return target


def _check_stored_plan(
    stored: ChunkPlan, job: JobInput, ledger: Ledger, options: RunOptions
) -> None:
    """A stored plan is carried on only by the same batch, over the same input object, to the
    same destination: checked before any broker is asked anything."""
    check_same_batch(stored, job, ledger.storage)
    check_input_unchanged(stored, ledger.storage)
    check_delivery_unchanged(stored, options)


def _check_completion_channel(job: JobInput, options: RunOptions) -> None:
    """The completion message has somewhere to go besides the bucket's outbox, or the options say
    the outbox is enough: a batch is not run to tell nobody it finished."""
    if options.completion_outbox_only:
        return
    delivery = options.delivery
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


# ---- CalculateChunks --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """CalculateChunks' answer: the plan, and where the batch stood when it was taken up."""

    plan: ChunkPlan
    resumed: bool  # the plan was stored before
    done_before: dict[str, ChunkResult]  # receipts of the chunks an earlier session finished
    finished: bool  # every chunk done and the messages sent: nothing to run or send

    @property
    def records_before(self) -> int:
        return sum(r.records for r in self.done_before.values())

    @property
    def todo(self) -> list[ChunkTask]:
        """The chunks still to process (for a finished batch, only chunks to rebuild)."""
        return [c for c in self.plan.chunks if c.chunk_id not in self.done_before]


def plan(
    job: JobInput,
    source: SourceInfo | None,
    target: DeliveryTarget,
    ledger: Ledger,
    options: RunOptions,
    *,
    inline_limit: int | None = None,
) -> PlannedBatch:
    """CalculateChunks: the plan of a new batch, made and stored (its chunk items first); or the
    stored plan of a batch taken up again, checked (same batch, same input, same delivery, a
    result format this run writes) and carried on, its recorded outcome withdrawn unless it is
    finished. ``inline_limit``: the most chunks the state machine passes through its state."""
    stored = ledger.plan()
    if stored is None:
        return _new_plan(job, source, target, ledger, options, inline_limit)
    # Again: on AWS another execution may have planned or changed it since ValidateBatchConfig.
    _check_stored_plan(stored, job, ledger, options)
    ledger.discard_incomplete()  # what killed attempts left: temporary files, open uploads
    # A chunk whose parts were deleted or changed in size since is done again; its records,
    # delivered then, are not sent again (nor, in a finished batch, any message).
    receipts = ledger.done()
    done = ledger.intact(receipts)
    ledger.rebuild({k: v for k, v in receipts.items() if k not in done})
    stored = rebuilt(stored, ledger.rebuilding())
    ledger.forget_failures_of_done_chunks(done)
    planned = PlannedBatch(
        stored, resumed=True, done_before=done, finished=ledger.finished(stored, done)
    )
    # A finished batch with nothing to rebuild writes no part: it is reported even where its
    # format cannot be written.
    check_output_format_unchanged(stored, options, finished=not planned.todo)
    _check_inline(stored, inline_limit)
    _restage_missing(stored, planned.todo, ledger, options)
    if planned.todo:
        ledger.record_chunk_items(stored)
    if not planned.finished:  # its outcome will change: a crash must not leave the old one
        ledger.reopen()
    return planned


def _new_plan(
    job: JobInput,
    source: SourceInfo | None,
    target: DeliveryTarget,
    ledger: Ledger,
    options: RunOptions,
    inline_limit: int | None,
) -> PlannedBatch:
    if source is None:  # the plan seen by InitializeBatchProcessing is gone (deleted by hand)
        source = initialize_batch(job, ledger.storage, sample_bytes=options.plan.sample_bytes)

    def staged(count: int) -> None:
        if options.faults is not None:
            options.faults.crash_driver_at("during-staging", chunks_done=count)

    new = calculate_chunks(
        job,
        source,
        ledger.storage,
        options.plan,
        stage=True,
        on_staged=staged,
        scan_workers=options.workers,
    )
    new = msgspec.structs.replace(new, delivery=target)
    check_output_format_unchanged(new, options)
    _check_inline(new, inline_limit)
    _fault_point(options, "during-planning")
    ledger.record_plan(new)
    _fault_point(options, "after-plan")
    return PlannedBatch(new, resumed=False, done_before={}, finished=False)


def _restage_missing(
    chunk_plan: ChunkPlan, todo: list[ChunkTask], ledger: Ledger, options: RunOptions
) -> None:
    """Stage the input again when chunks to run have lost their staged copies (deleted once the
    batch completed, before some of its parts were found damaged): cut as it was (the staging
    record fixes how), and checked against the plan, chunk by chunk."""
    keys = [c.staged_key for c in todo if c.staged_key is not None]
    if not keys or not missing_copies(ledger.storage, ledger.batch_id, keys):
        return
    again = calculate_chunks(
        chunk_plan.job, chunk_plan.source, ledger.storage, options.plan, stage=True
    )

    def cut(plan: ChunkPlan) -> list[tuple[int, int, int, int]]:
        return [(c.byte_start, c.byte_end, c.start_index, c.chunk_size) for c in plan.chunks]

    if cut(again) != cut(chunk_plan):
        raise InputChangedError(
            f"{ledger.storage.uri_for(chunk_plan.job.file)} no longer decompresses to the "
            f"chunks batch {ledger.batch_id!r} was planned with: the input changed"
        )


def _fault_point(options: RunOptions, point: str) -> None:
    """Where the test-only fault switch may kill the driver (:mod:`scm_batch.faults`)."""
    if options.faults is not None:
        options.faults.crash_driver_at(point)


def _check_inline(chunk_plan: ChunkPlan, limit: int | None) -> None:
    if limit is not None and chunk_plan.chunk_count > limit:
        raise PlanTooLargeError(
            f"batch {chunk_plan.batch_id!r} has {chunk_plan.chunk_count} chunks; this state "
            f"machine passes at most {limit} through its state: deploy the definition with a "
            "distributed Map (scm-batch aws definition --map distributed), or raise maxChunkSize"
        )


def preview_plan(job: JobInput, options: RunOptions) -> ChunkPlan:
    """What CalculateChunks would make of ``job``, writing nothing (``scm-batch plan``)."""
    job = admit(job, options)
    storage = open_storage(job.bucket, options.storage)
    source = initialize_batch(job, storage, sample_bytes=options.plan.sample_bytes)
    return calculate_chunks(job, source, storage, options.plan, scan_workers=options.workers)


# ---- AggregateResults -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Aggregated:
    """AggregateResults' answer: the batch's outcome, and whether it was recorded before (a
    finished batch, taken up again)."""

    summary: RunSummary
    validation: ValidationReport
    recorded_before: bool = False

    @property
    def failure(self) -> str | None:
        """Why the batch failed, or ``None`` when it succeeded."""
        return failure_reason(self.summary)


def aggregate(
    chunk_plan: ChunkPlan,
    ledger: Ledger,
    options: RunOptions,
    *,
    finished: bool,
    chunks_before: int,
    records_before: int,
    started_at: datetime,
    elapsed: float | None = None,
) -> Aggregated:
    """AggregateResults: every receipt and failure folded into the aggregated results and the
    validation report, both recorded. A finished batch keeps the outcome it recorded.

    ``chunks_before`` and ``records_before`` were done by earlier sessions; time and records/s
    describe this one, from ``started_at`` (``elapsed`` seconds, or until now)."""
    if finished:  # its outcome stands as recorded: never aggregated (nor sent) again
        stored = ledger.stored_summary()
        drop_staged_when_done(stored, ledger.storage, keep=options.keep_staged)  # rebuilt
        return Aggregated(stored, ledger.stored_validation(), True)
    done = ledger.done()
    ledger.forget_failures_of_done_chunks(done)
    finished_at = datetime.now(UTC)
    summary, validation = aggregate_results(
        chunk_plan,
        done.values(),
        ledger.failures().values(),
        storage=ledger.storage,
        started_at=started_at,
        finished_at=finished_at,
        elapsed_seconds=(finished_at - started_at).total_seconds() if elapsed is None else elapsed,
        tolerance=options.tolerance,
        chunks_resumed=chunks_before,
        session_records=sum(r.records for r in done.values()) - records_before,
    )
    ledger.record_validation(validation)
    _fault_point(options, "during-aggregation")
    ledger.record_summary(summary)
    drop_staged_when_done(summary, ledger.storage, keep=options.keep_staged)
    _fault_point(options, "before-notify")
    return Aggregated(summary, validation)


# ---- SendToKafka / SendToSqsCore, SendToSQS ---------------------------------------------------
def _notifier(ledger: Ledger, options: RunOptions) -> DeliveringNotifier:
    outbox = OutboxNotifier(ledger.storage, ledger.batch_id)
    return DeliveringNotifier(outbox, options.delivery, ledger.batch_id)


def send_completion(summary: RunSummary, ledger: Ledger, options: RunOptions) -> Delivered | None:
    """SendToKafka / SendToSqsCore: the completion message of a batch that succeeded, where its
    deployment says (a copy in the bucket's outbox); ``None`` for a batch that failed."""
    return notifications.send_completion(
        summary, _notifier(ledger, options), bucket=ledger.storage.uri
    )


def notify(aggregated: Aggregated, ledger: Ledger, options: RunOptions) -> list[Delivered]:
    """The completion message (:func:`send_completion`) and the status message (SendToSQS, or
    ReportFailure's form), then the notified marker. A finished batch sends nothing again: where
    its messages went is what it recorded."""
    storage = ledger.storage
    if aggregated.recorded_before:
        notified = ledger.notified()
        return [
            Delivered(channel, storage.uri_for(layout.notification_key(ledger.batch_id, channel)))
            for channel in (notified.channels if notified is not None else [])
        ]
    sent = notifications.send_notifications(
        aggregated.summary, _notifier(ledger, options), bucket=storage.uri
    )
    failed = aggregated.failure is not None
    ledger.record_notified(
        NotificationRecord(
            batch_status=(
                StatusWord.SUBMISSION_FAILED if failed else StatusWord.SUBMITTED_FOR_PROCESSING
            ),
            sent_at=utc_timestamp(),
            channels=[s.channel for s in sent],
        )
    )
    return sent


# ---- the local driver -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything a run produced, for the command line to print."""

    plan: ChunkPlan
    summary: RunSummary
    validation: ValidationReport
    aggregated_uri: str
    validation_uri: str
    results_uri: str
    errors_uri: str
    notifications: list[Delivered]
    already_complete: bool = False

    @property
    def exit_code(self) -> int:
        """The command's exit code for the batch (see the README's table)."""
        summary = self.summary
        if summary.status == StatusWord.CHUNK_FAILED:
            return ExitCode.CHUNKS_FAILED
        if summary.validation_status == StatusWord.VALIDATION_FAILED_CRITICAL:
            return ExitCode.VALIDATION_CRITICAL
        if summary.chunks_failed:
            return ExitCode.COMPLETED_WITH_TOLERATED_FAILURES
        return ExitCode.OK


class SessionSettings(TypedDict, total=False):
    """How a driver's session runs chunks (see :class:`scm_batch.session.Session`)."""

    progress: ProgressReporter | None
    executor_factory: ExecutorFactory | None
    clock: Clock | None
    rng: random.Random | None


def run_batch(job: JobInput, options: RunOptions, **session: Unpack[SessionSettings]) -> RunReport:
    """Run one batch end to end from here, or carry it on if its plan exists."""
    started = Session.start(options, **session)
    job = admit(job, started.options)
    ledger = open_ledger(job.bucket, job.batch_id, started.options)
    # One run of a batch at a time, from before anything is touched.
    with lease.held(ledger) as held:
        if started.options.overwrite:
            ledger.clear()
        source = initialize(job, ledger, started.options)
        if source is not None:
            started.progress.phase(
                f"InitializeBatchProcessing: {ledger.storage.uri_for(job.file)}, "
                f"{source.size:,} bytes"
            )
        return _carry_out(job, source, ledger, started, held.check)


def resume_batch(
    bucket: str, batch_id: str, options: RunOptions, **session: Unpack[SessionSettings]
) -> RunReport:
    """Carry on a batch from the plan and ledger in its bucket."""
    started = Session.start(options, **session)
    ledger = open_ledger(bucket, batch_id, started.options)
    # Before the lease: a batch id mistyped leaves nothing behind. A batch stopped while its
    # compressed input was staged has no plan yet, but its staging record holds its input.
    if not ledger.has_plan() and read_staging_record(ledger.storage, batch_id) is None:
        raise NothingToResumeError(
            f"batch {batch_id!r} has no plan in {ledger.storage.uri} "
            f"({layout.plan_key(batch_id)}); start it with 'scm-batch run'"
        )
    with lease.held(ledger) as held:
        # Read under the lease: a 'run --overwrite' that ended meanwhile may have replaced it.
        stored = ledger.plan()
        if stored is not None:
            job = stored.job
        else:
            staging = read_staging_record(ledger.storage, batch_id)
            if staging is None:
                raise NothingToResumeError(f"batch {batch_id!r} was deleted meanwhile")
            job = staging.job
        return _carry_out(admit(job, started.options), None, ledger, started, held.check)


def _carry_out(
    job: JobInput,
    source: SourceInfo | None,
    ledger: Ledger,
    session: Session,
    still_held: Callable[[], None],
) -> RunReport:
    """The steps after InitializeBatchProcessing, in the workflow's order; ``still_held`` raises
    if this run lost the batch's lease, at each step that writes its outcome or sends it."""
    options = session.options
    target = validate(job, ledger, options)
    planned = plan(job, source, target, ledger, options)
    if planned.finished:
        session.progress.phase(f"batch {job.batch_id} is already complete")
    elif planned.resumed:
        session.progress.phase(f"resuming batch {job.batch_id} from its plan")
    if planned.todo:
        outcome = process_in_parallel(
            planned.plan, planned.todo, planned.done_before, ledger, session, still_held
        )
        if planned.finished and (outcome.failures or outcome.not_started):
            unbuilt = [c.chunk_id for c in outcome.not_started]
            raise _rebuild_failed(job.batch_id, outcome.failures, unbuilt)
    still_held()
    session.progress.phase("AggregateResults")
    aggregated = aggregate(
        planned.plan,
        ledger,
        options,
        finished=planned.finished,
        chunks_before=len(planned.done_before),
        records_before=planned.records_before,
        started_at=session.started_at,
        elapsed=session.elapsed,
    )
    still_held()
    sent = notify(aggregated, ledger, options)
    return _report(planned.plan, ledger.storage, aggregated, sent)


def check_rebuilt(chunk_plan: ChunkPlan, ledger: Ledger) -> None:
    """After a finished batch's damaged chunks were run again (on AWS, by the Map): raise
    :class:`RebuildFailedError` if one of them has no receipt yet."""
    done = ledger.done()
    missing = {c.chunk_id for c in chunk_plan.chunks} - done.keys()
    if missing:
        failures = [f for f in ledger.failures().values() if f.chunk_id in missing]
        unbuilt = sorted(missing - {f.chunk_id for f in failures})
        raise _rebuild_failed(chunk_plan.batch_id, failures, unbuilt)


def _rebuild_failed(
    batch_id: str, failures: Sequence[ChunkFailure], not_started: Sequence[str]
) -> RebuildFailedError:
    what = "; ".join(f"{f.chunk_id}: {f.error_type}: {f.message}" for f in failures)
    if not_started:
        what = what or f"{len(not_started)} not started ({', '.join(not_started[:3])})"
    return RebuildFailedError(
        f"batch {batch_id!r} is complete and its outcome stands, but damaged parts could not "
        f"be rebuilt ({what}); resuming the batch tries again"
    )


def _report(
    chunk_plan: ChunkPlan, storage: Storage, aggregated: Aggregated, sent: list[Delivered]
) -> RunReport:
    batch_id = chunk_plan.batch_id
    return RunReport(
        plan=chunk_plan,
        summary=aggregated.summary,
        validation=aggregated.validation,
        aggregated_uri=storage.uri_for(layout.aggregated_key(batch_id)),
        validation_uri=storage.uri_for(layout.validation_key(batch_id)),
        results_uri=storage.uri_for(layout.results_prefix(batch_id)) + "/",
        errors_uri=storage.uri_for(layout.errors_prefix(batch_id)) + "/",
        notifications=sent,
        already_complete=aggregated.recorded_before,
    )
