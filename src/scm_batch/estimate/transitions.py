"""State transitions a successful batch takes on AWS, counted on the state machine's definition.

Step Functions Standard bills every state a workflow enters (Choice, Pass and Succeed included;
a retry enters its state again). The definition is built by the same code that deploys it
(:func:`scm_batch.aws.definition.build_definition`) and walked along a successful batch's path:
a Choice takes the branch its rule picks on what is known of the batch (the deployment, each
chunk's route), a Task or Pass its ``Next``, and the Map counts once in the parent. Each chunk
is an iteration of the distributed Map, a STANDARD child execution whose states are counted the
same way. Retries are not counted: the estimate is of a batch that goes right the first time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scm_batch.model import Deployment, Route

# Facts about a batch that its Choice rules read, by JSONPath; what is absent fails a rule.
Facts = Mapping[str, object]

# Each child execution of a distributed Map is counted as one more transition for its start: a
# conservative reading of how AWS bills Map runs of STANDARD children (a few cents per 1,000).
CHILD_START_TRANSITIONS = 1
_MAX_STATES = 1000  # a walk this long has met a loop: the definition changed shape
_ABSENT = object()  # a fact not known: every comparison with it fails


@dataclass(frozen=True, slots=True)
class Transitions:
    """Per batch (its main path), and per chunk on each route (one child execution each)."""

    per_batch: int
    per_lambda_chunk: int
    per_batch_chunk: int
    main_path: tuple[str, ...]  # the states a successful batch enters, for the record

    def per_chunk(self, route: Route) -> int:
        return self.per_lambda_chunk if route == "lambda" else self.per_batch_chunk


def _holds(rule: Mapping[str, Any], facts: Facts) -> bool:
    """Whether a Choice rule holds on ``facts`` (the comparisons the definition uses)."""
    if "And" in rule:
        return all(_holds(r, facts) for r in rule["And"])
    if "Or" in rule:
        return any(_holds(r, facts) for r in rule["Or"])
    if "Not" in rule:
        return not _holds(rule["Not"], facts)
    variable = str(rule.get("Variable"))
    if "IsPresent" in rule:
        return (variable in facts) == bool(rule["IsPresent"])
    value = facts.get(variable, _ABSENT)
    equal = next(
        (rule[t] for t in ("StringEquals", "BooleanEquals", "NumericEquals") if t in rule), _ABSENT
    )
    if equal is not _ABSENT:
        return value is not _ABSENT and value == equal
    above = rule.get("NumericGreaterThan")
    return isinstance(value, int | float) and isinstance(above, int | float) and value > above


def _next(state: Mapping[str, Any], facts: Facts) -> str | None:
    """The state after ``state`` on a successful path (``None``: the path ends here)."""
    kind = state["Type"]
    if kind in ("Succeed", "Fail") or state.get("End"):
        return None
    if kind == "Choice":
        for rule in state.get("Choices", []):
            if _holds(rule, facts):
                return str(rule["Next"])
        return str(state["Default"])
    return str(state["Next"])


def walk(states: Mapping[str, Any], start: str, facts: Facts) -> list[str]:
    """The states entered from ``start`` until the path ends, in order."""
    path: list[str] = []
    name: str | None = start
    while name is not None:
        if len(path) >= _MAX_STATES:
            raise ValueError(f"the walk from {start} does not end (at {name})")
        path.append(name)
        name = _next(states[name], facts)
    return path


def count_transitions(deployment: Deployment = "WORKSPACE") -> Transitions:
    """Transitions of a successful batch of ``deployment``, on the deployed definition."""
    # Loaded here: the definition's modules (the lifecycle, the handlers' payloads) are needed
    # only when an estimate is asked for.
    from scm_batch.aws.definition import (  # noqa: PLC0415
        build_definition,
        resources_for_account,
    )

    definition = build_definition(resources_for_account(region="us-east-1", account="0" * 12))
    states = definition["States"]
    main = walk(states, definition["StartAt"], {"$.batch.job.deployment": deployment})
    chunk_map = next(s for s in states.values() if s["Type"] == "Map")
    processor = chunk_map["ItemProcessor"]

    def per_chunk(route: Route) -> int:
        path = walk(processor["States"], processor["StartAt"], {"$.chunk.route": route})
        return len(path) + CHILD_START_TRANSITIONS

    return Transitions(
        per_batch=len(main),
        per_lambda_chunk=per_chunk("lambda"),
        per_batch_chunk=per_chunk("batch"),
        main_path=tuple(main),
    )
