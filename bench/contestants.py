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
from bench.peers.common import PARQUET_RESULTS, RESULTS

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


def count_rows(paths: list[Path]) -> int:
    """Rows of Parquet files (pyarrow comes with the dev extra)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)


def result_ratio_path(dataset: Dataset) -> Path:
    """Where the harness keeps scm-batch's output bytes per input byte, for the I/O bound."""
    return dataset.path.with_name("result-ratio")


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
    engine: str | None = None  # scm-batch's SCM_BATCH_ENGINE (None: its default, native if built)
    flags: tuple[str, ...] = ()  # more command-line flags (scm-batch, or the peer)
    io_bound: bool = False  # reads and writes only: its count is the input bytes it read

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
        env["POLARS_MAX_THREADS"] = "2"
        if self.engine is not None:
            env["SCM_BATCH_ENGINE"] = self.engine
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
                *self.flags,
            ]
        peer = [sys.executable, "-m", f"bench.peers.{self.module}", str(dataset.path)]
        if self.io_bound:
            ratio = result_ratio_path(dataset).read_text().strip()
            return [*peer, str(workdir), "--out-ratio", ratio]
        return peer if self.floor else [*peer, str(workdir), *RUN_FLAGS, *self.flags]

    def outcome(self, workdir: Path, stdout: str) -> Outcome:
        if self.floor or self.io_bound:
            last = json.loads(stdout.strip().splitlines()[-1])
            return Outcome(int(last["read" if self.io_bound else "decoded"]))
        if self.module is None:
            bucket = workdir / "bucket"
            summary = bucket / "final-results" / BATCH_ID / "aggregated-results.json"
            totals: dict[str, Any] = json.loads(summary.read_text())["totals"]
            parts = sorted((bucket / "results" / BATCH_ID).glob("*.*"))
            if self.parquet:
                return Outcome(count_rows(parts), totals)
            return Outcome(count_lines(parts), totals)
        if self.parquet:
            return Outcome(count_rows([workdir / PARQUET_RESULTS]))
        return Outcome(count_lines([workdir / RESULTS]))

    @property
    def parquet(self) -> bool:
        return "parquet" in self.flags


SCM_BATCH = Contestant("scm-batch", "scm-batch run, 2 workers", None)
# The same records as one JSON array, and as gzip-compressed JSON Lines (issue 13); the input
# keeps the name x.jsonl: the format is read from the content.
SCM_BATCH_ARRAY = Contestant(
    "scm-array", "scm-batch run, 2 workers, the records as a JSON array", None, variant="json-array"
)
SCM_BATCH_GZIP = Contestant(
    "scm-gzip", "scm-batch run, 2 workers, the records gzip-compressed", None, variant="gzip"
)
# The Python engine (issue 14): the reference the native engine replaces, on the same input.
SCM_BATCH_PYTHON = Contestant(
    "scm-python", "scm-batch run, 2 workers, the Python engine", None, engine="python"
)
PARQUET = ("--output-format", "parquet")
SCM_BATCH_PARQUET = Contestant(
    "scm-parquet", "scm-batch run, 2 workers, Parquet output", None, flags=PARQUET
)
# The same run on a local Dask cluster of 2 worker processes (issue 15), started by the run.
SCM_BATCH_DASK = Contestant(
    "scm-dask", "scm-batch run, a local Dask cluster of 2 workers", None,
    flags=("--executor", "dask"),
)  # fmt: skip
IO_BOUND = Contestant(
    "io-bound", "I/O bound: read the input, write the result's bytes, 2 processes", "io_bound",
    io_bound=True,
)  # fmt: skip
CONTESTANTS = (
    SCM_BATCH,
    SCM_BATCH_PYTHON,
    SCM_BATCH_PARQUET,
    SCM_BATCH_ARRAY,
    SCM_BATCH_GZIP,
    SCM_BATCH_DASK,
    Contestant("original", "peer 1: the original approach (stdlib json, 1 process)", "original"),
    Contestant("duckdb", "peer 2: DuckDB, one SQL statement, 2 threads", "duckdb_peer", True),
    Contestant(
        "duckdb-parquet", "peer 2 writing Parquet (zstd)", "duckdb_peer", True, flags=PARQUET
    ),
    Contestant("polars", "peer 3: polars, lazy plan, 2 threads", "polars_peer"),
    Contestant("floor", "floor: decode only, msgspec, 2 processes", "floor", floor=True),
    IO_BOUND,
)
