"""The driver: the workflow's stages in order, chunks fanned out to an executor.

``ValidateBatchConfig`` runs before ``InitializeBatchProcessing`` here: it is pure, and checking
the ids and the key first means nothing touches storage with an unsafe name. On AWS both states
keep their contract names and order; the checks are the same functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from datetime import UTC, datetime

from scm_batch import layout
from scm_batch.config import RunOptions
from scm_batch.errors import BatchExistsError, ExitCode
from scm_batch.executors.base import ChunkExecutor
from scm_batch.executors.local import LocalExecutor
from scm_batch.model import (
    ChunkFailure,
    ChunkPlan,
    ChunkResult,
    ChunkTask,
    JobInput,
    RunSummary,
    StatusWord,
    ValidationReport,
)
from scm_batch.observe.progress import NullProgress, ProgressReporter, ProgressSnapshot
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.stages.aggregate import aggregate_results, write_aggregate
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.notify import Delivered, send_notifications
from scm_batch.stages.plan import calculate_chunks, write_plan
from scm_batch.stages.validate_config import validate_batch_config
from scm_batch.storage import Storage, open_storage

ExecutorFactory = Callable[[RunOptions], ChunkExecutor]


def local_executor(options: RunOptions) -> ChunkExecutor:
    return LocalExecutor(options.workers, block_size=options.block_size)


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

    @property
    def exit_code(self) -> int:
        if self.summary.chunks_failed:
            return ExitCode.CHUNKS_FAILED
        if self.summary.validation_status == StatusWord.VALIDATION_FAILED_CRITICAL:
            return ExitCode.VALIDATION_CRITICAL
        return ExitCode.OK


def prepare_plan(
    job: JobInput, options: RunOptions, progress: ProgressReporter
) -> tuple[Storage, ChunkPlan]:
    """ValidateBatchConfig, InitializeBatchProcessing and CalculateChunks (nothing written)."""
    job = validate_batch_config(job, options)
    storage = open_storage(job.bucket)
    progress.phase(f"InitializeBatchProcessing: {storage.uri_for(job.file)}")
    source = initialize_batch(job, storage, sample_bytes=options.plan.sample_bytes)
    how = "counting lines" if options.plan.count_records else "estimating lines"
    progress.phase(f"CalculateChunks: {how} in {source.size:,} bytes")
    return storage, calculate_chunks(job, source, storage, options.plan)


def _claim_batch(storage: Storage, batch_id: str, overwrite: bool) -> None:
    """Refuse to mix two runs' outputs under one batch id, unless told to replace them."""
    key = layout.plan_key(batch_id)
    if not storage.exists(key):
        return
    if not overwrite:
        raise BatchExistsError(
            f"batch {batch_id!r} already has outputs in {storage.uri} ({key}); "
            "use another batch id, or --overwrite to replace them"
        )
    for prefix in layout.batch_prefixes(batch_id):
        storage.delete_prefix(prefix)


def process_chunks(
    plan: ChunkPlan, executor: ChunkExecutor, progress: ProgressReporter, started: float
) -> tuple[list[ChunkResult], list[ChunkFailure]]:
    """ProcessChunksInParallel: every chunk submitted, collected as it completes.

    A chunk that raises is recorded as failed and the others carry on.
    """
    pending: dict[Future[ChunkResult], ChunkTask] = {executor.submit(t): t for t in plan.chunks}
    results: list[ChunkResult] = []
    failures: list[ChunkFailure] = []
    finished_lines = 0

    def snapshot() -> ProgressSnapshot:
        live = executor.lines_done()
        return ProgressSnapshot(
            lines_done=min(plan.total_records, live if live is not None else finished_lines),
            lines_total=plan.total_records,
            chunks_done=len(results),
            chunks_failed=len(failures),
            chunks_total=len(plan.chunks),
            elapsed=time.perf_counter() - started,
        )

    while pending:
        done, _ = wait(pending, timeout=progress.interval, return_when=FIRST_COMPLETED)
        for future in done:
            task = pending.pop(future)
            error = future.exception()
            if error is None:
                result = future.result()
                results.append(result)
                finished_lines += result.lines
            else:
                failures.append(
                    ChunkFailure(
                        chunk_id=task.chunk_id,
                        chunk_number=task.chunk_number,
                        error_type=type(error).__name__,
                        message=str(error),
                    )
                )
        progress.update(snapshot())
    progress.finish(snapshot())
    return results, failures


def run_batch(
    job: JobInput,
    options: RunOptions,
    *,
    progress: ProgressReporter | None = None,
    executor_factory: ExecutorFactory = local_executor,
) -> RunReport:
    """Run one batch end to end on this machine."""
    reporter = progress or NullProgress()
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    storage, plan = prepare_plan(job, options, reporter)
    job = plan.job
    _claim_batch(storage, job.batch_id, options.overwrite)
    write_plan(plan, storage)
    reporter.phase(
        f"ProcessChunksInParallel: {plan.chunk_count} chunks of up to {plan.chunk_size:,} records "
        f"on {options.workers} workers"
    )
    executor = executor_factory(options)
    try:
        results, failures = process_chunks(plan, executor, reporter, started)
    except BaseException:
        executor.shutdown(cancel=True)
        raise
    executor.shutdown(cancel=False)
    elapsed = time.perf_counter() - started

    reporter.phase("AggregateResults")
    summary, validation = aggregate_results(
        plan,
        results,
        failures,
        storage=storage,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        elapsed_seconds=elapsed,
    )
    aggregated_key = write_aggregate(summary, validation, storage)
    notifications = send_notifications(
        summary, OutboxNotifier(storage, job.batch_id), bucket=job.bucket
    )
    return RunReport(
        plan=plan,
        summary=summary,
        validation=validation,
        aggregated_uri=storage.uri_for(aggregated_key),
        validation_uri=storage.uri_for(summary.validation_key),
        results_uri=storage.uri_for(layout.results_prefix(job.batch_id)) + "/",
        errors_uri=storage.uri_for(layout.errors_prefix(job.batch_id)) + "/",
        notifications=notifications,
    )
