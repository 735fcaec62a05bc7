"""Issue 16: ``scm-batch plan --estimate`` against the run it predicts, round by round.

After each measured round, the harness asks ``plan --estimate --json`` what the scm-batch
contestant's run (2 workers, the same input in a bucket of its own) takes on this machine, and
keeps the prediction beside the round's measured wall time. The target: the estimate within
30 % of the measured run (the median of the per-round ratios).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess

from bench.contestants import RUN_FLAGS, SCM_BATCH
from bench.data import DATA, Dataset, scm_batch
from bench.result import Run

EXTRA = "estimate"  # its key among a saved run's extras: predicted seconds per round
TOLERANCE = 0.30
TIMES, DASH = "\u00d7", "\u2013"


def predicted_seconds(data: Dataset) -> float:
    """What ``plan --estimate`` predicts for the scm-batch contestant's run of ``data``."""
    workdir = DATA / "runs" / EXTRA
    SCM_BATCH.prepare(data, workdir)
    command = [
        scm_batch(),
        "plan",
        "--bucket",
        str(workdir / "bucket"),
        "--file",
        "input/x.jsonl",
        *RUN_FLAGS,
        "--workers",
        "2",
        "--estimate",
        "--json",
    ]
    try:
        done = subprocess.run(
            command, env=SCM_BATCH.env(), capture_output=True, text=True, check=True
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    local = next(b for b in json.loads(done.stdout)["backends"] if b["key"] == "local")
    return float(local["wallSeconds"])


def estimate_lines(runs: list[Run], extras: dict[str, list[float]]) -> list[str]:
    """The target line, from the rounds where both the run and the estimate were measured
    (round ``n``'s prediction is the ``n``-th of the extras)."""
    predicted = extras.get(EXTRA, [])
    measured = {r.round: r.wall_s for r in runs if r.key == SCM_BATCH.key and r.ok}
    pairs = [(p, measured[n]) for n, p in enumerate(predicted, 1) if n in measured]
    if not pairs:
        return []
    ratios = [p / m for p, m in pairs]
    median = statistics.median(ratios)
    verdict = "met" if abs(median - 1) <= TOLERANCE else "missed"
    return [
        f"- **{verdict}**: the estimate for this machine within 30 % of the measured run "
        f"(`scm-batch plan --estimate`, 2 workers, against `{SCM_BATCH.label}`): predicted "
        f"{_spread([p for p, _ in pairs], ' s')} against {_spread([m for _, m in pairs], ' s')} "
        f"measured; predicted / measured {_spread(ratios, TIMES)} per round"
    ]


def _spread(values: list[float], unit: str) -> str:
    """Median (min-max), as the rest of the report shows figures."""
    low, high = min(values), max(values)
    return f"{statistics.median(values):.2f}{unit} ({low:.2f}{unit}{DASH}{high:.2f}{unit})"
