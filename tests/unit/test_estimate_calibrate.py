"""The calibration's sample: the start of the first chunk, whole records only, capped, for JSON
Lines, JSON arrays and compressed inputs; and the real chunk step run on it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec
import pytest

from scm_batch.estimate.calibrate import (
    MAX_SAMPLE_RECORDS,
    calibrate,
    cut_sample,
    fit,
    loaded_rounds,
    process_age_seconds,
)
from scm_batch.records.generate import generate_file
from tests.helpers import job_input, plan_input


@pytest.mark.parametrize(
    ("file_format", "compress"), [("jsonl", "none"), ("json-array", "none"), ("jsonl", "gzip")]
)
def test_the_sample_is_whole_records_of_the_first_chunk(
    bucket: Path, file_format: Literal["jsonl", "json-array"], compress: Literal["none", "gzip"]
) -> None:
    generate_file(bucket / "in.jsonl", 30_000, seed=3, file_format=file_format, compress=compress)
    storage, plan = plan_input(bucket, job_input(bucket), min_chunk_size=25_000)
    assert plan.chunks[0].chunk_size == 25_000
    sample = cut_sample(plan, storage)
    assert sample.records == MAX_SAMPLE_RECORDS  # capped below the chunk's 25,000
    if file_format == "json-array":
        elements = msgspec.json.decode(sample.data)
        assert len(elements) == MAX_SAMPLE_RECORDS
    else:
        lines = sample.data.split(b"\n")
        assert lines[-1] == b""  # whole lines
        assert len(lines) - 1 == MAX_SAMPLE_RECORDS
        assert all(msgspec.json.decode(line) for line in lines[:5])


def test_a_small_first_chunk_is_sampled_whole(bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 300, seed=3, file_format="json-array")
    storage, plan = plan_input(bucket, job_input(bucket))
    sample = cut_sample(plan, storage)
    assert sample.records == 300
    assert len(msgspec.json.decode(sample.data)) == 300


def test_calibrating_runs_the_chunk_step_on_the_sample(bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 2_000, seed=3, invalid_rate=0.1, file_format="json-array")
    storage, plan = plan_input(bucket, job_input(bucket))
    before = sorted(p.relative_to(bucket) for p in bucket.rglob("*"))
    got = calibrate(plan, storage, workers=2, planning_seconds=0.25, startup_seconds=0.5, rounds=1)
    assert (got.sample_records, got.workers, got.rounds) == (2_000, 2, 1)
    assert got.loaded_rounds >= 1
    assert got.per_record_seconds > 0
    assert got.loaded_per_record_seconds >= got.per_record_seconds
    assert 0.8 < got.valid_share < 0.95  # 10 % generated invalid
    assert got.result_bytes_per_record > 100
    assert (got.planning_seconds, got.startup_seconds) == (0.25, 0.5)
    # Nothing was written into the user's bucket.
    assert sorted(p.relative_to(bucket) for p in bucket.rglob("*")) == before


def test_the_fixed_and_per_record_costs_are_told_apart() -> None:
    # 10 ms a chunk and 2 µs a record: 20,000 records in 0.05 s, 100 in 0.0102 s.
    per_record, fixed = fit(20_000, 100, 0.05, 0.0102)
    assert per_record == pytest.approx(2e-6)
    assert fixed == pytest.approx(0.01)
    # Noise that would make the fixed cost negative is charged per record instead.
    assert fit(20_000, 100, 0.05, 0.0001) == pytest.approx((2.5e-6, 0.0))
    assert fit(20_000, 100, 0.05, 0.06) == pytest.approx((2.5e-6, 0.0))
    assert fit(100, 100, 0.01, 0.01) == pytest.approx((1e-4, 0.0))


def test_the_loaded_rounds_last_long_enough_to_see_the_machine() -> None:
    assert loaded_rounds(0.05, 5) == 30  # 1.5 s of rounds of at least 0.05 s
    assert loaded_rounds(1.0, 5) == 5  # never fewer than asked
    assert loaded_rounds(0.0, 5) == 100  # nor more than the cap


def test_this_process_knows_its_age() -> None:
    age = process_age_seconds()
    assert age is None or 0 < age < 24 * 3600
