"""The batch commands: ``run``, ``resume``, ``plan`` and ``status``.

Each reads its options into the run's settings (:func:`scm_batch.settings.load_settings`, the
loader the AWS functions use too), calls the lifecycle, and prints what it answers; none of them
decides anything about a batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from scm_batch.cli.app import app
from scm_batch.cli.console import Terminated, err
from scm_batch.cli.flags import (
    BATCH,
    ESTIMATE,
    JOB,
    JOB_FIELDS,
    JSON,
    METRICS,
    PROGRESS,
    Given,
    command,
    option,
)
from scm_batch.cli.show import finish, print_estimate, print_plan, print_status
from scm_batch.config import (
    RunOptions,
    load_input_file,
    load_manifest,
    manifest_of_event,
    manifest_ref,
    parse_job_input,
    unknown_input_fields,
)
from scm_batch.errors import ConfigError, ExitCode, ScmBatchError
from scm_batch.lifecycle import RunReport, preview_plan, resume_batch, run_batch
from scm_batch.model import JobInput
from scm_batch.observe.metrics import MetricsFile, MetricsFileReporter, RunMetrics
from scm_batch.observe.progress import ProgressMode, ProgressReporter, choose_progress
from scm_batch.observe.status import batch_status
from scm_batch.session import prepared_executor
from scm_batch.settings import Settings

_SOURCES = ("--input", "--manifest", "--event")
MANY_WORKERS_PER_CPU = 4  # beyond this many workers a CPU, a run is warned


def _job_input(given: Given, settings: Settings) -> JobInput:
    """The execution input: from ``--input``, ``--manifest`` or ``--event`` (one of them), the
    job's flags over it, the configured defaults under it."""
    sources: dict[str, Any] = {
        "--input": given["input_file"],
        "--manifest": given["manifest"],
        "--event": given["event"],
    }
    named = [name for name in _SOURCES if sources[name]]
    if len(named) > 1:
        raise ConfigError(
            named[1], f"give one of --input, --manifest or --event, not {' and '.join(named)}"
        )
    mapping: dict[str, Any] = {}
    storage = settings.run.storage
    if sources["--input"] is not None:
        mapping = load_input_file(Path(sources["--input"]))
    elif sources["--manifest"] is not None:
        mapping = load_manifest(manifest_ref(sources["--manifest"]), storage)
    elif sources["--event"] is not None:
        mapping = load_manifest(manifest_of_event(Path(sources["--event"])), storage)
    flags = {field: given[name] for name, field in JOB_FIELDS.items()}
    mapping.update({field: value for field, value in flags.items() if value is not None})
    unknown = unknown_input_fields(mapping)
    if unknown:
        names = escape(", ".join(unknown))
        err.print(f"[yellow]warning:[/] ignoring unknown input fields: {names}")
    return parse_job_input(settings.job_defaults.fill(mapping))


def _warn_of_many_workers(options: RunOptions) -> None:
    """Too many workers for this machine (not said of an existing Dask cluster: its size is its
    own, not ``--workers``)."""
    cpus = os.cpu_count() or 1
    if options.executor == "dask" and options.dask_scheduler is not None:
        return
    if options.workers > MANY_WORKERS_PER_CPU * cpus:
        err.print(
            f"[yellow]warning:[/] {options.workers} workers on {cpus} CPUs: more than "
            f"{MANY_WORKERS_PER_CPU} a CPU only adds processes and memory (each chunk runs on one)"
        )


def _progress(given: Given) -> ProgressReporter:
    mode = given["progress"]
    if mode not in ("auto", "live", "log", "none"):
        raise ConfigError("--progress", f"must be auto, live, log or none (got {mode!r})")
    chosen: ProgressMode = mode
    return choose_progress(chosen)


def _exit_code_of(error: BaseException) -> int:
    """The exit code ``error`` ends the command with (as :func:`scm_batch.cli.console.guarded`
    gives it)."""
    if isinstance(error, ScmBatchError):
        return error.exit_code
    if isinstance(error, Terminated):
        return ExitCode.TERMINATED
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.INTERNAL


def _metered(
    given: Given,
    batch_id: str,
    progress: ProgressReporter,
    start: Callable[[ProgressReporter], RunReport],
) -> RunReport:
    """``start`` the batch, reporting to ``progress``; with ``--metrics-file``, the file is written
    first (a path that cannot be written is refused before any work), kept up to date by the
    progress reports, and written last from the report, or with the exit code of the error that
    ended the run (raised again as it was)."""
    path = given["metrics_file"]
    if path is None:
        return start(progress)
    metrics = MetricsFile.create(
        Path(path), batch_id, warn=lambda text: err.print(f"[yellow]warning:[/] {escape(text)}")
    )
    try:
        report = start(MetricsFileReporter(progress, metrics))
    except BaseException as exc:
        metrics.ended(_exit_code_of(exc))
        raise
    metrics.write(RunMetrics.of_report(report))
    return report


@command(
    app,
    JOB,
    "planning",
    "output",
    "execution",
    "storage",
    "encryption",
    "delivery",
    "rerun",
    PROGRESS,
    METRICS,
    JSON,
)
def run(ctx: typer.Context, given: Given) -> int:
    """Run a batch end to end: validate, plan, process chunks in parallel, aggregate, notify.

    A batch id whose plan is already in the bucket is resumed rather than started again.
    """
    settings = given.settings("job", "deployment")
    job = _job_input(given, settings)
    _warn_of_many_workers(settings.run)

    def start(progress: ProgressReporter) -> RunReport:
        with prepared_executor(settings.run) as executor_factory:
            return run_batch(
                job, settings.run, progress=progress, executor_factory=executor_factory
            )

    return finish(_metered(given, job.batch_id, _progress(given), start), given["as_json"])


@command(
    app, BATCH, "output", "execution", "storage", "encryption", "delivery", PROGRESS, METRICS, JSON
)
def resume(ctx: typer.Context, given: Given) -> int:
    """Continue an interrupted batch from its plan: finished chunks are kept, the rest run."""
    settings = given.settings("deployment")
    _warn_of_many_workers(settings.run)
    progress = _progress(given)

    def start(reporter: ProgressReporter) -> RunReport:
        with prepared_executor(settings.run) as executor_factory:
            return resume_batch(
                given["bucket"],
                given["batch_id"],
                settings.run,
                progress=reporter,
                executor_factory=executor_factory,
            )

    return finish(_metered(given, given["batch_id"], progress, start), given["as_json"])


@command(app, JOB, "planning", "output", "storage", "delivery", ESTIMATE, JSON)
def plan(ctx: typer.Context, given: Given) -> None:
    """Print the chunk plan (byte ranges, records, route) without processing or writing anything;
    with --estimate, the batch's wall time and cost on each backend instead."""
    if not given["estimate"]:
        for name, flag in _ESTIMATE_ONLY.items():
            if given[name] is not None:
                raise ConfigError(flag, "is an option of --estimate: give both, or neither")
        settings = given.settings("job")
        print_plan(preview_plan(_job_input(given, settings), settings.run), given["as_json"])
        return
    # Imported here, or every other command would pay for loading the estimate's modules.
    from scm_batch.estimate import DEFAULT_DASK_WORKERS, estimate_batch  # noqa: PLC0415

    # The estimate times the local pool run would start: run's execution settings are read.
    settings = given.settings("job", "execution")
    dask = given["estimate_dask_workers"]
    if dask is not None and dask < 1:
        raise ConfigError("--estimate-dask-workers", f"must be at least 1 (got {dask})")
    estimate = estimate_batch(
        _job_input(given, settings),
        settings.run,
        prices=given["prices"],
        dask_workers=dask or DEFAULT_DASK_WORKERS,
        dask_default=dask is None,
    )
    print_estimate(estimate, given["as_json"])


_ESTIMATE_ONLY = {
    "workers": "--workers",
    "estimate_dask_workers": "--estimate-dask-workers",
    "prices": "--prices",
}


VERIFY = (
    option(
        "verify",
        bool,
        "--verify",
        default=False,
        help="Read every part of every done chunk and check it against its receipt's checksum "
        "(exit 4 if one is missing or changed: resume rebuilds those chunks).",
    ),
)


@command(app, BATCH, "storage", VERIFY, JSON)
def status(ctx: typer.Context, given: Given) -> int:
    """Where a batch stands, from its bucket alone: chunks done, failed, pending; records so far."""
    storage = given.settings().run.storage
    state = batch_status(given["bucket"], given["batch_id"], storage, verify=given["verify"])
    print_status(state, given["as_json"])
    return ExitCode.CHUNKS_FAILED if state.damaged else ExitCode.OK
