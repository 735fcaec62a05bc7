"""ProcessChunk on awkward input: every line ends up in exactly one place, losslessly."""

from __future__ import annotations

import base64
import errno
import functools
import gc
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scm_batch import layout
from scm_batch.errors import InputChangedError
from scm_batch.ledger import Ledger, record_receipt
from scm_batch.model import ChunkPlan, ChunkTask
from scm_batch.records.transform import record_uuid
from scm_batch.stages.aggregate import SAMPLE_RAW_CHARS, collect_samples
from scm_batch.stages.process import process_chunk
from scm_batch.stages.scan import Scanner
from scm_batch.storage import LocalStorage
from tests.helpers import job_input, plan_input


def record(n: int, **changes: Any) -> bytes:
    rec: dict[str, Any] = {
        "id": f"R{n}",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "status": "active",
        "createdAt": "2024-01-31T12:00:00Z",
        "updatedAt": "2024-01-31T12:00:00Z",
        "gssId": "old",
        "note": "é€😀",
        "nested": {"keep": [1, 2.5, None]},
    }
    rec.update(changes)
    return json.dumps(rec, ensure_ascii=False).encode()


LINES = [
    b"\xef\xbb\xbf" + record(0),  # a byte order mark before the first record
    record(1) + b"\r",  # CRLF line ending
    b"",  # blank
    b"  \t ",  # white space only
    b'{"id": "\xff\xfe"}',  # not UTF-8
    b"not json",
    b"{}",
    b"null",
    b"[1, 2]",
    record(9, email=None),
    record(10, status="archived", name="X"),
    record(11),  # the last line has no newline
]
CONTENT = b"\n".join(LINES)
OFFSETS = [sum(len(line) + 1 for line in LINES[:i]) for i in range(len(LINES))]


def plan_for(bucket: Path, *, exact: bool, max_chunk: int) -> tuple[LocalStorage, ChunkPlan]:
    (bucket / "in.jsonl").write_bytes(CONTENT)
    job = job_input(
        bucket,
        customer_id="cust",
        tenant_id="ten",
        batch_id="b1",
        max_chunk_size=max_chunk,
        max_concurrent_chunks=1,
        processed_at="2026-01-01T00:00:00.000Z",
    )
    return plan_input(bucket, job, min_chunk_size=1, count_records=exact)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize(
    ("exact", "max_chunk", "block"), [(True, 100, 1 << 20), (True, 3, 7), (False, 2, 5)]
)
def test_every_line_is_accounted_for(bucket: Path, exact: bool, max_chunk: int, block: int) -> None:
    storage, plan = plan_for(bucket, exact=exact, max_chunk=max_chunk)
    assert (len(plan.chunks) == 1) == (max_chunk == 100)
    results = [process_chunk(task, storage=storage, block_size=block) for task in plan.chunks]

    valid: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for r in results:
        valid += read_lines(bucket / r.result_key)
        errors += read_lines(bucket / r.error_key)

    assert sum(r.lines for r in results) == len(LINES)
    assert sum(r.blank_lines for r in results) == 2
    assert sum(r.valid_records for r in results) == len(valid) == 3

    # Valid records, in file order, with ids derived from their line's byte offset.
    assert [v["originalId"] for v in valid] == ["R0", "R1", "R11"]
    for v, line in zip(valid, [0, 1, 11], strict=True):
        assert v["gssId"] == record_uuid("b1", "gssId", OFFSETS[line])
        assert v["id"] == f"cust_ten_{record_uuid('b1', 'id', OFFSETS[line])}"
        assert v["note"] == "é€😀"
        assert v["nested"] == {"keep": [1, 2.5, None]}
        assert v["processedAt"] == "2026-01-01T00:00:00.000Z"

    # Errors: line number (when exact), offset, category, the raw line byte for byte.
    assert [e["offset"] for e in errors] == [OFFSETS[i] for i in range(4, 11)]
    assert [e["line"] for e in errors] == ([i + 1 for i in range(4, 11)] if exact else [None] * 7)
    assert [e["category"] for e in errors] == [
        "malformed",
        "malformed",
        "empty_record",
        "empty_record",
        "malformed",
        "empty_field",
        "invalid_field",
    ]
    assert base64.b64decode(errors[0]["rawBase64"]) == LINES[4]
    assert [e["raw"].encode() for e in errors[1:]] == LINES[5:11]
    assert errors[5]["fieldErrors"] == {"email": "empty"}
    assert set(errors[6]["fieldErrors"]) == {"name", "status"}

    counts: dict[str, int] = {}
    for r in results:
        for k, count in r.errors_by_category.items():
            counts[k] = counts.get(k, 0) + count
    assert counts == {"malformed": 3, "empty_record": 2, "empty_field": 1, "invalid_field": 1}
    assert sum(r.records_with_empty_fields for r in results) == 1


def test_progress_is_reported_per_block(bucket: Path) -> None:
    storage, plan = plan_for(bucket, exact=True, max_chunk=100)
    assert len(plan.chunks) == 1
    seen: list[int] = []
    process_chunk(plan.chunks[0], storage=storage, on_progress=seen.append, block_size=16)
    assert len(seen) > 1
    assert sum(seen) == len(LINES)


def no_parts_written(bucket: Path) -> bool:
    return [p for p in bucket.rglob("*") if p.is_file()] == [bucket / "in.jsonl"]


def test_an_input_replaced_after_planning_is_refused(bucket: Path) -> None:
    storage, plan = plan_for(bucket, exact=True, max_chunk=4)
    (bucket / "in.jsonl").write_bytes(CONTENT[:-5])
    with pytest.raises(InputChangedError, match="no longer the object the plan was made from"):
        process_chunk(plan.chunks[1], storage=storage)
    assert no_parts_written(bucket)


def edit_in_place(path: Path, edit: Callable[[bytearray], None]) -> None:
    """Change bytes without changing size or modification time: only the content can tell."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("exact", [True, False])
def test_a_line_boundary_moved_under_a_chunk_fails_it(bucket: Path, exact: bool) -> None:
    storage, plan = plan_for(bucket, exact=exact, max_chunk=4)
    task = plan.chunks[0]

    def move_newline(data: bytearray) -> None:
        data[task.byte_end - 1] = ord(" ")  # the chunk's last line now runs past its end
        data[task.byte_end + 1] = ord("\n")

    edit_in_place(bucket / "in.jsonl", move_newline)
    with pytest.raises(InputChangedError, match="whole lines"):
        process_chunk(task, storage=storage)
    assert no_parts_written(bucket)


def test_lines_merged_under_a_chunk_fail_it(bucket: Path) -> None:
    storage, plan = plan_for(bucket, exact=True, max_chunk=4)
    task = plan.chunks[1]

    def merge_two_lines(data: bytearray) -> None:
        data[data.index(b"\n", task.byte_start)] = ord(" ")

    edit_in_place(bucket / "in.jsonl", merge_two_lines)
    with pytest.raises(InputChangedError, match="expected 4 lines"):
        process_chunk(task, storage=storage)
    assert no_parts_written(bucket)


def test_a_deeply_nested_line_is_malformed_not_a_crash(bucket: Path) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    (bucket / "in.jsonl").write_bytes(record(0) + b"\n" + deep + b"\n" + record(2) + b"\n")
    storage, plan = plan_input(bucket, job_input(bucket))
    result = process_chunk(plan.chunks[0], storage=storage)
    assert (result.valid_records, result.errors_by_category) == (2, {"malformed": 1})
    entry = read_lines(bucket / result.error_key)[0]
    assert entry["error"] == "cannot decode: nested too deeply"
    assert entry["raw"].encode() == deep


@functools.cache
def a_task() -> ChunkTask:
    """A chunk task to scan with (made once: the scanners never read the bucket)."""
    with tempfile.TemporaryDirectory() as bucket:
        return plan_for(Path(bucket), exact=True, max_chunk=100)[1].chunks[0]


@given(
    st.lists(st.sampled_from(LINES), min_size=1, max_size=30),
    st.sampled_from([0, 3, 1000]),
)
def test_the_fast_path_sorts_a_block_exactly_as_the_line_by_line_path(
    lines: list[bytes], start: int
) -> None:
    # Blocks of well-formed lines take scan()'s fast path, the others _scan_lines(); both must
    # give the same records, offsets, indices, error entries and counts for any block.
    task = msgspec.structs.replace(a_task(), byte_start=start)
    fast, slow = Scanner(task), Scanner(task)
    for scanner in (fast, slow):  # a block before, so indices and offsets carry over
        scanner.offset += 7
        scanner.tally.lines += 2
    assert fast.scan(list(lines)) == slow._scan_lines(list(lines))
    assert fast.bad == slow.bad
    assert (fast.offset, fast.tally) == (slow.offset, slow.tally)


def test_a_chunk_pauses_the_cyclic_collector_and_always_resumes_it(bucket: Path) -> None:
    storage, plan = plan_for(bucket, exact=True, max_chunk=100)
    seen: list[bool] = []
    process_chunk(
        plan.chunks[0], storage=storage, on_progress=lambda _: seen.append(gc.isenabled())
    )
    assert seen
    assert not any(seen)  # paused while the chunk ran
    assert gc.isenabled()
    (bucket / "in.jsonl").write_bytes(CONTENT[:-5])  # the input changed: the chunk fails
    with pytest.raises(InputChangedError):
        process_chunk(plan.chunks[0], storage=storage)
    assert gc.isenabled()


def test_only_json_white_space_makes_a_line_blank(bucket: Path) -> None:
    # Form feed and vertical tab are white space to Python, not to JSON: such a line is malformed.
    lines = [record(0), b" \t\r", b"\x0c", b"\x0b", b"", record(5)]
    (bucket / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    storage, plan = plan_input(bucket, job_input(bucket))
    result = process_chunk(plan.chunks[0], storage=storage)
    assert (result.blank_lines, result.errors_by_category) == (2, {"malformed": 2})
    entries = read_lines(bucket / result.error_key)
    # "\x0b" would be escaped to six characters: stored as base64, as every line that JSON's
    # escaping would more than double.
    assert [e.get("raw") or base64.b64decode(e["rawBase64"]).decode() for e in entries] == [
        "\x0c",
        "\x0b",
    ]


def test_a_line_over_the_limit_is_an_entry_with_its_length_and_samples_stay_small(
    bucket: Path,
) -> None:
    long_malformed = b'{"x": "' + b"y" * 9000  # malformed, under the limit: kept whole
    nul_line = b"\x00" * 3000  # JSON would escape each NUL to six characters: base64
    too_long = b"z" * 20_000
    lines = [record(0), long_malformed, nul_line, too_long, record(4)]
    (bucket / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    job = job_input(bucket)
    storage, plan = plan_input(bucket, job, max_line_bytes=10_000)
    result = process_chunk(plan.chunks[0], storage=storage, block_size=4096)
    assert (result.valid_records, result.errors_by_category) == (
        2, {"malformed": 2, "too_long": 1},
    )  # fmt: skip
    malformed, nul, long = read_lines(bucket / result.error_key)
    assert malformed["raw"].encode() == long_malformed  # the error part keeps the whole line
    assert base64.b64decode(nul["rawBase64"]) == nul_line
    offset = sum(len(line) + 1 for line in lines[:3])
    assert (long["category"], long["length"], long["offset"]) == ("too_long", 20_000, offset)
    assert "raw" not in long
    assert "rawBase64" not in long
    assert "over the limit of 10,000" in long["error"]
    # The report's samples are cut, with a marker; the error part is not.
    samples, _ = collect_samples(storage, [result], 10)
    assert len(samples[0]["raw"]) == SAMPLE_RAW_CHARS  # type: ignore[arg-type]
    assert (samples[0]["rawTruncated"], samples[0]["rawLength"]) == (True, len(long_malformed))
    assert samples[2]["length"] == 20_000


@pytest.mark.parametrize("blank", [False, True], ids=["block", "line-by-line"])
def test_numbers_beyond_a_double_are_kept_or_judged_never_a_crash(
    bucket: Path, blank: bool
) -> None:
    # A value the transform does not set passes through as written, however large; a required
    # value Python cannot hold makes its line malformed, whether or not the other fields are there.
    valid_large = record(0)[:-1] + b', "n": 1e400}'
    lines = [
        valid_large,
        b'{"id": 1, "n": 1e400}',  # missing fields, its large value never decoded
        b'{"id": 1e400}',
        record(3)[:-1].replace(b'"id": "R3"', b'"id": 1e400') + b"}",
        *([b""] if blank else []),  # a blank line sends the block down the line-by-line path
    ]
    (bucket / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    storage, plan = plan_input(bucket, job_input(bucket))
    result = process_chunk(plan.chunks[0], storage=storage)
    assert (result.valid_records, result.errors_by_category) == (
        1, {"missing_field": 1, "malformed": 2},
    )  # fmt: skip
    [out] = (bucket / result.result_key).read_bytes().splitlines()
    assert b'"n":1e400' in out
    missing, malformed, whole = read_lines(bucket / result.error_key)
    assert missing["category"] == "missing_field"
    assert malformed["error"] == whole["error"] == "cannot decode: Number out of range"
    # The report's samples: the line that cannot be decoded in Python stays raw text.
    samples, _ = collect_samples(storage, [result], 10)
    assert samples[0]["record"] is None
    assert samples[0]["raw"] == '{"id": 1, "n": 1e400}'


def test_a_chunk_run_twice_at_once_commits_once(bucket: Path) -> None:
    """Two runs of one chunk that both pass the at-most-once check (a cluster running it twice):
    both write the same parts; the first receipt stands, and the second run answers with it."""
    storage, plan = plan_for(bucket, exact=True, max_chunk=100)
    (task,) = plan.chunks
    first = process_chunk(task, storage=storage, attempt=1)
    parts = {p: (bucket / p).read_bytes() for p in (first.result_key, first.error_key)}
    second = process_chunk(task, storage=storage, attempt=2)
    assert second == first
    assert [a.attempt for a in second.attempts] == [1]
    assert Ledger(storage, "b1").receipt(task.chunk_id) == first
    assert {p: (bucket / p).read_bytes() for p in parts} == parts

    # An unreadable receipt (a disk that filled up) is no commit: the next run's replaces it.
    receipt = bucket / layout.receipt_key("b1", task.chunk_id)
    receipt.write_bytes(b"{not json")
    third = process_chunk(task, storage=storage, attempt=3)
    assert [a.attempt for a in third.attempts] == [3]
    assert Ledger(storage, "b1").receipt(task.chunk_id) == third


def test_a_receipt_forgotten_between_the_create_and_the_read_is_created_anew_once(
    bucket: Path,
) -> None:
    """The receipt was there for ``put_new`` and gone when read (``clear`` between the two): the
    commit is tried again as a create, never as an overwrite of another run's receipt."""
    storage, plan = plan_for(bucket, exact=True, max_chunk=100)
    (task,) = plan.chunks
    result = process_chunk(task, storage=storage, attempt=1)
    key = layout.receipt_key("b1", task.chunk_id)
    other = msgspec.structs.replace(result, duration_seconds=123.0)  # a third run's receipt

    class Raced(LocalStorage):
        creates = 0
        third_run_commits_first = False

        def put_new(self, key: str, data: bytes) -> bool:
            self.creates += 1
            if self.creates == 1:  # taken, then forgotten before the read
                return False
            if self.third_run_commits_first:
                super().put_new(key, msgspec.json.encode(other))
            return super().put_new(key, data)

    (bucket / key).unlink()
    alone = Raced(bucket)
    assert record_receipt(alone, "b1", result) == result
    assert alone.creates == 2
    assert Ledger(storage, "b1").receipt(task.chunk_id) == result

    (bucket / key).unlink()
    beaten = Raced(bucket)
    beaten.third_run_commits_first = True
    assert record_receipt(beaten, "b1", result) == other  # its receipt stands, and is answered
    assert Ledger(storage, "b1").receipt(task.chunk_id) == other


def test_without_hard_links_a_create_checks_then_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without hard links (ENOSYS, EPERM, ...): created once all the same."""

    def no_links(source: Any, target: Any) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "link", no_links)
    storage = LocalStorage(tmp_path)
    assert storage.put_new("chunks/a.json", b"first")
    assert not storage.put_new("chunks/a.json", b"second")
    assert (tmp_path / "chunks/a.json").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "chunks").iterdir()] == ["a.json"]


def test_local_put_new_creates_once(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert storage.put_new("chunks/a.json", b"first")
    assert not storage.put_new("chunks/a.json", b"second")
    assert (tmp_path / "chunks/a.json").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "chunks").iterdir()] == ["a.json"]  # no temporary left
