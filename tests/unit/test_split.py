"""Every line lands in exactly one chunk, whatever the content and the chunk sizes."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scm_batch.errors import ConfigError
from scm_batch.model import JobInput, PlanOptions, SourceInfo
from scm_batch.records.codecs import iter_line_blocks
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.plan import calculate_chunks, index_lines, next_line_start
from scm_batch.storage import LocalStorage

# Lines drawn to provoke boundary bugs: blank, whitespace-only, CRLF, multi-byte UTF-8, long.
line_text = st.one_of(
    st.just(""),
    st.just("   "),
    st.text(
        alphabet=st.characters(exclude_characters="\n", exclude_categories=["Cs"]), max_size=40
    ),
    st.text(alphabet='é€😀x{}":,', min_size=1, max_size=30),
    st.integers(min_value=200, max_value=5000).map(lambda n: "y" * n),
)


@st.composite
def file_contents(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(line_text, min_size=1, max_size=60))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    body = ending.join(lines)
    if draw(st.booleans()):
        body += ending
    data = body.encode("utf-8")
    return data or b"x"


def expected_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def lines_of_chunks(
    storage: LocalStorage, key: str, ranges: list[tuple[int, int]], block: int
) -> list[bytes]:
    out: list[bytes] = []
    for start, end in ranges:
        for lines in iter_line_blocks(storage.iter_range(key, start, end, block)):
            out.extend(lines)
    return out


def job(max_concurrent: int, max_chunk: int) -> JobInput:
    return JobInput(
        bucket="unused",
        file="input.jsonl",
        customer_id="c",
        tenant_id="t",
        batch_id="b",
        max_concurrent_chunks=max_concurrent,
        max_chunk_size=max_chunk,
    )


@settings(max_examples=300)
@given(
    data=file_contents(),
    max_concurrent=st.integers(1, 20),
    max_chunk=st.integers(1, 50),
    exact=st.booleans(),
    block=st.integers(1, 300),
    bytes_per_record=st.floats(1.0, 500.0),
)
def test_every_line_in_exactly_one_chunk(
    data: bytes,
    max_concurrent: int,
    max_chunk: int,
    exact: bool,
    block: int,
    bytes_per_record: float,
) -> None:
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "input.jsonl").write_bytes(data)
        storage = LocalStorage(root)
        spec = job(max_concurrent, max_chunk)
        # Any sampled record size, however wrong, must still give a correct split.
        source = SourceInfo(
            key="input.jsonl",
            size=len(data),
            mtime_ns=0,
            etag=None,
            format="jsonl",
            sample_records=1,
            bytes_per_record=bytes_per_record,
            has_bom=False,
        )
        plan = calculate_chunks(
            spec, source, storage, PlanOptions(min_chunk_size=1, count_records=exact)
        )

        ranges = [(c.byte_start, c.byte_end) for c in plan.chunks]
        # The ranges tile the object: contiguous, non-empty, from 0 to its size.
        assert ranges[0][0] == 0
        assert ranges[-1][1] == len(data)
        assert all(a_end == b_start for (_, a_end), (b_start, _) in itertools.pairwise(ranges))
        assert all(start < end for start, end in ranges)
        # Each range starts at a line start, and reading them all gives every line exactly once.
        assert all(start == 0 or data[start - 1 : start] == b"\n" for start, _ in ranges)
        assert lines_of_chunks(storage, "input.jsonl", ranges, block) == expected_lines(data)
        if exact:
            total = len(expected_lines(data))
            assert plan.total_records == total
            assert [c.chunk_size for c in plan.chunks] == [
                len(lines_of_chunks(storage, "input.jsonl", [r], block)) for r in ranges
            ]
            assert plan.chunks[-1].end_index == total - 1
            assert all(c.chunk_size <= max_chunk for c in plan.chunks)


@given(data=file_contents(), block=st.integers(1, 64), granule=st.integers(1, 40))
def test_line_index_counts_lines(data: bytes, block: int, granule: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "f").write_bytes(data)
        storage = LocalStorage(root)
        index = index_lines(storage, "f", len(data), block_size=block, granule=granule)
        lines = expected_lines(data)
        assert index.total_lines == len(lines)
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        for number in range(1, len(lines)):
            assert index.line_start(storage, "f", number) == starts[number]


@given(data=file_contents(), position=st.integers(0, 10_000))
def test_next_line_start_is_the_first_line_start_at_or_after(data: bytes, position: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "f").write_bytes(data)
        storage = LocalStorage(root)
        found = next_line_start(storage, "f", position, len(data))
        starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == 0x0A and i + 1 < len(data)]
        later = [s for s in starts if s >= position]
        assert found == (later[0] if later else len(data))


def test_chunk_size_follows_the_contract_formula(tmp_path: Path) -> None:
    # 60M records at the defaults: 120 chunks of 500K; here scaled with maxChunkSize.
    lines = b"".join(b'{"n":%d}\n' % i for i in range(1000))
    (tmp_path / "input.jsonl").write_bytes(lines)
    storage = LocalStorage(tmp_path)
    spec = job(max_concurrent=4, max_chunk=100)
    source = initialize_batch(spec, storage)
    plan = calculate_chunks(spec, source, storage, PlanOptions(min_chunk_size=1))
    assert plan.chunk_size == 100  # min(ceil(1000 / 4), 100)
    assert plan.chunk_count == 10
    assert [c.chunk_id for c in plan.chunks][:2] == ["chunk_000000", "chunk_000001"]
    assert [(c.start_index, c.end_index) for c in plan.chunks][-1] == (900, 999)

    spec = job(max_concurrent=4, max_chunk=500_000)
    plan = calculate_chunks(spec, source, storage, PlanOptions(min_chunk_size=1))
    assert (plan.chunk_size, plan.chunk_count) == (250, 4)  # split maxConcurrentChunks ways

    plan = calculate_chunks(spec, source, storage, PlanOptions(min_chunk_size=600))
    assert (plan.chunk_size, plan.chunk_count) == (600, 2)  # a small file is not over-split


def test_absurd_chunk_counts_are_refused_not_attempted(tmp_path: Path) -> None:
    (tmp_path / "input.jsonl").write_bytes(b'{"n":1}\n' * 200_001)
    storage = LocalStorage(tmp_path)
    spec = job(max_concurrent=4, max_chunk=1)
    source = initialize_batch(spec, storage)
    with pytest.raises(ConfigError, match=r"maxChunkSize.*200,001 chunks"):
        calculate_chunks(spec, source, storage, PlanOptions(min_chunk_size=1))
    # An impossible targetTotalRecords in estimate mode is refused at once, not looped over.
    huge = msgspec.structs.replace(spec, target_total_records=10**14, max_chunk_size=500_000)
    with pytest.raises(ConfigError, match="maxChunkSize"):
        calculate_chunks(huge, source, storage, PlanOptions(count_records=False))


def test_a_plan_holds_at_most_fifty_thousand_chunks(tmp_path: Path) -> None:
    # The AWS Map gathers a result per chunk into 256 KiB; the bound holds on every backend.
    (tmp_path / "input.jsonl").write_bytes(b'{"n":1}\n' * 50_001)
    storage = LocalStorage(tmp_path)
    source = initialize_batch(job(max_concurrent=4, max_chunk=1), storage)
    with pytest.raises(ConfigError, match=r"50,001 chunks; at most 50,000 are allowed"):
        calculate_chunks(
            job(max_concurrent=4, max_chunk=1), source, storage, PlanOptions(min_chunk_size=1)
        )


def test_estimated_totals_agree_with_the_chunks(tmp_path: Path) -> None:
    (tmp_path / "input.jsonl").write_bytes(b'{"n":1}\n' * 100)
    storage = LocalStorage(tmp_path)
    spec = msgspec.structs.replace(
        job(max_concurrent=50, max_chunk=500_000), target_total_records=1000
    )
    plan = calculate_chunks(
        spec,
        initialize_batch(spec, storage),
        storage,
        PlanOptions(count_records=False, min_chunk_size=1),
    )
    assert plan.total_records == sum(c.chunk_size for c in plan.chunks)
    assert not plan.records_exact
