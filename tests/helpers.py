"""Small builders the tests share: a job input and the plan for a file already in a bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from scm_batch.model import ChunkPlan, JobInput, PlanOptions
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.plan import calculate_chunks
from scm_batch.storage import LocalStorage


def job_input(bucket: Path | str, file: str = "in.jsonl", **changes: Any) -> JobInput:
    """A job for ``file`` in ``bucket``; ``changes`` override fields (snake_case names)."""
    fields: dict[str, Any] = {
        "bucket": str(bucket),
        "file": file,
        "customer_id": "c",
        "tenant_id": "t",
        "batch_id": "b",
    }
    return JobInput(**{**fields, **changes})


def plan_input(bucket: Path, job: JobInput, **options: Any) -> tuple[LocalStorage, ChunkPlan]:
    """InitializeBatchProcessing and CalculateChunks for ``job``; ``options`` go to PlanOptions."""
    storage = LocalStorage(bucket)
    source = initialize_batch(job, storage)
    return storage, calculate_chunks(job, source, storage, PlanOptions(**options))


def without_nulls(value: Any) -> Any:
    """``value`` with every object member that is null dropped, at any depth: a Parquet row has
    every column of its schema, so a JSON ``null`` and an absent field read back alike."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def parquet_records(path: Path) -> list[dict[str, Any]]:
    """The records of a Parquet result part, as the README says to rebuild them: each row's
    columns plus the members of its ``_rescued_data`` object, nulls dropped."""
    import pyarrow.parquet as pq  # only the Parquet tests need pyarrow

    records = []
    for row in pq.read_table(path).to_pylist():
        rescued = row.pop("_rescued_data")
        if rescued is not None:
            row.update(msgspec.json.decode(rescued))
        records.append(without_nulls(row))
    return records


EXACT_FLOAT_INT = 1 << 53  # a double holds every integer up to this, not all beyond


def typed(value: Any, data_type: Any = None) -> Any:
    """``value`` as ``(type name, value)`` at every level, so that a comparison sees types too
    (``True == 1 == 1.0`` in Python). ``data_type`` is the Arrow type of the column (or struct
    field, or list item) the value was stored in, ``None`` where there is none: where it is
    floating, an integer that a double holds exactly is taken as that double, as a Parquet part
    stores it; nowhere else does a value change type."""
    import pyarrow as pa  # only the Parquet tests need pyarrow

    if isinstance(value, dict):
        fields = {}
        if data_type is not None and pa.types.is_struct(data_type):
            fields = {f.name: f.type for f in data_type}
        return ("object", {k: typed(v, fields.get(k)) for k, v in value.items()})
    if isinstance(value, list):
        item = None
        if data_type is not None and pa.types.is_list(data_type):
            item = data_type.value_type
        return ("array", [typed(v, item) for v in value])
    if (
        type(value) is int
        and data_type is not None
        and pa.types.is_floating(data_type)
        and abs(value) <= EXACT_FLOAT_INT
    ):
        return ("float", float(value))
    return (type(value).__name__, value)


def typed_parquet_records(path: Path) -> list[Any]:
    """:func:`parquet_records`, each record :func:`typed` along the part's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = pa.struct(list(pq.read_schema(path)))
    return [typed(record, row) for record in parquet_records(path)]


def typed_as_in_parquet(path: Path, records: list[dict[str, Any]]) -> list[Any]:
    """``records`` (as written to JSON Lines) :func:`typed` along the schema of the Parquet part
    at ``path``: what :func:`typed_parquet_records` must give when the part holds them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = pa.struct(list(pq.read_schema(path)))
    return [typed(without_nulls(record), row) for record in records]


def assert_parquet_holds(path: Path, records: list[dict[str, Any]]) -> None:
    """The Parquet part at ``path`` holds ``records``, in order, values and types alike (an
    integer may read back as a double only from a column of doubles)."""
    assert typed_parquet_records(path) == typed_as_in_parquet(path, records)
