"""The benchmark's input: generated once per record count, kept in bench/data/ (git-ignored)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SEED = 7
INVALID_RATE = "0.001"
MALFORMED_RATE = "0.00001"
_SUMMARY = re.compile(
    r"wrote ([\d,]+) lines \(([\d,]+) valid, ([\d,]+) invalid, ([\d,]+) malformed\)"
)


@dataclass(frozen=True, slots=True)
class Dataset:
    path: Path
    records: int
    bytes: int
    valid: int  # as the generator reports them
    invalid: int
    malformed: int
    command: str

    def figures(self) -> dict[str, int | str]:
        """Everything but the path, to save with the results."""
        fields = asdict(self)
        del fields["path"]
        return fields

    @classmethod
    def from_figures(cls, path: Path, figures: dict[str, int | str]) -> Dataset:
        def number(key: str) -> int:
            return int(figures[key])

        return cls(
            path=path,
            records=number("records"),
            bytes=number("bytes"),
            valid=number("valid"),
            invalid=number("invalid"),
            malformed=number("malformed"),
            command=str(figures["command"]),
        )


def scm_batch() -> str:
    """The scm-batch entry point of the interpreter running the harness (the project's venv)."""
    return str(Path(sys.executable).parent / "scm-batch")


def generate_command(path: Path, records: int, *flags: str) -> list[str]:
    """The generator's command for the benchmark's input (the same seed and rates always)."""
    return [
        scm_batch(),
        "generate",
        str(path),
        "--records",
        str(records),
        "--seed",
        str(SEED),
        "--invalid-rate",
        INVALID_RATE,
        "--malformed-rate",
        MALFORMED_RATE,
        *flags,
    ]


def ensure(records: int) -> Dataset:
    """The cached input of ``records`` lines, generated first if it is not there yet."""
    folder = DATA / f"input-{records}-seed{SEED}"
    path = folder / "records.jsonl"
    info = folder / "records.json"
    command = generate_command(path, records)
    shown = " ".join(["scm-batch", *command[1:2], "FILE", *command[3:]])
    if path.exists() and info.exists():
        cached = json.loads(info.read_text())
        cached.pop("command", None)
        if cached["bytes"] == path.stat().st_size:
            return Dataset(path=path, command=shown, **cached)
    print(f"generating {records:,} records into {path} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    found = _SUMMARY.search(done.stdout + done.stderr)
    if found is None:
        raise RuntimeError(f"cannot read the generator's summary: {done.stdout!r}")
    lines, valid, invalid, malformed = (int(g.replace(",", "")) for g in found.groups())
    if lines != records:
        raise RuntimeError(f"asked for {records} records, the generator wrote {lines}")
    dataset = Dataset(path, records, path.stat().st_size, valid, invalid, malformed, shown)
    fields = dataset.figures()
    del fields["command"]
    info.write_text(json.dumps(fields, indent=2) + "\n")
    return dataset


# The same records in the other input formats the benchmark runs: (file name, generate flags).
# The generator's JSON array differs from its JSON Lines only in how its few malformed records
# are broken (so that the array stays whole): the same counts of valid, invalid and malformed.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "json-array": ("records-array.json", ("--format", "json-array")),
    "gzip": ("records.jsonl.gz", ("--compress", "gzip")),
}


def variant_path(dataset: Dataset, variant: str) -> Path:
    return dataset.path.with_name(VARIANTS[variant][0])


def ensure_variant(dataset: Dataset, variant: str) -> Path:
    """The dataset's records in another format, generated first if they are not there yet."""
    path = variant_path(dataset, variant)
    marker = path.with_name(path.name + ".size")
    if path.exists() and marker.exists() and marker.read_text().strip() == str(path.stat().st_size):
        return path
    print(f"generating {dataset.records:,} records into {path} ...", file=sys.stderr, flush=True)
    command = generate_command(path, dataset.records, *VARIANTS[variant][1])
    subprocess.run(command, check=True, capture_output=True, text=True)
    marker.write_text(str(path.stat().st_size))
    return path
