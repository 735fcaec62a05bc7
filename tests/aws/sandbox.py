"""The state machine run offline: moto's Step Functions interpreter, with its Lambda tasks calling
the project's handlers and its Batch jobs running ``scm-batch aws process-chunk`` in-process.

moto (pinned exactly, 5.2.5: these hooks touch its internals) interprets the Amazon States
Language; S3, SQS, Lambda and Batch are moto's in-memory services. The hooks:

* Lambda ``invoke`` calls the handler registered for the function's name; an exception becomes the
  Lambda runtime's ``Unhandled`` error envelope, so Retry/Catch match the exception's class name
  as they do on AWS.
* A Batch job runs the command of its job definition (or the submission's ``ContainerOverrides``
  command) with ``Ref::`` parameters substituted, as the Batch agent would, through the real
  command line (the attempt in ``AWS_BATCH_JOB_ATTEMPT``),
  and applies the retry strategy ``deploy/terraform/batch.tf`` gives the job definition
  (``evaluateOnExit``) to its exit code.
* Retry waits are recorded, not slept; ``JitterStrategy: FULL`` draws the top of its range, so the
  recorded waits are exactly the backoff series' caps.
* Every AWS API call is recorded with who made it (:class:`ApiCall`): the function whose handler
  is running, the Batch job, or the state machine itself, so that tests/aws/test_permissions.py
  can hold each call to that principal's IAM policy in deploy/terraform (moto enforces none).
* Three moto 5.2.5 defects are worked around: Batch parameters are not re-cased between the States
  Language and boto (every ``submitJob`` would fail with ``KeyError: 'JobName'``), a retried
  ``.sync`` task reuses its finished task token (it would report ``States.Timeout``), and
  ``SendMessage`` reads the queue's attributes, which count every message in the queue, for each
  message it sends: delivering a few thousand records to SQS took minutes (quadratic), so a send
  to a standard queue skips that count (it reads only ``ContentBasedDeduplication``, a FIFO
  attribute).
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import json
import os
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.batch_simple.models import BatchSimpleBackend
from moto.sqs.models import Queue, SQSBackend
from moto.stepfunctions.parser.asl.component.common.retry import (
    jitter_strategy_decl,
    retrier_decl,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    resource as task_resource,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_batch as batch_task,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as callback_task,
)

from scm_batch.aws.batch_job import JOB_COMMAND
from scm_batch.aws.definition import FUNCTION_NAMES, Resources
from scm_batch.aws.handlers import FUNCTIONS
from scm_batch.cli import app
from tests.deploy.hcl import batch_retry_strategy

REGION = "us-east-1"
BUCKET = "scm-batch-work"
JOB_QUEUE = "scm-batch-chunks"
JOB_DEFINITION = "scm-batch-chunk"
STATUS_QUEUE = "batch-proc"
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}
# What deploy/terraform gives the job definition: the sandbox retries what AWS Batch would.
RETRY_STRATEGY = batch_retry_strategy()
BATCH_ATTEMPTS = int(RETRY_STRATEGY["attempts"])
# What a job that ran and exited reports (the sandbox's jobs always start).
EXITED_STATUS_REASON = "Essential container in task exited"
# Who makes an AWS call: a function's name while its handler runs, BATCH_JOB while a job's
# command runs; a call with neither, from a thread other than the test's, is the interpreter's.
BATCH_JOB = "batch-job"
STATE_MACHINE = "state-machine"
_PRINCIPAL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sandbox_principal", default=None
)
# The request parameters that name what a call acts on (not bodies: they can be megabytes).
_TARGET_PARAMETERS = ("Bucket", "Key", "Delete", "QueueUrl", "QueueName", "executionArn")


@dataclass
class BatchRun:
    """One attempt of a Batch job."""

    job_name: str
    parameters: dict[str, str]
    argv: list[str]
    attempt: int
    exit_code: int


@dataclass(frozen=True)
class ApiCall:
    """One AWS API call a client made (whether or not moto refused it), and who made it."""

    principal: str  # a function's name, BATCH_JOB or STATE_MACHINE
    service: str  # botocore's name: "s3", "sqs", "lambda", ...
    operation: str  # the API's: "PutObject", "SendMessageBatch", ...
    target: dict[str, Any]  # the _TARGET_PARAMETERS the request has
    error: str | None  # the error code of a refused call ("404", "NoSuchKey", ...)


@dataclass
class Recorder:
    lambda_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    batch_runs: list[BatchRun] = field(default_factory=list)
    retry_waits: list[float] = field(default_factory=list)
    api_calls: list[ApiCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls_of(self, function: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event for name, event in self.lambda_calls if name == function]


# ---- moto 5.2.5: Batch parameters between States Language and boto casing -------------------
def _to_boto(value: Any, shape: Shape | None) -> None:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        by_lower = {m.lower(): m for m in shape.members}
        for key in list(value):
            member = by_lower.get(key.lower())
            if member is not None:
                item = value.pop(key)
                value[member] = item
                _to_boto(item, shape.members[member])
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for item in value:
            _to_boto(item, shape.member)
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for item in value.values():  # map keys are user data (job parameters): kept
            _to_boto(item, shape.value)


def _from_boto(value: Any, shape: Shape | None) -> None:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key in list(value):
            member = shape.members.get(key)
            if member is not None:
                item = value.pop(key)
                value[key[:1].upper() + key[1:]] = item
                _from_boto(item, member)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for item in value:
            _from_boto(item, shape.member)
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for item in value.values():
            _from_boto(item, shape.value)


def _operation(task: Any, service: str | None, action: str | None) -> Any:
    model = boto3.session.Session().client("batch", region_name=REGION).meta.service_model
    name = task._get_boto_service_action(action)
    return model.operation_model("".join(p.capitalize() for p in name.split("_")))


def _normalise_parameters(
    self: Any,
    parameters: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    _to_boto(parameters, _operation(self, boto_service_name, service_action_name).input_shape)


def _normalise_response(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    _from_boto(response, _operation(self, boto_service_name, service_action_name).output_shape)


# ---- moto 5.2.5: a fresh task token for each attempt of a retried .sync task ----------------
def _fresh_token_eval_execution(self: Any, env: Any) -> Any:
    patterns = self._supported_integration_patterns
    if (
        self._is_integration_pattern()
        and task_resource.ResourceCondition.WaitForTaskToken in patterns
    ):
        task = env.states.context_object.context_object_data.get("Task")
        endpoint = env.callback_pool_manager.get(task["Token"]) if task else None
        if endpoint is not None and endpoint._notify_event.is_set():
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
    return super(callback_task.StateTaskServiceCallback, self)._eval_execution(env)


# ---- moto 5.2.5: SendMessage without counting the queue for every message ------------------
_QUEUE_ATTRIBUTES: Any = vars(Queue)["attributes"]
_SQS_SEND_MESSAGE: Any = vars(SQSBackend)["send_message"]
_sending = threading.local()


def _send_message(backend: Any, *args: Any, **kwargs: Any) -> Any:
    _sending.active = True
    try:
        return _SQS_SEND_MESSAGE(backend, *args, **kwargs)
    finally:
        _sending.active = False


def _queue_attributes(queue: Any) -> dict[str, Any]:
    if getattr(_sending, "active", False) and not queue.fifo_queue:
        # send_message reads only ContentBasedDeduplication, which a standard queue has not; the
        # full set counts the queue's messages, one pass per message sent.
        return {}
    attributes: dict[str, Any] = _QUEUE_ATTRIBUTES.fget(queue)
    return attributes


class Sandbox:
    """The AWS side of one test: services, the deployed resources, the hooks, what happened."""

    def __init__(self) -> None:
        self.record = Recorder()
        self.clients: dict[str, Any] = {}
        self.lambda_arns: dict[str, str] = {}
        self.job_queue_arn = ""
        self.job_definition_arn = ""
        self.status_queue_url = ""
        self._job_lock = threading.Lock()

    # -- hooks ---------------------------------------------------------------------------------
    def _invoke(
        self,
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        function = backend.get_function(function_name, qualifier)  # unknown ARNs still fail
        name = function.function_name
        event = json.loads(body) if body else {}
        with self.record.lock:
            self.record.lambda_calls.append((name, event))
        context = types.SimpleNamespace(function_name=name, aws_request_id=str(time.time_ns()))
        principal = _PRINCIPAL.set(name)
        try:
            payload = json.dumps(FUNCTIONS[name](event, context))
        except Exception as exc:  # the Lambda runtime's envelope for an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(  # the Python runtime's fields, in its order
                {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "requestId": context.aws_request_id,
                    "stackTrace": traceback.format_exception(exc)[-3:],
                }
            )
        finally:
            _PRINCIPAL.reset(principal)
        data = payload.encode()
        response_headers["Content-Length"] = str(len(data))
        return data

    def _run_job(self, backend: Any, include_start_attempt: bool, job: Any) -> None:
        backend.backend._jobs[job.job_id] = job
        job.job_started_at = job.job_created_at.__class__.now()
        job.log_stream_name = job._stream_name
        if include_start_attempt:
            job._start_attempt()
        definition = job.job_definition
        parameters = {**definition.parameters, **job.parameters}
        # A submission may override the command (PlanOnBatch does), as Batch allows.
        overrides = job.container_overrides or {}
        command = list(
            overrides.get("command") or (definition.container_properties or {}).get("command", [])
        )
        argv = [parameters.get(a[5:], a) if a.startswith("Ref::") else a for a in command]
        strategy = definition.retry_strategy or {}
        attempts = int(strategy.get("attempts", 1))
        code = 1
        for attempt in range(1, attempts + 1):
            code = self._run_command(argv, attempt)
            with self.record.lock:
                self.record.batch_runs.append(
                    BatchRun(job.job_name, parameters, argv, attempt, code)
                )
            if code == 0 or not _retries(strategy, code):
                break
        job.exit_code = code
        if code != 0:
            job.job_stopped_reason = f"Essential container in task exited (exit code {code})"
        job._mark_stopped(success=code == 0)

    def _run_command(self, argv: list[str], attempt: int) -> int:
        """The job's command as the Batch agent runs it: the attempt in AWS_BATCH_JOB_ATTEMPT.
        Jobs run one at a time here, since the environment is the process's."""
        if argv[:1] != ["scm-batch"]:
            return 127
        with self._job_lock:
            previous = os.environ.get("AWS_BATCH_JOB_ATTEMPT")
            os.environ["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
            principal = _PRINCIPAL.set(BATCH_JOB)
            try:
                code = app(argv[1:], standalone_mode=False)
            except SystemExit as exc:
                return int(exc.code or 0)
            finally:
                _PRINCIPAL.reset(principal)
                if previous is None:
                    del os.environ["AWS_BATCH_JOB_ATTEMPT"]
                else:
                    os.environ["AWS_BATCH_JOB_ATTEMPT"] = previous
        return int(code) if isinstance(code, int) else 0

    def _recording_time(self) -> Any:
        record = self.record

        def sleep(seconds: float) -> None:
            with record.lock:
                record.retry_waits.append(seconds)

        return types.SimpleNamespace(sleep=sleep)

    def _recording_api_calls(self) -> Any:
        """``BaseClient._make_api_call`` recording each call with its principal: every boto3
        client goes through it, the ones the project's code makes for itself included."""
        make_api_call = vars(BaseClient)["_make_api_call"]  # private: not in the type stubs
        record, test_thread = self.record, threading.get_ident()

        def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
            principal = _PRINCIPAL.get()
            if principal is None and threading.get_ident() != test_thread:
                principal = STATE_MACHINE
            if principal is None:  # the test itself, setting up or looking
                return make_api_call(client, operation, params)
            error = None
            try:
                return make_api_call(client, operation, params)
            except ClientError as exc:
                error = str(exc.response.get("Error", {}).get("Code"))
                raise
            finally:
                target = {k: params[k] for k in _TARGET_PARAMETERS if k in params}
                service = client.meta.service_model.service_name
                with record.lock:
                    record.api_calls.append(ApiCall(principal, service, operation, target, error))

        return recording

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        me = self
        submit = ThreadPoolExecutor.submit

        def submit_in_context(
            pool: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
        ) -> Future[Any]:
            # A pool's task runs in its submitter's context, so the calls a function makes from
            # its worker threads (the SQS sink's sends) are the function's.
            return submit(pool, contextvars.copy_context().run, fn, *args, **kwargs)

        def invoke(backend: Any, *args: Any) -> bytes:
            return me._invoke(backend, *args)

        def finish(backend: Any, include_start_attempt: bool, job: Any) -> None:
            me._run_job(backend, include_start_attempt, job)

        # JitterStrategy FULL draws uniform(0, cap): the cap, so waits are the series itself.
        top_of_range = types.SimpleNamespace(uniform=lambda low, high: high)
        patches: list[tuple[Any, str, Any]] = [
            (LambdaSimpleBackend, "invoke", invoke),
            (BatchSimpleBackend, "_mark_job_as_finished", finish),
            (retrier_decl, "time", self._recording_time()),
            (jitter_strategy_decl, "random", top_of_range),
            (BaseClient, "_make_api_call", self._recording_api_calls()),
            (ThreadPoolExecutor, "submit", submit_in_context),
            (SQSBackend, "send_message", _send_message),
            (Queue, "attributes", property(_queue_attributes)),
            (batch_task.StateTaskServiceBatch, "_normalise_parameters", _normalise_parameters),
            (batch_task.StateTaskServiceBatch, "_normalise_response", _normalise_response),
            (
                callback_task.StateTaskServiceCallback,
                "_eval_execution",
                _fresh_token_eval_execution,
            ),
        ]
        undo: list[tuple[Any, str, Any, bool]] = []
        for owner, name, value in patches:
            had = name in vars(owner)
            undo.append((owner, name, vars(owner).get(name), had))
            setattr(owner, name, value)
        try:
            yield
        finally:
            for owner, name, old, had in reversed(undo):
                if had:
                    setattr(owner, name, old)
                else:
                    delattr(owner, name)

    # -- resources -----------------------------------------------------------------------------
    def deploy_resources(self) -> None:
        """The bucket, the status queue, the seven functions and the Batch queue and job."""
        c = self.clients
        c["s3"].create_bucket(Bucket=BUCKET)
        self.status_queue_url = c["sqs"].create_queue(QueueName=STATUS_QUEUE)["QueueUrl"]
        role = _role(c["iam"], "scm-batch-functions", "lambda.amazonaws.com")
        for name in FUNCTION_NAMES:
            self.lambda_arns[name] = c["lambda"].create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler=f"scm_batch.aws.handlers.{name.removeprefix('scm-batch-processor-')}",
                Code={"ZipFile": b"the sandbox calls the handlers in-process"},
            )["FunctionArn"]
        batch = c["batch"]
        service_role = _role(c["iam"], "scm-batch-batch", "batch.amazonaws.com")
        environment = batch.create_compute_environment(
            computeEnvironmentName="scm-batch",
            type="UNMANAGED",
            state="ENABLED",
            serviceRole=service_role,
        )["computeEnvironmentArn"]
        self.job_queue_arn = batch.create_job_queue(
            jobQueueName=JOB_QUEUE,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )["jobQueueArn"]
        self.job_definition_arn = batch.register_job_definition(
            jobDefinitionName=JOB_DEFINITION,
            type="container",
            containerProperties={
                "image": "scm-batch:test",
                "command": list(JOB_COMMAND),
                "resourceRequirements": [
                    {"type": "VCPU", "value": "1"},
                    {"type": "MEMORY", "value": "2048"},
                ],
            },
            retryStrategy=RETRY_STRATEGY,
        )["jobDefinitionArn"]

    def deployment(self, **settings: Any) -> Resources:
        return Resources(
            lambda_arns=dict(self.lambda_arns),
            batch_job_queue=self.job_queue_arn,
            batch_job_definition=self.job_definition_arn,
            status_queue_url=self.status_queue_url,
            **settings,
        )

    def create_state_machine(
        self, definition: dict[str, Any], name: str = "scm-batch-batch-processing"
    ) -> str:
        """The machine, named as deploy/terraform names it (its default name_prefix)."""
        role = _role(self.clients["iam"], f"{name}-states", "states.amazonaws.com")
        arn: str = self.clients["stepfunctions"].create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
        return arn

    # -- running and looking -------------------------------------------------------------------
    def execute(self, machine: str, payload: Any, name: str, timeout: float = 120.0) -> Execution:
        sfn = self.clients["stepfunctions"]
        arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(payload))[
            "executionArn"
        ]
        deadline = time.monotonic() + timeout
        while True:  # the interpreter runs in a thread of its own: poll its state
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                # Stopped, so that its thread does not go on writing into the next test's services.
                sfn.stop_execution(executionArn=arn, cause="the test gave up waiting")
                raise TimeoutError(f"execution {name} still running after {timeout} s")
            time.sleep(0.02)
        return Execution(described, _history(sfn, arn))

    def status_messages(self) -> list[dict[str, Any]]:
        sqs = self.clients["sqs"]
        messages: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(
                QueueUrl=self.status_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                return messages
            for message in got:
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.status_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def get(self, key: str) -> bytes:
        body: bytes = self.clients["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return body

    def keys(self, prefix: str) -> list[str]:
        pages = (
            self.clients["s3"]
            .get_paginator("list_objects_v2")
            .paginate(Bucket=BUCKET, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@dataclass
class Execution:
    described: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return str(self.described["status"])

    @property
    def error(self) -> str | None:
        return self.described.get("error")

    @property
    def cause(self) -> str | None:
        return self.described.get("cause")

    @property
    def output(self) -> Any:
        return json.loads(self.described["output"]) if "output" in self.described else None

    def states_entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.events
            if "stateEnteredEventDetails" in e
        ]


def _retries(strategy: dict[str, Any], exit_code: int) -> bool:
    """AWS Batch's reading of ``evaluateOnExit``: the first entry whose every condition matches
    (globs ending in ``*``) decides; when none does, the job is retried."""
    facts = {
        "onExitCode": str(exit_code),
        "onStatusReason": EXITED_STATUS_REASON,
        "onReason": "",  # a container that ran and exited gives no reason
    }
    for rule in strategy.get("evaluateOnExit", []):
        conditions = {k: v for k, v in rule.items() if k in facts}
        if all(fnmatch.fnmatchcase(facts[k], v) for k, v in conditions.items()):
            return str(rule["action"]).lower() == "retry"
    return True


def _role(iam: Any, name: str, service: str) -> str:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(policy))["Role"][
        "Arn"
    ]
    return arn


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page = sfn.get_execution_history(
            executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events


@contextlib.contextmanager
def sandbox() -> Iterator[Sandbox]:
    """moto with the interpreter on, the hooks installed and the resources deployed."""
    box = Sandbox()
    with mock_aws(config=MOTO_CONFIG), box.hooks():
        box.clients = {
            name: boto3.client(name, region_name=REGION)
            for name in ("stepfunctions", "lambda", "batch", "sqs", "iam", "s3", "kms")
        }
        box.deploy_resources()
        yield box
