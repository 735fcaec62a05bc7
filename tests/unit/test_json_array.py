"""The structural scan of JSON arrays, the plan cut between elements, and the chunk split into
elements: checked against a byte-by-byte reference and against the elements written out.

The main property: arbitrary elements (strings holding brackets, commas, quotes, escaped
backslashes and unicode; nested arrays and objects; numbers), joined by any JSON white space and
cut into chunks of any size, land each in exactly one chunk, in order, and decode to the values
written - the records those elements are as JSON Lines.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scm_batch.errors import InputError, InputStructureError
from scm_batch.model import JobInput, PlanOptions
from scm_batch.records import elements as elements_module
from scm_batch.records.blocks import StructureChanged
from scm_batch.records.codecs import TooLong
from scm_batch.records.elements import iter_element_blocks
from scm_batch.records.native import native_engine
from scm_batch.records.structure import BlockScan, ScanState, scan_block, scan_block_numpy
from scm_batch.stages import array_index
from scm_batch.stages.array_index import STRIDE, element_end, index_elements
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.plan import calculate_chunks
from scm_batch.storage import open_storage


def split(blocks: list[bytes], start: int, limit: int) -> list[tuple[list[bytes], list[int]]]:
    """The elements of a chunk's blocks, as a chunk gets them: a block split on its separator
    text is split again by the scan when one of its pieces is not JSON."""
    found = []
    for block in iter_element_blocks(blocks, start, limit):
        if block.rescan is not None:
            try:
                for element in block.elements:
                    msgspec.json.decode(element)
            except msgspec.DecodeError:
                block = block.rescan()  # noqa: PLW2901
        found.append((block.elements, block.starts))
    return found


def reference_scan(data: bytes, depth: int = 1) -> tuple[list[int], int | None]:
    """The separating commas and the closing bracket, one byte at a time (the scan's contract:
    a backslash escapes the byte after it inside strings, and only a quote outside them)."""
    in_string = escaped = False
    commas: list[int] = []
    for at, byte in enumerate(data):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
            continue
        if escaped:
            escaped = False
            if byte in (0x22, 0x5C):
                continue
        elif byte == 0x5C:
            escaped = True
            continue
        if byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
        elif byte in b"]}":
            depth -= 1
            if depth == 0:
                return commas, at
        elif byte == 0x2C and depth == 1:
            commas.append(at)
    return commas, None


def scanned(
    data: bytes, block: int, scan: Callable[[bytes, ScanState], BlockScan] = scan_block
) -> tuple[list[int], int | None]:
    state = ScanState(0)
    commas: list[int] = []
    for at in range(0, len(data), block):
        found = scan(data[at : at + block], state)
        commas.extend(found.commas.tolist())
        if found.close is not None:
            return commas, found.close
    return commas, None


@given(
    st.binary(max_size=400).map(lambda b: bytes(b'[]{},"\\ a\n'[x % 10] for x in b)),
    st.sampled_from([64, 128, 192, 1 << 20]),
)
def test_the_scan_agrees_with_a_byte_by_byte_reference(data: bytes, block: int) -> None:
    """Random bytes from the structural alphabet, blocks of any size: runs of backslashes across
    block ends, quotes in and out of strings, unbalanced brackets. Both scans: numpy's, and the
    one runs use (the native engine's where it is installed)."""
    assert scanned(data, block, scan_block_numpy) == reference_scan(data)
    assert scanned(data, block) == reference_scan(data)


def test_the_scan_handles_long_backslash_runs_across_blocks() -> None:
    for run in range(1, 140):
        data = b'"' + b"a" * (64 - (run % 64)) + b"\\" * run + b'", 1, 2'
        assert scanned(data, 64) == reference_scan(data), run
        assert scanned(data, 64, scan_block_numpy) == reference_scan(data), run


@given(
    st.binary(min_size=1, max_size=300).map(
        lambda b: bytes(b'[]{},"\\ aY_y\x7f\n'[x % 14] for x in b)
    ),
    st.integers(-2, 3),
    st.booleans(),
    st.integers(0, 1),
)
def test_the_native_scan_answers_as_numpys_from_any_state(
    data: bytes, depth: int, in_string: bool, backslashes: int
) -> None:
    """One block from any state (a depth of 0 or below included, as the format check starts
    at 0): the same commas, close, close byte and state after."""
    engine = native_engine()
    if engine is None:
        pytest.skip("the native engine is not installed")
    numpy_state = ScanState(7, depth, in_string, backslashes)
    native_state = ScanState(7, depth, in_string, backslashes)
    expected = scan_block_numpy(data, numpy_state)
    got = scan_block(data, native_state)
    assert got.commas.tolist() == expected.commas.tolist()
    assert (got.close, got.close_byte) == (expected.close, expected.close_byte)
    assert native_state == numpy_state


_TRICKY = st.text(alphabet=st.sampled_from('[]{},"\\:é€😀 \t\nabc'), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY, inner, max_size=4),
    max_leaves=12,
)
elements_strategy = st.lists(st.dictionaries(_TRICKY, json_values, max_size=5), min_size=1)
white = st.text(alphabet=" \t\r\n", max_size=3)
WHITE = b" \t\r\n"


def _array(elements: list[dict[str, Any]], gaps: list[str], indent: int | None) -> bytes:
    texts = [json.dumps(e, ensure_ascii=False, indent=indent) for e in elements]
    body = "[" + gaps[0]
    for i, text in enumerate(texts):
        body += text + gaps[(2 * i + 1) % len(gaps)]
        if i < len(texts) - 1:
            body += "," + gaps[(2 * i + 2) % len(gaps)]
    return (body + "]" + gaps[-1]).encode()


@given(
    elements_strategy,
    st.lists(white, min_size=1, max_size=6),
    st.sampled_from([None, 2]),
    st.integers(1, 7),
    st.sampled_from([64, 256, 4096]),
)
def test_every_element_lands_in_exactly_one_chunk(
    tmp_path_factory: pytest.TempPathFactory,
    elements: list[dict[str, Any]],
    gaps: list[str],
    indent: int | None,
    per_chunk: int,
    block: int,
) -> None:
    root = tmp_path_factory.mktemp("array")
    data = _array(elements, gaps, indent)
    (root / "in.json").write_bytes(data)
    storage = open_storage(str(root))
    job = JobInput(
        bucket=str(root),
        file="in.json",
        customer_id="c",
        tenant_id="t",
        batch_id="b",
        max_chunk_size=per_chunk,
        max_concurrent_chunks=1000,
    )
    options = PlanOptions(min_chunk_size=1)
    source = initialize_batch(job, storage)
    assert source.format == "json-array"
    plan = calculate_chunks(job, source, storage, options)
    got: list[Any] = []
    for chunk in plan.chunks:
        assert chunk.start_index == len(got)
        blocks = [
            data[at : min(at + block, chunk.byte_end)]
            for at in range(chunk.byte_start, chunk.byte_end, block)
        ]
        pieces: list[bytes] = []
        for found, starts in split(blocks, chunk.byte_start, 1 << 20):
            pieces.extend(found)
            # Each element's offset is where its text begins, after the separator before it.
            for piece, start in zip(found, starts, strict=True):
                text = piece.strip(WHITE)
                assert data[start:].lstrip(WHITE)[: len(text)] == text
                assert data[start - 1 : start] in (b"[", b",")
        assert len(pieces) == chunk.chunk_size
        got.extend(msgspec.json.decode(piece) for piece in pieces)
    # Every element once, in order, equal to the records written one per line.
    as_lines = [msgspec.json.decode(json.dumps(e, ensure_ascii=False)) for e in elements]
    assert got == as_lines
    assert plan.total_records == len(elements)


def test_element_end_finds_any_comma_from_the_nearest_mark() -> None:
    count = 3 * STRIDE + 17
    data = b"[" + b",".join(b'{"k": "a,b]"}' for _ in range(count)) + b"]"
    index = index_elements([data], "x")
    assert index.total == count
    commas, _ = reference_scan(data[1:])
    expected = [at + 1 for at in commas]

    def read(start: int, end: int) -> bytes:
        return data[start:end]

    for k in (0, 1, STRIDE - 1, STRIDE, STRIDE + 1, 2 * STRIDE + 5, count - 2):
        assert element_end(index, read, k) == expected[k]
    assert element_end(index, read, count - 1) == len(data) - 1


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'[{"a": 1}, {"b": 2}', "not closed: the data ends at byte 19"),
        (b'[{"a": "x}]', "inside a string"),
        (b'[{"a": 1}}', "closed by '}' at byte 9"),
        (b'[{"a": 1}] {"b": 2}', "data after the array's closing ']' at byte 11"),
        (b'[{"a": 1}]\n\n]', "at byte 12"),
        (b"  x[1]", "starts with '['"),
    ],
)
def test_a_broken_array_is_refused_with_the_offset(data: bytes, words: str) -> None:
    with pytest.raises(InputStructureError, match=words.replace("[", r"\[").replace("]", r"\]")):
        index_elements([data[:5], data[5:]], "in.json")


@pytest.mark.parametrize("data", [b"[]", b"[ \n\t ]\n", b"\xef\xbb\xbf[\n]"])
def test_an_empty_array_holds_no_records(data: bytes) -> None:
    with pytest.raises(InputError, match="the array is empty"):
        index_elements([data], "in.json")


def test_a_chunk_of_other_bytes_than_planned_is_noticed() -> None:
    with pytest.raises(StructureChanged, match="closes"):
        list(iter_element_blocks([b'{"a": 1}], 5'], 1, 100))
    with pytest.raises(StructureChanged, match="inside a string"):
        list(iter_element_blocks([b'{"a": "1}'], 1, 100))
    with pytest.raises(StructureChanged, match="depth 1"):
        list(iter_element_blocks([b'{"a": [1}'], 1, 100))


def test_an_element_over_the_limit_is_counted_not_held() -> None:
    big = b'{"a": "' + b"x" * 5000 + b'"}'
    blocks = [big[:100], big[100:3000], big[3000:] + b', {"b": 1} ,', big]
    out = [e for found, _ in split(blocks, 1, 1000) for e in found]
    assert [type(e) is TooLong for e in out] == [True, False, True]
    assert out[0].length == len(big)  # type: ignore[attr-defined]
    assert out[1] == b' {"b": 1} '


def test_empty_elements_are_elements(tmp_path: Path) -> None:
    out = [e for found, _ in split([b"1,,2, "], 1, 100) for e in found]
    assert out == [b"1", b"", b"2", b" "]


def _split(data: bytes, start: int, block: int) -> list[tuple[bytes, int]]:
    blocks = [data[at : at + block] for at in range(start, len(data), block)]
    return [
        (element.strip(WHITE), offset)
        for found, starts in split(blocks, start, 1 << 20)
        for element, offset in zip(found, starts, strict=True)
    ]


@given(
    st.lists(st.dictionaries(_TRICKY, json_values, max_size=4), min_size=1, max_size=40),
    st.sampled_from([",", ",\n", ", ", ",\n  ", " ,\r\n"]),
    st.sampled_from([64, 512, 1 << 16]),
)
def test_the_fast_split_and_the_scan_find_the_same_elements(
    elements: list[dict[str, Any]], sep: str, block: int
) -> None:
    """Separated alike, elements are found the fast way (msgspec); the structural scan alone
    must find the same elements at the same offsets."""
    data = ("[" + sep.join(json.dumps(e, ensure_ascii=False) for e in elements)).encode()
    fast = _split(data, 1, block)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(elements_module, "_fast_split", lambda *_: None)
        patch.setattr(elements_module, "_line_split", lambda *_: None)
        scanned_only = _split(data, 1, block)
    assert fast == scanned_only
    assert [msgspec.json.decode(e) for e, _ in fast] == elements


def test_a_regular_array_is_split_without_the_scan() -> None:
    data = b"[" + b",\n".join(b'{"k": "a,b],{", "n": %d}' % i for i in range(5000))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(elements_module, "scan_block", None)  # any call would fail
        splitter = elements_module._Splitter(1, 1 << 20)
        found = [
            e
            for at in range(1, len(data), 65536)
            for block in splitter.feed(data[at : at + 65536])
            for e in block.elements
        ]
    assert len(found) >= 4900  # all but the last block's unfinished element (finish() scans it)


def _index_or_error(call: Any) -> Any:
    try:
        return call()
    except (InputError, InputStructureError) as exc:
        # The bytes quoted after the offset are those of the block in hand: not compared.
        return (type(exc).__name__, str(exc).split(" (b")[0])


@given(
    st.lists(
        st.one_of(
            st.dictionaries(_TRICKY, json_values, max_size=3).map(
                lambda e: json.dumps(e, ensure_ascii=False)
            ),
            st.dictionaries(_TRICKY, json_values, max_size=3).map(
                lambda e: json.dumps(e, ensure_ascii=False, indent=1)
            ),
            st.sampled_from(['{"a": "open\n', '{"a": [1,\n2]}', "\n", '"\\\\"', "{'q': 1}"]),
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([",\n", ",", "\n,\n"]),
    st.sampled_from(["]", "]\n", "", "] x", "}"]),
    st.integers(2, 5),
)
def test_scanning_ranges_at_once_gives_what_one_scan_gives(
    texts: list[str], sep: str, end: str, workers: int
) -> None:
    """Ranges started at newlines, guessed to be between elements: wrong guesses (inside a
    pretty-printed element, inside a string a malformed element leaves open) are scanned again,
    so the index, or the error, is the one scan's."""
    data = ("[\n" + sep.join(texts) + end).encode()

    def blocks(lo: int, hi: int) -> list[bytes]:
        return [data[at : min(at + 7, hi)] for at in range(lo, hi, 7)]

    def read(lo: int, hi: int) -> bytes:
        return data[lo:hi]

    one = _index_or_error(lambda: index_elements(blocks(0, len(data)), "x"))
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        path = Path(folder) / "in.json"
        path.write_bytes(data)
        patch.setattr(array_index, "PARALLEL_MIN_BYTES", 0)
        # Threads stand in for the processes here (a test of the putting together, quick
        # enough for many examples); test_a_large_array_is_scanned_by_processes uses them.
        patch.setattr(array_index, "ProcessPoolExecutor", _Threads)
        many = _index_or_error(
            lambda: array_index.index_in_parallel(blocks, read, len(data), "x", workers, str(path))
        )
    if isinstance(one, tuple):
        assert many == one
        return
    assert (many.open, many.close, many.total) == (one.open, one.close, one.total)
    for k in range(one.total):
        assert element_end(many, read, k) == element_end(one, read, k)


class _Threads(ThreadPoolExecutor):
    def __init__(self, max_workers: int, mp_context: object) -> None:
        del mp_context
        super().__init__(max_workers)


def test_a_large_array_is_scanned_by_processes(tmp_path: Path) -> None:
    records = [{"id": i, "s": "a,b]\n{c", "v": [i, {"w": "}"}]} for i in range(30_000)]
    layouts = {
        "lines": "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n",
        "pretty": json.dumps(records, indent=2),  # every guessed start is wrong: scanned again
    }
    for name, text in layouts.items():
        data = text.encode()
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)

        def blocks(lo: int, hi: int, data: bytes = data) -> list[bytes]:
            return [data[lo:hi]]

        def read(lo: int, hi: int, data: bytes = data) -> bytes:
            return data[lo:hi]

        one = index_elements([data], name)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(array_index, "PARALLEL_MIN_BYTES", 0)
            many = array_index.index_in_parallel(blocks, read, len(data), name, 3, str(path))
        assert (many.total, many.open, many.close) == (one.total, one.open, one.close)
        for k in (0, 1, 4095, 4096, 10_000, 29_998, 29_999):
            assert element_end(many, read, k) == element_end(one, read, k), (name, k)


@pytest.mark.parametrize(("limit", "too_long"), [(50_000, True), (1 << 20, False)])
def test_a_pretty_element_longer_than_many_blocks(limit: int, too_long: bool) -> None:
    """Its inner "},\\n" make the split by lines guess wrong block after block: the scan takes
    over and holds the element only while it is under the limit."""
    big = {"rows": [{"i": i, "v": "x,y]"} for i in range(3000)]}
    text = json.dumps(big, indent=1).encode()
    data = b"[\n" + text + b',\n{"k": 1},\n{"k": 2}\n]'
    close = len(data) - 1
    blocks = [data[at : min(at + 4096, close)] for at in range(1, close, 4096)]
    found = split(blocks, 1, limit)
    elements = [e for chunk, _ in found for e in chunk]
    assert len(elements) == 3
    assert (type(elements[0]) is TooLong) is too_long
    if not too_long:
        assert msgspec.json.decode(elements[0]) == big
    assert [msgspec.json.decode(e) for e in elements[1:]] == [{"k": 1}, {"k": 2}]
    starts = [s for _, chunk_starts in found for s in chunk_starts]
    assert starts == [1, 2 + len(text) + 1, data.index(b'{"k": 2}') - 1]
