"""The contestants: how each is started, where it writes, and how many records it put out."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import Dataset, scm_batch, variant_path
from bench.peers.common import RESULTS

BATCH_ID = "bench"
RUN_FLAGS = [
    "--customer-id",
    "c",
    "--tenant-id",
    "t",
    "--batch-id",
    BATCH_ID,
    "--processed-at",
    "2026-01-01T00:00:00.000Z",
]


def count_lines(paths: list[Path]) -> int:
    lines = 0
    for path in paths:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
    return lines


@dataclass(frozen=True, slots=True)
class Outcome:
    records_out: int  # valid records written (decoded lines, for the floor)
    totals: dict[str, Any] | None = None  # scm-batch's own totals (aggregated results)


@dataclass(frozen=True, slots=True)
class Contestant:
    key: str
    label: str
    module: str | None  # bench.peers.<module>, or None for scm-batch itself
    # DuckDB's JSON reader accepts some lines that are not strict JSON (a trailing comma), which
    # scm-batch rejects as malformed: its count may exceed the valid records by up to those.
    lenient_json: bool = False
    floor: bool = False
    variant: str | None = None  # scm-batch on the same records in another format (bench.data)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
        env["POLARS_MAX_THREADS"] = "2"
        return env

    def prepare(self, dataset: Dataset, workdir: Path) -> None:
        """An empty output directory (for scm-batch, a bucket holding the input as a hard link)."""
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        if self.module is None:
            source = dataset.path if self.variant is None else variant_path(dataset, self.variant)
            target = workdir / "bucket" / "input" / "x.jsonl"
            target.parent.mkdir(parents=True)
            try:
                os.link(source, target)
            except OSError:
                target.symlink_to(source)

    def command(self, dataset: Dataset, workdir: Path) -> list[str]:
        if self.module is None:
            return [
                scm_batch(),
                "run",
                "--bucket",
                str(workdir / "bucket"),
                "--file",
                "input/x.jsonl",
                *RUN_FLAGS,
                "--workers",
                "2",
                "--progress",
                "none",
                "--overwrite",
            ]
        peer = [sys.executable, "-m", f"bench.peers.{self.module}", str(dataset.path)]
        return peer if self.floor else [*peer, str(workdir), *RUN_FLAGS]

    def outcome(self, workdir: Path, stdout: str) -> Outcome:
        if self.floor:
            return Outcome(int(json.loads(stdout.strip().splitlines()[-1])["decoded"]))
        if self.module is None:
            bucket = workdir / "bucket"
            summary = bucket / "final-results" / BATCH_ID / "aggregated-results.json"
            totals: dict[str, Any] = json.loads(summary.read_text())["totals"]
            parts = sorted((bucket / "results" / BATCH_ID).glob("*.jsonl"))
            return Outcome(count_lines(parts), totals)
        return Outcome(count_lines([workdir / RESULTS]))


SCM_BATCH = Contestant("scm-batch", "scm-batch run, 2 workers", None)
# The same records as one JSON array, and as gzip-compressed JSON Lines (issue 13); the input
# keeps the name x.jsonl: the format is read from the content.
SCM_BATCH_ARRAY = Contestant(
    "scm-array", "scm-batch run, 2 workers, the records as a JSON array", None, variant="json-array"
)
SCM_BATCH_GZIP = Contestant(
    "scm-gzip", "scm-batch run, 2 workers, the records gzip-compressed", None, variant="gzip"
)
CONTESTANTS = (
    SCM_BATCH,
    SCM_BATCH_ARRAY,
    SCM_BATCH_GZIP,
    Contestant("original", "peer 1: the original approach (stdlib json, 1 process)", "original"),
    Contestant("duckdb", "peer 2: DuckDB, one SQL statement, 2 threads", "duckdb_peer", True),
    Contestant("polars", "peer 3: polars, lazy plan, 2 threads", "polars_peer"),
    Contestant("floor", "floor: decode only, msgspec, 2 processes", "floor", floor=True),
)
