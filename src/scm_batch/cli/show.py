"""What the batch commands print: a run's report, a batch's status, a plan; or the same as JSON.

People read standard output; ``--json`` makes it one JSON document for programs instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from rich.markup import escape
from rich.table import Table

from scm_batch.cli.console import out as _out
from scm_batch.cli.console import write_out
from scm_batch.ledger import encode_plan
from scm_batch.lifecycle import RunReport
from scm_batch.model import ChunkPlan
from scm_batch.observe.status import BatchStatus

if TYPE_CHECKING:
    from scm_batch.estimate import Estimate


def _write_json(value: object) -> None:
    write_out(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


def finish(report: RunReport, as_json: bool) -> int:
    """Print a run's outcome; return the command's exit code."""
    if as_json:
        _write_json(report.summary)
    else:
        print_report(report)
    return report.exit_code


def print_report(report: RunReport) -> None:
    s = report.summary
    t = s.totals
    if report.already_complete:
        _out.print(f"batch {s.batch_id} was already complete; its results as recorded:")
    verdict_style = {
        "VALIDATION_PASSED": "green",
        "VALIDATION_FAILED": "yellow",
        "VALIDATION_FAILED_CRITICAL": "red",
    }.get(s.validation_status, "white")
    table = Table(title=f"batch {s.batch_id}: {s.status}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    chunks = f"{s.chunks_succeeded}/{s.chunks_total} processed, {s.chunks_failed} failed"
    if s.chunks_not_processed:
        chunks += f", {s.chunks_not_processed} not started"
    if s.chunks_resumed:
        chunks += f" ({s.chunks_resumed} done by an earlier session)"
    rows = [
        ("records processed", f"{s.summary.total_records_processed:,}"),
        ("valid", f"{t.valid_records:,}"),
        (
            "errors",
            f"{t.errors:,}  " + ", ".join(f"{k}={v:,}" for k, v in s.errors_by_category.items()),
        ),
        ("blank lines skipped", f"{t.blank_lines:,}"),
        ("success rate", f"{s.summary.success_rate:.4f} %"),
        ("validation", f"[{verdict_style}]{s.validation_status}[/]"),
        ("chunks", chunks),
        ("time", f"{s.summary.processing_time:,.2f} s"),
        ("throughput", f"{s.summary.records_per_second:,.0f} records/s"),
        ("peak worker memory", f"{s.max_worker_peak_rss_bytes / 2**20:,.0f} MiB"),
        ("record engine", _engines(s.engines)),
    ]
    for label, value in rows:
        table.add_row(label, value)
    _out.print(table)
    for reason in report.validation.critical_reasons:
        _out.print(f"[red]critical:[/] {escape(reason)}")
    for failure in s.failed_chunks:
        _out.print(
            f"[red]failed:[/] {failure.chunk_id} after {len(failure.attempts)} attempt(s): "
            + escape(f"{failure.error_type}: {failure.message}")
        )
    _out.print(escape(f"aggregated results: {report.aggregated_uri}"))
    _out.print(escape(f"validation report:  {report.validation_uri}"))
    _out.print(escape(f"result parts:       {report.results_uri}"))
    _out.print(escape(f"error parts:        {report.errors_uri}"))
    for sent in report.notifications:
        _out.print(escape(f"notification ({sent.channel}): {sent.location}"))


def _engines(engines: dict[str, int]) -> str:
    """``native``, ``python``, or both with their chunks (a batch resumed under the other)."""
    if len(engines) <= 1:
        return next(iter(engines), "none (no chunk ran)")
    return ", ".join(f"{name} ({chunks:,} chunks)" for name, chunks in engines.items())


def print_status(state: BatchStatus, as_json: bool) -> None:
    """Where a batch stands (``scm-batch status``)."""
    if as_json:
        _write_json(state)
        return
    exact = "" if state.records_exact else " (estimated)"
    share = state.records_done / state.records_total if state.records_total else 0.0
    _out.print(escape(f"batch {state.batch_id} in {state.bucket}: {state.phase}"))
    _out.print(escape(f"input:   {state.file}, planned {state.planned_at}"))
    _out.print(
        f"chunks:  {state.chunks_done}/{state.chunks_total} done, "
        f"{state.chunks_failed} failed, {state.chunks_pending} pending"
    )
    _out.print(f"records: {state.records_done:,} of {state.records_total:,}{exact} ({share:.1%})")
    for failure in state.failed_chunks:
        _out.print(
            escape(
                f"failed:  {failure.chunk_id} after {len(failure.attempts)} attempt(s): "
                f"{failure.error_type}: {failure.message}"
            )
        )
    if state.batch_status is not None:
        _out.print(f"result:  {state.batch_status}, {state.validation_status}")
    if state.notification_status is not None:
        _out.print(f"notified: {state.notification_status}")
    if state.damaged is not None:
        _out.print(f"verified: {state.chunks_done - len(state.damaged)} done chunks intact")
        for chunk_id, problem in sorted(state.damaged.items()):
            _out.print(escape(f"damaged: {chunk_id}: {problem}"))
        if state.damaged:
            _out.print(
                "resume rebuilds a chunk whose part is missing or resized; delete a part changed "
                "in place first"
            )


def print_estimate(estimate: Estimate, as_json: bool) -> None:
    """Time and cost per backend (``scm-batch plan --estimate``)."""
    from scm_batch.estimate.report import render  # noqa: PLC0415 - only plan --estimate needs it

    if as_json:
        _write_json(estimate)
        return
    for part in render(estimate):
        _out.print(part)


def print_plan(chunk_plan: ChunkPlan, as_json: bool) -> None:
    """How the input would be cut (``scm-batch plan``)."""
    if as_json:
        write_out(encode_plan(chunk_plan).decode() + "\n")
        return
    exact = "exact" if chunk_plan.records_exact else "estimated"
    _out.print(
        f"{chunk_plan.source.size:,} bytes, {chunk_plan.total_records:,} records ({exact}), "
        f"{chunk_plan.source.bytes_per_record:.0f} bytes/record; "
        f"{chunk_plan.chunk_count} chunks of up to {chunk_plan.chunk_size:,} records; "
        f"{chunk_plan.output_format} result parts"
    )
    table = Table("chunk", "route", "bytes", "records", "first-last index", "est. seconds")
    for c in chunk_plan.chunks:
        table.add_row(
            c.chunk_id,
            c.route,
            f"{c.byte_start:,}-{c.byte_end:,}",
            f"{c.chunk_size:,}",
            f"{c.start_index:,}-{c.end_index:,}",
            f"{c.estimated_processing_time:,.1f}",
        )
    _out.print(table)
