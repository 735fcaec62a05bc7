"""The generated state machine, read statically: the linter, and the rules it must keep."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from statelint.linter import Linter  # type: ignore[import-untyped]

from scm_batch.aws.definition import (
    FUNCTION_NAMES,
    INLINE_MAP_MAX_CONCURRENCY,
    Resources,
    build_definition,
    choose_map_mode,
    render,
    resources_for_account,
    template_variables,
    terraform_resources,
)
from scm_batch.errors import ScmBatchError
from scm_batch.retry import RetryPolicy, is_transient, transient_error_names
from scm_batch.stages.plan import MAX_CHUNKS

# statelint 3.1.0 predates ItemReader.ReaderConfig.InputType, which AWS requires to read a JSON
# array of items from S3 (the distributed Map's ItemReader). The definition is right there and
# the linter is wrong: this exact message, and only it, is ignored.
LINTER_LAGS_AWS = (
    'Field "InputType" not allowed in State Machine.States.ProcessChunksInParallel.ItemReader'
    ".ReaderConfig"
)
CONTRACT_STATES = {
    "InitializeBatchProcessing",
    "ValidateBatchConfig",
    "CalculateChunks",
    "ProcessChunksInParallel",
    "AggregateResults",
    "DeploymentChoiceState",
    "SendToKafka",
    "SendToSqsCore",
    "SendToSQS",
    "ReportFailure",
    "SuccessState",
    "FailureState",
}
CONTRACT_ITERATION_STATES = {"ProcessChunk", "ProcessWithLambda", "SubmitBatchJob"}


def deployment(**settings: Any) -> Resources:
    return resources_for_account(region="eu-west-1", account="210987654321", **settings)


def lint(definition: dict[str, Any]) -> list[str]:
    problems: list[str] = Linter.validate(json.loads(render(definition)))
    return [p for p in problems if p != LINTER_LAGS_AWS]


def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor is not None:
            yield from all_states(processor["States"])


SMALL = {"map_mode": "inline", "max_concurrent_chunks": 10, "max_inline_chunks": 20}
LARGE = {"map_mode": "distributed", "max_concurrent_chunks": 1000}


@pytest.mark.parametrize(
    "settings", [SMALL, LARGE, {}], ids=["small-plan", "large-plan", "default"]
)
def test_the_linter_accepts_every_definition(settings: dict[str, Any]) -> None:
    assert lint(build_definition(deployment(**settings))) == []


def test_the_linter_catches_a_broken_definition() -> None:
    """The lint check can fail: a dangling Next is reported."""
    definition = build_definition(deployment())
    definition["States"]["AggregateResults"]["Next"] = "NoSuchState"
    assert any("NoSuchState" in p for p in lint(definition))


def test_the_one_ignored_linter_message_is_the_reader_input_type() -> None:
    raw = Linter.validate(json.loads(render(build_definition(deployment(**LARGE)))))
    assert raw == [LINTER_LAGS_AWS]
    assert Linter.validate(json.loads(render(build_definition(deployment(**SMALL))))) == []


@pytest.mark.parametrize("settings", [SMALL, LARGE], ids=["inline", "distributed"])
def test_states_keep_the_contract_names(settings: dict[str, Any]) -> None:
    definition = build_definition(deployment(**settings))
    assert definition["StartAt"] == "InitializeBatchProcessing"
    assert set(definition["States"]) >= CONTRACT_STATES
    chunk_map = definition["States"]["ProcessChunksInParallel"]
    assert set(chunk_map["ItemProcessor"]["States"]) >= CONTRACT_ITERATION_STATES
    assert chunk_map["ItemProcessor"]["StartAt"] == "ProcessChunk"


@pytest.mark.parametrize("settings", [SMALL, LARGE], ids=["inline", "distributed"])
def test_every_task_has_a_timeout_and_retries_with_jittered_backoff(
    settings: dict[str, Any],
) -> None:
    definition = build_definition(deployment(**settings))
    tasks = [(n, s) for n, s in all_states(definition["States"]) if s["Type"] == "Task"]
    assert len(tasks) == 14  # PlanOnBatch among them
    for name, task in tasks:
        assert isinstance(task["TimeoutSeconds"], int), name
        assert task["TimeoutSeconds"] > 0, name
        assert task["Retry"], name
        for retrier in task["Retry"]:
            assert retrier["IntervalSeconds"] >= 1, name
            assert retrier["BackoffRate"] >= 1, name
            assert retrier["JitterStrategy"] == "FULL", name
            assert "States.ALL" not in retrier["ErrorEquals"], name


def test_each_lambda_task_calls_its_own_function() -> None:
    """The first implementation wired one Lambda to every state."""
    definition = build_definition(deployment(**SMALL))
    expected = {
        "InitializeBatchProcessing": "read-s3",
        "ValidateBatchConfig": "validate-data",
        "CalculateChunks": "calculate-chunks",
        "ProcessWithLambda": "update-records",
        "AggregateResults": "aggregate-results",
        "SendToKafka": "send-to-kafka",
        "SendToSqsCore": "send-to-sqs-core",
    }
    called = {
        name: state["Parameters"]["FunctionName"].rpartition(":scm-batch-processor-")[2]
        for name, state in all_states(definition["States"])
        if state.get("Resource") == "arn:aws:states:::lambda:invoke"
    }
    assert called == expected
    assert sorted(f"scm-batch-processor-{v}" for v in called.values()) == sorted(FUNCTION_NAMES)


def test_lambda_tasks_retry_exactly_the_transient_errors_of_the_error_tree() -> None:
    definition = build_definition(deployment())
    task = definition["States"]["ProcessChunksInParallel"]["ItemProcessor"]["States"][
        "ProcessWithLambda"
    ]
    throttled, service, project = task["Retry"]
    retried = set(project["ErrorEquals"])
    assert retried == set(transient_error_names())
    assert {
        "StorageUnavailableError",
        "DeliveryUnavailableError",
        "InjectedTransientError",
    } <= retried
    for name in ("ConfigError", "InputError", "InjectedTerminalError", "ObjectNotFoundError"):
        assert name not in retried
    policy = RetryPolicy()
    assert project["MaxAttempts"] == policy.attempts - 1  # the local run's policy
    assert project["BackoffRate"] == policy.backoff_rate
    assert all(e.startswith("Lambda.") for e in service["ErrorEquals"])
    # Throttling waits for other invocations to finish: longer, and further apart.
    assert throttled["ErrorEquals"] == ["Lambda.TooManyRequestsException"]
    assert throttled["MaxAttempts"] >= 10
    assert throttled["IntervalSeconds"] > service["IntervalSeconds"]
    assert throttled["MaxDelaySeconds"] >= 300


def test_transient_error_names_follow_each_class_own_mark() -> None:
    names = transient_error_names()
    for cls in _subclasses(ScmBatchError):
        error = cls.__new__(cls)
        if cls.__name__ in names:
            assert is_transient(error), cls
        elif cls.__name__ != "ChunkFailedError":
            assert not is_transient(error), cls


def _subclasses(root: type[ScmBatchError]) -> list[type[ScmBatchError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def test_each_chunk_failure_is_caught_and_recorded_in_the_ledger() -> None:
    states = build_definition(deployment())["States"]
    iteration = states["ProcessChunksInParallel"]["ItemProcessor"]["States"]
    for name in ("ProcessWithLambda", "SubmitBatchJob"):
        catcher = iteration[name]["Catch"][-1]  # the last: anything else already caught
        assert catcher == {
            "ErrorEquals": ["States.ALL"],
            "ResultPath": "$.error",
            "Next": "RecordChunkFailure",
        }
    record = iteration["RecordChunkFailure"]["Parameters"]
    assert record["Key.$"] == (
        "States.Format('metadata/{}/failures/{}.json', $.chunk.batchId, $.chunk.chunkId)"
    )
    assert iteration["SaveChunkFailure"]["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    assert states["ToleratedFailureCheck"]["Choices"][-1] == {
        "Variable": "$.outcome.failed",
        "BooleanEquals": True,
        "Next": "DescribeBatchFailure",
    }


def test_a_function_lambda_killed_is_tried_again_a_bounded_number_of_times() -> None:
    # AWS names a function killed for time or memory Lambda.Unknown (or by the runtime's report):
    # unretried, such a chunk failed on its first attempt where a local run retries it.
    states = build_definition(deployment())["States"]
    iteration = states["ProcessChunksInParallel"]["ItemProcessor"]["States"]
    chunk = iteration["ProcessWithLambda"]
    # A chunk: too big for Lambda, so its next attempt is a Batch job (bounded by the job's
    # retry strategy), never Lambda again.
    killed = chunk["Catch"][0]
    assert {"Lambda.Unknown", "Sandbox.Timedout", "States.Timeout"} <= set(killed["ErrorEquals"])
    assert (killed["Next"], killed["ResultPath"]) == ("SubmitBatchJob", "$.error")
    retried = {e for r in chunk["Retry"] for e in r["ErrorEquals"]}
    assert not retried & set(killed["ErrorEquals"])
    assert "Lambda.ClientExecutionTimeoutException" in retried  # the call, not the function
    # Every other step: tried again, a few times at most; but not a sender, which may have sent.
    for name, state in all_states(states):
        if state.get("Resource") != "arn:aws:states:::lambda:invoke" or name == "ProcessWithLambda":
            continue
        again = [r for r in state["Retry"] if "Lambda.Unknown" in r["ErrorEquals"]]
        if name in ("SendToKafka", "SendToSqsCore"):
            assert again == [], name
            continue
        assert len(again) == 1, name
        assert set(killed["ErrorEquals"]) == set(again[0]["ErrorEquals"]), name
        assert 1 <= again[0]["MaxAttempts"] <= 3, name


def test_throttling_is_waited_out_for_days_within_a_child_executions_history() -> None:
    # A throttled invocation never ran: retrying is always safe, and a chunk queued behind
    # another execution's 900-second chunks must not run out of retries.
    iteration = build_definition(deployment())["States"]["ProcessChunksInParallel"][
        "ItemProcessor"
    ]["States"]
    [throttled] = [
        r
        for r in iteration["ProcessWithLambda"]["Retry"]
        if r["ErrorEquals"] == ["Lambda.TooManyRequestsException"]
    ]
    delays, bound = [], float(throttled["IntervalSeconds"])
    for _ in range(throttled["MaxAttempts"]):
        delays.append(bound)
        bound = min(bound * throttled["BackoffRate"], throttled["MaxDelaySeconds"])
    expected_wait = sum(delays) / 2  # full jitter: half the bound on average
    assert expected_wait > 2 * 24 * 3600
    assert throttled["MaxDelaySeconds"] <= 300  # capacity freed is used within minutes
    # Each attempt adds a few events to the child execution's history (25,000 at most).
    assert throttled["MaxAttempts"] * 4 < 25_000


def test_the_map_gathers_a_result_the_state_can_hold_for_the_largest_plan() -> None:
    # A distributed Map without a ResultWriter gathers each iteration's output into its result;
    # past 256 KiB the execution dies with States.DataLimitExceeded, which cannot be caught.
    states = build_definition(deployment(**LARGE))["States"]
    iteration = states["ProcessChunksInParallel"]["ItemProcessor"]["States"]
    ends = {n: s for n, s in iteration.items() if s.get("End")}
    assert ends
    for name, state in ends.items():  # every iteration ends with an empty output: "{}"
        assert "OutputPath" in state, name
        assert state["OutputPath"] is None, name
    gathered = 2 + MAX_CHUNKS * len("{},")
    assert gathered < 256 * 1024 - 64 * 1024  # and room to spare for the state around it


def test_what_the_state_machine_writes_itself_uses_the_deployments_kms_key() -> None:
    key = "arn:aws:kms:eu-west-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    puts = {
        name: state["Parameters"]
        for name, state in all_states(build_definition(deployment(sse_kms_key=key))["States"])
        if state.get("Resource") == "arn:aws:states:::aws-sdk:s3:putObject"
    }
    assert set(puts) == {"SaveChunkFailure", "RecordNotified", "RecordFailureNotified"}
    for name, parameters in puts.items():
        assert parameters["ServerSideEncryption"] == "aws:kms", name
        assert parameters["SSEKMSKeyId"] == key, name
    # The Terraform template takes the module's key.
    template = build_definition(terraform_resources())["States"]
    assert [
        state["Parameters"]["SSEKMSKeyId"]
        for _, state in all_states(template)
        if state.get("Resource") == "arn:aws:states:::aws-sdk:s3:putObject"
    ] == ["${kms_key_arn}"] * 3


def test_batch_runs_synchronously_with_string_parameters_only() -> None:
    iteration = build_definition(deployment())["States"]["ProcessChunksInParallel"][
        "ItemProcessor"
    ]["States"]
    job = iteration["SubmitBatchJob"]
    assert job["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    parameters = job["Parameters"]["Parameters"]
    assert set(parameters) == {"bucket.$", "batchId.$", "chunkId.$"}
    assert all(not v.startswith("States.JsonToString") for v in parameters.values())
    assert all(e.startswith("Batch.") for e in job["Retry"][0]["ErrorEquals"])
    assert iteration["ProcessChunk"]["Choices"] == [
        {"Variable": "$.chunk.route", "StringEquals": "batch", "Next": "SubmitBatchJob"}
    ]


def test_deployment_choice_picks_sqs_core_for_core_and_kafka_otherwise() -> None:
    choice = build_definition(deployment())["States"]["DeploymentChoiceState"]
    assert choice["Choices"] == [
        {"Variable": "$.batch.job.deployment", "StringEquals": "CORE", "Next": "SendToSqsCore"}
    ]
    assert choice["Default"] == "SendToKafka"


def test_status_messages_are_sent_from_fields_that_always_exist() -> None:
    states = build_definition(deployment())["States"]
    assert states["SendToSQS"]["Parameters"]["MessageBody.$"] == "$.outcome.statusMessage"
    assert states["ReportFailure"]["Parameters"]["MessageBody.$"] == "$.report.message"
    reports = [n for n, s in states.items() if s.get("Next") == "ReportFailure"]
    assert sorted(reports) == [
        "DescribeBatchFailure",
        "FailureOfCheckedBatch",
        "FailureOfRequestedBatch",
        "FailureOfUnknownBatch",
    ]
    unknown = states["FailureOfUnknownBatch"]["Parameters"]["message"]
    assert unknown["batchId"] is None
    assert unknown["customerId"] is None
    assert states["ReportFailure"]["Catch"][0]["Next"] == "FailureName"


def test_the_execution_never_fails_under_a_name_aws_reserves() -> None:
    # A Fail state raising a States.* name from a path fails with States.Runtime instead.
    states = build_definition(deployment())["States"]
    into_fail = {origin for origin, target in edges(states) if target == "FailureState"}
    assert into_fail == {"FailureName", "NameWorkflowFailure"}
    assert states["FailureName"]["Default"] == "FailureState"
    [rename] = states["FailureName"]["Choices"]
    assert (rename["Variable"], rename["StringMatches"]) == ("$.failure.error", "States.*")
    assert states["NameWorkflowFailure"]["Parameters"]["error"] == "WorkflowFailed"


def test_large_plans_are_read_from_s3_and_small_ones_pass_through_the_state() -> None:
    large = build_definition(deployment(**LARGE))["States"]["ProcessChunksInParallel"]
    assert large["ItemReader"]["Parameters"] == {
        "Bucket.$": "$.batch.plan.bucket",
        "Key.$": "$.batch.plan.itemsKey",
    }
    assert "ItemsPath" not in large
    assert large["MaxConcurrency"] == 1000
    assert large["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert large["ResultPath"] is None
    small = build_definition(deployment(**SMALL))
    chunk_map = small["States"]["ProcessChunksInParallel"]
    assert chunk_map["ItemsPath"] == "$.batch.plan.items"
    assert "ItemReader" not in chunk_map
    assert small["States"]["CalculateChunks"]["Parameters"]["Payload"]["maxInlineChunks"] == 20
    capped = build_definition(deployment(map_mode="inline", max_concurrent_chunks=500))
    assert (
        capped["States"]["ProcessChunksInParallel"]["MaxConcurrency"] == INLINE_MAP_MAX_CONCURRENCY
    )


def test_auto_map_mode_is_inline_up_to_the_inline_concurrency_limit() -> None:
    assert choose_map_mode(40, "auto") == "inline"
    assert choose_map_mode(41, "auto") == "distributed"
    assert choose_map_mode(5, "distributed") == "distributed"


def test_the_terraform_template_takes_exactly_its_declared_variables() -> None:
    text = render(build_definition(terraform_resources()), template=True)
    references = set(re.findall(r"\$\{([^}]*)\}", text))
    names = {n for r in references for n in re.findall(r"[a-z_][a-z0-9_]*", r)}
    assert names == set(template_variables())
    assert "%{" not in text  # no template directives hide in the document
    with pytest.raises(ValueError, match="no value outside a template"):
        render(build_definition(terraform_resources()))


def test_transient_error_names_do_not_depend_on_what_was_imported() -> None:
    # A bare interpreter, against one that loaded boto3 and confluent-kafka first (which define
    # their own subclasses of ConnectionError): the generated Retry must be the same.
    script = "from scm_batch.retry import transient_error_names as t; print(t())"
    bare = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    loaded = subprocess.run(
        [sys.executable, "-c", "import boto3, botocore.httpsession, confluent_kafka\n" + script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert bare == loaded
    assert {"ConnectionResetError", "TimeoutError", "StorageError"} <= set(ast.literal_eval(bare))


def edges(states: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every transition: Next, a Choice's choices and default, and every Catch."""
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [choice.get("Next") for choice in state.get("Choices", [])]
        targets += [catcher["Next"] for catcher in state.get("Catch", [])]
        for target in targets:
            if target is not None:
                yield name, target


def test_every_state_is_reachable_and_every_transition_lands_on_a_state() -> None:
    for settings in (SMALL, LARGE):
        states = build_definition(deployment(**settings))["States"]
        reached = {"InitializeBatchProcessing"}
        frontier = ["InitializeBatchProcessing"]
        while frontier:
            origin = frontier.pop()
            for source, target in edges(states):
                assert target in states, (source, target)
                if source == origin and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(states)
