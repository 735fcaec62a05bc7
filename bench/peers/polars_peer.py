"""Peer 3: the same validation and transform with polars, on two threads (POLARS_MAX_THREADS=2).

polars' NDJSON readers (``scan_ndjson``/``read_ndjson``) stop at the first line that is not JSON;
their ``ignore_errors`` covers schema mismatches only. So the lines are read as text, those that
do not parse (``json_path_match('$')`` is null) are dropped, and the rest decoded with
``str.json_decode``: each line is parsed twice. The plan streams into ``sink_ndjson``.
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "2")

import polars as pl

from bench.peers.common import (
    EMAIL,
    NAME_MAX,
    NAME_MIN,
    STATUSES,
    TIMESTAMP,
    parse_args,
    uuid_prefix,
)

SCHEMA = pl.Struct(
    {
        "id": pl.String,
        "name": pl.String,
        "email": pl.String,
        "status": pl.String,
        "createdAt": pl.String,
        "updatedAt": pl.String,
        "gssId": pl.String,
        "customerId": pl.String,
        "tenantId": pl.String,
        "sku": pl.String,
        "locationId": pl.String,
        "quantity": pl.Int64,
        "unitPrice": pl.Float64,
        "pack": pl.Struct({"uom": pl.String, "kg": pl.Float64}),
        "tags": pl.List(pl.String),
    }
)


def plan(
    source: str, customer_id: str, tenant_id: str, batch_id: str, processed_at: str
) -> pl.LazyFrame:
    line = pl.col("line")
    number = pl.col("n").cast(pl.String).str.zfill(12)
    lines = pl.scan_csv(
        source, has_header=False, separator="\x1f", quote_char=None, schema={"line": pl.String}
    )
    return (
        lines.with_row_index("n")
        .filter(line.str.json_path_match("$").is_not_null())
        .select("n", line.str.json_decode(SCHEMA).alias("record"))
        .unnest("record")
        .filter(
            pl.col("status").is_in(STATUSES),
            pl.col("email").str.contains(f"^{EMAIL}$"),
            pl.col("createdAt").str.contains(f"^{TIMESTAMP}$"),
            pl.col("updatedAt").str.contains(f"^{TIMESTAMP}$"),
            pl.col("name").str.strip_chars().str.len_chars().is_between(NAME_MIN, NAME_MAX),
            pl.col("id").str.strip_chars() != "",
        )
        .with_columns(
            id=pl.lit(f"{customer_id}_{tenant_id}_{uuid_prefix(batch_id, 'id')}") + number,
            gssId=pl.lit(uuid_prefix(batch_id, "gssId")) + number,
            customerId=pl.lit(customer_id),
            tenantId=pl.lit(tenant_id),
            originalId=pl.col("id"),
            processedAt=pl.lit(processed_at),
        )
        .drop("n")
    )


def main() -> None:
    args = parse_args(__doc__ or "")
    plan(
        str(args.input), args.customer_id, args.tenant_id, args.batch_id, args.processed_at
    ).sink_ndjson(args.results)


if __name__ == "__main__":
    main()
