"""An estimate as people read it: one row a backend, then each backend's time and bill, the
calibration, the prices' origin and date, the assumptions. (``--json`` prints the
:class:`~scm_batch.estimate.values.Estimate` itself.)"""

from __future__ import annotations

import math

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scm_batch.estimate.values import BackendEstimate, CostTerm, Estimate


def duration(seconds: float) -> str:
    """``5.9 s``, ``12 min 05 s``, ``2 h 03 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def money(amount: float, currency: str) -> str:
    """An amount to the cent, or to two significant digits below a cent (a bill of small terms
    is still shown term by term), never in exponent notation."""
    if amount == 0:
        return f"0 {currency}"
    if amount >= 0.01:
        return f"{amount:,.2f} {currency}"
    decimals = min(10, 1 - math.floor(math.log10(amount)))
    return f"{amount:.{decimals}f} {currency}"


def price(value: float) -> str:
    """A unit price as the price sheet writes it: ``0.0000166667``, ``0.2``, ``0.04048``."""
    return f"{value:.10f}".rstrip("0").rstrip(".") or "0"


def _per(term: CostTerm) -> str:
    """``/ 1M requests``, ``/ 1,000 transitions``, ``/ GB-s``."""
    if term.per == 1:
        return f"/ {term.unit}"
    per = "1M" if term.per == 1e6 else f"{term.per:,.0f}"
    return f"/ {per} {term.unit}"


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) or value >= 100 else f"{value:,.4g}"


def _summary(e: Estimate) -> Table:
    table = Table(
        "backend",
        "wall time",
        f"cost ({e.prices.currency})",
        title="Estimate, per backend",
        title_justify="left",
    )
    for b in e.backends:
        table.add_row(escape(b.label), duration(b.wall_seconds), money(b.cost, e.prices.currency))
    return table


def _lines(rows: list[tuple[str, str]]) -> Table:
    """Amounts right-aligned in a column of their own, what they are beside them (wrapping)."""
    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 1, 0, 2))
    table.add_column(justify="right", no_wrap=True)
    table.add_column()
    for amount, what in rows:
        table.add_row(amount, escape(what))
    return table


def _backend(b: BackendEstimate, currency: str) -> list[RenderableType]:
    parts: list[RenderableType] = [
        Text(f"\n{b.label}: {duration(b.wall_seconds)}, {money(b.cost, currency)}", style="bold"),
        _lines([(f"{t.seconds:,.2f} s", t.what) for t in b.time]),
    ]
    bill = []
    for t in b.terms:
        cost = money(t.cost, currency)
        what = (
            f"{t.what}: {_quantity(t.quantity)} {t.unit} at {price(t.price)} {currency} {_per(t)}"
        )
        if t.note:
            what += f" ({t.note})"
        bill.append((cost if t.counted else f"({cost})", what))
    if bill:
        parts.append(_lines(bill))
    parts.extend(Text(f"  note: {n}") for n in b.notes)
    return parts


def render(e: Estimate) -> list[RenderableType]:
    """What ``plan --estimate`` prints, in order."""
    c = e.calibration
    p = e.prices
    exact = "exact" if e.records_exact else "estimated"
    head = (
        f"batch {e.batch_id}: {e.records:,} records ({exact}), {e.input_bytes / 1e6:,.1f} MB, "
        f"{e.chunks:,} chunks ({e.chunks_on_lambda:,} routed to Lambda, {e.chunks_on_batch:,} to "
        f"Batch), {e.max_concurrent_chunks} at a time on AWS"
    )
    origin = "built in: not fetched live, check them" if p.built_in else "given with --prices"
    prices = (
        f"prices: {p.region}, {p.currency}, as of {p.prices_as_of.isoformat()} ({origin}), "
        f"from {p.origin}"
    )
    calibration = (
        f"calibration: {c.sample_records:,} records ({c.sample_bytes / 1e6:,.1f} MB) of "
        f"{c.sample_chunk}, {c.engine} engine: {c.one_process_seconds:.3f} s in one process "
        f"alone ({c.per_record_seconds * 1e6:.2f} µs a record, {c.per_chunk_seconds * 1e3:.1f} "
        f"ms a chunk); {c.loaded_per_record_seconds * 1e6:.2f} µs a record each with "
        f"{c.workers} processes at once ({c.efficiency:.0%} of one alone); medians of "
        f"{c.loaded_rounds} and {c.rounds} rounds. Planning pass {c.planning_seconds:.2f} s, "
        "start-up "
        f"{c.startup_seconds:.2f} s, worker start {c.pool_start_seconds:.2f} s (measured)"
    )
    parts: list[RenderableType] = [Text(head), Text(prices), _summary(e)]
    for b in e.backends:
        parts.extend(_backend(b, p.currency))
    parts.append(Text("\n" + calibration))
    parts.append(Text(f"prices' source: {p.source}"))
    parts.append(Text("assumptions:"))
    parts.extend(Text(f"- {a}") for a in e.assumptions)
    parts.extend(Text(f"note: {n}", style="yellow") for n in e.notes)
    return parts
