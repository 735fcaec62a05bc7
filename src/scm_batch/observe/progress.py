"""Progress of a run: a live display in a terminal, periodic plain lines otherwise.

Both go to standard error, so standard output carries only the result (the summary or ``--json``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

ProgressMode = Literal["auto", "live", "log", "none"]
DEFAULT_LOG_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Where a run stands."""

    lines_done: int
    lines_total: int
    chunks_done: int
    chunks_failed: int
    chunks_total: int
    elapsed: float
    lines_resumed: int = 0  # done by earlier sessions of a resumed batch: not this session's rate
    # Of the chunks finished so far, earlier sessions' included: what a metrics file reports
    # (the display and the log lines do not). Records, valid records and errors by category of
    # the done chunks; attempts beyond the first of the done and the failed ones.
    records_done: int = 0
    valid_records: int = 0
    errors_by_category: Mapping[str, int] = field(default_factory=dict)
    chunk_retries: int = 0

    @property
    def rate(self) -> float:
        """Lines per second so far in this session."""
        done_now = self.lines_done - self.lines_resumed
        return done_now / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, if there is a rate yet."""
        rate = self.rate
        if rate <= 0:
            return None
        return max(0.0, (self.lines_total - self.lines_done) / rate)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def describe(snap: ProgressSnapshot) -> str:
    """One line of progress, as written to logs."""
    share = snap.lines_done / snap.lines_total if snap.lines_total else 0.0
    return (
        f"{snap.lines_done:,}/{snap.lines_total:,} records ({share:.1%}), "
        f"{snap.rate:,.0f} records/s, chunks {snap.chunks_done}/{snap.chunks_total} done, "
        f"{snap.chunks_failed} failed, elapsed {_duration(snap.elapsed)}, ETA {_duration(snap.eta)}"
    )


class ProgressReporter(Protocol):
    """Told about phases and progress by the driver."""

    @property
    def interval(self) -> float:
        """How often (seconds) the driver should report progress while waiting for chunks."""
        ...

    def phase(self, text: str) -> None: ...

    def update(self, snap: ProgressSnapshot) -> None: ...

    def finish(self, snap: ProgressSnapshot) -> None: ...


class NullProgress:
    """Reports nothing."""

    interval = 1.0

    def phase(self, text: str) -> None:
        pass

    def update(self, snap: ProgressSnapshot) -> None:
        pass

    def finish(self, snap: ProgressSnapshot) -> None:
        pass


class LogProgress:
    """A plain line per phase, and a progress line at most every ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float = DEFAULT_LOG_INTERVAL) -> None:
        self._stream = stream
        self._interval = interval
        self._last: float | None = None

    @property
    def interval(self) -> float:
        return self._interval

    def _write(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self._stream.write(f"{stamp} {text}\n")
        self._stream.flush()

    def phase(self, text: str) -> None:
        self._write(text)

    def update(self, snap: ProgressSnapshot) -> None:
        now = time.monotonic()
        if self._last is None or now - self._last >= self._interval:
            self._last = now
            self._write("progress: " + describe(snap))

    def finish(self, snap: ProgressSnapshot) -> None:
        self._write("done: " + describe(snap))


class LiveProgress:
    """A live progress bar with records/s, chunks and ETA, for a terminal."""

    interval = 0.25

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} records"),
            TextColumn("{task.fields[rate]:>10,.0f} rec/s"),
            TextColumn("chunks {task.fields[chunks]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def phase(self, text: str) -> None:
        self._console.log(text)

    def update(self, snap: ProgressSnapshot) -> None:
        chunks = f"{snap.chunks_done}/{snap.chunks_total} ({snap.chunks_failed} failed)"
        eta = _duration(snap.eta)
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(
                "processing", total=snap.lines_total, rate=snap.rate, chunks=chunks, eta=eta
            )
        self._progress.update(
            self._task, completed=snap.lines_done, rate=snap.rate, chunks=chunks, eta=eta
        )

    def finish(self, snap: ProgressSnapshot) -> None:
        self.update(snap)
        self._progress.stop()


def choose_progress(mode: ProgressMode, stream: TextIO | None = None) -> ProgressReporter:
    """The reporter for ``mode``; ``auto`` is live on a terminal and plain lines elsewhere."""
    out = stream if stream is not None else sys.stderr
    if mode == "none":
        return NullProgress()
    if mode == "live" or (mode == "auto" and out.isatty()):
        return LiveProgress(Console(file=out))
    return LogProgress(out)
