"""The report's charts as HTML fragments: bars and stacks in CSS, time axes in inline SVG.

Nothing is drawn by a script and nothing is fetched: a chart is markup the browser lays out, so
the page works offline, prints, and reads at 1280 px and on a phone alike (labels are HTML text
that wraps; an SVG strip stretches to the width it is given). Every mark has the class ``mark``
and one naming its kind (``bar``, ``chunk``, ``failure``, ``bin``, ``segment``), and carries its
numbers in a tooltip (``title``), so a reader can hover and a test can count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from scm_batch.report.data import FailureMark, RateBin, TimeShare, WorkerRow

Format = Callable[[float], str]
TICKS = 6  # about this many labels on a time axis
STRIP_WIDTH = 1000  # the SVG strips' own units across; they stretch to the page


def bar_chart(chart_id: str, rows: Sequence[tuple[str, float]], fmt: Format, caption: str) -> str:
    """Horizontal bars, longest first as given: one row per ``(label, value)``."""
    if not rows:
        return _empty(chart_id, caption, "nothing to show")
    top = max(value for _, value in rows) or 1.0
    body = "".join(
        f'<div class="bar-row"><span class="label" title="{escape(label)}">{escape(label)}</span>'
        f'<span class="track"><span class="mark bar" style="width:{100 * value / top:.2f}%" '
        f'title="{escape(label)}: {escape(fmt(value))}"></span></span>'
        f'<span class="value">{escape(fmt(value))}</span></div>'
        for label, value in rows
    )
    return _figure(chart_id, caption, f'<div class="bars">{body}</div>')


def stacked_bar(chart_id: str, shares: Sequence[TimeShare], fmt: Format, caption: str) -> str:
    """One bar split into consecutive stretches, with a legend."""
    total = sum(s.seconds for s in shares)
    if not shares or total <= 0:
        return _empty(chart_id, caption, "not known yet: the batch has no aggregate")
    segments = "".join(
        f'<span class="mark segment tone-{i % 4}" style="width:{100 * s.seconds / total:.2f}%" '
        f'title="{escape(s.label)}: {escape(fmt(s.seconds))}"></span>'
        for i, s in enumerate(shares)
    )
    legend = "".join(
        f'<li><span class="swatch tone-{i % 4}"></span>{escape(s.label)} '
        f"<b>{escape(fmt(s.seconds))}</b> ({100 * s.seconds / total:.0f} %)</li>"
        for i, s in enumerate(shares)
    )
    return _figure(
        chart_id, caption, f'<div class="stack">{segments}</div><ul class="legend">{legend}</ul>'
    )


def timeline(
    chart_id: str,
    rows: Sequence[WorkerRow],
    failures: Sequence[FailureMark],
    fmt_time: Format,
    caption: str,
) -> str:
    """A row per worker, a bar per chunk where it ran (retried chunks marked), and a row of the
    chunks that failed for good at the time they were given up."""
    placed = [f for f in failures if f.at is not None]
    end = max(
        [bar.end for row in rows for bar in row.chunks] + [f.at or 0.0 for f in placed] + [0.0]
    )
    if end <= 0:
        return _empty(chart_id, caption, "no chunk has finished yet")
    scale = STRIP_WIDTH / end
    lanes = []
    for row in rows:
        marks = "".join(
            f'<rect class="mark chunk{" retried" if bar.attempts > 1 else ""}" '
            f'x="{bar.start * scale:.2f}" y="2" '
            f'width="{max(1.0, (bar.end - bar.start) * scale - 1):.2f}" height="16">'
            f"<title>{escape(bar.chunk_id)}: {escape(fmt_time(bar.start))} to "
            f"{escape(fmt_time(bar.end))}, {bar.records:,} records"
            f"{f', attempt {bar.attempts}' if bar.attempts > 1 else ''}</title></rect>"
            for bar in row.chunks
        )
        lanes.append(_lane("lane", row.worker, _chunks(len(row.chunks)), marks))
    if placed:
        marks = "".join(
            f'<rect class="mark failure" x="{min(STRIP_WIDTH - 6.0, (f.at or 0.0) * scale):.2f}" '
            f'y="1" width="6" height="18"><title>{escape(f.chunk_id)} failed after '
            f"{f.attempts} attempt(s) at {escape(fmt_time(f.at or 0.0))}: "
            f"{escape(f.error_type)}: {escape(f.message)}</title></rect>"
            for f in placed
        )
        lanes.append(_lane("lane failed", "failed for good", _chunks(len(placed)), marks))
    return _figure(chart_id, caption, "".join(lanes) + _axis(end, fmt_time))


def column_chart(chart_id: str, bins: Sequence[RateBin], fmt: Format, caption: str) -> str:
    """Columns over time (the throughput): one per bin, the height its rate."""
    if not bins:
        return _empty(chart_id, caption, "no chunk has finished yet")
    top = max(b.records_per_second for b in bins) or 1.0
    end = bins[-1].start + bins[-1].width
    scale = STRIP_WIDTH / end
    marks = "".join(
        f'<rect class="mark bin" x="{b.start * scale:.2f}" '
        f'y="{100 - 100 * b.records_per_second / top:.2f}" '
        f'width="{max(0.5, b.width * scale - 1):.2f}" '
        f'height="{100 * b.records_per_second / top:.2f}">'
        f"<title>{escape(_seconds_plain(b.start))}: {escape(fmt(b.records_per_second))}</title>"
        f"</rect>"
        for b in bins
    )
    plot = (
        f'<div class="lane columns"><span class="label">peak<small>{escape(fmt(top))}</small>'
        f'</span><svg class="plot" viewBox="0 0 {STRIP_WIDTH} 100" preserveAspectRatio="none" '
        f'role="img" aria-label="{escape(caption)}">{marks}</svg></div>'
    )
    return _figure(chart_id, caption, plot + _axis(end, _seconds_plain))


def _lane(kind: str, label: str, note: str, marks: str) -> str:
    return (
        f'<div class="{kind}"><span class="label" title="{escape(label)}">{escape(label)}'
        f'<small>{escape(note)}</small></span><svg class="strip" viewBox="0 0 {STRIP_WIDTH} 20" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(label)}">{marks}</svg></div>'
    )


def _axis(end: float, fmt: Format) -> str:
    """Tick labels under a time strip, at round steps from 0 to ``end``."""
    step = _step(end / TICKS)
    ticks = "".join(
        f'<span style="left:{100 * t / end:.2f}%">{escape(fmt(t))}</span>'
        for t in (i * step for i in range(int(end / step) + 1))
    )
    return f'<div class="axis-row"><span class="label"></span><div class="axis">{ticks}</div></div>'


def _step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return float(next(s * power for s in (1, 2, 5, 10) if raw <= s * power))


def _chunks(n: int) -> str:
    return f"{n:,} chunk" if n == 1 else f"{n:,} chunks"


def _seconds_plain(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def _figure(chart_id: str, caption: str, body: str) -> str:
    return (
        f'<figure class="chart" id="{escape(chart_id)}"><figcaption>{escape(caption)}'
        f"</figcaption>{body}</figure>"
    )


def _empty(chart_id: str, caption: str, why: str) -> str:
    return _figure(chart_id, caption, f'<p class="empty">{escape(why)}</p>')
