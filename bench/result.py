"""What one `make bench` measured, as saved in bench/data/results/records-N.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Run:
    key: str
    round: int
    wall_s: float
    cpu_s: float
    main_peak: int  # bytes, the process the command started
    other_peak: int  # bytes, the largest process that one started (0: none)
    total_peak: int  # bytes, the largest sum of resident sets
    records_out: int
    background_s: float  # CPU seconds other processes (the harness included) used meanwhile
    ok: bool
    note: str  # why the run does not count, when it does not


@dataclass(frozen=True, slots=True)
class Saved:
    records: int
    rounds: int
    written: str  # ISO date
    machine: str
    source: str  # the code measured
    input: dict[str, int | str]  # the dataset's figures (bench.data.Dataset without its path)
    runs: list[Run]
    # Seconds per measured round of what is not a contestant: "scan" (the JSON array's
    # structural scan), "gunzip" (one decompression pass of the gzip file).
    extras: dict[str, list[float]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Saved:
        saved = json.loads(path.read_text())
        saved["runs"] = [Run(**r) for r in saved["runs"]]
        return cls(**saved)
