"""The run report as one self-contained HTML file: inline styles, charts as markup, the data
behind them embedded as JSON; no script runs and nothing is fetched, so it opens offline, from
an e-mail attachment or an S3 console download alike.

Light or dark follows the reader's system (``prefers-color-scheme``); the layout is a single
column that widens into a grid from tablet width on.
"""

from __future__ import annotations

from html import escape

import msgspec

from scm_batch._version import __version__
from scm_batch.report.charts import bar_chart, column_chart, stacked_bar, timeline
from scm_batch.report.data import ReportData

_STATE_WORDS = {
    "planned": "planned, no chunk done yet",
    "running": "not finished: running now, or interrupted (resume finishes it)",
    "completed": "completed",
    "failed": "failed",
}


def render_html(report: ReportData) -> str:
    """The report page for ``report``."""
    title = f"scm-batch report: batch {report.batch_id}"
    # "<" written as JSON's \u003c: no text in the data can end or open a tag inside the block.
    data = msgspec.json.encode(report).decode().replace("<", "\\u003c")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f"{_header(report, title)}{_cards(report)}{_problems(report)}"
        '<div class="grid">'
        + timeline(
            "timeline",
            report.timeline,
            report.failures,
            seconds,
            "Chunks per worker over time (retried chunks in orange, failed in red)"
            + _off_timeline(report.chunks_off_timeline),
        )
        + column_chart(
            "throughput", report.throughput, per_second, "Throughput: records finished per second"
        )
        + bar_chart(
            "errors-by-category",
            list(report.errors_by_category.items()),
            count,
            f"Errors by category ({report.errors:,} records rejected)",
        )
        + bar_chart(
            "errors-by-field",
            [(f"{e.field}: {e.problem}", e.count) for e in report.errors_by_field],
            count,
            "Errors by field and problem (a record may have several)",
        )
        + bar_chart(
            "slowest-chunks",
            [(f"{c.chunk_id}{_attempts(c.attempts)}", c.seconds) for c in report.slowest_chunks],
            seconds,
            "The slowest chunks",
        )
        + stacked_bar("time-went", report.time_went, seconds, _time_caption(report))
        + "</div>"
        f"<footer>Made by scm-batch {escape(__version__)} on {escape(report.generated_at)}. "
        f"The data behind every chart: <code>scm-batch report --json</code>, and inside this "
        f"file.</footer>"
        f'<script type="application/json" id="report-data">{data}</script>'
        "</main></body></html>\n"
    )


def _header(r: ReportData, title: str) -> str:
    verdict = (
        f'<span class="badge {escape(str(r.verdict).lower())}">{escape(str(r.verdict))}</span>'
        if r.verdict is not None
        else ""
    )
    return (
        f"<header><h1>{escape(title)}</h1>"
        f'<p><span class="badge state-{r.state}">{escape(_STATE_WORDS[r.state])}</span>{verdict}'
        f'</p><p class="where">{escape(r.file)} in {escape(r.bucket)}'
        f"{f' · first chunk started {escape(r.timeline_start)}' if r.timeline_start else ''}"
        "</p></header>"
    )


def _cards(r: ReportData) -> str:
    exact = "" if r.records_exact else " (estimated)"
    share = r.records_done / r.records_total if r.records_total else 0.0
    error_share = r.errors / r.records_done if r.records_done else 0.0
    cards = [
        ("records", f"{r.records_done:,}", f"of {r.records_total:,}{exact} ({share:.1%})"),
        ("valid", f"{r.valid_records:,}", f"{r.blank_lines:,} blank lines skipped"),
        ("rejected", f"{r.errors:,}", f"{error_share:.2%} of the records read"),
        (
            "chunks",
            f"{r.chunks_done:,} / {r.chunks_total:,}",
            f"{r.chunks_failed:,} failed, {r.chunks_pending:,} pending, {r.retries:,} retries",
        ),
        (
            "wall time",
            seconds(r.wall_seconds) if r.wall_seconds is not None else "—",
            "the last session, planning to notification",
        ),
        (
            "throughput",
            per_second(r.records_per_second) if r.records_per_second is not None else "—",
            f"{len(r.timeline)} workers"
            + (f", busy {r.worker_busy_share:.0%}" if r.worker_busy_share is not None else ""),
        ),
        ("peak worker memory", mebibytes(r.peak_worker_rss_bytes), "the largest of any chunk"),
    ]
    return (
        '<section class="cards">'
        + "".join(
            f'<div class="card"><h2>{escape(name)}</h2><p class="big">{escape(value)}</p>'
            f"<p>{escape(note)}</p></div>"
            for name, value, note in cards
        )
        + "</section>"
    )


def _problems(r: ReportData) -> str:
    items = [f"<li><b>critical:</b> {escape(reason)}</li>" for reason in r.critical_reasons]
    items += [
        f"<li><b>{escape(f.chunk_id)}</b> failed after {f.attempts} attempt(s): "
        f"{escape(f.error_type)}: {escape(f.message)}</li>"
        for f in r.failures
    ]
    if not items:
        return ""
    return f'<section class="problems"><h2>What went wrong</h2><ul>{"".join(items)}</ul></section>'


def _off_timeline(chunks: int) -> str:
    if not chunks:
        return ""
    return f"; {chunks:,} chunks done by an earlier session or an older version are not drawn"


def _attempts(attempts: int) -> str:
    return f" (attempt {attempts})" if attempts > 1 else ""


def _time_caption(r: ReportData) -> str:
    total = sum(s.seconds for s in r.time_went)
    return f"Where the time went ({seconds(total)})" if total > 0 else "Where the time went"


# ---- numbers for people ------------------------------------------------------------------------
def count(value: float) -> str:
    return f"{value:,.0f}"


def per_second(value: float) -> str:
    """``1.2M/s``, ``503k/s``, ``950/s``: records per second, to three figures."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix} records/s"
    return f"{value:.3g} records/s" if value else "0 records/s"


def seconds(value: float) -> str:
    """``15 ms``, ``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if value == 0:
        return "0 s"
    if value < 0.1:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def mebibytes(value: float) -> str:
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:,.0f} MiB"


_CSS = """
:root{--bg:#fff;--fg:#1b1f24;--muted:#59636e;--card:#f6f8fa;--line:#d1d9e0;--accent:#0969da;
--retried:#bc4c00;--failed:#cf222e;--ok:#1a7f37;--t0:#0969da;--t1:#8250df;--t2:#1a7f37;
--t3:#9a6700}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--card:#151b23;--line:#3d444d;--accent:#4493f8;--retried:#f0883e;--failed:#f85149;--ok:#3fb950;
--t0:#4493f8;--t1:#ab7df8;--t2:#3fb950;--t3:#d29922}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:1.4rem;margin:0 0 6px;overflow-wrap:anywhere}
h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:0}
.where{color:var(--muted);overflow-wrap:anywhere;margin:4px 0 0}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;border:1px solid var(--line);
margin-right:6px;font-size:.85rem}
.state-completed,.validation_passed{color:var(--ok);border-color:var(--ok)}
.state-failed,.validation_failed_critical{color:var(--failed);border-color:var(--failed)}
.state-running,.validation_failed{color:var(--retried);border-color:var(--retried)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:10px;
margin:16px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card p{margin:2px 0;color:var(--muted);font-size:.85rem}
.card .big{font-size:1.35rem;color:var(--fg);font-variant-numeric:tabular-nums}
.problems{border:1px solid var(--failed);border-radius:8px;padding:10px 14px;margin:0 0 16px}
.problems ul{margin:6px 0 0;padding-left:18px;overflow-wrap:anywhere}
.grid{display:grid;grid-template-columns:1fr;gap:16px}
@media (min-width:900px){.grid{grid-template-columns:1fr 1fr}
#timeline,#throughput{grid-column:1 / -1}}
.chart{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:12px;min-width:0}
figcaption{font-weight:600;margin-bottom:10px}
.empty{color:var(--muted);margin:0}
.bar-row{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,3fr) auto;gap:8px;
align-items:center;margin:4px 0}
.label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-size:.85rem}
.label small{display:block;color:var(--muted);font-size:.75rem}
.track{height:14px;background:var(--bg);border-radius:3px;overflow:hidden}
.mark.bar{display:block;height:100%;background:var(--accent);border-radius:3px}
.value{font-variant-numeric:tabular-nums;font-size:.85rem;text-align:right}
.lane,.axis-row{display:grid;grid-template-columns:minmax(70px,160px) minmax(0,1fr);gap:8px;
align-items:center;margin:3px 0}
.strip{width:100%;height:22px;background:var(--bg);border-radius:3px;display:block}
.mark.chunk{fill:var(--accent)}.mark.chunk.retried{fill:var(--retried)}
.mark.failure{fill:var(--failed)}
.axis{position:relative;height:18px;font-size:.72rem;color:var(--muted)}
.axis span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.axis span:first-child{transform:none}
.columns{align-items:start}
.plot{width:100%;height:160px;display:block;background:var(--bg);border-radius:3px}
.mark.bin{fill:var(--accent)}
.stack{display:flex;height:22px;border-radius:3px;overflow:hidden;background:var(--bg)}
.mark.segment{display:block;height:100%}
.tone-0{background:var(--t0)}.tone-1{background:var(--t1)}.tone-2{background:var(--t2)}
.tone-3{background:var(--t3)}
.legend{list-style:none;padding:0;margin:10px 0 0;display:flex;flex-wrap:wrap;gap:6px 16px;
font-size:.85rem}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
@media (max-width:599px){main{padding:10px}
.bar-row{grid-template-columns:minmax(0,1fr) auto;gap:2px 8px}.bar-row .label{grid-column:1 / -1}
.lane,.axis-row{grid-template-columns:minmax(0,1fr);gap:2px}.lane .label small{display:inline;
margin-left:6px}.axis-row .label{display:none}.axis span:nth-child(even){display:none}}
footer{color:var(--muted);font-size:.8rem;margin:20px 0 8px}
code{font-size:.85em}
"""
