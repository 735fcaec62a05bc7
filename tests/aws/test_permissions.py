"""Every S3 and SQS call the functions, the Batch job and the state machine make is one their IAM
policies in ``deploy/terraform`` allow.

moto does not enforce IAM, so a role that lacks a permission its code needs passes every other
test here and fails on AWS. These tests run the state machine in the sandbox, which records each
AWS API call with its principal (the function whose handler was running, the Batch job, or the
interpreter itself: :class:`tests.aws.sandbox.ApiCall`), and hold every call to the policies
Terraform attaches to that principal's role: the role is followed from the function's (job
definition's, state machine's) ``role`` to the role's inline policies to their policy documents,
whose ``local.*`` ARNs are resolved for the sandbox's bucket and queues.

A call is allowed when an Allow statement without conditions names its IAM action and a resource
pattern matching its ARN, and no Deny statement does. Managed policies attached to the roles
(X-Ray, ENI management) grant no S3 or SQS action and are not read: leaving a grant out can only
make these tests stricter. The state machine's own calls are checked for S3 and SQS only (its
Lambda, Batch and Step Functions calls are the orchestration's, not data access).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from scm_batch.records.generate import generate_lines
from tests.aws.sandbox import BATCH_JOB, BUCKET, REGION, STATE_MACHINE, ApiCall, Sandbox
from tests.aws.test_state_machine import INPUT, deploy, execution_input
from tests.deploy.test_terraform_static import MODULE, interpolations, locals_of, typed

ACCOUNT = "123456789012"  # moto's
READ_S3 = "scm-batch-processor-read-s3"
VALIDATE_DATA = "scm-batch-processor-validate-data"
CALCULATE_CHUNKS = "scm-batch-processor-calculate-chunks"
UPDATE_RECORDS = "scm-batch-processor-update-records"
AGGREGATE_RESULTS = "scm-batch-processor-aggregate-results"
SEND_TO_KAFKA = "scm-batch-processor-send-to-kafka"
SEND_TO_SQS_CORE = "scm-batch-processor-send-to-sqs-core"

# The IAM action each API operation needs (the Service Authorization Reference's mapping).
IAM_ACTIONS = {
    ("s3", "GetObject"): "s3:GetObject",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "PutObject"): "s3:PutObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "AbortMultipartUpload"): "s3:AbortMultipartUpload",
    ("s3", "DeleteObject"): "s3:DeleteObject",
    ("s3", "DeleteObjects"): "s3:DeleteObject",  # checked for each key it deletes
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListMultipartUploads"): "s3:ListBucketMultipartUploads",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("sqs", "SendMessage"): "sqs:SendMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "GetQueueAttributes"): "sqs:GetQueueAttributes",
    ("sqs", "GetQueueUrl"): "sqs:GetQueueUrl",
    # validate-data asks whether the execution holding a batch's lease still runs.
    ("stepfunctions", "DescribeExecution"): "states:DescribeExecution",
}
# Operations on the bucket itself rather than on an object.
BUCKET_OPERATIONS = {"ListObjectsV2", "ListMultipartUploads", "HeadBucket"}
# Services whose calls by the state machine are its orchestration (not held to a policy here).
ORCHESTRATION = {"lambda", "batch", "stepfunctions", "events"}
ALL_FUNCTIONS = {
    READ_S3,
    VALIDATE_DATA,
    CALCULATE_CHUNKS,
    UPDATE_RECORDS,
    AGGREGATE_RESULTS,
    SEND_TO_KAFKA,
    SEND_TO_SQS_CORE,
}


class Unresolved(AssertionError):
    """Something in the module this reading of it does not know: it fails the test."""


# ---- the deployment the sandbox stands for ------------------------------------------------------
@dataclass(frozen=True)
class Deployed:
    """The values the module's inputs and data sources take for the sandbox."""

    queue_arns: dict[str, str]  # queue URL -> ARN, every queue in the sandbox
    status_queue_arn: str
    sqs_core_queue_arn: str | None  # var.sqs_core_queue_url's queue, when one is configured

    @classmethod
    def of(cls, aws: Sandbox, sqs_core_url: str | None = None) -> Deployed:
        sqs = aws.clients["sqs"]
        arns = {
            url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            for url in sqs.list_queues().get("QueueUrls", [])
        }
        return cls(arns, arns[aws.status_queue_url], arns[sqs_core_url] if sqs_core_url else None)

    def known(self) -> dict[str, Any]:
        """Expressions whose values come from outside the module (or from the sandbox)."""
        return {
            "local.partition": "aws",
            "local.region": REGION,
            "local.account_id": ACCOUNT,
            "var.name_prefix": "scm-batch",  # the sandbox's machine is named as the default
            "var.s3_bucket_name": BUCKET,
            "local.sqs_core_enabled": self.sqs_core_queue_arn is not None,
            "local.sqs_core_queue_arn": self.sqs_core_queue_arn or "",
            "local.msk_enabled": False,
            "local.lambda_in_vpc": False,
            "aws_sqs_queue.status.arn": self.status_queue_arn,
        }


# ---- the policies, read from deploy/terraform ---------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """One statement of a policy document, its resources resolved."""

    where: str  # document/sid
    allow: bool
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditional: bool

    def covers(self, action: str, arn: str) -> bool:
        return any(_iam_match(a, action, re.IGNORECASE) for a in self.actions) and any(
            _iam_match(r, arn) for r in self.resources
        )


def _iam_match(pattern: str, value: str, flags: int = 0) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` any one (action names: any case)."""
    regex = ".*".join(".".join(map(re.escape, part.split("?"))) for part in pattern.split("*"))
    return re.fullmatch(regex, value, flags) is not None


class Module:
    """The roles and policies of ``deploy/terraform``, for one deployment."""

    def __init__(self, deployed: Deployed, without: frozenset[str] = frozenset()) -> None:
        self._known = deployed.known()
        self._locals = locals_of(MODULE)
        self._resources = typed(MODULE, "resource")
        self._documents = {
            name: body
            for (kind, name), body in typed(MODULE, "data").items()
            if kind == "aws_iam_policy_document"
        }
        self._without = without  # statement ids left out (to show that the check can fail)

    # -- expressions ---------------------------------------------------------------------------
    def render(self, text: Any) -> Any:
        """A string with ``${...}`` interpolations: one that is a whole expression gives the
        expression's value (a list or map too), others a string."""
        if not isinstance(text, str):
            raise Unresolved(f"not a string: {text!r}")
        found = list(interpolations(text))
        if len(found) == 1 and text == "${" + found[0] + "}":
            return self.value(found[0])
        for expression in found:
            text = text.replace("${" + expression + "}", str(self.value(expression)), 1)
        return text

    def value(self, expression: str) -> Any:
        expression = expression.strip()
        if expression in self._known:
            return self._known[expression]
        if m := re.fullmatch(r"values\((.+)\)", expression):
            return list(self.value(m[1]).values())
        if m := re.fullmatch(r"(local\.[\w-]+) \? \[1\] : \[\]", expression):
            return [1] if self.value(m[1]) else []
        if m := re.fullmatch(r'local\.([\w-]+)\["([^"]+)"\]', expression):
            return self.value(f"local.{m[1]}")[m[2]]
        if m := re.fullmatch(r"local\.([\w-]+)", expression):
            if m[1] not in self._locals:
                raise Unresolved(f"local.{m[1]} is not declared")
            return self.render(self._locals[m[1]])
        if m := re.fullmatch(r'\{for (\w+) in \[([^\]]*)\] : \1 => "([^"]*)"\}', expression):
            name, items, template = m[1], json.loads(f"[{m[2]}]"), m[3]
            return {item: self.render(template.replace(f"${{{name}}}", item)) for item in items}
        raise Unresolved(f"cannot evaluate ${{{expression}}}")

    # -- who has which role --------------------------------------------------------------------
    def role_of(self, principal: str) -> tuple[str, str | None]:
        """(the aws_iam_role's name, the for_each key of its instance or None)."""
        if principal == BATCH_JOB:
            [definition] = self._of_type("aws_batch_job_definition").values()
            m = re.search(
                r"jobRoleArn = aws_iam_role\.(\w+)\.arn\b", definition["container_properties"]
            )
            if m is None:
                raise Unresolved("the job definition has no jobRoleArn")
            return m[1], None
        if principal == STATE_MACHINE:
            [machine] = self._of_type("aws_sfn_state_machine").values()
            return self._role_reference(machine["role_arn"], None)
        functions = self._locals["lambda_functions"]
        keys = [k for k, f in functions.items() if f["function_name"] == principal]
        if not keys:
            raise Unresolved(f"{principal}: no such function in local.lambda_functions")
        [key] = keys
        [function] = [
            f
            for f in self._of_type("aws_lambda_function").values()
            if f.get("for_each") == "${local.lambda_functions}"
        ]
        return self._role_reference(function["role"], key)

    def _role_reference(self, expression: str, key: str | None) -> tuple[str, str | None]:
        m = re.fullmatch(r"\$\{aws_iam_role\.(\w+)(\[each\.key\])?\.arn\}", expression)
        if m is None:
            raise Unresolved(f"role {expression}")
        return m[1], key if m[2] else None

    def documents_of(self, role: str, key: str | None) -> dict[str, dict[str, Any]]:
        """The policy documents of the role's inline policies, by name."""
        role_body = self._resources[("aws_iam_role", role)]
        found: dict[str, dict[str, Any]] = {}
        for name, policy in self._of_type("aws_iam_role_policy").items():
            index = r"\[each\.key\]" if key is not None else ""
            if not re.fullmatch(rf"\$\{{aws_iam_role\.{role}{index}\.(id|name)\}}", policy["role"]):
                continue
            if key is not None and policy.get("for_each") != role_body.get("for_each"):
                raise Unresolved(f"aws_iam_role_policy.{name}: not one per instance of the role")
            document = self._document_name(policy["policy"], key)
            found[document] = self._documents[document]
        return found

    def _document_name(self, expression: str, key: str | None) -> str:
        if m := re.fullmatch(
            r"\$\{data\.aws_iam_policy_document\.(\w+)(\[each\.key\])?\.json\}", expression
        ):
            return m[1]
        if (m := re.fullmatch(r"\$\{local\.(\w+)\[each\.key\]\}", expression)) and key:
            return self._document_name(self._locals[m[1]][key], key)
        raise Unresolved(f"policy {expression}")

    def grants_of(self, principal: str) -> list[Grant]:
        role, key = self.role_of(principal)
        documents = self.documents_of(role, key)
        if not documents:
            raise Unresolved(f"{principal}: role {role} has no policy")
        return [
            grant
            for name, document in documents.items()
            for grant in self._grants(f"{name}[{key}]" if key else name, document)
        ]

    def _grants(self, name: str, document: dict[str, Any]) -> Iterator[Grant]:
        blocks = list(document.get("statement", []))
        for dynamic in document.get("dynamic", []):
            for kind, block in dynamic.items():
                if kind != "statement":
                    raise Unresolved(f"{name}: dynamic {kind}")
                if self.render(block["for_each"]):
                    blocks.extend(block["content"])
        for statement in blocks:
            sid = statement.get("sid", "?")
            if sid in self._without:
                continue
            unknown = set(statement) - {"sid", "effect", "actions", "resources", "condition"}
            if unknown:
                raise Unresolved(f"{name}/{sid}: {sorted(unknown)}")
            actions = tuple(statement["actions"])
            if not any(a.lower().startswith(("s3:", "sqs:", "states:")) for a in actions):
                continue  # logs, keys, Kafka, orchestration: their resources are not needed
            resources: list[str] = []
            given = statement["resources"]
            for item in [given] if isinstance(given, str) else given:
                resolved = self.render(item)
                resources.extend(resolved if isinstance(resolved, list) else [resolved])
            yield Grant(
                f"{name}/{sid}",
                statement.get("effect", "Allow") == "Allow",
                actions,
                tuple(resources),
                "condition" in statement,
            )

    def _of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self._resources.items() if t == kind}


# ---- the calls, held to the policies ------------------------------------------------------------
def requests(call: ApiCall, deployed: Deployed) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) pairs the call needs allowed."""
    action = IAM_ACTIONS.get((call.service, call.operation))
    if action is None:
        raise Unresolved(
            f"{call.principal} calls {call.service} {call.operation}: no IAM action is known "
            "for it here (add it to IAM_ACTIONS)"
        )
    target = call.target
    if call.service == "stepfunctions":
        return [(action, target["executionArn"])]
    if call.service == "s3":
        bucket = f"arn:aws:s3:::{target['Bucket']}"
        if call.operation in BUCKET_OPERATIONS:
            return [(action, bucket)]
        if call.operation == "DeleteObjects":
            return [(action, f"{bucket}/{o['Key']}") for o in target["Delete"]["Objects"]]
        needed = [(action, f"{bucket}/{target['Key']}")]
        if call.error in {"404", "NoSuchKey"}:
            # S3 tells a missing key (404) from a forbidden one only to who may list the bucket:
            # 403 otherwise, which the code would take for a failure, not for "missing".
            needed.append(("s3:ListBucket", bucket))
        return needed
    if "QueueUrl" in target:
        if target["QueueUrl"] not in deployed.queue_arns:
            raise Unresolved(f"{call.principal}: no queue {target['QueueUrl']} in the sandbox")
        return [(action, deployed.queue_arns[target["QueueUrl"]])]
    [arn] = [a for a in deployed.queue_arns.values() if a.endswith(f":{target['QueueName']}")]
    return [(action, arn)]


def refusals(
    calls: list[ApiCall], deployed: Deployed, without: frozenset[str] = frozenset()
) -> list[str]:
    """What IAM would refuse of the calls, one line per (principal, action, resource)."""
    module = Module(deployed, without)
    grants: dict[str, list[Grant]] = {}
    refused: dict[str, None] = {}
    for call in calls:
        if call.principal == STATE_MACHINE and call.service in ORCHESTRATION:
            continue
        if call.principal not in grants:
            grants[call.principal] = module.grants_of(call.principal)
        for action, arn in requests(call, deployed):
            matching = [g for g in grants[call.principal] if g.covers(action, arn)]
            denied = [g.where for g in matching if not g.allow]
            if denied or not any(g.allow and not g.conditional for g in matching):
                why = f"denied by {denied}" if denied else "no Allow statement grants it"
                line = f"{call.principal}: {call.operation} needs {action} on {arn}: {why}"
                refused[line] = None
    return list(refused)


def principals(aws: Sandbox) -> set[str]:
    return {call.principal for call in aws.record.api_calls}


def assert_allowed(aws: Sandbox, deployed: Deployed) -> None:
    refused = refusals(aws.record.api_calls, deployed)
    assert refused == [], "IAM would refuse:\n" + "\n".join(refused)


# ---- scenarios ----------------------------------------------------------------------------------
def test_a_run_on_lambda_makes_only_calls_its_roles_allow(aws: Sandbox) -> None:
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(), "all-lambda")
    assert (run.status, run.error) == ("SUCCEEDED", None)

    # The hook sees the clients the project's code makes for itself, and the interpreter's.
    assert principals(aws) == (ALL_FUNCTIONS - {SEND_TO_SQS_CORE}) | {STATE_MACHINE}
    assert_allowed(aws, Deployed.of(aws))


def test_chunks_run_as_batch_jobs_make_only_calls_the_job_role_allows(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    deployment_env.setenv("SCM_BATCH_BATCH_PROCESSING_THRESHOLD", "600")
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(maxConcurrentChunks=4, maxChunkSize=700), "mixed")
    assert (run.status, run.error) == ("SUCCEEDED", None)

    assert len(aws.record.batch_runs) == 4
    writes = {c.operation for c in aws.record.api_calls if c.principal == BATCH_JOB}
    assert {"GetObject", "PutObject"} <= writes
    assert_allowed(aws, Deployed.of(aws))


def test_a_resumed_batch_withdraws_its_outcome_with_calls_its_roles_allow(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000003=terminal")
    deployment_env.setenv("SCM_BATCH_TOLERATED_FAILURE_COUNT", "0")
    machine = deploy(aws)
    first = aws.execute(machine, execution_input(), "first")
    assert (first.status, first.error) == ("FAILED", "ChunksFailed")
    deployment_env.delenv("SCM_BATCH_FAULTS")
    again = aws.execute(machine, execution_input(), "again")
    assert (again.status, again.error) == ("SUCCEEDED", None)

    # Ledger.reopen ran: calculate-chunks withdrew the aggregate and the validation report.
    withdrawn = {
        c.target["Key"]
        for c in aws.record.api_calls
        if (c.principal, c.operation) == (CALCULATE_CHUNKS, "DeleteObject")
    }
    assert {
        "final-results/awsbatch/aggregated-results.json",
        "validation/awsbatch/validation-results.json",
    } <= withdrawn
    deployed = Deployed.of(aws)
    assert_allowed(aws, deployed)
    # The check can fail: without the statement that allows the withdrawal, it says so.
    assert refusals(aws.record.api_calls, deployed, without=frozenset({"WithdrawOutcome"})) == [
        f"{CALCULATE_CHUNKS}: DeleteObject needs s3:DeleteObject on arn:aws:s3:::{BUCKET}/{key}: "
        "no Allow statement grants it"
        for key in [
            "final-results/awsbatch/aggregated-results.json",
            "validation/awsbatch/validation-results.json",
        ]
    ]


def test_a_critically_invalid_batch_fails_with_calls_its_roles_allow(aws: Sandbox) -> None:
    lines, _ = generate_lines(0, 1_000, seed=3, invalid_rate=0.2, malformed_rate=0.0)
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="input/bad.jsonl", Body=("\n".join(lines) + "\n").encode()
    )
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(file="input/bad.jsonl"), "critical")
    assert (run.status, run.error) == ("FAILED", "ValidationFailedCritical")
    again = aws.execute(machine, execution_input(file="input/bad.jsonl"), "critical-again")
    assert (again.status, again.error) == ("FAILED", "ValidationFailedCritical")

    assert_allowed(aws, Deployed.of(aws))


def test_records_and_completion_sent_to_sqs_core_are_calls_the_roles_allow(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    core = aws.clients["sqs"].create_queue(QueueName="sqs-core")["QueueUrl"]
    deployment_env.setenv("SQS_CORE_QUEUE", core)
    lines, _ = generate_lines(0, 200, seed=5, invalid_rate=0.0, malformed_rate=0.0)
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="input/core.jsonl", Body=("\n".join(lines) + "\n").encode()
    )
    machine = deploy(aws)
    payload = execution_input(
        file="input/core.jsonl", deployment="CORE", destination="sqs_core", maxConcurrentChunks=2
    )
    run = aws.execute(machine, payload, "core")
    assert (run.status, run.error) == ("SUCCEEDED", None)

    # The records go out from the SQS sink's worker threads: still update-records' calls.
    sent = {(c.principal, c.operation) for c in aws.record.api_calls if c.service == "sqs"}
    assert {
        (VALIDATE_DATA, "GetQueueAttributes"),
        (UPDATE_RECORDS, "SendMessageBatch"),
        (SEND_TO_SQS_CORE, "SendMessage"),
    } <= sent
    assert_allowed(aws, Deployed.of(aws, sqs_core_url=core))


def test_the_module_reading_knows_every_function_and_no_other() -> None:
    module = Module(Deployed({}, f"arn:aws:sqs:{REGION}:123456789012:batch-proc", None))
    for function in ALL_FUNCTIONS:
        assert any(g.allow for g in module.grants_of(function)), function
    with pytest.raises(Unresolved, match="no such function"):
        module.grants_of("scm-batch-processor-unknown")


@pytest.mark.parametrize("plan_max_bytes", ["1000", "1000000000"], ids=["on-batch", "on-lambda"])
def test_compressed_input_staged_anywhere_makes_only_calls_the_roles_allow(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch, plan_max_bytes: str
) -> None:
    deployment_env.setenv("SCM_BATCH_LAMBDA_PLAN_MAX_BYTES", plan_max_bytes)
    machine = deploy(aws)
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="input/records.jsonl.gz", Body=gzip.compress(INPUT)
    )
    run = aws.execute(machine, execution_input(file="input/records.jsonl.gz"), "staged")
    assert (run.status, run.error) == ("SUCCEEDED", None)

    staged_writes = {
        c.principal
        for c in aws.record.api_calls
        if c.operation in ("PutObject", "CreateMultipartUpload")
        and str(c.target.get("Key", "")).startswith("staged/")
    }
    assert staged_writes == ({BATCH_JOB} if plan_max_bytes == "1000" else {CALCULATE_CHUNKS})
    assert_allowed(aws, Deployed.of(aws))
