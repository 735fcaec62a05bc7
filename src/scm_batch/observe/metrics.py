"""A run's metrics as a Prometheus text file (``--metrics-file``), for the node exporter's textfile
collector: rewritten while the run goes on, at most every :data:`METRICS_INTERVAL` seconds, and
once more when it ends, from the aggregated results.

Every metric is a gauge of the run's current value, never a counter: the file describes one run
(a resumed batch's values include the earlier sessions' chunks; ``--overwrite`` starts them at
zero again), and a counter must never go down. So no name ends in ``_total``.

The text is written here rather than with ``prometheus_client``: a few gauges need a few lines of
the exposition format (HELP and TYPE lines, label values escaped), not a runtime dependency. The
tests read the file back with ``prometheus_client``'s parser.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from scm_batch.errors import ConfigError
from scm_batch.observe.files import replace_file
from scm_batch.observe.progress import ProgressReporter, ProgressSnapshot
from scm_batch.records.validate import Category

if TYPE_CHECKING:
    from scm_batch.lifecycle import RunReport

METRICS_INTERVAL = 5.0  # seconds between two writes while the run goes on
# Listed at 0 before any is seen, so that every series exists from the start (an alert on one
# does not wait for its first error).
CATEGORIES = (
    Category.MALFORMED,
    Category.EMPTY_RECORD,
    Category.MISSING_FIELD,
    Category.EMPTY_FIELD,
    Category.INVALID_FIELD,
    Category.TOO_LONG,
)
CHUNK_STATES = ("done", "failed", "pending")


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """What the file says of a run: from a progress snapshot while it goes on, from its
    aggregated results once it is over."""

    records: int = 0
    valid_records: int = 0
    errors_by_category: Mapping[str, int] = field(default_factory=dict)
    lines_read: int = 0
    lines_planned: int = 0
    chunks_done: int = 0
    chunks_failed: int = 0
    chunks_planned: int = 0
    chunk_retries: int = 0
    records_per_second: float = 0.0
    exit_code: int | None = None  # set once the run is over, however it ended

    @property
    def errors(self) -> int:
        return self.records - self.valid_records

    @property
    def chunks_pending(self) -> int:
        return max(0, self.chunks_planned - self.chunks_done - self.chunks_failed)

    @classmethod
    def of_progress(cls, snap: ProgressSnapshot) -> RunMetrics:
        """While the run goes on. Its records/s is of lines read, running chunks included."""
        return cls(
            records=snap.records_done,
            valid_records=snap.valid_records,
            errors_by_category=snap.errors_by_category,
            lines_read=snap.lines_done,
            lines_planned=snap.lines_total,
            chunks_done=snap.chunks_done,
            chunks_failed=snap.chunks_failed,
            chunks_planned=snap.chunks_total,
            chunk_retries=snap.chunk_retries,
            records_per_second=snap.rate,
        )

    @classmethod
    def of_report(cls, report: RunReport) -> RunMetrics:
        """Once the run is over: its aggregated results, exactly."""
        summary = report.summary
        return cls(
            records=summary.totals.records,
            valid_records=summary.totals.valid_records,
            errors_by_category=summary.errors_by_category,
            lines_read=summary.totals.lines,
            lines_planned=report.plan.total_records,
            chunks_done=summary.chunks_succeeded,
            chunks_failed=summary.chunks_failed,
            chunks_planned=summary.chunks_total,
            # A failed chunk's detail counts its attempts too; a chunk not started has none.
            chunk_retries=sum(max(0, d.attempts - 1) for d in summary.chunk_details),
            records_per_second=summary.summary.records_per_second,
            exit_code=report.exit_code,
        )


# ---- the exposition format ----------------------------------------------------------------------
def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


Sample = tuple[Mapping[str, str], float]


def _gauge(name: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {_help_text(help_text)}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        pairs = ",".join(f'{key}="{_label_value(text)}"' for key, text in labels.items())
        lines.append(f"{name}{{{pairs}}} {_number(value)}")
    return lines


def render(batch_id: str, metrics: RunMetrics, now: float) -> str:
    """The file's text: every metric with its HELP and TYPE lines, labelled with the batch.
    No sample has a timestamp: the textfile collector refuses them."""
    batch = {"batch_id": batch_id}

    def one(value: float) -> list[Sample]:
        return [(batch, value)]

    by_category = dict.fromkeys(CATEGORIES, 0) | dict(metrics.errors_by_category)
    by_state = {
        "done": metrics.chunks_done,
        "failed": metrics.chunks_failed,
        "pending": metrics.chunks_pending,
    }
    families = [
        _gauge(
            "scm_batch_records_processed",
            "Records in the chunks done so far (blank lines are not records).",
            one(metrics.records),
        ),
        _gauge(
            "scm_batch_records_valid",
            "Valid records in the chunks done so far.",
            one(metrics.valid_records),
        ),
        _gauge(
            "scm_batch_records_errors",
            "Records with an error in the chunks done so far (the sum of scm_batch_errors).",
            one(metrics.errors),
        ),
        _gauge(
            "scm_batch_errors",
            "Records with an error in the chunks done so far, by category.",
            [({**batch, "category": c}, n) for c, n in sorted(by_category.items())],
        ),
        _gauge(
            "scm_batch_lines_read",
            "Input lines read so far, chunks still running included.",
            one(metrics.lines_read),
        ),
        _gauge(
            "scm_batch_lines_planned",
            "Input lines in the plan (an estimate when the lines were not counted).",
            one(metrics.lines_planned),
        ),
        _gauge(
            "scm_batch_chunks",
            "Chunks by state: done, failed (given up on) or pending (neither, yet).",
            [({**batch, "state": state}, n) for state, n in by_state.items()],
        ),
        _gauge("scm_batch_chunks_planned", "Chunks in the plan.", one(metrics.chunks_planned)),
        _gauge(
            "scm_batch_chunk_retries",
            "Attempts beyond the first of the chunks done or failed so far.",
            one(metrics.chunk_retries),
        ),
        _gauge(
            "scm_batch_records_per_second",
            "This session's throughput: lines read per second while it runs, records processed "
            "per second once it is over.",
            one(metrics.records_per_second),
        ),
        _gauge(
            "scm_batch_run_finished",
            "1 once the run is over, however it ended; 0 while it runs.",
            one(0 if metrics.exit_code is None else 1),
        ),
        _gauge(
            "scm_batch_last_update_timestamp_seconds",
            "When this file was written, in seconds since the Unix epoch.",
            one(now),
        ),
    ]
    if metrics.exit_code is not None:
        families.append(
            _gauge(
                "scm_batch_run_exit_code",
                "The command's exit code once the run is over (0: completed; see the README).",
                one(metrics.exit_code),
            )
        )
    return "\n".join(line for family in families for line in family) + "\n"


# ---- the file -----------------------------------------------------------------------------------
class MetricsFile:
    """The metrics file of one run of batch ``batch_id``. It remembers what it last wrote, so that
    a run that ends in an error can say so with the values it had reached.

    A write that fails while the run goes on (a full disk) is reported to ``warn`` once and does
    not stop the run: the metrics describe the run, they are not its outcome."""

    def __init__(
        self,
        path: Path,
        batch_id: str,
        *,
        wall: Callable[[], float] = time.time,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.batch_id = batch_id
        self.last = RunMetrics()
        self._wall = wall
        self._warn = warn
        self._warned = False

    @classmethod
    def create(
        cls,
        path: Path,
        batch_id: str,
        *,
        wall: Callable[[], float] = time.time,
        warn: Callable[[str], None] | None = None,
    ) -> MetricsFile:
        """The file, written at once with the run not started yet (zeros, not finished): a
        directory that does not exist or cannot be written is a configuration error before any
        work, and a scraper stops seeing the values of a previous run."""
        if path.is_dir():
            raise ConfigError("--metrics-file", f"{path} is a directory, not a file")
        if not path.parent.is_dir():
            raise ConfigError("--metrics-file", f"no directory {path.parent} to write {path.name}")
        metrics = cls(path, batch_id, wall=wall, warn=warn)
        try:
            metrics._write_now(metrics.last)
        except OSError as exc:
            raise ConfigError(
                "--metrics-file", f"cannot write {path}: {exc.strerror or exc}"
            ) from None
        return metrics

    def _write_now(self, metrics: RunMetrics) -> None:
        replace_file(self.path, render(self.batch_id, metrics, self._wall()))
        self.last = metrics

    def write(self, metrics: RunMetrics) -> None:
        """Rewrite the file with ``metrics``; a failure is warned of (once), not raised."""
        try:
            self._write_now(metrics)
        except OSError as exc:
            if self._warn is not None and not self._warned:
                self._warn(f"--metrics-file: cannot write {self.path}: {exc.strerror or exc}")
            self._warned = True

    def ended(self, exit_code: int) -> None:
        """The run ended with ``exit_code`` and no report: the last values, marked finished."""
        self.write(replace(self.last, exit_code=exit_code))


class MetricsFileReporter:
    """A progress reporter that hands everything to ``inner`` and keeps ``file`` up to date: at
    most every ``interval`` seconds (by ``clock``) while chunks run, and when they are done."""

    def __init__(
        self,
        inner: ProgressReporter,
        file: MetricsFile,
        *,
        interval: float = METRICS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._file = file
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    @property
    def interval(self) -> float:
        # The driver reports at this pace; the inner reporter throttles itself (log lines every
        # 10 seconds), so a faster pace changes nothing there and lets the file keep to its own.
        return min(self._inner.interval, self._interval)

    def phase(self, text: str) -> None:
        self._inner.phase(text)

    def update(self, snap: ProgressSnapshot) -> None:
        self._inner.update(snap)
        now = self._clock()
        if self._last is None or now - self._last >= self._interval:
            self._last = now
            self._file.write(RunMetrics.of_progress(snap))

    def finish(self, snap: ProgressSnapshot) -> None:
        self._inner.finish(snap)
        self._last = self._clock()
        self._file.write(RunMetrics.of_progress(snap))
