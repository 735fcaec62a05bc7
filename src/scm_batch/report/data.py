"""What a run report shows, as data: built from a batch's ledger alone (plan, chunk receipts,
failures, aggregate), so it works for a batch that finished, failed, or is still running, on a
local directory or on S3.

Every chart of the HTML page is drawn from one field of :class:`ReportData`; ``report --json``
prints the same value, so what a chart shows can be checked, or charted again elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from scm_batch.clock import utc_timestamp
from scm_batch.ledger import Ledger
from scm_batch.model import (
    CamelStruct,
    ChunkFailure,
    ChunkPlan,
    ChunkResult,
    RunSummary,
    StatusWord,
)

State = Literal["planned", "running", "completed", "failed"]
SLOWEST = 10  # chunks listed as the slowest
THROUGHPUT_BINS = 60  # at most this many columns in the throughput chart
FIELD_ROWS = 15  # at most this many (field, problem) rows in the errors-by-field chart


class ChunkBar(CamelStruct, frozen=True):
    """A chunk's committed attempt on its worker's row: seconds from the timeline's start."""

    chunk_id: str
    chunk_number: int
    start: float
    end: float
    records: int
    attempts: int  # more than one: the chunk was retried before this attempt committed


class WorkerRow(CamelStruct, frozen=True):
    """One worker's chunks, in the order they ran."""

    worker: str
    chunks: list[ChunkBar]
    busy_seconds: float


class FailureMark(CamelStruct, frozen=True):
    """A chunk that failed for good; ``at``: when (seconds from the timeline's start), if known."""

    chunk_id: str
    chunk_number: int
    at: float | None
    error_type: str
    message: str
    attempts: int


class RateBin(CamelStruct, frozen=True):
    """Records finished per second over ``[start, start + width)`` of the timeline."""

    start: float
    width: float
    records_per_second: float


class FieldErrorCount(CamelStruct, frozen=True):
    field: str
    problem: str
    count: int


class SlowChunk(CamelStruct, frozen=True):
    chunk_id: str
    seconds: float
    records: int
    records_per_second: float
    worker: str | None
    attempts: int


class TimeShare(CamelStruct, frozen=True):
    """One stretch of the batch's wall time (``seconds`` may be unknown for older ledgers)."""

    label: str
    seconds: float


class ReportData(CamelStruct, frozen=True):
    """Everything the report shows."""

    batch_id: str
    bucket: str
    file: str
    generated_at: str
    state: State
    status: StatusWord | None  # the aggregate's, once there is one
    verdict: StatusWord | None
    critical_reasons: list[str]
    records_total: int
    records_exact: bool
    records_done: int
    valid_records: int
    errors: int
    blank_lines: int
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    chunks_pending: int
    retries: int  # attempts beyond the first, over every chunk done or failed
    wall_seconds: float | None  # the last session's, from the aggregate; None while running
    records_per_second: float | None
    peak_worker_rss_bytes: int
    timeline_start: str | None  # when the first chunk of the timeline started
    # Done chunks not drawn: by an earlier session of a resumed batch, or in older receipts
    # (no start time). They count in every total all the same.
    chunks_off_timeline: int
    timeline: list[WorkerRow]
    failures: list[FailureMark]
    throughput: list[RateBin]
    errors_by_category: dict[str, int]
    errors_by_field: list[FieldErrorCount]
    slowest_chunks: list[SlowChunk]
    time_went: list[TimeShare]
    worker_busy_share: float | None  # chunk time over workers times the processing stretch


def read_report(ledger: Ledger, *, now: datetime | None = None) -> ReportData:
    """The report of ``ledger``'s batch as it stands (``NothingToResumeError`` without a plan)."""
    plan = ledger.stored_plan()
    done = ledger.done()
    failures = [f for f in ledger.failures().values() if f.chunk_id not in done]
    validation = ledger.validation()
    return build_report(
        plan,
        done.values(),
        failures,
        ledger.summary(),
        bucket=ledger.storage.uri,
        critical_reasons=validation.critical_reasons if validation is not None else [],
        generated_at=utc_timestamp(now),
    )


def build_report(
    plan: ChunkPlan,
    done: Iterable[ChunkResult],
    failures: Iterable[ChunkFailure],
    summary: RunSummary | None,
    *,
    bucket: str,
    critical_reasons: list[str],
    generated_at: str,
) -> ReportData:
    """The report from a batch's records: pure, so every number can be checked by hand."""
    results = sorted(done, key=lambda r: r.chunk_number)
    failed = sorted(failures, key=lambda f: f.chunk_number)
    timed = _this_session(results, summary)
    origin = min((r.started_at for r in timed if r.started_at is not None), default=None)
    timeline = _timeline(timed, origin)
    errors_by_category: dict[str, int] = {}
    field_errors: dict[tuple[str, str], int] = {}
    for r in results:
        for category, count in r.errors_by_category.items():
            errors_by_category[category] = errors_by_category.get(category, 0) + count
        for name, problems in r.field_errors.items():
            for problem, count in problems.items():
                field_errors[name, problem] = field_errors.get((name, problem), 0) + count
    records = sum(r.records for r in results)
    return ReportData(
        batch_id=plan.job.batch_id,
        bucket=bucket,
        file=plan.job.file,
        generated_at=generated_at,
        state=_state(summary, bool(results or failed)),
        status=summary.status if summary is not None else None,
        verdict=summary.validation_status if summary is not None else None,
        critical_reasons=critical_reasons,
        records_total=plan.total_records,
        records_exact=plan.records_exact,
        records_done=records,
        valid_records=sum(r.valid_records for r in results),
        errors=sum(r.errors for r in results),
        blank_lines=sum(r.blank_lines for r in results),
        chunks_total=len(plan.chunks),
        chunks_done=len(results),
        chunks_failed=len(failed),
        chunks_pending=len(plan.chunks) - len(results) - len(failed),
        retries=sum(len(r.attempts) - 1 for r in results if r.attempts)
        + sum(len(f.attempts) - 1 for f in failed if f.attempts),
        wall_seconds=summary.summary.processing_time if summary is not None else None,
        records_per_second=summary.summary.records_per_second if summary is not None else None,
        peak_worker_rss_bytes=max((r.worker_peak_rss_bytes for r in results), default=0),
        timeline_start=_iso(origin),
        chunks_off_timeline=len(results) - len(timed),
        timeline=timeline,
        failures=[_failure_mark(f, origin) for f in failed],
        throughput=_throughput(timed, origin),
        errors_by_category=dict(sorted(errors_by_category.items(), key=lambda kv: -kv[1])),
        errors_by_field=[
            FieldErrorCount(field=name, problem=problem, count=count)
            for (name, problem), count in sorted(field_errors.items(), key=lambda kv: -kv[1])[
                :FIELD_ROWS
            ]
        ],
        slowest_chunks=_slowest(results),
        time_went=_time_went(plan, timed, summary),
        worker_busy_share=_busy_share(timeline),
    )


def _state(summary: RunSummary | None, started: bool) -> State:
    """``running`` is a batch without an aggregate: one running now, or one interrupted (its
    ledger cannot tell the two apart; ``resume`` finishes either)."""
    if summary is not None:
        return "completed" if summary.status == StatusWord.COMPLETED else "failed"
    return "running" if started else "planned"


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return utc_timestamp(datetime.fromtimestamp(seconds, UTC))


def _epoch(timestamp: str) -> float | None:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _this_session(results: list[ChunkResult], summary: RunSummary | None) -> list[ChunkResult]:
    """The receipts the timeline, the throughput and where the time went are drawn from: those
    with a start time, and, once there is an aggregate, only those of the session it describes,
    so that a batch resumed the next morning is not drawn across the night. (A batch that has no
    aggregate yet shows every chunk: its ledger does not say when this session began.)"""
    timed = [r for r in results if r.started_at is not None]
    began = _epoch(summary.started_at) if summary is not None else None
    if began is None:
        return timed
    return [r for r in timed if (r.started_at or 0.0) >= began]


def _timeline(timed: list[ChunkResult], origin: float | None) -> list[WorkerRow]:
    if origin is None:
        return []
    rows: dict[str, list[ChunkBar]] = {}
    for r in timed:
        start = (r.started_at or origin) - origin
        rows.setdefault(r.worker or "unknown", []).append(
            ChunkBar(
                chunk_id=r.chunk_id,
                chunk_number=r.chunk_number,
                start=round(start, 3),
                end=round(start + r.duration_seconds, 3),
                records=r.records,
                attempts=max(1, len(r.attempts)),
            )
        )
    ordered = sorted(rows.items(), key=lambda kv: min(bar.start for bar in kv[1]))
    return [
        WorkerRow(
            worker=worker,
            chunks=sorted(bars, key=lambda bar: bar.start),
            busy_seconds=round(sum(bar.end - bar.start for bar in bars), 3),
        )
        for worker, bars in ordered
    ]


def _failure_mark(failure: ChunkFailure, origin: float | None) -> FailureMark:
    ended = failure.attempts[-1].finished_at if failure.attempts else None
    return FailureMark(
        chunk_id=failure.chunk_id,
        chunk_number=failure.chunk_number,
        # Never before the first committed chunk's start, where the timeline begins.
        at=round(max(0.0, ended - origin), 3) if ended is not None and origin is not None else None,
        error_type=failure.error_type,
        message=failure.message,
        attempts=max(1, len(failure.attempts)),
    )


def _throughput(timed: list[ChunkResult], origin: float | None) -> list[RateBin]:
    """Records per second over time: each chunk's records spread evenly over its run."""
    if origin is None or not timed:
        return []
    spans = [((r.started_at or origin) - origin, r.duration_seconds, r.records) for r in timed]
    end = max(start + seconds for start, seconds, _ in spans)
    width = _nice_width(end / THROUGHPUT_BINS) if end > 0 else 1.0
    bins = [0.0] * max(1, math.ceil(end / width))
    for start, seconds, records in spans:
        if seconds <= 0:
            bins[min(len(bins) - 1, int(start / width))] += records
            continue
        first, last = int(start / width), min(len(bins) - 1, int((start + seconds) / width))
        for i in range(first, last + 1):
            overlap = min(start + seconds, (i + 1) * width) - max(start, i * width)
            bins[i] += records * max(0.0, overlap) / seconds
    return [
        RateBin(start=round(i * width, 3), width=width, records_per_second=round(n / width, 1))
        for i, n in enumerate(bins)
    ]


def _nice_width(seconds: float) -> float:
    """A bin width people read easily: 1, 2 or 5 times a power of ten, at least 0.1 s."""
    seconds = max(seconds, 0.1)
    power = 10 ** math.floor(math.log10(seconds))
    for step in (1, 2, 5, 10):
        if seconds <= step * power:
            return float(step * power)
    return float(10 * power)


def _slowest(results: list[ChunkResult]) -> list[SlowChunk]:
    slow = sorted(results, key=lambda r: (-r.duration_seconds, r.chunk_number))[:SLOWEST]
    return [
        SlowChunk(
            chunk_id=r.chunk_id,
            seconds=r.duration_seconds,
            records=r.records,
            records_per_second=round(r.records / r.duration_seconds, 1)
            if r.duration_seconds > 0
            else 0.0,
            worker=r.worker,
            attempts=max(1, len(r.attempts)),
        )
        for r in slow
    ]


def _time_went(
    plan: ChunkPlan, timed: list[ChunkResult], summary: RunSummary | None
) -> list[TimeShare]:
    """The last session's wall time in consecutive stretches: checking the input, planning and
    starting the workers, processing the chunks, aggregating and notifying. A stretch whose ends
    are unknown (a batch still running, one resumed in a later session, older receipts) is left
    out."""
    shares: list[TimeShare] = []
    started = _epoch(summary.started_at) if summary is not None else None
    finished = _epoch(summary.finished_at) if summary is not None else None
    planned = _epoch(plan.created_at)
    first = min((r.started_at for r in timed if r.started_at is not None), default=None)
    last = max(
        ((r.started_at or 0.0) + r.duration_seconds for r in timed if r.started_at), default=None
    )
    if started is not None and planned is not None and planned >= started:
        # The plan is stamped when planning starts: the line count is in the next stretch.
        shares.append(TimeShare(label="checking the input", seconds=planned - started))
        if first is not None and first >= planned:
            shares.append(TimeShare(label="planning, starting workers", seconds=first - planned))
    if first is not None and last is not None:
        shares.append(TimeShare(label="processing chunks", seconds=last - first))
    if finished is not None and last is not None and finished >= last:
        shares.append(TimeShare(label="aggregating and notifying", seconds=finished - last))
    return [TimeShare(label=s.label, seconds=round(s.seconds, 3)) for s in shares]


def _busy_share(timeline: list[WorkerRow]) -> float | None:
    """How much of the processing stretch the workers spent on chunks (1.0: never idle), the
    workers being as many as ever ran chunks at once: a worker replaced after it died, or a Batch
    job a chunk, is a row of its own but not one more worker."""
    bars = [bar for row in timeline for bar in row.chunks]
    if not bars:
        return None
    span = max(bar.end for bar in bars) - min(bar.start for bar in bars)
    if span <= 0:
        return None
    return round(sum(bar.end - bar.start for bar in bars) / (span * _most_at_once(bars)), 3)


def _most_at_once(bars: list[ChunkBar]) -> int:
    """The most bars that overlap at one moment (an end and a start at the same instant do not:
    a worker's next chunk starts as its last one ends)."""
    events = sorted([(bar.start, 1) for bar in bars] + [(bar.end, -1) for bar in bars])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return max(1, most)
