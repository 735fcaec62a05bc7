"""The definition the Terraform module deploys is exactly the one the generator emits."""

from __future__ import annotations

import ast
import json
import operator
import re
from typing import Any

from statelint.linter import Linter  # type: ignore[import-untyped]

from scm_batch.aws.batch_job import JOB_COMMAND, TRANSIENT_EXIT_CODE
from scm_batch.aws.definition import (
    FUNCTION_NAMES,
    Resources,
    build_definition,
    render,
    template_variable_of,
    template_variables,
    terraform_resources,
)
from tests.deploy.hcl import MODULE, batch_retry_strategy, parse, resources

TEMPLATE = MODULE / "state-machine.asl.json.tftpl"
LINTER_LAGS_AWS = (
    'Field "InputType" not allowed in State Machine.States.ProcessChunksInParallel.ItemReader'
    ".ReaderConfig"
)
KMS_KEY = "arn:aws:kms:eu-west-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab"
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_OPERATORS = {ast.Add: operator.add, ast.Mult: operator.mul}


def terraform_interpolate(template: str, values: dict[str, Any]) -> str:
    """What Terraform's ``templatefile`` makes of the template: each ``${expression}`` (names,
    numbers, ``+`` and ``*``: all the generator writes) replaced by its value."""

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise AssertionError(f"the template holds an expression Terraform may not read: {node}")

    return _REFERENCE.sub(lambda m: str(evaluate(ast.parse(m.group(1), mode="eval"))), template)


def deployed_values() -> dict[str, Any]:
    account = "arn:aws:lambda:eu-west-1:210987654321:function:"
    values: dict[str, Any] = {template_variable_of(n): account + n for n in FUNCTION_NAMES}
    values.update(
        batch_job_queue_arn="arn:aws:batch:eu-west-1:210987654321:job-queue/q",
        batch_job_definition_arn="arn:aws:batch:eu-west-1:210987654321:job-definition/d:4",
        status_queue_url="https://sqs.eu-west-1.amazonaws.com/210987654321/batch-proc",
        kms_key_arn=KMS_KEY,
        max_concurrent_chunks=120,
        lambda_timeout=600,
        batch_job_timeout=7200,
        batch_job_attempts=2,
    )
    return values


def test_the_committed_template_is_what_the_generator_emits() -> None:
    """Regenerate with:
    scm-batch aws definition --terraform -o deploy/terraform/state-machine.asl.json.tftpl"""
    generated = render(build_definition(terraform_resources()), template=True)
    assert TEMPLATE.read_text(encoding="utf-8") == generated


def test_the_module_fills_exactly_the_templates_variables() -> None:
    given = {
        name: value
        for local in parse(MODULE / "stepfunctions.tf")["locals"]
        for name, value in local.get("definition_vars", {}).items()
    }
    assert sorted(given) == template_variables()
    # The numbers are the module's variables of the same names.
    for name in (
        "max_concurrent_chunks",
        "lambda_timeout",
        "batch_job_timeout",
        "batch_job_attempts",
    ):
        assert given[name] == f"${{var.{name}}}"
    [machine] = resources("stepfunctions.tf", "aws_sfn_state_machine").values()
    assert "state-machine.asl.json.tftpl" in machine["definition"]
    assert "local.definition_vars" in machine["definition"]


def test_the_template_filled_in_is_the_definition_for_those_values() -> None:
    values = deployed_values()
    rendered = json.loads(terraform_interpolate(TEMPLATE.read_text(encoding="utf-8"), values))
    expected = build_definition(
        Resources(
            lambda_arns={n: values[template_variable_of(n)] for n in FUNCTION_NAMES},
            batch_job_queue=values["batch_job_queue_arn"],
            batch_job_definition=values["batch_job_definition_arn"],
            status_queue_url=values["status_queue_url"],
            sse_kms_key=KMS_KEY,
            max_concurrent_chunks=120,
            lambda_timeout=600,
            batch_job_timeout=7200,
            batch_job_attempts=2,
        )
    )
    assert rendered == json.loads(render(expected))
    assert rendered["States"]["ProcessChunksInParallel"]["MaxConcurrency"] == 120
    problems = [p for p in Linter.validate(rendered) if p != LINTER_LAGS_AWS]
    assert problems == []


def test_a_template_edited_by_hand_is_noticed() -> None:
    """The comparison can fail: a changed number in the template breaks the equality."""
    values = deployed_values()
    edited = TEMPLATE.read_text(encoding="utf-8").replace("${lambda_timeout + 60}", "960")
    rendered = json.loads(terraform_interpolate(edited, values))
    expected = json.loads(terraform_interpolate(TEMPLATE.read_text(encoding="utf-8"), values))
    assert rendered != expected


def test_the_batch_job_runs_the_entrypoint_and_retries_only_transient_exits() -> None:
    text = (MODULE / "batch.tf").read_text(encoding="utf-8")
    command = re.search(r"command\s*=\s*\[([^\]]*)\]", text)
    assert command is not None
    assert [json.loads(part) for part in re.findall(r'"[^"]*"', command.group(1))] == list(
        JOB_COMMAND
    )
    [definition] = resources("batch.tf", "aws_batch_job_definition").values()
    rules = batch_retry_strategy()["evaluateOnExit"]
    assert rules[0] == {"onExitCode": str(TRANSIENT_EXIT_CODE), "action": "RETRY"}
    assert rules[-1] == {"onReason": "*", "action": "EXIT"}
    # No other exit code is retried: only infrastructure failures (status reasons) are.
    assert all("onExitCode" not in r for r in rules[1:])
    [timeout] = definition["timeout"]
    assert timeout["attempt_duration_seconds"] == "${var.batch_job_timeout}"
