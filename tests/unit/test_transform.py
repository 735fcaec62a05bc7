"""The transform is deterministic, keeps every other field, and mints valid unique UUIDs."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scm_batch.records.transform import TransformContext, record_uuid, transform_records

CTX = TransformContext.create(
    batch_id="batch-1", customer_id="cust", tenant_id="ten", processed_at="2026-01-01T00:00:00.000Z"
)


def test_fields_are_set_and_others_pass_through_in_order() -> None:
    record: dict[str, Any] = {
        "id": "R1",
        "gssId": "old",
        "customerId": "x",
        "unknown": {"nested": [1, 2]},
        "tenantId": "y",
    }
    transform_records([record], [1234], CTX)
    assert list(record) == [
        "id",
        "gssId",
        "customerId",
        "unknown",
        "tenantId",
        "processedAt",
        "originalId",
    ]
    assert record["originalId"] == "R1"
    assert record["id"] == f"cust_ten_{record_uuid('batch-1', 'id', 1234)}"
    assert record["gssId"] == record_uuid("batch-1", "gssId", 1234)
    assert record["customerId"] == "cust"
    assert record["tenantId"] == "ten"
    assert record["processedAt"] == "2026-01-01T00:00:00.000Z"
    assert record["unknown"] == {"nested": [1, 2]}


def test_absent_id_and_gss_id_are_not_invented() -> None:
    record: dict[str, Any] = {"name": "n"}
    transform_records([record], [0], CTX)
    assert "id" not in record
    assert "gssId" not in record
    assert "originalId" not in record
    assert record["customerId"] == "cust"


@given(st.integers(0, (1 << 48) - 1))
def test_uuids_are_rfc_9562_version_8(offset: int) -> None:
    value = uuid.UUID(record_uuid("batch-1", "gssId", offset))
    assert value.version == 8
    assert value.variant == uuid.RFC_4122
    assert value.int & ((1 << 48) - 1) == offset


def test_ids_differ_by_offset_purpose_and_batch_and_repeat_exactly() -> None:
    ids = {record_uuid("b", "gssId", n) for n in range(10_000)}
    assert len(ids) == 10_000
    assert record_uuid("b", "gssId", 5) != record_uuid("b", "id", 5)
    assert record_uuid("b", "gssId", 5) != record_uuid("c", "gssId", 5)
    assert record_uuid("b", "gssId", 5) == record_uuid("b", "gssId", 5)
