"""Progress lines for logs, and the choice between live display and log lines."""

from __future__ import annotations

import io

from scm_batch.observe.progress import (
    LiveProgress,
    LogProgress,
    NullProgress,
    ProgressSnapshot,
    choose_progress,
    describe,
)


def snap(done: int, elapsed: float) -> ProgressSnapshot:
    return ProgressSnapshot(
        lines_done=done,
        lines_total=1000,
        chunks_done=2,
        chunks_failed=1,
        chunks_total=10,
        elapsed=elapsed,
    )


def test_describe_gives_rate_chunks_and_eta() -> None:
    text = describe(snap(250, 5.0))
    assert "250/1,000 records (25.0%)" in text
    assert "50 records/s" in text
    assert "chunks 2/10 done, 1 failed" in text
    assert "ETA 00:15" in text
    assert "ETA --:--" in describe(snap(0, 0.0))
    resumed = ProgressSnapshot(
        lines_done=600,
        lines_total=1000,
        chunks_done=6,
        chunks_failed=0,
        chunks_total=10,
        elapsed=2.0,
        lines_resumed=500,
    )
    assert resumed.rate == 50.0  # only this session's lines count
    assert resumed.eta == 8.0


def test_log_progress_is_throttled_to_its_interval() -> None:
    out = io.StringIO()
    reporter = LogProgress(out, interval=3600)
    reporter.phase("CalculateChunks")
    reporter.update(snap(100, 1.0))
    reporter.update(snap(200, 2.0))  # within the interval: not written
    reporter.finish(snap(1000, 3.0))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("CalculateChunks")
    assert "progress: 100/1,000" in lines[1]
    assert "done: 1,000/1,000" in lines[2]


def test_choice_follows_the_stream() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(choose_progress("auto", io.StringIO()), LogProgress)
    assert isinstance(choose_progress("auto", Terminal()), LiveProgress)
    assert isinstance(choose_progress("none", Terminal()), NullProgress)
    assert isinstance(choose_progress("log", Terminal()), LogProgress)


def test_live_progress_renders_records_and_chunks() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    reporter = choose_progress("live", terminal)
    reporter.update(snap(500, 1.0))
    reporter.finish(snap(1000, 2.0))
    rendered = terminal.getvalue()
    assert "1,000/1,000 records" in rendered
    assert "chunks 2/10 (1 failed)" in rendered
