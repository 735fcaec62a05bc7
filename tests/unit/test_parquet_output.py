"""Parquet result parts: the same records as JSON Lines, whatever their types do; the format fixed
by the plan; pyarrow needed only when Parquet is asked for."""

from __future__ import annotations

import random
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from scm_batch import layout
from scm_batch.config import RunOptions
from scm_batch.errors import ConfigError, OutputFormatChangedError
from scm_batch.ledger import encode_plan
from scm_batch.model import ChunkPlan, ChunkTask, PlanOptions
from scm_batch.records import parquet
from scm_batch.records.parquet import RESCUED_COLUMN, ParquetPart
from scm_batch.records.parts import (
    MIN_PYARROW_MAJOR,
    JsonLinesPart,
    ResultPart,
    open_result_part,
    require_output_format,
)
from scm_batch.sinks.messages import MessageBlock
from scm_batch.sinks.options import MessageFormat
from scm_batch.stages.process import process_chunk
from scm_batch.stages.resume import check_output_format_unchanged
from scm_batch.stages.validate_config import validate_batch_config
from scm_batch.storage import LocalStorage, ObjectWriter, Storage
from scm_batch.storage.s3 import S3Storage
from tests.helpers import (
    assert_parquet_holds,
    job_input,
    parquet_records,
    plan_input,
    typed_as_in_parquet,
    typed_parquet_records,
)
from tests.unit.test_process import CONTENT, read_lines

encode_lines = msgspec.json.Encoder().encode_lines


def write_part(
    bucket: Path, blocks: list[list[dict[str, Any]]], **options: Any
) -> tuple[Path, ParquetPart]:
    """Write ``blocks`` as one Parquet part through the local storage; return its path."""
    storage = LocalStorage(bucket)
    with storage.open_writer("part.parquet") as out:
        part = ParquetPart(out, **options)
        for block in blocks:
            part.write(encode_lines(block))
        part.close()
    return bucket / "part.parquet", part


def rescued(path: Path) -> list[str | None]:
    column: list[str | None] = pq.read_table(path).column(RESCUED_COLUMN).to_pylist()
    return column


def test_values_that_do_not_fit_the_schema_are_rescued_never_lost(bucket: Path) -> None:
    first: list[dict[str, Any]] = [
        {"a": 1, "s": "x", "o": {"k": 1}, "l": [1, 2], "m": 1, "f": 0.5},
        {"a": 2, "s": "y", "o": {"k": 2}, "l": [], "m": "one", "f": 2},  # m: mixed in block 1
        {"a": 3, "e": {}, "n": None},  # e: an empty object has no Parquet type; n: null only
    ]
    changed: list[dict[str, Any]] = [
        {"a": "3"},  # a string where integers were
        {"a": 1.5},  # a float where integers were: never truncated to 1
        {"a": 2**64},  # beyond 64 bits
        {"a": True},
        {"s": 5},
        {"o": {"k": 1, "extra": True}},  # a key the struct does not have
        {"o": {"k": "str"}},
        {"o": [1]},
        {"l": [1.5]},
        {"l": [1, "x"]},
        {"new": {"deep": [1, {"x": None}]}},  # a field absent from the first block
        {RESCUED_COLUMN: "mine", "a": 4},  # a field named like the rescued column
        {"n": 7},
        {"e": {"z": 1}},
        {"f": 3, "a": 5, "s": "fits", "o": {}, "l": None},  # fits: an int in a float column
    ]
    fitting: list[dict[str, Any]] = [{"a": 6, "s": "z", "o": {"k": 3}, "l": [4], "f": 1.25, "m": 2}]
    path, part = write_part(bucket, [first, changed, fitting])

    schema = pq.read_schema(path)
    assert schema.names == ["a", "s", "o", "l", "m", "f", "n", RESCUED_COLUMN]
    assert schema.field("a").type == pa.int64()
    assert schema.field("m").type == pa.int64()  # the first value's type; "one" is rescued
    assert schema.field("f").type == pa.float64()
    assert_parquet_holds(path, first + changed + fitting)

    column = rescued(path)
    assert column[3 + 0] == '{"a":"3"}'
    assert column[3 + 1] == '{"a":1.5}'
    assert column[3 + 2] == '{"a":18446744073709551616}'
    assert column[3 + 3] == '{"a":true}'  # a boolean, never the integer 1
    assert column[3 + 11] == '{"_rescued_data":"mine"}'
    assert column[3 + 14] is None  # everything in it fitted
    assert column[-1] is None
    assert pq.read_table(path).column("a").to_pylist()[3:6] == [None, None, None]
    # Rows 1 and 2 of the first block (m, e) and every changed row but the last.
    assert part.rescued_rows == sum(v is not None for v in column) == 2 + len(changed) - 1
    assert part.rows == len(first) + len(changed) + len(fitting)


def test_a_first_block_without_a_common_type_does_not_crash(bucket: Path) -> None:
    block: list[dict[str, Any]] = [{"id": 1, "v": {}}, {"id": "R2", "v": [1]}, {"id": 3}]
    path, _ = write_part(bucket, [block, block])
    assert_parquet_holds(path, block + block)


def row_group_sizes(path: Path) -> list[int]:
    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def test_integers_a_double_cannot_hold_exactly_are_rescued(bucket: Path) -> None:
    first: list[dict[str, Any]] = [{"f": 0.5, "o": {"x": 0.5}, "l": [0.5]}]
    block: list[dict[str, Any]] = [
        {"f": 2**60 + 1},  # a double would round it
        {"f": 2**70},  # beyond 64 bits as well
        {"f": -(2**53) - 1},
        {"f": 2**53, "o": {"x": 2}, "l": [3]},  # exact as doubles: stored as doubles
        {"f": -(2**53)},
        {"o": {"x": 2**60 + 1}},
        {"l": [1, 2**60 + 1]},
    ]
    path, part = write_part(bucket, [first, block])
    assert_parquet_holds(path, first + block)
    assert rescued(path) == [
        None,
        '{"f":1152921504606846977}',
        '{"f":1180591620717411303424}',
        '{"f":-9007199254740993}',
        None,
        None,
        '{"o":{"x":1152921504606846977}}',
        '{"l":[1,1152921504606846977]}',
    ]
    assert pq.read_table(path).column("f").to_pylist()[4:6] == [2.0**53, -(2.0**53)]
    assert part.rescued_rows == 5


def test_a_block_of_exact_integers_in_float_columns_takes_the_fast_path(
    bucket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first: list[dict[str, Any]] = [{"f": 0.5, "o": {"x": 0.5}, "s": "a"}]
    block: list[dict[str, Any]] = [
        {"f": 2**53, "o": {"x": -(2**53)}, "s": "12345678901234567890"},
        {"f": 3, "o": {"x": 0.12345678901234567}},
        {"f": 1.5e300, "o": {"x": -(2.0**60)}},  # doubles that large: the records are looked at
    ]

    def no_slow_path(self: ParquetPart, records: list[dict[str, Any]]) -> Any:
        raise AssertionError("the block fits: the JSON reader should have parsed it")

    with LocalStorage(bucket).open_writer("part.parquet") as out:
        part = ParquetPart(out)
        part.write(encode_lines(first))
        monkeypatch.setattr(ParquetPart, "_convert", no_slow_path)
        part.write(encode_lines(block))
        part.close()
    assert_parquet_holds(bucket / "part.parquet", first + block)


def test_the_comparison_sees_types(bucket: Path) -> None:
    path = bucket / "part.parquet"
    table = pa.table(
        {
            "a": pa.array([1, 2], pa.int64()),
            "f": pa.array([1.0, 2.5], pa.float64()),
            "o": pa.array([{"x": 1.0}, {"x": 2.0}], pa.struct([("x", pa.float64())])),
            RESCUED_COLUMN: pa.array([None, '{"b":1}'], pa.string()),
        }
    )
    pq.write_table(table, path)
    records: list[dict[str, Any]] = [
        {"a": 1, "f": 1, "o": {"x": 1}},
        {"a": 2, "f": 2.5, "o": {"x": 2.0}, "b": 1},
    ]
    assert_parquet_holds(path, records)  # integers read back as doubles from double columns
    for wrong in (
        {"a": True, "f": 1, "o": {"x": 1}},  # stored as the integer 1: == cannot tell
        {"a": 1.0, "f": 1, "o": {"x": 1}},  # a double read back as an integer
        {"a": 1, "f": True, "o": {"x": 1}},
        {"a": 1, "f": 1, "o": {"x": True}},
    ):
        changed = [wrong, records[1]]
        assert parquet_records(path) == changed  # plain == sees no difference
        assert typed_parquet_records(path) != typed_as_in_parquet(path, changed)
    # Only where the column holds doubles: the rescued 1 stays an integer.
    changed = [records[0], {**records[1], "b": 1.0}]
    assert typed_parquet_records(path) != typed_as_in_parquet(path, changed)


def test_row_groups_are_cut_at_the_bound_exactly(bucket: Path) -> None:
    blocks = [[{"n": i * 30 + j, "s": "x" * j} for j in range(30)] for i in range(10)]
    blocks.append([{"n": 300 + j, "s": "y"} for j in range(5)])
    path, _ = write_part(bucket, blocks, row_group_rows=100)
    # Never more rows than the bound: what is left over waits for the next blocks.
    assert row_group_sizes(path) == [100, 100, 100, 5]
    assert [r["n"] for r in parquet_records(path)] == list(range(305))


def test_row_groups_are_bounded_in_bytes_too(bucket: Path) -> None:
    # Blocks of 16 records of 16 KiB: about 256 KiB of Arrow data each.
    blocks = [[{"n": i * 16 + j, "s": f"{j:016d}" * 1024} for j in range(16)] for i in range(10)]
    path, _ = write_part(bucket, blocks, row_group_bytes=1 << 20)
    # Written as soon as the blocks in hand reach 1 MiB, long before the row bound.
    assert row_group_sizes(path) == [64, 64, 32]
    assert [r["n"] for r in parquet_records(path)] == list(range(160))


def test_parts_are_zstd_compressed(bucket: Path) -> None:
    path, _ = write_part(bucket, [[{"a": i, "b": {"c": [str(i)]}} for i in range(1000)]])
    metadata = pq.ParquetFile(path).metadata
    compressions = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert compressions == {"ZSTD"}
    assert path.read_bytes()[:4] == path.read_bytes()[-4:] == b"PAR1"


def test_a_part_without_records_is_a_valid_empty_file(bucket: Path) -> None:
    path, _ = write_part(bucket, [])
    table = pq.read_table(path)
    assert (table.num_rows, table.column_names) == (0, [RESCUED_COLUMN])


class RecordingWriter:
    """A storage writer's stand-in that passes everything on to it and notes the size of each
    write, apart: those before the test says it failed, and those after."""

    def __init__(self, out: ObjectWriter | None = None) -> None:
        self.out = out
        self.failed = False
        self.before: list[int] = []
        self.after: list[int] = []

    def write(self, data: bytes, /) -> int:
        (self.after if self.failed else self.before).append(len(data))
        return self.out.write(data) if self.out is not None else len(data)


def incompressible_blocks(total: int, block_rows: int = 100) -> Iterator[list[dict[str, Any]]]:
    """Blocks of records holding about ``total`` bytes that zstd cannot make much smaller."""
    rng = random.Random(5)
    count = 0
    while count * 1024 < total:
        yield [{"n": count + i, "s": rng.randbytes(768).hex()} for i in range(block_rows)]
        count += block_rows


def fail_writing(storage: Storage, total: int) -> RecordingWriter:
    """Write ``total`` bytes of records as a Parquet part, in small row groups, then fail."""
    recording = RecordingWriter()

    def write_then_fail() -> None:
        with storage.open_writer("results/part.parquet") as out:
            recording.out = out
            with open_result_part("parquet", recording) as part:
                for block in incompressible_blocks(total):
                    part.write(encode_lines(block))
                recording.failed = True
                raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        write_then_fail()
    return recording


@pytest.fixture
def small_row_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 100)


@pytest.mark.usefixtures("small_row_groups")
def test_a_failed_part_writes_nothing_more_and_leaves_nothing(bucket: Path) -> None:
    recording = fail_writing(LocalStorage(bucket), 3 << 20)
    assert sum(recording.before) > 2 << 20  # row groups did reach the storage writer
    assert recording.after == []  # nothing after the error: no last row group, no footer
    assert [p for p in bucket.rglob("*") if p.is_file()] == []


@pytest.mark.usefixtures("small_row_groups")
def test_a_failed_part_on_s3_leaves_no_object_and_no_upload() -> None:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="parts")
        # More than S3's smallest part: a multipart upload is under way when the error comes.
        recording = fail_writing(S3Storage("parts", client=client), 7 << 20)
        assert sum(recording.before) > 5 << 20
        assert recording.after == []
        assert "Contents" not in client.list_objects_v2(Bucket="parts")
        assert "Uploads" not in client.list_multipart_uploads(Bucket="parts")


class FailingWriter:
    """A storage writer that takes nothing once ``broken`` is set."""

    def __init__(self) -> None:
        self.broken = False
        self.written: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        if self.broken:
            raise OSError("disk full")
        self.written.append(data)
        return len(data)


def test_a_part_that_fails_to_close_is_abandoned(monkeypatch: pytest.MonkeyPatch) -> None:
    abandoned: list[ParquetPart] = []
    abandon = ParquetPart.abandon

    def noting(part: ParquetPart) -> None:
        abandoned.append(part)
        abandon(part)

    monkeypatch.setattr(ParquetPart, "abandon", noting)
    out = FailingWriter()
    block = [{"a": i} for i in range(10)]
    opened: list[ResultPart] = []

    def write_then_break() -> None:
        with open_result_part("parquet", out) as part:
            opened.append(part)
            part.write(encode_lines(block))
            out.broken = True  # the last row group and the footer cannot be written

    with pytest.raises(OSError, match="disk full"):
        write_then_break()
    assert abandoned == opened
    part = opened[0]
    out.broken = False
    part.write(encode_lines(block))  # a closed part takes nothing more
    assert out.written == []


def test_a_closed_part_discards_later_writes() -> None:
    out = RecordingWriter()
    part = ParquetPart(out, row_group_rows=1)
    block = [{"a": i} for i in range(3)]
    part.write(encode_lines(block))
    part.finish()
    written = list(out.before)
    part.write(encode_lines(block))
    part.finish()  # finishing twice is finishing once
    part.close()
    assert (out.before, part.rows) == (written, 3)


def test_a_json_lines_part_has_nothing_to_finish() -> None:
    out = RecordingWriter()
    part = JsonLinesPart(out)
    part.write(b'{"a":1}\n')
    part.finish()
    assert out.before == [8]


def plan_awkward(bucket: Path, **options: Any) -> tuple[LocalStorage, ChunkPlan]:
    """The awkward lines of the ProcessChunk tests, in two chunks, with the format asked."""
    bucket.mkdir(parents=True, exist_ok=True)
    (bucket / "in.jsonl").write_bytes(CONTENT)
    job = job_input(
        bucket,
        batch_id="b1",
        max_chunk_size=6,
        max_concurrent_chunks=1,
        processed_at="2026-01-01T00:00:00.000Z",
    )
    return plan_input(bucket, job, min_chunk_size=1, **options)


def test_a_parquet_chunk_holds_the_records_of_a_jsonl_chunk(tmp_path: Path) -> None:
    as_jsonl, jsonl_plan = plan_awkward(tmp_path / "jsonl")
    as_parquet, parquet_plan = plan_awkward(tmp_path / "parquet", output_format="parquet")
    assert len(parquet_plan.chunks) == 2
    for jsonl_task, parquet_task in zip(jsonl_plan.chunks, parquet_plan.chunks, strict=True):
        expected = process_chunk(jsonl_task, storage=as_jsonl)
        result = process_chunk(parquet_task, storage=as_parquet)
        assert expected.result_key.endswith(".jsonl")
        assert result.result_key == f"results/b1/{parquet_task.chunk_id}.parquet"
        records = read_lines(tmp_path / "jsonl" / expected.result_key)
        assert records, "each chunk has valid records"
        assert_parquet_holds(tmp_path / "parquet" / result.result_key, records)
        # Error parts stay JSON Lines, byte for byte.
        assert result.error_key == expected.error_key
        error_part = (tmp_path / "parquet" / result.error_key).read_bytes()
        assert error_part == (tmp_path / "jsonl" / expected.error_key).read_bytes()
        assert msgspec.structs.replace(result, result_key="", duration_seconds=0) == (
            msgspec.structs.replace(
                expected,
                result_key="",
                duration_seconds=0,
                worker_peak_rss_bytes=result.worker_peak_rss_bytes,
                attempts=result.attempts,
                parts=result.parts,  # the result part's size and checksum are its format's
                started_at=result.started_at,
            )
        )
        assert result.parts[1] == expected.parts[1]  # the error part's are the same


class CapturingSink:
    """A record sink that keeps every message it is given."""

    message_format: MessageFormat = "bare"
    broken = False

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def begin(self, task: ChunkTask) -> CapturingSink:
        return self

    def send(self, block: MessageBlock) -> None:
        self.values += block.values

    def finish(self) -> int:
        return len(self.values)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_delivery_still_gets_the_json_lines(tmp_path: Path) -> None:
    as_jsonl, jsonl_plan = plan_awkward(tmp_path / "jsonl")
    as_parquet, parquet_plan = plan_awkward(tmp_path / "parquet", output_format="parquet")
    sink = CapturingSink()
    result = process_chunk(parquet_plan.chunks[0], storage=as_parquet, sink=sink)
    expected = process_chunk(jsonl_plan.chunks[0], storage=as_jsonl)
    assert result.delivered == len(sink.values) == result.valid_records > 0
    assert (
        b"".join(v + b"\n" for v in sink.values)
        == (tmp_path / "jsonl" / expected.result_key).read_bytes()
    )


class OrderedSink(CapturingSink):
    """A sink that notes whether delivery was confirmed or aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = False
        self.aborted = False

    def finish(self) -> int:
        self.finished = True
        return super().finish()

    def abort(self) -> None:
        self.aborted = True


def test_a_part_that_cannot_be_finished_fails_the_chunk_before_delivery_is_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, plan = plan_awkward(tmp_path, output_format="parquet")

    def lose_footer(self: ParquetPart) -> None:
        raise RuntimeError("the footer could not be written")

    monkeypatch.setattr(ParquetPart, "close", lose_footer)
    sink = OrderedSink()
    with pytest.raises(RuntimeError, match="footer"):
        process_chunk(plan.chunks[0], storage=storage, sink=sink)
    # The broker or queue is never told the chunk is done: its messages are not acknowledged.
    assert sink.values
    assert (sink.finished, sink.aborted) == (False, True)
    assert list(tmp_path.rglob("*.parquet*")) == []  # no part, not even a temporary file
    assert not storage.exists(layout.receipt_key("b1", plan.chunks[0].chunk_id))


def test_the_plan_fixes_the_format_for_every_chunk(tmp_path: Path) -> None:
    _, default = plan_awkward(tmp_path / "default")
    assert default.output_format == default.options.output_format == "jsonl"
    assert {c.output_format for c in default.chunks} == {"jsonl"}
    _, plan = plan_awkward(tmp_path / "parquet", output_format="parquet")
    assert plan.output_format == plan.options.output_format == "parquet"
    assert {c.output_format for c in plan.chunks} == {"parquet"}

    # A plan stored before the option existed is a JSON Lines plan.
    stored = msgspec.json.decode(encode_plan(plan))
    del stored["options"]["outputFormat"]
    for chunk in stored["chunks"]:
        del chunk["outputFormat"]
    old = msgspec.convert(stored, ChunkPlan)
    assert old.output_format == "jsonl"
    assert {c.output_format for c in old.chunks} == {"jsonl"}


def test_result_keys_keep_the_jsonl_layout() -> None:
    assert layout.result_key("b", "chunk_000001") == "results/b/chunk_000001.jsonl"
    assert layout.result_key("b", "chunk_000001", "jsonl") == "results/b/chunk_000001.jsonl"
    assert layout.result_key("b", "chunk_000001", "parquet") == "results/b/chunk_000001.parquet"


def test_a_resumed_batch_keeps_its_format(tmp_path: Path) -> None:
    _, plan = plan_awkward(tmp_path, output_format="parquet")
    check_output_format_unchanged(plan, RunOptions())
    check_output_format_unchanged(plan, RunOptions(plan=PlanOptions(output_format="parquet")))
    with pytest.raises(OutputFormatChangedError, match=r"planned to write parquet.*asks for jsonl"):
        check_output_format_unchanged(plan, RunOptions(plan=PlanOptions(output_format="jsonl")))


def test_parquet_without_pyarrow_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plan = plan_awkward(tmp_path, output_format="parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now fails
    require_output_format("jsonl")
    validate_batch_config(plan.job, RunOptions())
    asked = RunOptions(plan=PlanOptions(output_format="parquet"))
    for check in (
        lambda: require_output_format("parquet"),
        lambda: validate_batch_config(plan.job, asked),
        lambda: check_output_format_unchanged(plan, RunOptions()),  # resuming a Parquet batch
    ):
        with pytest.raises(ConfigError) as raised:
            check()
        assert raised.value.field == "--output-format"
        assert "pip install 'scm-batch[parquet]'" in raised.value.message
        assert "\n" not in raised.value.message


@pytest.mark.parametrize("version", ["14.0.2", "25.0.0"])
def test_an_old_pyarrow_is_refused(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(pa, "__version__", version)
    with pytest.raises(ConfigError, match=rf"pyarrow>=26.*pyarrow {version} is too old"):
        require_output_format("parquet")
    monkeypatch.setattr(pa, "__version__", "26.0.1")
    require_output_format("parquet")


def test_the_extra_asks_for_the_pyarrow_the_check_demands() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["parquet"] == [
        f"pyarrow>={MIN_PYARROW_MAJOR}"
    ]
    pinned = [d for d in pyproject["project"]["optional-dependencies"]["dev"] if "pyarrow" in d]
    assert pinned == ["pyarrow==26.0.1"]
    assert int(pinned[0].split("==")[1].split(".")[0]) >= MIN_PYARROW_MAJOR


def test_parts_typed_apart_are_read_apart_or_cast(bucket: Path) -> None:
    """What the README says of parts whose first blocks gave a field different types."""
    (bucket / "a").mkdir()
    (bucket / "b").mkdir()
    strings, _ = write_part(bucket / "a", [[{"x": "one"}, {"x": 2}]])
    integers, _ = write_part(bucket / "b", [[{"x": 1}, {"x": "two"}]])
    schemas = [pq.read_schema(strings), pq.read_schema(integers)]
    with pytest.raises(pa.ArrowTypeError, match="Unable to merge: Field x has incompatible types"):
        pa.unify_schemas(schemas, promote_options="permissive")
    # Read separately, each part is whole; cast to one type, they combine.
    tables = [pq.read_table(strings), pq.read_table(integers)]
    tables[1] = tables[1].set_column(0, "x", pa.compute.cast(tables[1]["x"], pa.string()))
    combined = pa.concat_tables(tables)
    assert combined.column("x").to_pylist() == ["one", None, "1", None]
    assert combined.column(RESCUED_COLUMN).to_pylist() == [None, '{"x":2}', None, '{"x":"two"}']


def test_white_space_kept_inside_values_is_no_line_break(bucket: Path) -> None:
    # Fields pass through as the input wrote them, white space included: a "\r" inside a value
    # is JSON white space, never the end of a record.
    blocks = [b'{"a": 1, "o": {"k":\r1}}\n', b'{"a":\r2, "o": {"k": "x\\r"}}\n{"a": 3}\n']
    storage = LocalStorage(bucket)
    with storage.open_writer("part.parquet") as out:
        part = ParquetPart(out)
        for block in blocks:
            part.write(block)
        part.close()
    assert part.rows == 3
    assert parquet_records(bucket / "part.parquet") == [
        {"a": 1, "o": {"k": 1}},
        {"a": 2, "o": {"k": "x\r"}},
        {"a": 3},
    ]
