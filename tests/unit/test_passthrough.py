"""Every field the transform does not set passes through as the input wrote it, byte for byte
(issue 11): numbers keep their spelling, strings their escapes, containers their white space."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from scm_batch.stages.process import process_chunk
from tests.helpers import job_input, plan_input

REQUIRED = (
    '"id":"R1","name":"Ada Lovelace","email":"ada@example.com","status":"active",'
    '"createdAt":"2024-01-31T12:00:00Z","updatedAt":"2024-01-31T12:00:00Z"'
)
SPACE = st.sampled_from(["", " ", "\t", "\r ", "  "])  # no "\\n": one record a line
NUMBER = st.from_regex(
    r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
# (A lone surrogate escape, "\\ud800", makes a line malformed: the decoder refuses it anywhere.)
TRICKY_STRINGS = st.sampled_from(
    ['"\\/"', '"\\u00e9"', '"\\ud83d\\ude00"', '"a\\"b\\\\"', '"\\n\\t"', '""']
)
STRINGS = st.one_of(
    TRICKY_STRINGS,
    st.builds(lambda t, a: json.dumps(t, ensure_ascii=a), st.text(max_size=20), st.booleans()),
)
SCALARS = st.one_of(NUMBER, STRINGS, st.sampled_from(["true", "false", "null"]))


def _array(items: list[tuple[str, str, str]]) -> str:
    return "[" + ",".join(f"{a}{v}{b}" for a, v, b in items) + "]"


def _object(items: list[tuple[str, str, str, str, str]]) -> str:
    return "{" + ",".join(f"{a}{k}{b}:{c}{v}" for k, a, b, c, v in items) + "}"


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(st.tuples(SPACE, inner, SPACE), max_size=3).map(_array),
        st.lists(st.tuples(STRINGS, SPACE, SPACE, SPACE, inner), max_size=3).map(_object),
    ),
    max_leaves=8,
)
EXAMPLES = [
    "1.0000000000000000000000001", "1E2", "-0", "1e-400", "1e400", "0.10",
    "123456789012345678901234567890",
]  # fmt: skip


@settings(max_examples=150)
@given(st.lists(VALUES, min_size=1, max_size=6), SPACE)
def test_untouched_values_pass_through_byte_for_byte(values: list[str], space: str) -> None:
    fields = [*EXAMPLES, *values]
    line = (
        "{" + REQUIRED + "".join(f',{space}"f{i}":{space}{v}' for i, v in enumerate(fields)) + "}"
    )
    with tempfile.TemporaryDirectory() as directory:
        bucket = Path(directory)
        (bucket / "in.jsonl").write_bytes(line.encode() + b"\n")
        storage, plan = plan_input(bucket, job_input(bucket))
        result = process_chunk(plan.chunks[0], storage=storage)
        assert result.valid_records == 1
        [out, end] = (bucket / result.result_key).read_bytes().split(b"\n")
    assert end == b""
    written = msgspec.json.decode(out, type=dict[str, msgspec.Raw])
    for i, value in enumerate(fields):
        assert bytes(written[f"f{i}"]) == value.encode()
    assert bytes(written["originalId"]) == b'"R1"'
