"""The Terraform module as python-hcl2 reads it, with strings unquoted and comments left out."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "deploy" / "terraform"
_OPTIONS = SerializationOptions(
    strip_string_quotes=True, with_comments=False, explicit_blocks=False
)


@cache
def parse(path: Path) -> dict[str, Any]:
    """One ``.tf`` file (cached: callers must not change what they get)."""
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = hcl2.load(handle, serialization_options=_OPTIONS)
    return document


def resources(file_name: str, kind: str) -> dict[str, dict[str, Any]]:
    """The resources of type ``kind`` in ``deploy/terraform/<file_name>``, by name."""
    return {
        name: body
        for block in parse(MODULE / file_name).get("resource", [])
        for name, body in block.get(kind, {}).items()
    }


def batch_retry_strategy() -> dict[str, Any]:
    """The chunk job definition's retry strategy in the Batch API's shape, its attempts the
    variable's default."""
    [definition] = resources("batch.tf", "aws_batch_job_definition").values()
    [strategy] = definition["retry_strategy"]
    assert strategy["attempts"] == "${var.batch_job_attempts}", strategy["attempts"]
    [attempts] = [
        block["batch_job_attempts"]["default"]
        for block in parse(MODULE / "variables.tf")["variable"]
        if "batch_job_attempts" in block
    ]
    api_names = {
        "on_exit_code": "onExitCode",
        "on_status_reason": "onStatusReason",
        "on_reason": "onReason",
        "action": "action",
    }
    return {
        "attempts": int(attempts),
        "evaluateOnExit": [
            {api_names[k]: v for k, v in rule.items() if k in api_names}
            for rule in strategy["evaluate_on_exit"]
        ],
    }
