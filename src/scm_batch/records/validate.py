"""Record validation: the rules the original system actually ran, made fast.

:func:`is_valid` is the hot path: one pass of cheap type checks and one precompiled regular
expression over the email and both timestamps. Only a record that fails it goes through
:func:`diagnose`, which says what is wrong with every field. Both apply the same rules; a test
keeps them in agreement.

A chunk reads each record with its top-level values left as they are in the input
(``msgspec.Raw``), so that every field the transform does not set is written out byte for byte:
:func:`is_valid_raw` and :func:`diagnose_raw` decode the six required fields only, and apply the
same rules to them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from scm_batch.records.codecs import DECODE_ERRORS, undecodable

REQUIRED_FIELDS = ("id", "name", "email", "status", "createdAt", "updatedAt")
STATUSES = frozenset({"active", "inactive", "pending", "suspended", "deleted"})
NAME_MIN, NAME_MAX = 2, 255

# fullmatch and explicit [0-9]: `\d` would admit other scripts' digits and `$` a trailing newline.
_EMAIL = r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}"
_TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]{3})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_email = re.compile(_EMAIL).fullmatch
_timestamp = re.compile(_TIMESTAMP).fullmatch
# The hot path checks the email and both timestamps in one match of "email\ncreated\nupdated":
# one regex call instead of three. No part can contain the "\n" separator, so it matches exactly
# when each part matches on its own.
_email_and_timestamps = re.compile(f"{_EMAIL}\n{_TIMESTAMP}\n{_TIMESTAMP}").fullmatch
_value = msgspec.json.Decoder().decode


class Category:
    """Error categories; each bad line is counted under exactly one."""

    MALFORMED = "malformed"  # not JSON, not UTF-8, or JSON that is not an object
    EMPTY_RECORD = "empty_record"  # {} or null
    MISSING_FIELD = "missing_field"  # a required field is absent
    EMPTY_FIELD = "empty_field"  # a required field is null, "", {} or []
    INVALID_FIELD = "invalid_field"  # a required field has a value the rules reject
    TOO_LONG = "too_long"  # a line over the length limit: not read (its bytes stay in the input)


# Field error messages start with their kind, so counting by kind needs no second structure.
MISSING = "missing"
EMPTY = "empty"
INVALID = "invalid"

_MESSAGES = {
    "id": "invalid: must be a non-blank string or an integer",
    "name": f"invalid: must be a string of {NAME_MIN}-{NAME_MAX} characters after trimming",
    "email": "invalid: not an email address",
    "status": "invalid: must be one of " + ", ".join(sorted(STATUSES)),
    "createdAt": "invalid: not a timestamp like 2024-01-31T12:00:00Z",
    "updatedAt": "invalid: not a timestamp like 2024-01-31T12:00:00Z",
}


def is_valid_raw(rec: dict[str, msgspec.Raw]) -> bool:
    """:func:`is_valid` of a record whose values are raw JSON: the required fields are decoded
    (a value the decoder refuses, a number beyond a double's range say, raises), the others not.
    """
    get = rec.get
    status = get("status")
    email = get("email")
    created = get("createdAt")
    updated = get("updatedAt")
    name = get("name")
    ident = get("id")
    if (
        status is None
        or email is None
        or created is None
        or updated is None
        or name is None
        or ident is None
    ):
        return False
    return _passes(
        _value(status), _value(email), _value(created), _value(updated), _value(name), _value(ident)
    )


def required_values(rec: dict[str, msgspec.Raw]) -> dict[str, object]:
    """The required fields of a record of raw values, decoded (the others left out)."""
    return {name: _value(rec[name]) for name in REQUIRED_FIELDS if name in rec}


def diagnose_raw(rec: dict[str, msgspec.Raw]) -> Diagnosis:
    """:func:`diagnose` of a record whose values are raw JSON."""
    if not rec:
        return Diagnosis(Category.EMPTY_RECORD, {})
    return _diagnose_fields(required_values(rec))


def is_valid(rec: object) -> bool:
    """Whether a decoded record passes every rule (the fast path; no detail)."""
    if type(rec) is not dict:
        return False
    get = rec.get
    return _passes(
        get("status"), get("email"), get("createdAt"), get("updatedAt"), get("name"), get("id")
    )


def _passes(
    status: object, email: object, created: object, updated: object, name: object, ident: object
) -> bool:
    """The rules, over the six required values (``None`` for one that is absent)."""
    return (
        type(status) is str
        and status in STATUSES
        and type(email) is str
        and type(created) is str
        and type(updated) is str
        and _email_and_timestamps(f"{email}\n{created}\n{updated}") is not None
        and type(name) is str
        and NAME_MIN <= len(name.strip()) <= NAME_MAX
        and ((type(ident) is str and not ident.isspace() and ident != "") or type(ident) is int)
    )


def _field_ok(field: str, value: object) -> bool:
    if field == "id":
        return (type(value) is str and value.strip() != "") or type(value) is int
    if field == "name":
        return type(value) is str and NAME_MIN <= len(value.strip()) <= NAME_MAX
    if field == "email":
        return type(value) is str and _email(value) is not None
    if field == "status":
        return type(value) is str and value in STATUSES
    return type(value) is str and _timestamp(value) is not None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why a record is rejected: its category and a message per offending field."""

    category: str
    field_errors: dict[str, str]

    @property
    def error(self) -> str:
        """A one-line summary, e.g. ``email: invalid: not an email address; status: missing``."""
        if not self.field_errors:
            return {
                Category.EMPTY_RECORD: "empty record",
                Category.MALFORMED: "not a JSON object",
            }.get(self.category, self.category)
        return "; ".join(f"{field}: {message}" for field, message in self.field_errors.items())


def diagnose(rec: object) -> Diagnosis:
    """Everything wrong with a decoded record (call only when :func:`is_valid` said no)."""
    if rec is None or rec == {}:
        return Diagnosis(Category.EMPTY_RECORD, {})
    if not isinstance(rec, dict):
        return Diagnosis(Category.MALFORMED, {})
    return _diagnose_fields(rec)


def _diagnose_fields(rec: dict[str, object]) -> Diagnosis:
    """What is wrong with the required fields of a record that is an object, not empty."""
    errors: dict[str, str] = {}
    for field in REQUIRED_FIELDS:
        if field not in rec:
            errors[field] = MISSING
            continue
        value = rec[field]
        if value is None or value in ("", {}, []):
            errors[field] = EMPTY
        elif not _field_ok(field, value):
            errors[field] = _MESSAGES[field]
    kinds = {message.partition(":")[0] for message in errors.values()}
    if MISSING in kinds:
        category = Category.MISSING_FIELD
    elif EMPTY in kinds:
        category = Category.EMPTY_FIELD
    else:
        category = Category.INVALID_FIELD
    return Diagnosis(category, errors)


def error_kind(message: str) -> str:
    """``missing``, ``empty`` or ``invalid`` for a field error message."""
    return message.partition(":")[0]


def diagnose_decoded(rec: object) -> tuple[Diagnosis, str]:
    """Why a decoded line is rejected, and its error message. A required value the decoder
    refuses (a number beyond a double's range, say) makes the line malformed, as it does when the
    other required fields are there."""
    try:
        diagnosis = diagnose_raw(rec) if isinstance(rec, dict) else diagnose(rec)
    except DECODE_ERRORS as exc:
        return Diagnosis(Category.MALFORMED, {}), undecodable(exc)
    return diagnosis, diagnosis.error
