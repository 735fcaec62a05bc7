"""The same 200,000 records as JSON Lines, a JSON array (compact and pretty-printed), gzip, zstd and
bzip2: the same counts and the same records (apart from the ids derived from positions), and a
driver killed while staging compressed input resumes to the same bytes.

The records come from the generator with the malformations an array can hold (a key in single
quotes rather than a record cut short, which would break the array); every file is written from
the same record texts, so each holds exactly the same records.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from scm_batch.records.generate import BLOCK_RECORDS, generate_lines
from tests.conftest import Cli

RECORDS = 200_000
PROCESSED_AT = "2026-05-01T00:00:00.000Z"
POSITIONAL = ("id", "gssId")  # derived from the record's offset in the (decompressed) input

pytestmark = pytest.mark.slow


def record_texts() -> list[str]:
    texts: list[str] = []
    for start in range(0, RECORDS, BLOCK_RECORDS):
        lines, _ = generate_lines(start, BLOCK_RECORDS, 11, 0.003, 0.0005, "json-array")
        texts.extend(lines)
    return texts


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text  # a malformed record stays as it is: it cannot be laid out


def _jsonl(texts: list[str]) -> bytes:
    return ("\n".join(texts) + "\n").encode()


FORMATS: dict[str, Callable[[list[str]], bytes]] = {
    "records.jsonl": _jsonl,
    "compact.json": lambda texts: ("[" + ",".join(texts) + "]").encode(),
    "pretty.json": lambda texts: (
        "[\n  " + ",\n  ".join(_pretty(t).replace("\n", "\n  ") for t in texts) + "\n]\n"
    ).encode(),
    "records.jsonl.gz": lambda texts: gzip.compress(_jsonl(texts), compresslevel=1),
    "records.jsonl.zst": lambda texts: zstandard.ZstdCompressor().compress(_jsonl(texts)),
    "records.jsonl.bz2": lambda texts: bz2.compress(_jsonl(texts), compresslevel=1),
    "pretty.json.gz": lambda texts: gzip.compress(FORMATS["pretty.json"](texts), 1),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("formats")
    texts = record_texts()
    for name, write in FORMATS.items():
        (folder / name).write_bytes(write(texts))
    return folder


def run_args(bucket: Path, file: str, *extra: str) -> list[str]:
    return [
        "run",
        "--bucket", str(bucket),
        "--file", f"input/{file}",
        "--customer-id", "cust-f",
        "--tenant-id", "ten-f",
        "--batch-id", "formats",
        "--processed-at", PROCESSED_AT,
        "--max-concurrent-chunks", "7",
        # Of compressed input the total is known only once staged: the chunk size comes from
        # this (or from the sampled expansion, which would give 7 or 8 chunks).
        "--target-total-records", str(RECORDS),
        "--min-chunk-size", "1",
        "--workers", "2",
        "--progress", "none",
        "--json",
        *extra,
    ]  # fmt: skip


def prepared(root: Path, inputs: Path, name: str) -> Path:
    (root / "input").mkdir(parents=True)
    shutil.copyfile(inputs / name, root / "input" / name)
    return root


def records(bucket: Path) -> list[dict[str, Any]]:
    """The valid records of the batch, in order, without the fields derived from positions."""
    found = []
    for part in sorted(bucket.glob("results/formats/*.jsonl")):
        for line in part.read_bytes().splitlines():
            record = msgspec.json.decode(line)
            for name in POSITIONAL:
                record.pop(name, None)
            found.append(record)
    return found


def rejected(bucket: Path) -> list[tuple[str, str]]:
    """What was rejected and why, in order (the entries' positions differ between formats)."""
    found = []
    for part in sorted(bucket.glob("errors/formats/*.jsonl")):
        for line in part.read_bytes().splitlines():
            entry = json.loads(line)
            found.append((entry["category"], entry["error"]))
    return found


def counts(summary: dict[str, Any]) -> dict[str, Any]:
    totals = {k: v for k, v in summary["totals"].items() if k != "bytesRead"}
    return {"totals": totals, "errorsByCategory": summary["errorsByCategory"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Path:
    """The batch run from JSON Lines: what every other format must give."""
    from tests.conftest import run_cli

    bucket = prepared(tmp_path_factory.mktemp("ref"), inputs, "records.jsonl")
    result = run_cli(*run_args(bucket, "records.jsonl"))
    assert result.returncode == 0, result.stderr
    return bucket


@pytest.mark.parametrize("name", [n for n in FORMATS if n != "records.jsonl"])
def test_every_format_gives_the_same_records(
    cli: Cli, tmp_path: Path, inputs: Path, reference: Path, name: str
) -> None:
    bucket = prepared(tmp_path, inputs, name)
    result = cli(*run_args(bucket, name))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    expected = json.loads((reference / "final-results/formats/aggregated-results.json").read_text())
    assert counts(summary) == counts(expected)
    assert summary["totals"]["records"] == RECORDS
    assert summary["chunksTotal"] == 7
    assert records(bucket) == records(reference)
    assert rejected(bucket) == rejected(reference)
    if name.endswith(".json"):  # an array's error entries number elements, from 0
        first_part = sorted(bucket.glob("errors/formats/*"))[0]
        entry = json.loads(first_part.read_text().splitlines()[0])
        assert "element" in entry
        assert "line" not in entry
    compressed = not name.endswith((".json", ".jsonl"))
    assert (summary["source"]["compression"] != "none") == compressed
    # Staged chunks are gone once the batch completed.
    assert not list(bucket.glob("staged/formats/*"))
    if name.startswith("records.jsonl."):  # decompressed offsets are the file's own: same ids
        assert _parts(bucket) == _parts(reference)


def _parts(bucket: Path) -> dict[str, bytes]:
    found = sorted(bucket.glob("results/formats/*")) + sorted(bucket.glob("errors/formats/*"))
    return {p.name + p.parent.name: p.read_bytes() for p in found}


def test_a_driver_killed_while_staging_resumes_to_the_same_bytes(
    cli: Cli, tmp_path: Path, inputs: Path, reference: Path
) -> None:
    bucket = prepared(tmp_path, inputs, "records.jsonl.gz")
    args = run_args(bucket, "records.jsonl.gz", "--keep-staged")
    killed = cli(*args, env={"SCM_BATCH_FAULTS": "driver=during-staging:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    staged = sorted(bucket.glob("staged/formats/*.zst"))
    assert len(staged) == 3  # three chunks staged, no plan yet
    assert not (bucket / "metadata/formats/chunks.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in staged}

    resumed = cli("resume", "--bucket", str(bucket), "--batch-id", "formats", "--keep-staged",
                  "--progress", "none", "--json")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    # The chunks staged before the crash were not staged again.
    assert {p.name: p.stat().st_mtime_ns for p in staged} == before
    assert len(list(bucket.glob("staged/formats/*.zst"))) == 7
    assert _parts(bucket) == _parts(reference)
    assert not [p for p in bucket.rglob("*") if p.name.endswith(".tmp")]


def test_a_finished_batch_stages_again_what_a_rebuild_needs(
    cli: Cli, tmp_path: Path, inputs: Path, reference: Path
) -> None:
    bucket = prepared(tmp_path, inputs, "records.jsonl.zst")
    assert cli(*run_args(bucket, "records.jsonl.zst")).returncode == 0
    assert not list(bucket.glob("staged/formats/*"))
    (bucket / "results/formats/chunk_000004.jsonl").unlink()
    again = cli(*run_args(bucket, "records.jsonl.zst"))
    assert again.returncode == 0, again.stderr
    assert _parts(bucket) == _parts(reference)
    assert not list(bucket.glob("staged/formats/*"))  # staged for the rebuild, then dropped


def test_resume_refuses_an_input_replaced_by_another_format(cli: Cli, tmp_path: Path) -> None:
    """Same size, same modification time, another format: refused, naming both."""
    bucket = tmp_path / "bucket"
    (bucket / "input").mkdir(parents=True)
    lines, _ = generate_lines(0, 2_000, 5, 0.0, 0.0, "json-array")
    text = "\n".join(lines) + "\n" + " " * 10  # a little longer than the same as an array
    target = bucket / "input" / "records"
    target.write_text(text)
    planned = cli(*run_args(bucket, "records"), env={"SCM_BATCH_FAULTS": "driver=after-plan"})
    assert planned.returncode == -signal.SIGKILL, planned.stderr
    stat = target.stat()
    array = ("[" + ",".join(lines) + "]").encode()
    target.write_bytes(array + b" " * (stat.st_size - len(array)))  # as long as before
    assert target.stat().st_size == stat.st_size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    resumed = cli("resume", "--bucket", str(bucket), "--batch-id", "formats", "--progress", "none")
    assert resumed.returncode == 2, resumed.stderr
    assert "was planned as jsonl and is now json-array" in resumed.stderr
    assert "Traceback" not in resumed.stderr
