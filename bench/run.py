"""`make bench`: race scm-batch against its peers, interleaved over rounds, and report.

Environment: BENCH_RECORDS (default 2,000,000) records in the generated input, BENCH_ROUNDS
(default 3) measured rounds after one warm-up round that is discarded, BENCH_ONLY (see
:func:`chosen`) the contestants. Every contestant runs as
its own process tree; within a round they run one after another, the order rotating from round to
round. Writes the results to bench/data/results/ and a section of BENCHMARKS.md.

``python -m bench.run --report`` only rewrites the section from the saved results of BENCH_RECORDS.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import date
from pathlib import Path

from bench import estimate, formats, machine, report
from bench.contestants import CONTESTANTS, SCM_BATCH, Contestant, Outcome, result_ratio_path
from bench.data import DATA, Dataset, ensure, ensure_variant, variant_path
from bench.measure import Measurement, become_subreaper, measure
from bench.result import Run, Saved

ROOT = Path(__file__).resolve().parent.parent


def check(contestant: Contestant, m: Measurement, out: Outcome | None, data: Dataset) -> str:
    """Why the run does not count ("" when it does): every contestant must do all the work."""
    # scm-batch exits 3 when the batch completed but the data failed validation critically: the
    # contract's absolute limit of 100 malformed lines is crossed by the generator's malformed
    # rate from about 10,000,000 records on. The work was all done; the count check still applies.
    completed = {0, 3} if contestant.module is None else {0}
    if m.returncode not in completed or out is None:
        tail = " | ".join(m.stderr.strip().splitlines()[-3:])
        return f"exit code {m.returncode}: {tail}"
    got = out.records_out
    if contestant.floor or contestant.io_bound:  # decoded lines, or input bytes read
        expected = data.bytes if contestant.io_bound else data.records - data.malformed
        what = "read" if contestant.io_bound else "decoded"
        return "" if got == expected else f"{what} {got:,}, expected {expected:,}"
    if out.totals is not None:  # scm-batch: what it reports, what it wrote, what was generated
        reported, malformed = out.totals["validRecords"], out.totals["malformedLines"]
        if reported == got == data.valid and malformed == data.malformed:
            return ""
        return (
            f"reports {reported:,} valid and {malformed:,} malformed, wrote {got:,} records; "
            f"the generator made {data.valid:,} valid and {data.malformed:,} malformed"
        )
    extra = got - data.valid
    if extra == 0 or (contestant.lenient_json and 0 < extra <= data.malformed):
        return ""
    return f"wrote {got:,} records, expected {data.valid:,} ({extra:+,})"


def run_one(contestant: Contestant, data: Dataset, round_no: int) -> Run:
    workdir = DATA / "runs" / contestant.key
    contestant.prepare(data, workdir)
    m = measure(contestant.command(data, workdir), env=contestant.env(), cwd=ROOT)
    try:
        out: Outcome | None = contestant.outcome(workdir, m.stdout)
    except (OSError, ValueError, KeyError, IndexError):
        out = None
    problem = check(contestant, m, out, data)
    if contestant is SCM_BATCH and not problem:
        # The I/O bound writes as many bytes per input byte as scm-batch's parts hold.
        parts = workdir / "bucket" / "results", workdir / "bucket" / "errors"
        written = sum(p.stat().st_size for d in parts for p in d.rglob("*") if p.is_file())
        result_ratio_path(data).write_text(f"{written / data.bytes:.6f}\n")
    shutil.rmtree(workdir, ignore_errors=True)
    return Run(
        key=contestant.key,
        round=round_no,
        wall_s=m.wall_s,
        cpu_s=m.cpu_s,
        main_peak=m.main_peak,
        other_peak=m.largest_other_peak,
        total_peak=m.peak_total_rss,
        records_out=out.records_out if out else 0,
        background_s=max(0.0, m.busy_s - m.cpu_s),
        ok=not problem,
        note=problem,
    )


def chosen() -> tuple[Contestant, ...]:
    """BENCH_ONLY (keys, comma-separated: scm-batch, scm-array, scm-gzip, original, duckdb,
    polars, floor) narrows the field, e.g. to measure scm-batch's memory on a larger file
    without the slow peers."""
    only = {k.strip() for k in os.environ.get("BENCH_ONLY", "").split(",") if k.strip()}
    unknown = only - {c.key for c in CONTESTANTS}
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown contestant(s) {', '.join(sorted(unknown))}")
    return tuple(c for c in CONTESTANTS if not only or c.key in only)


def measure_all(data: Dataset, rounds: int) -> tuple[list[Run], dict[str, list[float]]]:
    runs: list[Run] = []
    extras: dict[str, list[float]] = {}
    field = chosen()
    variants = {c.variant for c in field if c.variant is not None}
    for variant in sorted(variants):
        ensure_variant(data, variant)
    for round_no in range(rounds + 1):
        shift = round_no % len(field)
        for contestant in field[shift:] + field[:shift]:
            run = run_one(contestant, data, round_no)
            name = "warm-up" if round_no == 0 else f"round {round_no}/{rounds}"
            status = "ok" if run.ok else f"FAILED: {run.note}"
            print(
                f"{name:12} {contestant.key:10} {run.wall_s:7.2f} s  {run.cpu_s:7.2f} s CPU  "
                f"{run.background_s:6.2f} s CPU elsewhere  {run.records_out:>11,} records  "
                f"{status}",
                file=sys.stderr,
                flush=True,
            )
            if round_no > 0:
                runs.append(run)
        if round_no > 0:
            for variant, (name, measured) in _EXTRAS.items():
                if variant in variants:
                    seconds = measured(variant_path(data, variant))
                    extras.setdefault(name, []).append(seconds)
                    print(f"{name:23} {seconds:7.2f} s", file=sys.stderr, flush=True)
            if SCM_BATCH in field:  # issue 16: what plan --estimate predicts for its run
                seconds = estimate.predicted_seconds(data)
                extras.setdefault(estimate.EXTRA, []).append(seconds)
                print(f"{'estimate, predicted':23} {seconds:7.2f} s", file=sys.stderr, flush=True)
    return runs, extras


_EXTRAS = {"json-array": ("scan", formats.scan_seconds), "gzip": ("gunzip", formats.gunzip_seconds)}


def main() -> None:
    records = int(os.environ.get("BENCH_RECORDS", "2000000"))
    results = DATA / "results"
    path = results / f"records-{records}.json"
    if "--report" in sys.argv[1:]:
        saved = Saved.load(path)
        data = Dataset.from_figures(Path(), saved.input)
    else:
        rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
        become_subreaper()
        data = ensure(records)
        runs, extras = measure_all(data, rounds)
        saved = Saved(
            records=records,
            rounds=rounds,
            written=date.today().isoformat(),
            machine=machine.describe(),
            source=machine.source(),
            input=data.figures(),
            runs=runs,
            extras=extras,
        )
        results.mkdir(parents=True, exist_ok=True)
        saved.save(path)
    text = report.section(saved, data, report.other_sizes(results, records))
    print(text)
    report.write_section(ROOT / "BENCHMARKS.md", text)
    print("BENCHMARKS.md updated", file=sys.stderr)
    if any(not r.ok for r in saved.runs if r.key == SCM_BATCH.key):
        sys.exit("scm-batch itself failed its check")


if __name__ == "__main__":
    main()
