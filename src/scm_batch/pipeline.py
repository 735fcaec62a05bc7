"""The driver: the workflow's stages in order, chunks fanned out to an executor, resumable.

``ValidateBatchConfig`` runs before ``InitializeBatchProcessing`` here: it is pure, and checking
the ids and the key first means nothing touches storage with an unsafe name. On AWS both states
keep their contract names and order; the checks are the same functions.

A batch lives in its bucket: the plan, then a manifest per finished chunk (the ledger), then the
aggregate and a marker once the notifications went out. Running a batch whose plan exists resumes
it: the plan and its ``processedAt`` are reused, finished chunks are skipped, and the aggregate is
made from every manifest, so an interrupted and resumed batch ends exactly like an uninterrupted
one.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from scm_batch import layout
from scm_batch.clock import utc_timestamp
from scm_batch.config import RunOptions
from scm_batch.errors import ExitCode, NothingToResumeError
from scm_batch.executors.base import ChunkExecutor
from scm_batch.executors.local import LocalExecutor
from scm_batch.faults import FaultPlan
from scm_batch.ledger import Ledger, NotificationRecord
from scm_batch.model import ChunkPlan, ChunkTask, JobInput, RunSummary, StatusWord, ValidationReport
from scm_batch.observe.progress import NullProgress, ProgressReporter, ProgressSnapshot
from scm_batch.scheduler import ChunkScheduler, Clock, Outcome, SystemClock, Tally
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.sinks.routing import DeliveringNotifier, delivery_target
from scm_batch.sinks.routing import preflight as delivery_preflight
from scm_batch.stages.aggregate import aggregate_results
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.notify import Delivered, failure_reason, send_notifications
from scm_batch.stages.plan import calculate_chunks, write_plan
from scm_batch.stages.reuse import (
    check_delivery_unchanged,
    check_input_unchanged,
    check_output_format_unchanged,
    check_same_batch,
)
from scm_batch.stages.validate_config import validate_batch_config
from scm_batch.storage import Storage, open_storage

ExecutorFactory = Callable[[RunOptions], ChunkExecutor]


def local_executor(options: RunOptions) -> ChunkExecutor:
    return LocalExecutor(
        options.workers,
        block_size=options.block_size,
        storage=options.storage,
        delivery=options.delivery,
        faults=options.faults,
    )


@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything a finished run produced, for the command line to print."""

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
        return exit_code_for(self.summary)


def exit_code_for(summary: RunSummary) -> int:
    """The command's exit code for a finished batch (see the README's table)."""
    if summary.status == StatusWord.CHUNK_FAILED:
        return ExitCode.CHUNKS_FAILED
    if summary.validation_status == StatusWord.VALIDATION_FAILED_CRITICAL:
        return ExitCode.VALIDATION_CRITICAL
    if summary.chunks_failed:
        return ExitCode.COMPLETED_WITH_TOLERATED_FAILURES
    return ExitCode.OK


@dataclass(frozen=True, slots=True)
class Session:
    """How this invocation runs: options, progress, where chunks go, time and chance."""

    options: RunOptions
    progress: ProgressReporter
    executor_factory: ExecutorFactory
    clock: Clock
    rng: random.Random
    started_at: datetime
    started: float  # perf_counter() at the start

    @property
    def faults(self) -> FaultPlan:
        return self.options.faults or FaultPlan()


def _session(
    options: RunOptions,
    progress: ProgressReporter | None,
    executor_factory: ExecutorFactory,
    clock: Clock | None,
    rng: random.Random | None,
) -> Session:
    if options.faults is not None:  # workers that kill the driver need to know who it is
        options = msgspec.structs.replace(
            options, faults=msgspec.structs.replace(options.faults, driver_pid=os.getpid())
        )
    return Session(
        options=options,
        progress=progress or NullProgress(),
        executor_factory=executor_factory,
        clock=clock or SystemClock(),
        rng=rng or random.Random(),
        started_at=datetime.now(UTC),
        started=time.perf_counter(),
    )


def prepare_plan(
    job: JobInput, options: RunOptions, progress: ProgressReporter
) -> tuple[Storage, ChunkPlan]:
    """ValidateBatchConfig, InitializeBatchProcessing and CalculateChunks (nothing written)."""
    job = validate_batch_config(job, options)
    storage = open_storage(job.bucket, options.storage)
    progress.phase(f"InitializeBatchProcessing: {storage.uri_for(job.file)}")
    source = initialize_batch(job, storage, sample_bytes=options.plan.sample_bytes)
    progress.phase(f"CalculateChunks: {source.size:,} bytes")
    return storage, calculate_chunks(job, source, storage, options.plan)


def run_batch(
    job: JobInput,
    options: RunOptions,
    *,
    progress: ProgressReporter | None = None,
    executor_factory: ExecutorFactory = local_executor,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> RunReport:
    """Run one batch end to end on this machine, or resume it if its plan exists."""
    session = _session(options, progress, executor_factory, clock, rng)
    job = validate_batch_config(job, options)
    storage = open_storage(job.bucket, options.storage)
    ledger = Ledger(storage, job.batch_id)
    plan = ledger.load_plan()
    if plan is not None and options.overwrite:
        for prefix in layout.batch_prefixes(job.batch_id):
            storage.delete_prefix(prefix)
        plan = None
    if plan is not None:
        check_same_batch(
            plan, job, storage, "resume it as planned, use another batch id, or --overwrite"
        )
        session.progress.phase(f"resuming batch {job.batch_id} from its plan")
    else:
        _, plan = prepare_plan(job, options, session.progress)
        target = delivery_target(plan.job.destination or "none", options.delivery)
        plan = msgspec.structs.replace(plan, delivery=target)
        # Brokers and queues are checked before the plan is stored: bad settings leave nothing.
        delivery_preflight(target.destination, plan.job.deployment, options.delivery)
        session.faults.crash_driver_at("during-planning")
        write_plan(plan, storage)
        session.faults.crash_driver_at("after-plan")
    return _carry_out(plan, storage, ledger, session)


def resume_batch(
    bucket: str,
    batch_id: str,
    options: RunOptions,
    *,
    progress: ProgressReporter | None = None,
    executor_factory: ExecutorFactory = local_executor,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> RunReport:
    """Continue a batch from the plan and ledger in its bucket."""
    session = _session(options, progress, executor_factory, clock, rng)
    storage = open_storage(bucket, options.storage)
    ledger = Ledger(storage, batch_id)
    plan = ledger.load_plan()
    if plan is None:
        raise NothingToResumeError(
            f"batch {batch_id!r} has no plan in {storage.uri} ({layout.plan_key(batch_id)}); "
            "start it with 'scm-batch run'"
        )
    validate_batch_config(plan.job, options)
    session.progress.phase(f"resuming batch {batch_id} from its plan")
    return _carry_out(plan, storage, ledger, session)


def _carry_out(
    plan: ChunkPlan,
    storage: Storage,
    ledger: Ledger,
    session: Session,
) -> RunReport:
    """Everything after the plan: process what is not done, aggregate, notify."""
    check_input_unchanged(plan, storage)
    check_delivery_unchanged(plan, session.options)
    ledger.discard_incomplete()
    done_before = ledger.done()
    ledger.forget_failures_of_done_chunks(done_before)
    notified = ledger.notified()
    finished = notified is not None and len(done_before) == len(plan.chunks)
    # A finished batch writes no part: it is reported even where its format cannot be written.
    check_output_format_unchanged(plan, session.options, finished=finished)
    if notified is not None and finished:
        session.progress.phase(f"batch {plan.batch_id} is already complete")
        return _stored_report(plan, storage, notified)

    todo = [c for c in plan.chunks if c.chunk_id not in done_before]
    lines_before = sum(r.lines for r in done_before.values())
    session_lines = 0
    # Every broker and queue this batch will use answers, before any chunk is touched.
    delivery_preflight(
        plan.job.destination or "none", plan.job.deployment, session.options.delivery
    )
    if todo:
        ledger.reopen()
        session.progress.phase(
            f"ProcessChunksInParallel: {len(todo)} of {plan.chunk_count} chunks of up to "
            f"{plan.chunk_size:,} records on {session.options.workers} workers"
        )
        outcome = _process(plan, todo, ledger, session, lines_before, len(done_before))
        session_lines = sum(r.lines for r in outcome.results)
        # What attempts killed mid-write left behind (temporary files, open uploads) goes now,
        # once no worker is writing, rather than chunk by chunk.
        ledger.discard_incomplete()
    elapsed = time.perf_counter() - session.started

    session.progress.phase("AggregateResults")
    done = ledger.done()
    ledger.forget_failures_of_done_chunks(done)
    summary, validation = aggregate_results(
        plan,
        done.values(),
        ledger.failures().values(),
        storage=storage,
        started_at=session.started_at,
        finished_at=datetime.now(UTC),
        elapsed_seconds=elapsed,
        tolerance=session.options.tolerance,
        chunks_resumed=len(done_before),
        session_records=session_lines,
    )
    storage.put_bytes(summary.validation_key, msgspec.json.format(msgspec.json.encode(validation)))
    session.faults.crash_driver_at("during-aggregation")
    aggregated_key = layout.aggregated_key(plan.batch_id)
    storage.put_bytes(aggregated_key, msgspec.json.format(msgspec.json.encode(summary)))
    session.faults.crash_driver_at("before-notify")

    notifier = DeliveringNotifier(
        OutboxNotifier(storage, plan.batch_id), session.options.delivery, plan.batch_id
    )
    notifications = send_notifications(summary, notifier, bucket=plan.job.bucket)
    ledger.record_notified(
        NotificationRecord(
            batch_status=_sent_status(summary),
            sent_at=utc_timestamp(),
            channels=[n.channel for n in notifications],
        )
    )
    return _report(plan, storage, summary, validation, notifications)


def _sent_status(summary: RunSummary) -> StatusWord:
    if failure_reason(summary) is not None:
        return StatusWord.SUBMISSION_FAILED
    return StatusWord.SUBMITTED_FOR_PROCESSING


def _process(
    plan: ChunkPlan,
    todo: list[ChunkTask],
    ledger: Ledger,
    session: Session,
    lines_before: int,
    chunks_before: int,
) -> Outcome:
    """ProcessChunksInParallel for the chunks not done yet."""
    executor = session.executor_factory(session.options)

    def snapshot(tally: Tally) -> ProgressSnapshot:
        return ProgressSnapshot(
            lines_done=min(plan.total_records, lines_before + tally.lines_done),
            lines_total=plan.total_records,
            chunks_done=chunks_before + tally.results,
            chunks_failed=tally.failures,
            chunks_total=len(plan.chunks),
            elapsed=time.perf_counter() - session.started,
            lines_resumed=lines_before,
        )

    def committed(chunks_done: int) -> None:
        session.faults.crash_driver_at("after-chunks", chunks_done=chunks_done)

    scheduler = ChunkScheduler(
        executor=executor,
        ledger=ledger,
        retry=session.options.retry,
        tolerance=session.options.tolerance,
        total_chunks=len(plan.chunks),
        clock=session.clock,
        rng=session.rng,
        interval=session.progress.interval,
        on_tick=lambda tally: session.progress.update(snapshot(tally)),
        on_commit=committed,
    )
    try:
        outcome = scheduler.run(todo)
    except BaseException:
        executor.shutdown(cancel=True)
        # Workers stopped mid-write leave temporary files or open uploads; remove them now if
        # the storage lets us (a resume would otherwise do it).
        with suppress(Exception):
            ledger.discard_incomplete()
        raise
    executor.shutdown(cancel=False)
    tally = Tally(len(outcome.results), len(outcome.failures), executor.lines_done() or 0)
    session.progress.finish(snapshot(tally))
    return outcome


def _report(
    plan: ChunkPlan,
    storage: Storage,
    summary: RunSummary,
    validation: ValidationReport,
    notifications: list[Delivered],
    *,
    already_complete: bool = False,
) -> RunReport:
    return RunReport(
        plan=plan,
        summary=summary,
        validation=validation,
        aggregated_uri=storage.uri_for(layout.aggregated_key(plan.batch_id)),
        validation_uri=storage.uri_for(layout.validation_key(plan.batch_id)),
        results_uri=storage.uri_for(layout.results_prefix(plan.batch_id)) + "/",
        errors_uri=storage.uri_for(layout.errors_prefix(plan.batch_id)) + "/",
        notifications=notifications,
        already_complete=already_complete,
    )


def _stored_report(plan: ChunkPlan, storage: Storage, notified: NotificationRecord) -> RunReport:
    summary = msgspec.json.decode(
        storage.get_bytes(layout.aggregated_key(plan.batch_id)), type=RunSummary
    )
    validation = msgspec.json.decode(
        storage.get_bytes(layout.validation_key(plan.batch_id)), type=ValidationReport
    )
    sent = [
        Delivered(channel, storage.uri_for(layout.notification_key(plan.batch_id, channel)))
        for channel in notified.channels
    ]
    return _report(plan, storage, summary, validation, sent, already_complete=True)
