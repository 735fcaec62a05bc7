"""Staging compressed input: what a failure while writing the staged copies leaves, and that a
second staging of the same input writes nothing it wrote before."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scm_batch.errors import StorageUnavailableError
from scm_batch.model import JobInput, PlanOptions
from scm_batch.records.generate import generate_lines
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.staging import stage_input
from scm_batch.storage import ObjectWriter
from scm_batch.storage.local import LocalStorage

RECORDS = 20_000


class FailingWrites(LocalStorage):
    """A bucket whose staged copies cannot be written after the first ``allowed``."""

    def __init__(self, root: str, allowed: int) -> None:
        super().__init__(root)
        self.allowed = allowed
        self.opened: list[str] = []

    @contextmanager
    def open_writer(self, key: str) -> Iterator[ObjectWriter]:  # type: ignore[override]
        if key.startswith("staged/"):
            self.opened.append(key)
            if len(self.opened) > self.allowed:
                raise StorageUnavailableError(f"{key}: the disk said no")
        with super().open_writer(key) as out:
            yield out


@pytest.fixture
def compressed(bucket: Path) -> Path:
    lines, _ = generate_lines(0, RECORDS, seed=3, invalid_rate=0.0, malformed_rate=0.0)
    (bucket / "in.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return bucket


def job(bucket: Path) -> JobInput:
    return JobInput(
        bucket=str(bucket),
        file="in.jsonl.gz",
        customer_id="c",
        tenant_id="t",
        batch_id="b",
        max_concurrent_chunks=8,
    )


@pytest.mark.timeout(60)  # a writer that stopped must never leave the reader waiting
def test_a_failed_write_is_raised_and_leaves_no_copy_half_written(compressed: Path) -> None:
    storage = FailingWrites(str(compressed), allowed=2)
    source = initialize_batch(job(compressed), storage)
    with pytest.raises(StorageUnavailableError, match="the disk said no"):
        stage_input(job(compressed), source, storage, PlanOptions(min_chunk_size=1))
    copies = sorted(p.name for p in (compressed / "staged/b").iterdir())
    receipts = sorted(p.name for p in (compressed / "metadata/b/staged").iterdir())
    assert copies == ["chunk_000000.zst", "chunk_000001.zst"]  # complete, committed
    assert receipts == ["chunk_000000.json", "chunk_000001.json"]
    assert not list(compressed.rglob("*.tmp"))

    # Staged again: the two copies made are checked, not written again; the rest are written.
    storage = FailingWrites(str(compressed), allowed=100)
    per_chunk, staged = stage_input(job(compressed), source, storage, PlanOptions(min_chunk_size=1))
    assert per_chunk * (len(staged) - 1) < RECORDS <= per_chunk * len(staged)
    assert sum(s.records for s in staged) == RECORDS
    assert "staged/b/chunk_000000.zst" not in storage.opened
    assert "staged/b/chunk_000001.zst" not in storage.opened
    assert len(storage.opened) == len(staged) - 2


class _Full:
    def write(self, data: bytes, /) -> int:
        raise OSError(28, "No space left on device")


class FullDisk(LocalStorage):
    """A bucket whose disk fills up while the second staged copy is written."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.copies = 0

    @contextmanager
    def open_writer(self, key: str) -> Iterator[ObjectWriter]:  # type: ignore[override]
        if not key.startswith("staged/"):
            with super().open_writer(key) as out:
                yield out
            return
        self.copies += 1
        with super().open_writer(key) as out:
            yield out if self.copies < 2 else _Full()


@pytest.mark.timeout(60)
def test_a_disk_filling_up_while_staging_stops_it_with_that_error(compressed: Path) -> None:
    storage = FullDisk(str(compressed))
    source = initialize_batch(job(compressed), storage)
    with pytest.raises(OSError, match="No space left"):
        stage_input(job(compressed), source, storage, PlanOptions(min_chunk_size=1))
    assert sorted(p.name for p in (compressed / "staged/b").iterdir()) == ["chunk_000000.zst"]
    assert not list(compressed.rglob("*.tmp"))
