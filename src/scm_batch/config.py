"""Run configuration, loaded once at the edge: the execution input and the run options.

The execution input is the contract's JSON object (from ``--input FILE`` and/or flags; flags win).
Run options are everything else the local driver needs; each has a default, a flag, and an
``SCM_BATCH_*`` environment variable (wired in the command line).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from scm_batch.errors import ConfigError
from scm_batch.faults import FaultPlan
from scm_batch.model import JobInput, PlanOptions, Record, Tolerance
from scm_batch.retry import RetryPolicy
from scm_batch.stages.process import DEFAULT_BLOCK_SIZE

_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_AT_FIELD = re.compile(r"^(?P<problem>.*) - at `\$\.(?P<field>[^`\[]+)")

JOB_INPUT_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(JobInput))


class RunOptions(Record, frozen=True):
    """How the local driver runs a batch (not part of the execution input)."""

    workers: int = msgspec.field(default_factory=lambda: os.cpu_count() or 1)
    block_size: int = DEFAULT_BLOCK_SIZE
    overwrite: bool = False
    plan: PlanOptions = msgspec.field(default_factory=PlanOptions)
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    tolerance: Tolerance = msgspec.field(default_factory=Tolerance)
    faults: FaultPlan | None = None  # test-only: see scm_batch.faults


def parse_job_input(mapping: Mapping[str, Any]) -> JobInput:
    """Build a ``JobInput`` from the contract's JSON object; errors name the offending field."""
    try:
        return msgspec.convert(dict(mapping), JobInput)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if missing := _MISSING.search(message):
            raise ConfigError(missing["field"], "is required") from None
        if at_field := _AT_FIELD.match(message):
            raise ConfigError(at_field["field"], at_field["problem"].lower()) from None
        raise ConfigError("input", message) from None


def unknown_input_fields(mapping: Mapping[str, Any]) -> list[str]:
    """Fields of an execution input the contract does not know (ignored, but worth a warning)."""
    return sorted(set(mapping) - JOB_INPUT_FIELDS)


def load_input_file(path: Path) -> dict[str, Any]:
    """Read an execution input (event) JSON file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("--input", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = msgspec.json.decode(data.removeprefix(b"\xef\xbb\xbf"))
    except msgspec.DecodeError as exc:
        raise ConfigError("--input", f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError("--input", f"{path} must hold one JSON object")
    return value
