"""The Parquet result part: a chunk's valid records as zstd-compressed Parquet (needs pyarrow).

**Schema.** A part's schema is inferred from its first block of records (about 1 MiB of input):
one column per top-level field, nested objects as structs and arrays as lists, the way pyarrow
infers them from the decoded records (strings stay strings: nothing is parsed as a timestamp).
Every later block is converted to that schema. A last column, ``_rescued_data`` (a string, null
for most rows), keeps what does not fit it, so no record loses a field:

* a field the schema does not have (it was absent from the first block), and
* a value of another type than its column (``"12"`` in a column of integers, ``1.5`` in one of
  integers, an object where the first block had a string, a key inside an object that the
  column's struct does not have, an integer beyond 64 bits, an integer beyond 2**53 where the
  column, or the struct field or list item, holds floating-point numbers)

go into ``_rescued_data`` as one JSON object per row, ``{"field": value, ...}``, with the field's
column left null in that row. A whole top-level field is rescued, never part of one. An integer in
a column of floating-point numbers is not a mismatch when a double holds it exactly (``|v| <=
2**53``): it is stored as that double. A record is its row's non-null columns plus the members of
its ``_rescued_data`` object; a JSON ``null`` and an absent field both read back as null.

**Speed and memory.** A block that fits the schema is parsed from its JSON Lines by pyarrow's JSON
reader, strict (a value of another type, or a field the schema lacks, is an error there, never a
silent conversion); only a block that does not fit goes through the slower, field-by-field path
that decides what to rescue. The reader does convert an integer to a double where the schema has
one, rounding it beyond 2**53: a block with such an integer in such a place takes the slower path,
which rescues it (its records are looked at only when the reader gave a double of 2**53 or more,
which is rare, so this costs the fast path next to nothing).

Blocks are gathered into row groups of exactly ``ROW_GROUP_ROWS`` records (the last one of a part
fewer), the rows left over waiting for the next blocks; a row group is written early, with fewer
rows, when the blocks in hand reach ``ROW_GROUP_BYTES`` of Arrow data. A worker therefore holds at
most about one row group, or 64 MiB and a block, of Arrow data, whatever the size of its records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from scm_batch.records.codecs import DECODE_ERRORS
from scm_batch.storage import ObjectWriter

RESCUED_COLUMN = "_rescued_data"
ROW_GROUP_ROWS = 32_768
ROW_GROUP_BYTES = 64 << 20  # of Arrow data in hand: written as a row group once reached
EXACT_FLOAT_INT = 1 << 53  # a double holds every integer up to this exactly, not all beyond
COMPRESSION = "zstd"
_FORWARD_BYTES = 1 << 20  # what the storage writer is given at a time
_MAX_JSON_BLOCK = (1 << 31) - 1  # the JSON reader's block size is a 32-bit int

# What converting Python values to Arrow raises for a value it cannot hold as asked.
_CONVERSION_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)


class _Forward:
    """The file-like object pyarrow writes into: forwards to a storage writer in large pieces."""

    def __init__(self, out: ObjectWriter) -> None:
        self._out = out
        self._buffer = bytearray()
        self.discard = False  # after an error: take nothing more

    @property
    def closed(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        if not self.discard:
            self._buffer += data
            if len(self._buffer) >= _FORWARD_BYTES:
                self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer and not self.discard:
            self._out.write(bytes(self._buffer))
        self._buffer.clear()


def _writable(data_type: Any) -> bool:
    """Whether Parquet can store ``data_type`` (it has no struct without fields)."""
    if pa.types.is_struct(data_type):
        return data_type.num_fields > 0 and all(_writable(f.type) for f in data_type)
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return _writable(data_type.value_type)
    return True


def fits(data_type: Any, target: Any) -> bool:
    """Whether values inferred as ``data_type`` can convert to ``target``: nulls fit anything,
    integers fit floats, a struct fits one that has all of its fields, a list one whose items
    they fit.

    Integers fit floats as a type only: a value fits when a double holds it exactly (``|v| <=
    2**53``; :func:`_inexact_in` finds the others). Converting checks it too: pyarrow refuses to
    make a double of a larger integer, so a column holding one is never converted whole, and
    goes value by value (:meth:`ParquetPart._column_rescuing`)."""
    if data_type == target or pa.types.is_null(data_type):
        return True
    if pa.types.is_integer(data_type) and pa.types.is_floating(target):
        return True  # as a type; see the docstring
    if pa.types.is_struct(data_type) and pa.types.is_struct(target):
        index = {f.name: f.type for f in target}
        return all(f.name in index and fits(f.type, index[f.name]) for f in data_type)
    if pa.types.is_list(data_type) and pa.types.is_list(target):
        return fits(data_type.value_type, target.value_type)
    return False


def _type_of(values: list[Any]) -> Any | None:
    """The Arrow type pyarrow infers for ``values``, or ``None`` when they do not share one."""
    try:
        return pa.array(values).type
    except _CONVERSION_ERRORS:
        return None


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _in_int64(value: int) -> bool:
    return -(1 << 63) <= value < (1 << 63)


def _exact_as_float(value: int) -> bool:
    return -EXACT_FLOAT_INT <= value <= EXACT_FLOAT_INT


def _has_floating(data_type: Any) -> bool:
    """Whether ``data_type`` is floating, or holds a floating type at some depth."""
    if pa.types.is_floating(data_type):
        return True
    if pa.types.is_struct(data_type):
        return any(_has_floating(f.type) for f in data_type)
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return _has_floating(data_type.value_type)
    return False


def _inexact_in(value: Any, target: Any) -> bool:
    """Whether ``value`` has, where ``target`` has a floating type, an integer a double cannot
    hold exactly (beyond 2**53)."""
    if pa.types.is_floating(target):
        return type(value) is int and not _exact_as_float(value)
    if isinstance(value, dict) and pa.types.is_struct(target):
        return any(_inexact_in(value.get(f.name), f.type) for f in target if _has_floating(f.type))
    if isinstance(value, list) and (pa.types.is_list(target) or pa.types.is_large_list(target)):
        item = target.value_type
        return _has_floating(item) and any(_inexact_in(v, item) for v in value)
    return False


def _floating_values(values: Any) -> Iterator[Any]:
    """The floating-point values inside ``values`` (an Arrow array, or chunked array, of a type
    that holds some at some depth), as arrays: the column itself, or struct fields and list items,
    null parents left out."""
    data_type = values.type
    if pa.types.is_floating(data_type):
        yield values
    elif pa.types.is_struct(data_type):
        for i, field in enumerate(data_type):
            if _has_floating(field.type):
                yield from _floating_values(pc.struct_field(values, [i]))
    elif pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        yield from _floating_values(pc.list_flatten(values))


def _reaches_exact_limit(values: Any) -> bool:
    """Whether ``values`` has a floating-point number of 2**53 or more, either way: what an
    integer the JSON reader could not convert exactly would have become."""
    for floats in _floating_values(values):
        largest = pc.max(pc.abs(floats)).as_py()
        if largest is not None and largest >= EXACT_FLOAT_INT:
            return True
    return False


def _scalar_tests(target: Any) -> dict[type, Callable[[Any], bool]]:
    """For each JSON scalar's Python type, whether a value of it fits ``target``: what
    :func:`fits` answers for the type pyarrow would infer, without asking pyarrow per value
    (and, for an integer in a float column, whether a double holds it exactly)."""
    floating = pa.types.is_floating(target)
    if floating:
        integer: Callable[[Any], bool] = _exact_as_float
    else:
        integer = _in_int64 if pa.types.is_int64(target) else _never
    return {
        str: _always if pa.types.is_string(target) else _never,
        bool: _always if pa.types.is_boolean(target) else _never,
        float: _always if floating else _never,
        int: integer,
    }


def _value_fits(value: Any, target: Any, scalars: dict[type, Callable[[Any], bool]]) -> bool:
    test = scalars.get(type(value))
    if test is not None:
        return test(value)
    data_type = _type_of([value])  # an object or an array
    return data_type is not None and fits(data_type, target) and not _inexact_in(value, target)


def infer_schema(records: list[dict[str, Any]]) -> Any:
    """The data columns for a part, from its first block: the fields in order of first
    appearance, each with the type pyarrow infers for its values. A field whose values do not
    share a type takes the type of its first value that has one (the others will be rescued); a
    field no column can hold (an empty object, say) is left out (it will be rescued)."""
    inferred = _type_of(records)
    if inferred is not None and pa.types.is_struct(inferred):
        candidates = [(f.name, f.type) for f in inferred]
    else:
        candidates = []
        for name in dict.fromkeys(name for record in records for name in record):
            values = [record.get(name) for record in records]
            data_type = _type_of(values)
            if data_type is None:
                types = (_type_of([v]) for v in values if v is not None)
                data_type = next((t for t in types if t is not None), pa.null())
            candidates.append((name, data_type))
    return pa.schema(
        [
            pa.field(name, data_type)
            for name, data_type in candidates
            if name != RESCUED_COLUMN and _writable(data_type)
        ]
    )


_decode = msgspec.json.Decoder().decode
_decode_raw = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def _value_or_raw(raw: msgspec.Raw) -> Any:
    """A value as Python has it, or left raw where Python cannot hold it (a number beyond a
    double's range, say): a raw value fits no column, and is rescued as the input wrote it."""
    try:
        return _decode(raw)
    except DECODE_ERRORS:
        return raw


class _Block:
    """One block of records as JSON Lines, decoded when first asked for."""

    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded
        self._records: list[dict[str, Any]] | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        if self._records is None:
            # Split on "\n" only: passthrough keeps a "\r" inside a value's white space, which
            # splitlines() would also split on.
            lines = self.encoded.split(b"\n")
            lines.pop()  # the text after the last "\n": empty
            self._records = [self._record(line) for line in lines]
        return self._records

    @staticmethod
    def _record(line: bytes) -> dict[str, Any]:
        try:
            record: dict[str, Any] = _decode(line)
        except DECODE_ERRORS:
            return {name: _value_or_raw(value) for name, value in _decode_raw(line).items()}
        return record


class ParquetPart:
    """A chunk's result part as Parquet, written block by block (see the module's docstring)."""

    def __init__(
        self,
        out: ObjectWriter,
        *,
        row_group_rows: int | None = None,
        row_group_bytes: int | None = None,
    ) -> None:
        self._sink = _Forward(out)
        # The module's bounds are read here, not as defaults, so that tests can lower them.
        self._row_group_rows = max(1, ROW_GROUP_ROWS if row_group_rows is None else row_group_rows)
        self._row_group_bytes = ROW_GROUP_BYTES if row_group_bytes is None else row_group_bytes
        self._data: Any = None  # the data columns' schema, from the first block
        self._schema: Any = None  # the same plus the rescued column
        self._writer: Any = None
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._closed = False
        # The data columns that hold floating-point numbers at some depth: (name, type).
        self._floating: list[tuple[str, Any]] = []
        self._parse_options: Any = None
        self._encode = msgspec.json.Encoder().encode
        self.rows = 0
        self.rescued_rows = 0  # rows with something in the rescued column

    def _open(self, data_schema: Any) -> None:
        self._data = data_schema
        self._schema = data_schema.append(pa.field(RESCUED_COLUMN, pa.string()))
        self._floating = [(f.name, f.type) for f in data_schema if _has_floating(f.type)]
        self._parse_options = pa_json.ParseOptions(
            explicit_schema=data_schema, unexpected_field_behavior="error"
        )
        # Plain encoding: on these records dictionary pages cost a fifth of the writing time and
        # save nothing once zstd has compressed the pages.
        self._writer = pq.ParquetWriter(
            self._sink, self._schema, compression=COMPRESSION, use_dictionary=False
        )

    def write(self, encoded: bytes, /) -> None:
        """Add one block's records, as JSON Lines. A part that is closed (finished or abandoned)
        discards them. The records are decoded only where the strict JSON reader needs help:
        the first block (its schema), and a block that does not fit the schema."""
        if not encoded or self._closed:
            return
        block = _Block(encoded)
        if self._writer is None:
            self._open(infer_schema(block.records))
        table = self._parse(block)
        if table is None:
            table = self._convert(block.records)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        self.rows += table.num_rows
        while self._pending_rows >= self._row_group_rows:
            self._write_row_group(self._row_group_rows)
        if self._pending_bytes >= self._row_group_bytes:
            self._write_row_group(self._pending_rows)

    def _parse(self, block: _Block) -> Any | None:
        """The block through the strict JSON reader, or ``None`` when it does not fit (or the
        reader rounded an integer of it, see :meth:`_rounded`)."""
        encoded = block.encoded
        if len(encoded) >= _MAX_JSON_BLOCK:
            return None
        count = encoded.count(b"\n")
        options = pa_json.ReadOptions(use_threads=False, block_size=len(encoded) + 1)
        try:
            table = pa_json.read_json(
                pa.py_buffer(encoded), read_options=options, parse_options=self._parse_options
            )
        except pa.ArrowException:  # a value or field that does not fit: the slow path decides
            return None
        if table.num_rows != count or table.schema != self._data:
            return None
        if self._rounded(table, block):
            return None
        return table.append_column(self._schema.field(RESCUED_COLUMN), pa.nulls(count, pa.string()))

    def _rounded(self, table: Any, block: _Block) -> bool:
        """Whether the JSON reader made a double of an integer of the block beyond 2**53 (it
        does, without a word, where the schema has floating-point numbers). The records are
        decoded only for a column where a double of 2**53 or more came out, which is rare."""
        for name, data_type in self._floating:
            if _reaches_exact_limit(table.column(name)) and any(
                _inexact_in(record.get(name), data_type) for record in block.records
            ):
                return True
        return False

    def _convert(self, records: list[dict[str, Any]]) -> Any:
        """The slow path: each column from the records, what does not fit into the rescued one."""
        rescued: dict[int, set[str]] = {}
        columns = []
        for field in self._data:
            values = [record.get(field.name) for record in records]
            inferred = _type_of(values)
            column = None
            if inferred is not None and fits(inferred, field.type):
                with suppress(*_CONVERSION_ERRORS):
                    column = pa.array(values).cast(field.type)
            if column is None:
                column = self._column_rescuing(values, field, rescued)
            columns.append(column)
        known = set(self._data.names)
        for i, record in enumerate(records):
            extra = [name for name in record if name not in known]
            if extra:
                rescued.setdefault(i, set()).update(extra)
        texts: list[str | None] = [None] * len(records)
        for i, names in rescued.items():
            record = records[i]
            texts[i] = self._encode({n: v for n, v in record.items() if n in names}).decode()
        self.rescued_rows += len(rescued)
        columns.append(pa.array(texts, type=pa.string()))
        return pa.Table.from_arrays(columns, schema=self._schema)

    @staticmethod
    def _column_rescuing(values: list[Any], field: Any, rescued: dict[int, set[str]]) -> Any:
        """A column of the values that fit ``field``'s type; the others are noted in
        ``rescued`` (row -> field names) and left null. ``values`` is changed in place."""
        scalars = _scalar_tests(field.type)
        for i, value in enumerate(values):
            if value is not None and not _value_fits(value, field.type, scalars):
                rescued.setdefault(i, set()).add(field.name)
                values[i] = None
        try:
            return pa.array(values, type=field.type)
        except _CONVERSION_ERRORS:  # each value fits on its own: not expected, but never lose one
            for i, value in enumerate(values):
                if value is not None:
                    rescued.setdefault(i, set()).add(field.name)
            return pa.nulls(len(values), field.type)

    def _write_row_group(self, rows: int) -> None:
        """Write the first ``rows`` pending rows as one row group; the rest stay pending."""
        table = pa.concat_tables(self._pending)
        self._writer.write_table(table.slice(0, rows), row_group_size=rows)
        rest = table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._pending_bytes = rest.nbytes if rest.num_rows else 0
        self._sink.flush()

    def finish(self) -> None:
        """Write what is pending and the footer: the part is complete (see :meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Write what is pending and the footer. A part without records is a valid Parquet file
        with no rows and the rescued column only. Once closed, a part takes nothing more:
        closing again does nothing, and later writes are discarded."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            self._open(pa.schema([]))
        if self._pending_rows:
            self._write_row_group(self._pending_rows)
        self._writer.close()
        self._sink.flush()
        self._sink.discard = True

    def abandon(self) -> None:
        """Release the writer after an error, writing nothing more."""
        self._closed = True
        self._sink.discard = True
        self._pending = []
        self._pending_rows = self._pending_bytes = 0
        if self._writer is not None:
            with suppress(Exception):
                self._writer.close()
