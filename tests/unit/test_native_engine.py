"""The native engine against the Python engine (the reference): byte for byte the same.

Every input is planned as a real batch and each chunk is sorted by both engines from the same
blocks: the result lines, the marks delivery uses, the error entries, the counts and the bytes
consumed must be equal. Inputs are arbitrary JSON values and records near every rule's edge,
written compactly or with white space, with escapes, duplicate keys, deep nesting, numbers of
every size, invalid UTF-8 and the malformed lines of JSON test suites, cut into blocks of any
size. Skipped (not passed) where the native engine is not installed: ``make test`` builds it.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scm_batch.errors import ConfigError
from scm_batch.model import ChunkTask
from scm_batch.records.blocks import SortedBlock
from scm_batch.records.codecs import iter_line_buffers
from scm_batch.records.native import NativeEngine, native_engine
from scm_batch.records.transform import TransformContext
from scm_batch.stages.chunk_input import chunk_bytes
from scm_batch.stages.native_scan import native_blocks
from scm_batch.stages.scan import Scanner, python_blocks
from tests.helpers import job_input, plan_input

REQUIRED = os.environ.get("SCM_BATCH_ENGINE") == "native"

# `make test` sets SCM_BATCH_ENGINE=native where it built the engine: then these tests fail,
# rather than skip, without it.
ENGINE = native_engine({"SCM_BATCH_ENGINE": "native" if REQUIRED else "auto"})
needs_native = pytest.mark.skipif(ENGINE is None, reason="the native engine is not installed")

VALID = {
    "id": "R1",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "status": "active",
    "createdAt": "2024-01-31T12:00:00Z",
    "updatedAt": "2024-01-31T12:00:00.123+01:00",
}

# Values near each rule's edge, valid and not, beside arbitrary JSON.
SPACES = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
EDGE_TEXT = st.text(alphabet=st.sampled_from('aZ9._%+-@é€😀 \\"/' + SPACES[:6]), max_size=8)
EDGES: dict[str, list[Any]] = {
    "id": [
        "\x1c\x1f",
        "\x85\u200a",
        "R1",
        " ",
        "",
        "\u3000",
        "\x1c x",
        0,
        -7,
        10**17,
        10**18,
        10**19,
        -(10**25),
        1.0,
        1e2,
        True,
        None,
        [],
        {},
        "😀",
    ],
    "name": [
        "\x1cA\x1d",
        "\x1f" + "é" * 255,
        "\u2029\u2028A",
        "Al",
        "A",
        " A ",
        "\x1fAb\x1f",
        "é" * 255,
        "é" * 256,
        "x" * 255 + "\u2028",
        "\u200bA",
        12,
        None,
        "",
    ],
    "email": [
        "a@b.co",
        "a@b.c",
        "a@.co",
        "a@..co",
        "a@b@c.co",
        "é@b.co",
        "a@b.co\n",
        "a@b.c0",
        "A.B%+_-@x-y.Z.com",
        5,
        None,
        "",
    ],
    "status": [
        "active",
        "inactive",
        "pending",
        "suspended",
        "deleted",
        "Active",
        "archived",
        " active",
        None,
        "",
        1,
    ],
    "createdAt": [
        "2024-01-31T12:00:00Z",
        "2024-01-31T12:00:00.123-05:30",
        "2024-01-31T12:00:00",
        "2024-01-31T12:00:00.12Z",
        "2024-01-31 12:00:00Z",
        "٢٠٢٤-01-31T12:00:00Z",
        "2024-01-31T12:00:00Z\n",
        None,
        {},
        20240131,
    ],
}
EDGES["updatedAt"] = EDGES["createdAt"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A record whose every required field is most often valid (so that whole valid records,
    the native engine's own, are common), else near an edge, absent or anything."""
    record: dict[str, Any] = {}
    fields = [*VALID, "gssId", "originalId", "processedAt", "customerId", "tenantId", "x"]
    for name in draw(st.permutations(fields)):
        mode = draw(st.integers(0, 19))
        if name not in VALID:
            if mode < 10:
                record[name] = draw(json_values)
        elif mode < 16:
            record[name] = VALID[name]
        elif mode < 18:
            record[name] = draw(st.sampled_from(EDGES[name]))
        elif mode == 18:
            record[name] = draw(EDGE_TEXT | json_values)
    for key, value in draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3)).items():
        record.setdefault(key, value)
    return record


def _escape_some(text: str, draw: st.DrawFn) -> str:
    """Spell characters of the record's strings as escapes: required values that stay valid
    (the native engine decodes them itself), or a key (which it leaves to Python)."""
    choice = draw(st.sampled_from(["none", "values", "key"]))
    if choice == "values":
        return (
            text.replace('"active"', '"\\u0061ctive"')
            .replace('"Ada Lovelace"', '"\\u0041da\\u0020Lovelace"')
            .replace('"ada@example.com"', '"ada\\u0040example.com"')
            .replace('"R1"', '"R\\u0031"')
        )
    if choice == "key":
        return text.replace('"name"', '"n\\u0061me"', 1)
    return text


MUTATIONS: list[Callable[[bytes], bytes]] = [
    lambda b: b,
    lambda b: b[: max(1, len(b) // 2)],  # cut short
    lambda b: b + b",",  # trailing comma
    lambda b: b + b" x",  # data after the value
    lambda b: b.replace(b'"R1"', b'"\\ud800"'),  # a lone surrogate escape
    lambda b: b.replace(b'"R1"', b'"\\ud83d\\ude00"'),  # a surrogate pair
    lambda b: b.replace(b'"R1"', b'"\xff"'),  # not UTF-8
    lambda b: b.replace(b'"R1"', b'"\xed\xa0\x80"'),  # a surrogate in UTF-8
    lambda b: b.replace(b"{", b'{"id":"dup",', 1),  # a duplicate key
    lambda b: b.replace(b"{", b'{"deep":' + b"[" * 200 + b"]" * 200 + b",", 1),
    # Deeper than msgspec reads (Python's recursion limit): malformed, "nested too deeply".
    lambda b: b.replace(b"{", b'{"deep":' + b"[" * 1000 + b"]" * 1000 + b",", 1),
    lambda b: b.replace(b"{", b'{"deep":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b",", 1),
    lambda b: b.replace(b"{", b'{"n":1E400,"m":-0,"k":123456789012345678901234567890,', 1),
    lambda b: b.replace(b'"R1"', b"1e400"),
    lambda b: b.replace(b":", b" : ").replace(b",", b" ,\t"),  # white space between tokens
    lambda b: b"\xef\xbb\xbf" + b,  # a byte order mark
    lambda b: b + b"\r",  # CRLF
    lambda b: b.replace(b'"R1"', b'"R\x01"'),  # a control character in a string
    lambda b: b.replace(b"{", b'{"\\u0069d":"R2",', 1),  # an escaped key, twice "id"
]

# Lines from the malformed cases of JSON test suites (n_*), and values that are not objects.
MALFORMED = [
    b"[1,]",
    b'{"a":1,}',
    b"{'a':1}",
    b'{"a" 1}',
    b"{1:1}",
    b'{"a":01}',
    b'{"a":.5}',
    b'{"a":+1}',
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":1.}',
    b'{"a":1e}',
    b'{"a":tru}',
    b'{"a":"\\x"}',
    b'{"a":"\\u12"}',
    b'{"a":"\t"}',
    b"{",
    b"}",
    b'{"a":[1}',
    b"null",
    b"[]",
    b"1",
    b'"x"',
    b"{}",
    b"\x00",
    b"{\x00}",
    b'{"a":1}{"b":2}',
    b"  ",
    b"\x0c",
    b'{"a":"\xc0\xaf"}',
    b'{"a":1}\x0b',
]


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(MALFORMED))
    if kind == 1:
        return draw(st.binary(max_size=20))
    record = draw(records())
    text = json.dumps(
        record,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    line = _escape_some(text, draw).encode("utf-8", "surrogatepass")
    mutate = draw(st.sampled_from(MUTATIONS)) if draw(st.booleans()) else MUTATIONS[0]
    spelled: bytes = mutate(line)
    return spelled


def _sorted_by(
    engine: NativeEngine | None, task: ChunkTask, blocks: list[bytes]
) -> tuple[Any, ...]:
    scanner = Scanner(task)
    ctx = TransformContext.create(
        batch_id=task.batch_id,
        customer_id=task.customer_id,
        tenant_id=task.tenant_id,
        processed_at=task.processed_at,
    )
    if engine is None:
        sorted_blocks = list(python_blocks(task, blocks, scanner, ctx, marks=True))
    else:
        sorted_blocks = list(native_blocks(engine, task, blocks, scanner, ctx, marks=True))
    tally = scanner.tally
    counts = (tally.lines, tally.blank_lines, tally.valid_records, tally.errors_by_category)
    return (
        b"".join(b.encoded for b in sorted_blocks),
        _marks(sorted_blocks),
        scanner.bad,
        counts,
        tally.field_errors,
        (tally.records_with_missing_fields, tally.records_with_empty_fields),
        scanner.offset,
    )


def _marks(blocks: list[SortedBlock]) -> list[tuple[int, int, bool]]:
    rows: list[tuple[int, int, bool]] = []
    for block in blocks:
        assert block.marks is not None
        marks = block.marks
        rows += zip(marks.indices, marks.offsets, marks.gss, strict=True)
        assert len(marks.indices) == block.encoded.count(b"\n")
    return rows


def _both_engines_agree(content: bytes, block_size: int, max_line: int) -> int:
    """Plan ``content`` and sort each chunk with both engines; the number of valid records."""
    assert ENGINE is not None
    valid = 0
    with tempfile.TemporaryDirectory() as tmp:
        bucket = Path(tmp)
        (bucket / "in.jsonl").write_bytes(content)
        job = job_input(
            bucket,
            customer_id='cü"st',
            tenant_id="t\\en",
            batch_id="b1",
            max_chunk_size=7,
            max_concurrent_chunks=1,
            processed_at="2026-01-01T00:00:00.000Z",
        )
        storage, plan = plan_input(
            bucket, job, min_chunk_size=1, count_records=True, max_line_bytes=max_line
        )
        for task in plan.chunks:
            blocks = list(chunk_bytes(task, storage, block_size))
            python = _sorted_by(None, task, blocks)
            native = _sorted_by(ENGINE, task, blocks)
            assert native == python
            valid += python[3][2]
    return valid


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(lines(), min_size=1, max_size=25),
    st.sampled_from([b"\n", b"\n\n", b"\r\n"]),
    st.booleans(),
    st.integers(16, 4096),
    st.sampled_from([64, 300, 1 << 20]),
)
def test_the_engines_write_the_same_bytes_for_any_lines(
    chosen: list[bytes], separator: bytes, final_newline: bool, block_size: int, max_line: int
) -> None:
    # A valid first line: the planner refuses a file whose sample holds no JSON object.
    first = json.dumps(VALID).encode()
    content = separator.join([first, *chosen]) + (b"\n" if final_newline else b"")
    _both_engines_agree(content, block_size, max_line)


@needs_native
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=12), st.integers(16, 2048), st.booleans())
def test_the_engines_agree_on_json_arrays(
    chosen: list[dict[str, Any]], block_size: int, pretty: bool
) -> None:
    indent = 2 if pretty else None
    content = json.dumps(chosen, indent=indent, ensure_ascii=False).encode()
    _both_engines_agree(content, block_size, 1 << 20)


BASES = [
    VALID,
    {**VALID, "gssId": "g", "originalId": "o", "processedAt": 1, "tenantId": None, "x": [1.5e300]},
    {"x": {"id": 1}, **{k: VALID[k] for k in reversed(VALID)}, "customerId": "é"},
    {**VALID, "id": 123, "name": "\u3000Bé\u3000", "nested": {"a": [[], {}, '"\\/\b']}},
]


@needs_native
@pytest.mark.parametrize("mutate", MUTATIONS)
@pytest.mark.parametrize("base", BASES)
def test_each_awkward_spelling_of_a_valid_record(mutate: Any, base: dict[str, Any]) -> None:
    """Every spelling in MUTATIONS of records that are valid as written, each for sure (the
    property tests above reach them by chance)."""
    spelled = [json.dumps(base, ensure_ascii=ascii).encode() for ascii in (True, False)]
    content = b"\n".join(
        json.dumps(VALID).encode() if i == 0 else mutate(line)
        for i, line in enumerate([b"", *spelled])
    )
    _both_engines_agree(content + b"\n", 64, 1 << 20)


@needs_native
@pytest.mark.parametrize(
    ("field", "value"), [(field, value) for field, values in EDGES.items() for value in values]
)
def test_every_rule_edge(field: str, value: Any) -> None:
    """Each edge value of each rule, in an otherwise valid record, for sure."""
    lines = [json.dumps({**VALID, field: value}, ensure_ascii=a).encode() for a in (True, False)]
    _both_engines_agree(b"\n".join(lines) + b"\n", 4096, 1 << 20)


@needs_native
def test_most_valid_records_are_the_native_engines_own() -> None:
    """The differential tests would pass if the engine deferred every line to Python: here it
    must write the valid records itself (none of these is deferred)."""
    assert ENGINE is not None
    line = json.dumps({**VALID, "gssId": "g", "extra": [1, {"a": "é"}]}).encode()
    content = b"\n".join([line] * 50) + b"\n"
    assert _both_engines_agree(content, 4096, 1 << 20) == 50
    ctx = TransformContext.create(
        batch_id="b", customer_id="c", tenant_id="t", processed_at="2026-01-01T00:00:00Z"
    )
    from scm_batch.stages.native_scan import _stamps

    answer = ENGINE.sort_lines(content, 0, 1 << 20, _stamps(ENGINE, ctx), False)
    _, lines_, blanks, valid, deferred, _ = answer
    assert (lines_, blanks, valid, deferred) == (50, 0, 50, [])


def test_line_buffers_hold_the_lines_of_the_line_lists() -> None:
    """The native engine's buffers and the Python engine's line lists cut the same input the
    same way, too-long lines included."""

    @given(
        st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=12),
        st.booleans(),
        st.lists(st.integers(1, 40), min_size=1, max_size=5),
        st.sampled_from([None, 5, 20]),
    )
    def check(parts: list[bytes], final: bool, sizes: list[int], limit: int | None) -> None:
        from scm_batch.records.codecs import TooLong, iter_line_blocks

        data = b"\n".join(parts) + (b"\n" if final else b"")
        blocks: list[bytes] = []
        at = 0
        while at < len(data):
            size = sizes[len(blocks) % len(sizes)]
            blocks.append(data[at : at + size])
            at += size

        def shown(line: bytes) -> object:
            return ("too long", line.length) if type(line) is TooLong else line

        expected = [shown(line) for block in iter_line_blocks(blocks, limit) for line in block]
        got: list[object] = []
        for buffer in iter_line_buffers(blocks, limit):
            if type(buffer) is TooLong:
                got.append(shown(buffer))
                continue
            pieces = buffer.split(b"\n")
            if pieces[-1] == b"":
                pieces.pop()
            for piece in pieces:
                too_long = limit is not None and len(piece) > limit
                got.append(("too long", len(piece)) if too_long else piece)
        assert got == expected

    check()


def test_the_engine_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert native_engine({"SCM_BATCH_ENGINE": "python"}) is None
    with pytest.raises(ConfigError, match="'rust' is not one of auto, native, python"):
        native_engine({"SCM_BATCH_ENGINE": "rust"})

    def not_installed(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", not_installed)
    assert native_engine({}) is None  # auto: the Python engine, quietly
    with pytest.raises(ConfigError, match="not installed: `make native` builds it"):
        native_engine({"SCM_BATCH_ENGINE": "native"})


@needs_native
@given(st.binary(max_size=5000), st.integers(0, 2**32 - 1), st.data())
def test_the_native_checksum_and_line_count_are_zlibs_and_pythons(
    data: bytes, value: int, draw: st.DataObject
) -> None:
    import zlib

    assert ENGINE is not None
    assert ENGINE.crc32(data, value) == zlib.crc32(data, value)
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    assert ENGINE.count_newlines(data, start, end) == data.count(b"\n", start, end)
