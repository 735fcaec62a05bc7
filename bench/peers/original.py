"""Peer 1: the first implementation's approach, re-implemented faithfully.

One process; the stdlib ``json`` module per line in and out; a per-field validation that collects
every error of a record; per record ``uuid.uuid4()`` for the new ids and ``datetime.now()`` for
the timestamp. Rejected lines go to ``errors.jsonl`` with their reasons.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from bench.peers.common import EMAIL as EMAIL_PATTERN
from bench.peers.common import (
    NAME_MAX,
    NAME_MIN,
    REQUIRED_FIELDS,
    STATUSES,
    TIMESTAMP,
    parse_args,
)

EMAIL = re.compile(EMAIL_PATTERN)
TIMESTAMP_RE = re.compile(TIMESTAMP)


def field_error(field: str, value: Any) -> str | None:
    """What is wrong with one required field's value, or None."""
    if value is None or value in ("", {}, []):
        return "empty"
    if field == "id":
        ok = (isinstance(value, str) and value.strip() != "") or type(value) is int
    elif field == "name":
        ok = isinstance(value, str) and NAME_MIN <= len(value.strip()) <= NAME_MAX
    elif field == "email":
        ok = isinstance(value, str) and EMAIL.fullmatch(value) is not None
    elif field == "status":
        ok = isinstance(value, str) and value in STATUSES
    else:
        ok = isinstance(value, str) and TIMESTAMP_RE.fullmatch(value) is not None
    return None if ok else "invalid"


def validate(record: Any) -> list[str]:
    """Every error of a decoded record; empty when it is valid."""
    if not isinstance(record, dict) or not record:
        return ["not a JSON object, or an empty one"]
    errors = []
    for field in REQUIRED_FIELDS:
        if field not in record:
            errors.append(f"{field}: missing")
            continue
        error = field_error(field, record[field])
        if error is not None:
            errors.append(f"{field}: {error}")
    return errors


def main() -> None:
    args = parse_args(__doc__ or "")
    with (
        args.input.open(encoding="utf-8") as source,
        args.results.open("w", encoding="utf-8") as out,
        (args.output_dir / "errors.jsonl").open("w", encoding="utf-8") as rejected,
    ):
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                errors = [f"malformed: {exc}"]
            else:
                errors = validate(record)
            if errors:
                rejected.write(json.dumps({"line": number, "errors": errors, "raw": line}) + "\n")
                continue
            record["processedAt"] = datetime.now().isoformat()
            record["customerId"] = args.customer_id
            record["tenantId"] = args.tenant_id
            if "gssId" in record:
                record["gssId"] = str(uuid.uuid4())
            if "id" in record:
                record["originalId"] = record["id"]
                record["id"] = f"{args.customer_id}_{args.tenant_id}_{uuid.uuid4()}"
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
