"""The Terraform module (``deploy/terraform``) checked without Terraform or an AWS account.

Every ``.tf`` file is parsed with python-hcl2 and checked for what ``terraform validate`` and a
reviewer would catch: references that resolve, variables that are declared and used, the
contract's variables with the code's defaults, the state machine filled with exactly the
generator's template variables, one role per function, no ``Resource: "*"`` that could be
narrower, alarms with unique names on metrics that exist, a Batch job that runs the entrypoint and
retries only transient exits. checkov runs over the module (it must report no failed check), the
README's deployment section is held to the module's variables and outputs, and the Lambda package
builder is shown to be reproducible.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import io
import json
import os
import re
import subprocess
import tomllib
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from scm_batch import settings
from scm_batch.aws import batch_job, chunks, handlers
from scm_batch.aws.batch_job import JOB_COMMAND, TRANSIENT_EXIT_CODE
from scm_batch.aws.definition import (
    FUNCTION_NAMES,
    build_definition,
    render,
    resources_for_account,
    template_variable_of,
    template_variables,
    terraform_resources,
)
from scm_batch.aws.telemetry import Metric, Telemetry
from scm_batch.model import DEFAULT_MAX_CHUNK_SIZE, DEFAULT_MAX_CONCURRENT_CHUNKS, RoutingPolicy
from scm_batch.settings import DEFAULT_NAMESPACE
from tests.deploy.hcl import parse

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "deploy" / "terraform"
EXAMPLE = MODULE / "examples" / "minimal"
TEMPLATE = MODULE / "state-machine.asl.json.tftpl"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
LAMBDA_ZIP_SCRIPT = ROOT / "deploy" / "lambda_zip.py"

# Strings without their HCL quotes, no comment entries, blocks as plain lists of dicts.

# Actions that the Service Authorization Reference lists with no resource type: IAM matches them
# against "*" only, so no narrower Resource exists. Nothing else may be granted on "*". (checkov's
# CKV_AWS_356, run below, independently flags "*" for any action that could be scoped.)
STAR_ONLY_ACTIONS = frozenset(
    {
        # The registry login token is account-wide (the Batch execution role pulls the image).
        "ecr:GetAuthorizationToken",
        # batch:submitJob.sync follows the job; DescribeJobs takes no resource.
        "batch:DescribeJobs",
        # Lambda functions in a VPC look up their subnets; EC2 Describe* take no resource.
        "ec2:DescribeSubnets",
        # Step Functions' log delivery to CloudWatch Logs: AWS documents these on "*"
        # (https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html).
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
)
# AWS managed policies attached to roles, with why a managed policy is right there.
ALLOWED_MANAGED_POLICIES = {
    # xray:PutTraceSegments and friends: X-Ray actions have no resource type at all.
    "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess",
    # The ENI actions Lambda needs to run a function in a VPC (and nothing else).
    "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess",
}
# Metrics AWS publishes in the namespaces the module alarms on or charts.
AWS_METRICS = {
    "AWS/States": {
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
        "ExecutionThrottled",
    },
    "AWS/Lambda": {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
}
# The dimension of each AWS namespace and the resource type (and attribute) that names it.
AWS_DIMENSIONS = {
    "AWS/States": ("StateMachineArn", "aws_sfn_state_machine", "arn"),
    "AWS/Lambda": ("FunctionName", "aws_lambda_function", "function_name"),
    "AWS/SQS": ("QueueName", "aws_sqs_queue", "name"),
}

_VAR = re.compile(r"\bvar\.([A-Za-z_][\w-]*)")
_LOCAL = re.compile(r"\blocal\.([A-Za-z_][\w-]*)")
_DATA = re.compile(r"\bdata\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)")
_RESOURCE = re.compile(r"(?<![\w.])((?:aws|terraform)_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")
_MODULE_OUTPUT = re.compile(r"\bmodule\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)")
_CHECKOV_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


# ---- reading the module -----------------------------------------------------------------------
def parsed(path: Path) -> dict[str, Any]:
    return parse(path)


def tf_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.tf"))


def entries(directory: Path, kind: str) -> Iterator[dict[str, Any]]:
    for path in tf_files(directory):
        yield from parsed(path).get(kind, [])


def named(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    """``variable`` / ``output`` / ``module`` blocks by name."""
    return {name: body for entry in entries(directory, kind) for name, body in entry.items()}


def typed(directory: Path, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``resource`` / ``data`` blocks by (type, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries(directory, kind):
        for rtype, by_name in entry.items():
            for name, body in by_name.items():
                assert (rtype, name) not in found, f"{kind} {rtype}.{name} is declared twice"
                found[(rtype, name)] = body
    return found


def locals_of(directory: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in entries(directory, "locals"):
        for name, value in block.items():
            assert name not in found, f"local.{name} is declared twice"
            found[name] = value
    return found


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed block: attribute values and map keys."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def interpolations(text: str) -> Iterator[str]:
    """The expressions of a string: what is inside each top-level ``${...}``."""
    position = 0
    while (start := text.find("${", position)) != -1:
        depth, end = 0, start + 1
        while end < len(text):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    break
            end += 1
        yield text[start + 2 : end]
        position = end + 1


def expressions(directory: Path) -> list[str]:
    return [
        expression
        for path in tf_files(directory)
        for text in strings(parsed(path))
        for expression in interpolations(text)
    ]


def references(pattern: re.Pattern[str], directory: Path) -> Counter[Any]:
    found: Counter[Any] = Counter()
    for expression in expressions(directory):
        for match in pattern.finditer(expression):
            found[match.group(1) if pattern.groups == 1 else match.groups()] += 1
    return found


def reference_in(expression: str, rtype: str) -> tuple[str, str] | None:
    """``${aws_x.name[...].attr}`` -> (name, attr) when the expression is one such reference."""
    match = re.fullmatch(
        r"\$\{" + re.escape(rtype) + r"\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?\.([a-z_]+)\}",
        expression,
    )
    return (match.group(1), match.group(2)) if match else None


def resource(rtype: str, name: str) -> dict[str, Any]:
    return typed(MODULE, "resource")[(rtype, name)]


def var_default(name: str) -> Any:
    return named(MODULE, "variable")[name].get("default")


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A policy document's statements, the dynamic ones' content included."""
    yield from document.get("statement", [])
    for dynamic in document.get("dynamic", []):
        if "statement" in dynamic:
            yield from dynamic["statement"]["content"]


def emitted_metrics() -> set[tuple[str, str]]:
    """(Stage, metric name) of every EMF metric the code writes, read from its source: a
    handler's stage is its ``@_stage("...")``, the Batch job's the constant it gives
    ``Telemetry``; a function's metrics are its ``Metric("...")`` and those of the functions it
    calls."""
    modules = (handlers, chunks, batch_job)
    trees = {module: ast.parse(inspect.getsource(module)) for module in modules}
    functions = {
        node.name: node
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
    }

    def metrics_of(function: ast.FunctionDef, seen: frozenset[str]) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            first = node.args[0] if node.args else None
            if node.func.id == "Metric" and isinstance(first, ast.Constant):
                names.add(str(first.value))
            elif node.func.id in functions and node.func.id not in seen:
                names |= metrics_of(functions[node.func.id], seen | {node.func.id})
        return names

    def stage_names(module: ModuleType, function: ast.FunctionDef) -> set[str]:
        stages = {
            str(d.args[0].value)
            for d in function.decorator_list
            if isinstance(d, ast.Call)
            and isinstance(d.func, ast.Name)
            and d.func.id == "_stage"
            and d.args
            and isinstance(d.args[0], ast.Constant)
        }
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Telemetry"
                and node.args
                and isinstance(node.args[0], ast.Name)
                and isinstance(getattr(module, node.args[0].id, None), str)
            ):
                stages.add(getattr(module, node.args[0].id))
        return stages

    emitted: set[tuple[str, str]] = set()
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                metrics = metrics_of(node, frozenset({node.name}))
                emitted |= {(s, m) for s in stage_names(module, node) for m in metrics}
    return emitted


# ---- the files parse, the references resolve ----------------------------------------------------
@pytest.mark.parametrize(
    "path", tf_files(MODULE) + tf_files(EXAMPLE), ids=lambda p: str(p.relative_to(MODULE))
)
def test_every_file_parses(path: Path) -> None:
    assert parsed(path), f"{path.name} holds no block"


def test_the_module_pins_terraform_and_the_aws_provider() -> None:
    [settings_block] = list(entries(MODULE, "terraform"))
    assert settings_block["required_version"].startswith(">=")
    [providers] = settings_block["required_providers"]
    assert providers["aws"]["source"] == "hashicorp/aws"
    assert "< 6.0" in providers["aws"]["version"]


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_variable_referenced_is_declared_and_every_declared_one_is_used(
    directory: Path,
) -> None:
    declared = set(named(directory, "variable"))
    used = set(references(_VAR, directory))
    assert used - declared == set(), "referenced but not declared"
    assert declared - used == set(), "declared but never used"


def test_every_local_data_source_and_resource_referenced_is_declared() -> None:
    declared_locals = set(locals_of(MODULE))
    used_locals = set(references(_LOCAL, MODULE))
    assert used_locals - declared_locals == set(), "locals referenced but not declared"
    assert declared_locals - used_locals == set(), "locals declared but never used"
    assert set(references(_DATA, MODULE)) - set(typed(MODULE, "data")) == set()
    assert set(references(_RESOURCE, MODULE)) - set(typed(MODULE, "resource")) == set()


def test_the_example_passes_declared_inputs_and_reads_declared_outputs() -> None:
    [call] = named(EXAMPLE, "module").values()
    assert (EXAMPLE / call["source"]).resolve() == MODULE
    inputs = set(call) - {"source", "version", "providers", "depends_on"}
    variables = named(MODULE, "variable")
    assert inputs - set(variables) == set(), "inputs the module does not declare"
    required = {name for name, body in variables.items() if "default" not in body}
    assert required - inputs == set(), "required inputs not given"
    read = {output for _, output in references(_MODULE_OUTPUT, EXAMPLE)}
    assert read - set(named(MODULE, "output")) == set()


def test_the_lambda_package_is_where_make_puts_it() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    zip_path = re.search(r"^LAMBDA_ZIP\s*:=\s*(\S+)$", makefile, re.MULTILINE)
    assert zip_path is not None
    default = locals_of(MODULE)["lambda_package_path"]
    assert default.endswith(f'"${{path.module}}/../../{zip_path.group(1)}")}}')
    assert (MODULE / "../.." / zip_path.group(1)).resolve() == ROOT / zip_path.group(1)
    for rtype_name, body in typed(MODULE, "resource").items():
        if rtype_name[0] == "aws_lambda_function":
            assert body["filename"] == "${local.lambda_package_path}"
            assert body["source_code_hash"] == "${filebase64sha256(local.lambda_package_path)}"


def test_make_test_installs_the_deployment_tools() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = re.search(r"^test:(.*)$", makefile, re.MULTILINE)
    assert target is not None
    assert "$(TOOLS_STAMP)" in target.group(1).split()
    assert re.search(r"^\$\(TOOLS_STAMP\):", makefile, re.MULTILINE)


# ---- variables and the code agree ---------------------------------------------------------------
def test_no_function_reserves_concurrency_unless_asked() -> None:
    # Lambda refuses a reservation that leaves fewer than 100 unreserved executions: a default
    # reservation fails the first apply in a new account (regional limit 10, or below 150).
    functions = locals_of(MODULE)["lambda_functions"]
    reserved = {name: f["reserved_concurrency"] for name, f in functions.items()}
    assert reserved["update-records"] == "${var.update_records_reserved_concurrency}"
    assert {v for k, v in reserved.items() if k != "update-records"} == {
        "${var.lambda_reserved_concurrency}"
    }
    for name in ("update_records_reserved_concurrency", "lambda_reserved_concurrency"):
        assert var_default(name) == -1, name  # -1: unreserved
        [check] = named(MODULE, "variable")[name]["validation"]
        assert "== -1" in check["condition"], name


def test_the_contracts_variables_keep_their_names_and_the_codes_defaults() -> None:
    routing = RoutingPolicy()
    defaults = resources_for_account(region="eu-west-1", account="123456789012")
    expected = {
        "batch_processing_threshold": routing.batch_processing_threshold,
        "max_records_per_chunk": DEFAULT_MAX_CHUNK_SIZE,
        "max_concurrent_chunks": DEFAULT_MAX_CONCURRENT_CHUNKS,
        "batch_max_vcpus": 256,
        "batch_desired_vcpus": 64,
        "batch_job_vcpus": 4,
        "batch_job_memory": 8192,
        "lambda_timeout": routing.lambda_timeout_seconds,
        "lambda_memory": 10240,
        "estimated_processing_time_per_record": routing.estimated_processing_time_per_record,
        "kafka_brokers": "",
        "kafka_topic": "processed-records",
        "sqs_core_queue_url": "",
        "record_destination": "kafka",
        # Not the contract's, but the definition's defaults as well.
        "batch_job_timeout": defaults.batch_job_timeout,
        "batch_job_attempts": defaults.batch_job_attempts,
    }
    variables = named(MODULE, "variable")
    assert {name: variables[name].get("default") for name in expected} == expected
    for required in ("s3_bucket_name", "batch_subnet_ids", "batch_security_group_ids"):
        assert "default" not in variables[required], f"{required} has no sensible default"


def test_the_runtime_environment_holds_only_settings_the_code_reads() -> None:
    """A renamed setting would otherwise be silently ignored on AWS."""
    source = inspect.getsource(settings)
    read = set(re.findall(r'"((?:SCM_BATCH|KAFKA|SQS)_[A-Z0-9_]+)"', source))
    environment = locals_of(MODULE)
    given = {
        name
        for key in ("runtime_environment", "kafka_security_environment")
        for name in re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", environment[key])
    }
    assert len(given) > 10, given
    assert given - read == set()
    assert environment["metrics_namespace"] == DEFAULT_NAMESPACE


# ---- the state machine --------------------------------------------------------------------------
def test_the_state_machine_is_the_generated_template_filled_with_exactly_its_variables() -> None:
    machine = resource("aws_sfn_state_machine", "this")
    assert machine["definition"] == (
        '${templatefile("${path.module}/state-machine.asl.json.tftpl", local.definition_vars)}'
    )
    assert TEMPLATE.is_file()
    given = locals_of(MODULE)["definition_vars"]
    assert sorted(given) == template_variables()
    generated = render(build_definition(terraform_resources()), template=True)
    placeholders = {
        name
        for expression in interpolations(generated)
        for name in re.findall(r"[A-Za-z_]\w*", expression)
    }
    assert placeholders <= set(given), "the generator writes a variable the module leaves out"
    in_file = {
        name
        for expression in interpolations(TEMPLATE.read_text(encoding="utf-8"))
        for name in re.findall(r"[A-Za-z_]\w*", expression)
    }
    assert in_file <= set(given), "the committed template names a variable the module lacks"
    for number in ("max_concurrent_chunks", "lambda_timeout", "batch_job_timeout"):
        assert given[number] == f"${{var.{number}}}"
    assert given["batch_job_attempts"] == "${var.batch_job_attempts}"


def test_each_state_invokes_the_function_with_the_contracts_name() -> None:
    """The original wired one Lambda to every state; here each variable names its own."""
    functions = locals_of(MODULE)["lambda_functions"]
    given = locals_of(MODULE)["definition_vars"]
    for function_name in FUNCTION_NAMES:
        expression = given[template_variable_of(function_name)]
        match = re.fullmatch(r'\$\{aws_lambda_function\.this\["([\w-]+)"\]\.arn\}', expression)
        assert match is not None, expression
        assert functions[match.group(1)]["function_name"] == function_name
    assert sorted(f["function_name"] for f in functions.values()) == sorted(FUNCTION_NAMES)


def test_every_function_runs_a_handler_that_exists() -> None:
    for key, function in locals_of(MODULE)["lambda_functions"].items():
        module_name, _, attribute = function["handler"].rpartition(".")
        assert callable(getattr(importlib.import_module(module_name), attribute, None)), key


# ---- IAM ----------------------------------------------------------------------------------------
def test_each_function_has_its_own_role_and_its_own_access_policy() -> None:
    resources = typed(MODULE, "resource")
    functions = {k: v for k, v in resources.items() if k[0] == "aws_lambda_function"}
    assert functions
    role_users: Counter[str] = Counter()
    for (_, name), function in functions.items():
        role = reference_in(function["role"], "aws_iam_role")
        assert role is not None, f"{name}: role {function['role']}"
        assert role[1] == "arn", f"{name}: role {function['role']}"
        role_body = resources[("aws_iam_role", role[0])]
        # One role instance per function instance: the role is keyed like the function.
        if "for_each" in function:
            assert "[each.key]" in function["role"]
            assert role_body.get("for_each") == function["for_each"]
        else:
            assert "for_each" not in role_body
            assert "count" not in role_body
        role_users[role[0]] += 1
        assume = role_body["assume_role_policy"]
        document = reference_in(assume, "data.aws_iam_policy_document")
        assert document is not None
        [statement] = statements(typed(MODULE, "data")[("aws_iam_policy_document", document[0])])
        assert statement["principals"][0]["identifiers"] == ["lambda.amazonaws.com"]
    assert all(count == 1 for count in role_users.values()), role_users
    # Each function's own access policy, and no two functions share one.
    access = locals_of(MODULE)["lambda_access_policies"]
    assert set(access) == set(locals_of(MODULE)["lambda_functions"])
    assert len(set(access.values())) == len(access)
    policy = resources[("aws_iam_role_policy", "lambda_access")]
    assert policy["role"] == "${aws_iam_role.lambda[each.key].id}"
    assert policy["policy"] == "${local.lambda_access_policies[each.key]}"


def test_no_policy_grants_on_star_what_could_be_scoped() -> None:
    documents = typed(MODULE, "data")
    # A key policy's "*" means the key itself: the documents aws_kms_key uses are key policies.
    key_policies = {
        ref[0]
        for (rtype, _), body in typed(MODULE, "resource").items()
        if rtype == "aws_kms_key"
        and (ref := reference_in(body["policy"], "data.aws_iam_policy_document")) is not None
    }
    assert key_policies == {"kms"}
    checked = 0
    for (dtype, name), document in documents.items():
        if dtype != "aws_iam_policy_document" or name in key_policies:
            continue
        for statement in statements(document):
            checked += 1
            where = f"{name}/{statement.get('sid', '?')}"
            allow = statement.get("effect", "Allow") == "Allow"
            resources_ = statement.get("resources", [])
            if isinstance(resources_, str):  # a list-valued expression
                resources_ = [resources_]
            assert "not_resources" not in statement, where
            assert "not_actions" not in statement, where
            if allow and "*" in resources_:
                assert resources_ == ["*"], where
                assert set(statement["actions"]) <= STAR_ONLY_ACTIONS, where
            if allow:
                assert not any("*" in action for action in statement["actions"]), where
            for arn in resources_:
                # Every ARN is built from the deployment (partition, region, account, names).
                assert arn == "*" or "${" in arn, f"{where}: literal ARN {arn}"
                assert not arn.startswith("arn:aws"), f"{where}: partition written out: {arn}"
    assert checked > 20
    # Inline policies all come from the documents checked above.
    for (rtype, name), body in typed(MODULE, "resource").items():
        if rtype in {"aws_iam_role_policy", "aws_iam_policy"}:
            assert re.fullmatch(
                r"\$\{(data\.aws_iam_policy_document\.[\w]+(\[[^\]]+\])?\.json"
                r"|local\.lambda_access_policies\[each\.key\])\}",
                body["policy"],
            ), f"{rtype}.{name}: policy not from a policy document"
        if rtype == "aws_iam_role_policy_attachment":
            arn = body["policy_arn"]
            assert re.fullmatch(r"\$\{local\.\w+\}", arn), name
            assert locals_of(MODULE)[arn[len("${local.") : -1]] in ALLOWED_MANAGED_POLICIES


# ---- AWS Batch ----------------------------------------------------------------------------------
def test_the_batch_job_runs_the_entrypoint_with_the_state_machines_parameters() -> None:
    command = locals_of(MODULE)["batch_job_command"]
    assert command == list(JOB_COMMAND)
    definition = resource("aws_batch_job_definition", "process_chunk")
    properties = definition["container_properties"]
    assert "command = local.batch_job_command" in properties
    assert "jobRoleArn = aws_iam_role.batch_job.arn" in properties
    assert "executionRoleArn = aws_iam_role.batch_execution.arn" in properties
    assert definition["platform_capabilities"] == ["FARGATE"]
    # The Ref:: parameters are exactly the ones SubmitBatchJob passes.
    states = build_definition(terraform_resources())["States"]
    processor = states["ProcessChunksInParallel"]["ItemProcessor"]["States"]
    passed = {k.removesuffix(".$") for k in processor["SubmitBatchJob"]["Parameters"]["Parameters"]}
    assert {part.removeprefix("Ref::") for part in command if part.startswith("Ref::")} == passed
    # The command's program is the project's console script.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert command[0] in scripts["scripts"]


def test_the_batch_job_retries_only_transient_exits_and_has_a_timeout() -> None:
    definition = resource("aws_batch_job_definition", "process_chunk")
    [strategy] = definition["retry_strategy"]
    assert strategy["attempts"] == "${var.batch_job_attempts}"
    rules = strategy["evaluate_on_exit"]
    assert len(rules) <= 5, "AWS Batch takes at most 5 evaluate_on_exit entries"
    assert rules[0] == {"on_exit_code": str(TRANSIENT_EXIT_CODE), "action": "RETRY"}
    # Without a final catch-all EXIT, AWS Batch retries whatever matches no entry.
    assert rules[-1] == {"on_reason": "*", "action": "EXIT"}
    exit_rules = [r for r in rules if "on_exit_code" in r]
    assert exit_rules == [rules[0]], "only the transient exit code may be retried"
    assert all(r["action"] == "RETRY" for r in rules[:-1])
    assert all(r["action"] == "EXIT" for r in rules[-1:])
    [timeout] = definition["timeout"]
    assert timeout["attempt_duration_seconds"] == "${var.batch_job_timeout}"


def test_a_deploy_leaves_the_job_revision_of_running_executions_active() -> None:
    # The state machine names the revision (its ARN), which a running execution keeps across an
    # apply; the provider deregisters the old revision on a new one unless told not to.
    definition = resource("aws_batch_job_definition", "process_chunk")
    assert definition.get("deregister_on_new_revision") is False
    arn = locals_of(MODULE)["definition_vars"]["batch_job_definition_arn"]
    assert arn == "${aws_batch_job_definition.process_chunk.arn}"


def test_batch_runs_on_fargate_with_spot_optional() -> None:
    environment = resource("aws_batch_compute_environment", "fargate")
    [compute] = environment["compute_resources"]
    assert compute["type"] == '${var.batch_use_spot ? "FARGATE_SPOT" : "FARGATE"}'
    assert compute["max_vcpus"] == "${var.batch_max_vcpus}"
    queue = resource("aws_batch_job_queue", "this")
    [order] = queue["compute_environment_order"]
    assert order["compute_environment"] == "${aws_batch_compute_environment.fargate.arn}"


# ---- queues, alarms, dashboard ------------------------------------------------------------------
def test_the_status_queue_has_a_dead_letter_queue_that_raises_an_alarm() -> None:
    queues = {
        name: body for (t, name), body in typed(MODULE, "resource").items() if t == "aws_sqs_queue"
    }
    [status] = [name for name, body in queues.items() if body["name"] == "batch-proc"]
    redrive = queues[status]["redrive_policy"]
    target = re.search(r"deadLetterTargetArn = aws_sqs_queue\.(\w+)\.arn", redrive)
    assert target is not None, redrive
    assert target.group(1) in queues
    assert target.group(1) != status
    assert re.search(r"maxReceiveCount = \d+", redrive)
    alarmed = {
        alarm["dimensions"].get("QueueName")
        for (t, _), alarm in typed(MODULE, "resource").items()
        if t == "aws_cloudwatch_metric_alarm"
    }
    assert f"${{aws_sqs_queue.{target.group(1)}.name}}" in alarmed


def alarm_names(alarm: dict[str, Any]) -> list[str]:
    """The alarm's names, for_each expanded, with name_prefix at its default."""
    name = alarm["alarm_name"].replace("${var.name_prefix}", str(var_default("name_prefix")))
    if "for_each" not in alarm:
        return [name]
    source = re.fullmatch(r"\$\{local\.(\w+)\}", alarm["for_each"])
    assert source is not None, f"for_each {alarm['for_each']}: names cannot be checked"
    keys = locals_of(MODULE)[source.group(1)]
    assert isinstance(keys, dict), f"local.{source.group(1)} is not a literal map"
    return [name.replace("${each.key}", key) for key in keys]


def test_alarm_names_are_unique() -> None:
    alarms = [
        b for (t, _), b in typed(MODULE, "resource").items() if t == "aws_cloudwatch_metric_alarm"
    ]
    names = [name for alarm in alarms for name in alarm_names(alarm)]
    assert len(names) >= 20  # 3 executions, 2 x 7 functions, 2 dead-letter queues, 1 chunks
    assert all("${" not in name for name in names), names
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    assert duplicates == []


def test_alarms_watch_metrics_that_exist_with_dimensions_that_exist() -> None:
    resources = typed(MODULE, "resource")
    namespace = locals_of(MODULE)["metrics_namespace"]
    emitted = emitted_metrics()
    for (rtype, name), alarm in resources.items():
        if rtype != "aws_cloudwatch_metric_alarm":
            continue
        metrics = {alarm["metric_name"]}
        if alarm["metric_name"] == "${each.value.metric}":
            source = alarm["for_each"].removeprefix("${local.").removesuffix("}")
            metrics = {item["metric"] for item in locals_of(MODULE)[source].values()}
        if alarm["namespace"] == "${local.metrics_namespace}":
            assert namespace == DEFAULT_NAMESPACE
            assert set(alarm["dimensions"]) == {"Stage"}, name
            for metric in metrics:
                assert (alarm["dimensions"]["Stage"], metric) in emitted, f"{name}: {metric}"
            continue
        assert metrics <= AWS_METRICS[alarm["namespace"]], name
        dimension, dtype, attribute = AWS_DIMENSIONS[alarm["namespace"]]
        assert set(alarm["dimensions"]) == {dimension}, name
        target = reference_in(alarm["dimensions"][dimension], dtype)
        assert target is not None, f"{name}: {alarm['dimensions']}"
        assert target[1] == attribute, f"{name}: {alarm['dimensions']}"
        target_body = resources[(dtype, target[0])]
        if "[each.key]" in alarm["dimensions"][dimension]:
            # One alarm per instance of the target: keyed by the same map.
            assert alarm["for_each"] == target_body["for_each"], name
        if "count" in target_body:
            assert alarm.get("count") == target_body["count"], name


def test_the_dashboard_charts_metrics_the_code_emits() -> None:
    dashboard = resource("aws_cloudwatch_dashboard", "this")
    assert dashboard["dashboard_body"] == "${jsonencode({widgets = local.dashboard_widgets})}"
    emitted = emitted_metrics()
    charted = 0
    for widget in locals_of(MODULE)["dashboard_widgets"]:
        rows = widget["properties"]["metrics"]
        if isinstance(rows, str):  # a for expression over the functions or metrics
            for namespace, metric in re.findall(r'\["(AWS/\w+)", "(\w+)"', rows):
                assert metric in AWS_METRICS[namespace]
            continue
        for row in rows:
            if row[0] == "${local.metrics_namespace}":
                assert row[2] == "Stage"
                assert (row[3], row[1]) in emitted, row
                charted += 1
            else:
                assert row[1] in AWS_METRICS[row[0]], row
    assert charted >= 5


def test_the_code_emits_metrics_in_the_namespace_with_the_stage_dimension() -> None:
    """What the alarms above assume of the code: EMF under ScmBatch, one dimension, Stage."""
    stream = io.StringIO()
    Telemetry("AggregateResults", DEFAULT_NAMESPACE, stream).metrics([Metric("ChunksFailed", 1)])
    document = json.loads(stream.getvalue())
    [declared] = document["_aws"]["CloudWatchMetrics"]
    assert declared["Namespace"] == "ScmBatch"
    assert declared["Dimensions"] == [["Stage"]]
    assert document["Stage"] == "AggregateResults"
    emitted = emitted_metrics()
    assert ("AggregateResults", "ChunksFailed") in emitted
    assert ("ProcessWithLambda", "RecordsProcessed") in emitted
    assert (batch_job.STAGE, "RecordsProcessed") in emitted


# ---- checkov ------------------------------------------------------------------------------------
def checkov() -> Path:
    given = os.environ.get("SCM_BATCH_CHECKOV")
    path = Path(given) if given else ROOT / ".venv-tools" / "bin" / "checkov"
    if path.is_file():
        return path
    if os.environ.get("SCM_BATCH_REQUIRE_TOOLS") == "1":
        pytest.fail(f"checkov is required (SCM_BATCH_REQUIRE_TOOLS=1) and not at {path}")
    pytest.skip(f"checkov is not installed at {path} (make tools)")


def test_checkov_reports_no_failed_check() -> None:
    program = checkov()
    # --skip-download: offline; the checks are in the package, only guideline links are not.
    ran = subprocess.run(
        [
            str(program),
            *("-d", str(MODULE), "--framework", "terraform", "--quiet", "--compact"),
            *("-o", "json", "--skip-download"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    assert ran.returncode in {0, 1}, ran.stderr
    report = json.loads(ran.stdout)
    [report] = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']}): "
        f"{c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, summary
    assert summary["resource_count"] > 50, summary
    assert ran.returncode == 0


def test_every_check_the_module_skips_says_why() -> None:
    skips = [
        (path.name, match.group(1), (match.group(2) or "").strip())
        for path in tf_files(MODULE) + tf_files(EXAMPLE)
        for match in _CHECKOV_SKIP.finditer(path.read_text(encoding="utf-8"))
    ]
    for file, check, reason in skips:
        assert len(reason) >= 40, f"{file}: {check} is skipped without a reason"


# ---- README -------------------------------------------------------------------------------------
def readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Deploying to AWS\n")
    end = re.compile(r"^#{1,3} ", re.MULTILINE).search(text, start + 1)
    return text[start : end.start() if end else len(text)]


def readme_table(heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` in the deployment section."""
    section = readme_section()
    lines = section[section.index(heading) :].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def unquoted(cell: str) -> str:
    assert re.fullmatch(r"`[^`]*`", cell), cell
    return cell[1:-1]


def test_the_readme_names_only_the_modules_variables_and_outputs() -> None:
    section = readme_section()
    variables = named(MODULE, "variable")
    outputs = named(MODULE, "output")
    # and the values of record_destination (kafka, sqs_core, none)
    [validation] = variables["record_destination"]["validation"]
    destinations = re.findall(r'"(\w+)"', validation["condition"])
    known = set(variables) | set(outputs) | set(named(EXAMPLE, "output")) | set(destinations)
    snake_case = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", section))
    assert snake_case - known == set(), "the README names what the module does not have"
    mentioned = set(re.findall(r"`([a-z][a-z0-9_]*)`", section))
    assert set(outputs) - mentioned == set(), "outputs the README does not list"
    assert set(variables) - mentioned == set(), "variables the README does not list"


def hcl_literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def test_the_readme_gives_the_modules_defaults_and_required_inputs() -> None:
    variables = named(MODULE, "variable")
    required = [unquoted(row[0]) for row in readme_table("Required inputs")]
    assert sorted(required) == sorted(n for n, b in variables.items() if "default" not in b)
    rows = readme_table("keep their names and defaults") + readme_table("The others:")
    assert sorted(unquoted(row[0]) for row in rows + [[f"`{n}`"] for n in required]) == sorted(
        variables
    )
    for row in rows:
        name, default = unquoted(row[0]), unquoted(row[1])
        assert default == hcl_literal(variables[name]["default"]), name
    outputs = [unquoted(row[0]) for row in readme_table("Outputs of the module")]
    assert sorted(outputs) == sorted(named(MODULE, "output"))


# ---- the Docker image ---------------------------------------------------------------------------
def test_the_image_runs_the_job_command_as_an_unprivileged_user() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    instructions = [line.split(maxsplit=1)[0].upper() for line in lines]
    # Batch replaces CMD with the job definition's command; an ENTRYPOINT would prefix it.
    assert "ENTRYPOINT" not in instructions
    assert lines[[i for i, x in enumerate(instructions) if x == "FROM"][-1]].startswith(
        "FROM python:3.12-slim"
    )
    [user] = [line.split(maxsplit=1)[1] for line in lines if line.upper().startswith("USER ")]
    assert user.split(":")[0] not in {"0", "root"}
    assert any("[msk]" in line for line in lines), "the image lacks the MSK IAM signer"
    [cmd] = [line for line in lines if line.upper().startswith("CMD ")]
    assert json.loads(cmd.split(maxsplit=1)[1])[0] == JOB_COMMAND[0]


# ---- the Lambda package -------------------------------------------------------------------------
def lambda_zip_builder() -> Callable[[Path, Path], int]:
    spec = importlib.util.spec_from_file_location("lambda_zip", LAMBDA_ZIP_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build: Callable[[Path, Path], int] = module.build
    return build


def write_tree(root: Path, files: dict[str, bytes], mtime: int) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if relative.endswith(".so"):
            path.chmod(0o755)
        os.utime(path, (mtime, mtime))


def test_the_lambda_package_is_reproducible(tmp_path: Path) -> None:
    build = lambda_zip_builder()
    files = {
        "scm_batch/__init__.py": b"__all__ = []\n",
        "scm_batch/aws/handlers.py": b"def read_s3(event, context): ...\n",
        "pkg/_native.so": b"\x7fELF\x00binary",
        "pkg-1.0.dist-info/METADATA": b"Name: pkg\n",
        # Left out: they depend on the build machine, not on the sources.
        "pkg-1.0.dist-info/RECORD": b"machine specific\n",
        "scm_batch/__pycache__/x.cpython-312.pyc": b"\x00\x01",
        "bin/scm-batch": b"#!/build/host/python\n",
    }
    first, second = tmp_path / "first", tmp_path / "second"
    # The same tree, written in the opposite order at another time.
    write_tree(first, files, mtime=1_600_000_000)
    write_tree(second, dict(reversed(list(files.items()))), mtime=1_700_000_000)
    assert build(first, tmp_path / "a.zip") == 4
    assert build(second, tmp_path / "b.zip") == 4
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in infos}
        assert modes["pkg/_native.so"] == 0o755
        assert modes["scm_batch/__init__.py"] == 0o644
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_a_changed_source_changes_the_package(tmp_path: Path) -> None:
    """The comparison above can fail: one changed byte gives another zip."""
    build = lambda_zip_builder()
    write_tree(tmp_path / "a", {"m.py": b"x = 1\n"}, mtime=1_600_000_000)
    write_tree(tmp_path / "b", {"m.py": b"x = 2\n"}, mtime=1_600_000_000)
    build(tmp_path / "a", tmp_path / "a.zip")
    build(tmp_path / "b", tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() != (tmp_path / "b.zip").read_bytes()
