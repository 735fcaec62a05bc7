"""The per-record transform ("update records"), deterministic by construction.

For each valid record: ``processedAt`` is set to the run's one timestamp; ``customerId`` and
``tenantId`` are overwritten with the run's values; a present ``gssId`` gets a new UUID; a present
``id`` is copied to ``originalId`` and replaced by ``{customerId}_{tenantId}_{uuid}``. Every other
field passes through untouched, in its original order.

The new UUIDs are RFC 9562 version 8 ("custom") UUIDs: 74 bits derived from the batch id and the
purpose (``gssId`` or ``id``), and the low 48 bits the byte offset of the record's line in the
input.
A line's offset never changes, however the file is chunked, so every rerun of a batch gives every
record the same ids; two lines never share an offset, so ids are unique across the file. And the
ids cost one string format per record instead of a ``uuid4()`` call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

MAX_OFFSET = 1 << 48  # the offset fills the UUID's last 12 hex digits


def uuid_prefix(batch_id: str, purpose: str) -> str:
    """The first 24 characters of every UUID minted for ``purpose`` in batch ``batch_id``."""
    h = hashlib.sha256(f"scm-batch\x00{purpose}\x00{batch_id}".encode()).hexdigest()
    variant = "89ab"[int(h[18], 16) & 3]
    return f"{h[0:8]}-{h[8:12]}-8{h[12:15]}-{variant}{h[15:18]}-"


def record_uuid(batch_id: str, purpose: str, offset: int) -> str:
    """The UUID of the record whose line starts at byte ``offset`` (for tests and tools)."""
    return f"{uuid_prefix(batch_id, purpose)}{offset:012x}"


@dataclass(frozen=True, slots=True)
class TransformContext:
    """The run values stamped on records, with the id prefixes computed once per chunk."""

    processed_at: str
    customer_id: str
    tenant_id: str
    gss_prefix: str
    id_prefix: str

    @classmethod
    def create(
        cls, *, batch_id: str, customer_id: str, tenant_id: str, processed_at: str
    ) -> TransformContext:
        return cls(
            processed_at=processed_at,
            customer_id=customer_id,
            tenant_id=tenant_id,
            gss_prefix=uuid_prefix(batch_id, "gssId"),
            id_prefix=f"{customer_id}_{tenant_id}_{uuid_prefix(batch_id, 'id')}",
        )


def transform_records(
    records: list[dict[str, Any]], offsets: list[int], ctx: TransformContext
) -> None:
    """Apply the transform in place; ``offsets[i]`` is the byte offset of ``records[i]``'s line."""
    processed_at = ctx.processed_at
    customer_id = ctx.customer_id
    tenant_id = ctx.tenant_id
    gss_prefix = ctx.gss_prefix
    id_prefix = ctx.id_prefix
    for rec, offset in zip(records, offsets, strict=True):
        rec["processedAt"] = processed_at
        rec["customerId"] = customer_id
        rec["tenantId"] = tenant_id
        suffix = f"{offset:012x}"  # formatted once for both ids
        if "gssId" in rec:
            rec["gssId"] = gss_prefix + suffix
        if "id" in rec:
            rec["originalId"] = rec["id"]
            rec["id"] = id_prefix + suffix


def on_one_line(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its raw values compacted: white space between a value's tokens may hold
    newlines (a pretty-printed JSON array), and a result part has one record per line."""
    return {
        name: msgspec.Raw(msgspec.json.format(value, indent=-1))
        if type(value) is msgspec.Raw and b"\n" in bytes(value)
        else value
        for name, value in record.items()
    }
