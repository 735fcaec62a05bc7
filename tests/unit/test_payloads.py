"""The functions' events and answers are typed, and the state machine keeps of each answer only
fields its type declares: a function and the definition cannot drift apart unnoticed."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from scm_batch.aws import payloads
from scm_batch.aws.definition import build_definition, resources_for_account
from scm_batch.aws.handlers import FUNCTIONS
from scm_batch.aws.payloads import ChunkDone, ChunkRequest, PlanRequest, selector
from scm_batch.errors import ConfigError


def lambda_tasks(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every Lambda Task of ``states``, inside Maps too."""
    for state in states.values():
        if state.get("Resource") == "arn:aws:states:::lambda:invoke":
            yield state
        if "ItemProcessor" in state:
            yield from lambda_tasks(state["ItemProcessor"]["States"])


@pytest.mark.parametrize("map_mode", ["inline", "distributed"])
def test_every_task_keeps_only_fields_its_function_answers(map_mode: str) -> None:
    resources = resources_for_account(region="eu-west-1", account="123456789012", map_mode=map_mode)
    seen: set[str] = set()
    for task in lambda_tasks(build_definition(resources)["States"]):
        function = task["Parameters"]["FunctionName"].rpartition(":")[2]
        step = FUNCTIONS[function].__wrapped__  # type: ignore[attr-defined]
        answer = typing.get_type_hints(step)["return"]
        fields = {f.encode_name for f in msgspec.structs.fields(answer)}
        kept = {name.removesuffix(".$") for name in task["ResultSelector"]}
        assert kept <= fields, function
        assert task["ResultSelector"] == {f"{n}.$": f"$.Payload.{n}" for n in kept}
        seen.add(function)
    assert seen == set(FUNCTIONS)


def test_a_selector_names_only_fields_its_type_has() -> None:
    assert selector(ChunkDone, "chunkId", "records") == {"chunkId": "chunkId", "records": "records"}
    assert list(selector(ChunkDone)) == [f.encode_name for f in msgspec.structs.fields(ChunkDone)]
    with pytest.raises(ValueError, match="ChunkDone has no field chunkNumber"):
        selector(ChunkDone, "chunkNumber")


def test_an_event_is_read_part_by_part_and_a_problem_names_its_part() -> None:
    with pytest.raises(ConfigError) as missing:
        payloads.decode({"batch": {"job": {}}}, PlanRequest)
    assert missing.value.field == "event.batch.job"  # the job is a contract value: read whole
    with pytest.raises(ConfigError) as absent:
        payloads.decode({"batch": {}}, PlanRequest)
    assert (absent.value.field, absent.value.problem) == ("event.batch.job", "is missing")
    with pytest.raises(ConfigError) as wrong:
        payloads.decode({"chunk": {"chunkId": 7}}, ChunkRequest)
    assert wrong.value.field == "event.chunk"
    with pytest.raises(ConfigError) as not_an_object:
        payloads.decode(["chunk"], ChunkRequest)
    assert not_an_object.value.field == "event"
