"""Failed chunks as the state machine records them, made readable.

When a chunk's task fails for good, its Catch hands the error to ``RecordChunkFailure``, which
writes a :class:`~scm_batch.model.ChunkFailure` to the ledger with nothing but what the States
Language can express: the error name, and the whole error object (``Error`` and ``Cause``) as a
JSON string in ``message``. The cause is itself JSON for a Lambda error (``errorMessage``,
``errorType``, ``stackTrace``) and for a Batch job (the job's description). ``AggregateResults``
turns that into the one line a person needs.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from scm_batch.model import ChunkFailure

MAX_MESSAGE = 2000


def _batch_reason(job: dict[str, Any]) -> str | None:
    reason = job.get("StatusReason") or job.get("statusReason")
    if not isinstance(reason, str):
        return None
    container = job.get("Container") or job.get("container") or {}
    code = (
        container.get("ExitCode", container.get("exitCode"))
        if isinstance(container, dict)
        else None
    )
    return reason if code is None else f"{reason} (exit code {code})"


def _cause_text(cause: object) -> str:
    if not isinstance(cause, str) or not cause.strip():
        return "no cause given"
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict):
        message = parsed.get("errorMessage")
        if isinstance(message, str):
            return message  # a Lambda error; its stack trace stays in the function's log
        reason = _batch_reason(parsed)
        if reason is not None:
            return reason
    return cause


def explain(failure: ChunkFailure) -> ChunkFailure:
    """``failure`` with its message reduced to the cause's own words, when the state machine
    recorded it; a failure recorded otherwise is returned as it is."""
    try:
        error = json.loads(failure.message)
    except ValueError:
        return failure
    if not isinstance(error, dict) or "Error" not in error:
        return failure
    message = _cause_text(error.get("Cause"))
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return msgspec.structs.replace(failure, message=message)
