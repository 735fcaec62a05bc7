"""``scm-batch report``: a batch's run report, from its bucket alone (finished, failed or still
running; a local directory or S3): an HTML page with charts (``--html``), its data as JSON
(``--json``), or a few lines on the terminal."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import typer
from rich.markup import escape

from scm_batch.cli.app import app
from scm_batch.cli.console import err, write_out
from scm_batch.cli.console import out as _out
from scm_batch.cli.flags import BATCH, JSON, Given, command, option
from scm_batch.errors import ConfigError
from scm_batch.ledger import Ledger
from scm_batch.observe.files import replace_file
from scm_batch.report.data import ReportData, read_report
from scm_batch.report.page import per_second, render_html, seconds
from scm_batch.storage import open_storage

HTML = (
    option(
        "html",
        Path | None,
        "--html",
        help="Write the report as one self-contained HTML file (charts, no network needed).",
    ),
)


@command(app, BATCH, "storage", HTML, JSON)
def report(ctx: typer.Context, given: Given) -> None:
    """A batch's run report: summary and verdict, chunks per worker over time, throughput,
    errors by category and field, the slowest chunks, where the time went."""
    target: Path | None = given["html"]
    if target is not None:
        _check_writable(target)
    storage = given.settings().run.storage
    data = read_report(Ledger(open_storage(given["bucket"], storage), given["batch_id"]))
    if target is not None:
        replace_file(target, render_html(data))  # whole: a refreshing browser never sees half
        err.print(escape(f"report written to {target}"), soft_wrap=True)
    if given["as_json"]:
        write_out(msgspec.json.format(msgspec.json.encode(data)).decode() + "\n")
    elif target is None:
        _print_brief(data)


def _check_writable(target: Path) -> None:
    """Refused before the bucket is read: a directory that is not there or not writable."""
    folder = target.parent
    if target.is_dir():
        raise ConfigError("--html", f"{target} is a directory; give a file name")
    if not folder.is_dir():
        raise ConfigError("--html", f"the directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError("--html", f"cannot write into {folder}")


def _print_brief(r: ReportData) -> None:
    _out.print(escape(f"batch {r.batch_id}: {r.state}" + (f", {r.verdict}" if r.verdict else "")))
    _out.print(
        f"records: {r.records_done:,} of {r.records_total:,}, {r.valid_records:,} valid, "
        f"{r.errors:,} rejected"
    )
    _out.print(
        f"chunks:  {r.chunks_done:,}/{r.chunks_total:,} done, {r.chunks_failed:,} failed, "
        f"{r.chunks_pending:,} pending, {r.retries:,} retries, on {len(r.timeline)} workers"
    )
    if r.wall_seconds is not None and r.records_per_second is not None:
        _out.print(f"time:    {seconds(r.wall_seconds)}, {per_second(r.records_per_second)}")
    for slow in r.slowest_chunks[:3]:
        where = slow.worker or "a worker not recorded (an older receipt)"
        _out.print(escape(f"slow:    {slow.chunk_id} {seconds(slow.seconds)} on {where}"))
    _out.print("--html FILE writes the report with its charts; --json prints its data")
