"""A chunk's timeout in the local pool and on Dask: ten times what it should take at the pace of
the chunks done so far, at least a minute; pessimistic before any is done."""

from __future__ import annotations

from pathlib import Path

import msgspec

from scm_batch.executors.base import MIN_CHUNK_TIMEOUT, UNMEASURED_PACE, Pace
from scm_batch.model import ChunkResult
from tests.helpers import job_input, plan_input


def done(bytes_read: int, seconds: float) -> ChunkResult:
    return ChunkResult(
        chunk_id="chunk_000000", chunk_number=1, route="lambda", lines=1, blank_lines=0,
        valid_records=1, records_with_missing_fields=0, records_with_empty_fields=0,
        errors_by_category={}, field_errors={}, bytes_read=bytes_read, result_key="r",
        error_key="e", duration_seconds=seconds, worker_peak_rss_bytes=0,
    )  # fmt: skip


def test_a_chunk_timeout_follows_the_pace_of_the_chunks_done(bucket: Path) -> None:
    (bucket / "in.jsonl").write_text('{"id": 1}\n')
    task = plan_input(bucket, job_input(bucket))[1].chunks[0]
    big = msgspec.structs.replace(task, byte_start=0, byte_end=100 << 20)
    pace = Pace()
    assert pace.timeout(big) == 10 * (100 << 20) / UNMEASURED_PACE  # nothing measured yet
    pace.record(done(50 << 20, 2.0))  # 25 MiB/s: 100 MiB should take 4 s; ten times is 40 s
    assert pace.timeout(big) == MIN_CHUNK_TIMEOUT
    pace.record(done(0, 18.0))  # now 50 MiB in 20 s: 100 MiB should take 40 s
    assert pace.timeout(big) == 400.0
