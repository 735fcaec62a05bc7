"""Format detection and the regrouping of byte blocks into lines."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scm_batch.errors import InputFormatError
from scm_batch.records.codecs import TooLong, detect_format, iter_line_blocks, line_length
from scm_batch.records.compression import detect_compression


@given(st.binary(max_size=2000), st.lists(st.integers(1, 64), min_size=1, max_size=50))
def test_blocks_regroup_into_the_same_lines(data: bytes, cuts: list[int]) -> None:
    blocks, position, i = [], 0, 0
    while position < len(data):
        size = cuts[i % len(cuts)]
        blocks.append(data[position : position + size])
        position += size
        i += 1
    lines = [line for group in iter_line_blocks(blocks) for line in group]
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert lines == expected


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
    st.integers(1, 30),
)
def test_a_line_over_the_limit_is_its_length_only(
    lines: list[bytes], cuts: list[int], limit: int
) -> None:
    data = b"".join(line + b"\n" for line in lines)
    blocks, position, i = [], 0, 0
    while position < len(data):
        blocks.append(data[position : position + cuts[i % len(cuts)]])
        position += cuts[i % len(cuts)]
        i += 1
    got = [line for group in iter_line_blocks(blocks, limit) for line in group]
    assert [line_length(line) for line in got] == [len(line) for line in lines]
    for line, original in zip(got, lines, strict=True):
        if len(original) > limit:
            assert type(line) is TooLong
            assert (bytes(line), line.length) == (b"", len(original))  # no byte of it held
        else:
            assert line == original


def test_jsonl_is_detected_with_or_without_bom() -> None:
    assert detect_format(b'{"a":1}\n', "f") == "jsonl"
    assert detect_format(b'\xef\xbb\xbf\n{"a":1}\n', "f") == "jsonl"
    # A JSON Lines file whose first line is a stray array is still JSON Lines.
    assert detect_format(b'[1, 2]\n{"a":1}\n', "f") == "jsonl"


@pytest.mark.parametrize(
    "head",
    [
        b'[{"a":1},',
        b'[{"a":1}, {"a":2}]\n',
        b'[\n{"a":1},\n{"a":2}\n]\n',
        b"\xef\xbb\xbf  \n [\n",
        b'[{"a": "[1]\\n"}\n]',
    ],
)
def test_a_json_array_is_detected_by_its_first_byte(head: bytes) -> None:
    assert detect_format(head, "input.json") == "json-array"


@pytest.mark.parametrize(
    "head",
    [
        b'{\n  "id": 1,\n  "name": "a"\n}\n',
        b'  {"id": 1,\n "nested": {"x": [1,\n2]}}\n{"id": 2}\n',
    ],
)
def test_a_json_object_over_several_lines_is_refused(head: bytes) -> None:
    with pytest.raises(InputFormatError, match="one JSON object spread over several lines"):
        detect_format(head, "input.json")


def test_a_first_line_that_is_malformed_jsonl_is_not_taken_for_a_document() -> None:
    # Cut short, and never closed on a later line: a malformed line of a JSON Lines file.
    assert detect_format(b'{"id": 1, "na\n{"id": 2}\n', "f") == "jsonl"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (gzip.compress(b'{"a":1}\n'), "gzip"),
        (b"\x28\xb5\x2f\xfd....", "zstd"),
        (b"BZh91AY&SY", "bzip2"),
        (b'{"a":1}', "none"),
    ],
)
def test_compression_is_detected_by_magic_bytes(head: bytes, kind: str) -> None:
    assert detect_compression(head, "input") == kind


@pytest.mark.parametrize(("head", "name"), [(b"\xfd7zXZ\x00\x00", "xz"), (b"PK\x03\x04", "zip")])
def test_unsupported_compression_is_named(head: bytes, name: str) -> None:
    with pytest.raises(InputFormatError, match=f"{name}-compressed"):
        detect_compression(head, "input")
