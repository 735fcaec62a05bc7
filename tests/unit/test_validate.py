"""The original system's record rules, and the fast path agreeing with the detailed one."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scm_batch.records.validate import (
    REQUIRED_FIELDS,
    Category,
    diagnose,
    diagnose_raw,
    is_valid,
    is_valid_raw,
)

GOOD: dict[str, Any] = {
    "id": "R1",
    "name": "Ada Lovelace",
    "email": "ada.l+x@example.co.uk",
    "status": "active",
    "createdAt": "2024-01-31T12:00:00Z",
    "updatedAt": "2024-02-01T08:30:00.123+02:00",
    "extra": {"kept": True},
}


def with_(**changes: Any) -> dict[str, Any]:
    record = dict(GOOD)
    for key, value in changes.items():
        if value is KeyError:
            del record[key]
        else:
            record[key] = value
    return record


def test_a_good_record_passes() -> None:
    assert is_valid(GOOD)
    assert is_valid(with_(id=42))


@pytest.mark.parametrize(
    ("record", "category", "field", "message_start"),
    [
        (with_(email=KeyError), Category.MISSING_FIELD, "email", "missing"),
        (with_(name=None), Category.EMPTY_FIELD, "name", "empty"),
        (with_(name=""), Category.EMPTY_FIELD, "name", "empty"),
        (with_(status={}), Category.EMPTY_FIELD, "status", "empty"),
        (with_(id=[]), Category.EMPTY_FIELD, "id", "empty"),
        (with_(email="not-an-email"), Category.INVALID_FIELD, "email", "invalid"),
        (with_(email="a@b.c"), Category.INVALID_FIELD, "email", "invalid"),
        (with_(status="Active"), Category.INVALID_FIELD, "status", "invalid"),
        (with_(status=["active"]), Category.INVALID_FIELD, "status", "invalid"),
        (with_(name=" X "), Category.INVALID_FIELD, "name", "invalid"),
        (with_(name="x" * 256), Category.INVALID_FIELD, "name", "invalid"),
        (with_(name=12), Category.INVALID_FIELD, "name", "invalid"),
        (with_(id="   "), Category.INVALID_FIELD, "id", "invalid"),
        (with_(id=True), Category.INVALID_FIELD, "id", "invalid"),
        (with_(id=1.5), Category.INVALID_FIELD, "id", "invalid"),
        (with_(createdAt="2024-01-31 12:00:00"), Category.INVALID_FIELD, "createdAt", "invalid"),
        (with_(createdAt="2024-01-31T12:00:00Z\n"), Category.INVALID_FIELD, "createdAt", "invalid"),
        (with_(updatedAt="٢٠٢٤-01-31T12:00:00Z"), Category.INVALID_FIELD, "updatedAt", "invalid"),
        (
            with_(updatedAt="2024-01-31T12:00:00.12Z"),
            Category.INVALID_FIELD,
            "updatedAt",
            "invalid",
        ),
    ],
)
def test_each_rule(record: dict[str, Any], category: str, field: str, message_start: str) -> None:
    assert not is_valid(record)
    diagnosis = diagnose(record)
    assert diagnosis.category == category
    assert list(diagnosis.field_errors) == [field]
    assert diagnosis.field_errors[field].startswith(message_start)
    assert diagnosis.error.startswith(f"{field}: {message_start}")


def test_missing_outranks_empty_and_invalid() -> None:
    diagnosis = diagnose(with_(email=KeyError, name="", status="nope"))
    assert diagnosis.category == Category.MISSING_FIELD
    assert set(diagnosis.field_errors) == {"email", "name", "status"}


@pytest.mark.parametrize("value", [{}, None])
def test_empty_record(value: object) -> None:
    assert not is_valid(value)
    assert diagnose(value).category == Category.EMPTY_RECORD


@pytest.mark.parametrize("value", [[1, 2], "text", 7, True])
def test_json_that_is_not_an_object_is_malformed(value: object) -> None:
    assert not is_valid(value)
    assert diagnose(value).category == Category.MALFORMED


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False),
    st.sampled_from(["", " ", "ab", "a", "active", "x@y.io", "2024-01-01T00:00:00Z", "R1"]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@given(st.dictionaries(st.sampled_from([*REQUIRED_FIELDS, "other"]), values))
def test_fast_path_agrees_with_diagnosis(record: dict[str, object]) -> None:
    diagnosis = diagnose(record)
    assert is_valid(record) == (record != {} and not diagnosis.field_errors)


@pytest.mark.parametrize(
    "changes",
    [
        # The fast path matches "email\ncreated\nupdated" at once: a part holding the separator
        # must not let its neighbours' text complete it.
        {"email": "a@b.io\n2024-01-31T12:00:00Z", "createdAt": "2024-01-31T12:00:00Z"},
        {"email": "a@b.io", "createdAt": "2024-01-31T12:00:00Z\n2024-01-31T12:00:00Z"},
        {"updatedAt": "2024-01-31T12:00:00Z\n"},
        {"email": "a@b.io\n"},
    ],
)
def test_a_field_holding_a_newline_is_invalid(changes: dict[str, object]) -> None:
    record = with_(**changes)
    assert not is_valid(record)
    assert diagnose(record).category == Category.INVALID_FIELD


@given(st.dictionaries(st.sampled_from([*REQUIRED_FIELDS, "other"]), values))
def test_records_of_raw_values_are_judged_as_decoded_ones(record: dict[str, object]) -> None:
    """A chunk reads records with their values raw (passed through as written); the rules see
    the required fields decoded, exactly as in a record decoded whole."""
    raw = msgspec.json.decode(msgspec.json.encode(record), type=dict[str, msgspec.Raw])
    decoded = msgspec.json.decode(msgspec.json.encode(record))
    assert is_valid_raw(raw) == is_valid(decoded)
    if not is_valid(decoded):
        assert diagnose_raw(raw) == diagnose(decoded)
