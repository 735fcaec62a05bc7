"""The generated state machine run end to end under moto's Step Functions interpreter.

Its Lambda tasks call the project's handlers and its Batch jobs run ``scm-batch aws
process-chunk``; S3 and SQS are moto's. Every scenario checks names (states entered, error
names, status words), not just counts.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from scm_batch.aws.definition import build_definition
from scm_batch.aws.handlers import FUNCTIONS
from scm_batch.config import RunOptions
from scm_batch.lifecycle import run_batch
from scm_batch.model import JobInput, PlanOptions
from scm_batch.records.generate import generate_lines
from tests.aws.sandbox import BUCKET, Sandbox

PROCESSED_AT = "2026-05-01T00:00:00.000Z"
RECORDS = 3_000
CHUNKS = 6
INPUT_KEY = "input/records.jsonl"
UPDATE_RECORDS = "scm-batch-processor-update-records"


def _input_bytes() -> bytes:
    lines, _ = generate_lines(0, RECORDS, seed=11, invalid_rate=0.004, malformed_rate=0.001)
    return ("\n".join(lines) + "\n").encode()


INPUT = _input_bytes()


def execution_input(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "bucket": BUCKET,
        "file": INPUT_KEY,
        "customerId": "cust-aws",
        "tenantId": "ten-aws",
        "batchId": "awsbatch",
        "deployment": "WORKSPACE",
        "snapshotId": "snap-1",
        "maxConcurrentChunks": CHUNKS,
        "processedAt": PROCESSED_AT,
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


LocalRun = dict[tuple[int, int], dict[str, bytes]]


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    return {}


def local_parts(
    local_runs: LocalRun, root: Path, chunks: int = CHUNKS, largest: int = 500_000
) -> dict[str, bytes]:
    """The result and error parts of a local run of the same input: what AWS must write."""
    if (chunks, largest) in local_runs:
        return local_runs[chunks, largest]
    (root / "input").mkdir(parents=True)
    (root / INPUT_KEY).write_bytes(INPUT)
    job = JobInput(
        bucket=str(root),
        file=INPUT_KEY,
        customer_id="cust-aws",
        tenant_id="ten-aws",
        batch_id="awsbatch",
        snapshot_id="snap-1",
        max_concurrent_chunks=chunks,
        max_chunk_size=largest,
        processed_at=PROCESSED_AT,
    )
    options = RunOptions(workers=1, plan=PlanOptions(min_chunk_size=1, count_records=True))
    report = run_batch(job, options)
    assert report.summary.chunks_failed == 0
    parts = {
        str(path.relative_to(root)): path.read_bytes()
        for prefix in ("results", "errors")
        for path in sorted((root / prefix).rglob("*.jsonl"))
    }
    local_runs[chunks, largest] = parts
    return parts


def deploy(aws: Sandbox, **settings: Any) -> str:
    aws.clients["s3"].put_object(Bucket=BUCKET, Key=INPUT_KEY, Body=INPUT)
    return aws.create_state_machine(build_definition(aws.deployment(**settings)))


def s3_parts(aws: Sandbox) -> dict[str, bytes]:
    return {
        key: aws.get(key)
        for prefix in ("results/awsbatch/", "errors/awsbatch/")
        for key in aws.keys(prefix)
    }


def chunks_on_lambda(aws: Sandbox) -> list[str]:
    return sorted(call["chunk"]["chunkId"] for call in aws.record.calls_of(UPDATE_RECORDS))


def aggregated(aws: Sandbox) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(aws.get("final-results/awsbatch/aggregated-results.json"))
    return document


def test_all_chunks_on_lambda_write_what_a_local_run_writes(
    aws: Sandbox, local_runs: LocalRun, tmp_path: Path
) -> None:
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(), "all-lambda")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    entered = run.states_entered()
    for state in (
        "InitializeBatchProcessing",
        "ValidateBatchConfig",
        "CalculateChunks",
        "ProcessChunksInParallel",
        "AggregateResults",
        "ToleratedFailureCheck",
        "DeploymentChoiceState",
        "SendToKafka",
        "SendToSQS",
        "SuccessState",
    ):
        assert state in entered
    for absent in ("SendToSqsCore", "ReportFailure", "FailureState"):
        assert absent not in entered
    # The Map's iterations run as child executions: what they did is seen in their calls.
    assert chunks_on_lambda(aws) == [f"chunk_{n:06d}" for n in range(CHUNKS)]
    assert aws.record.batch_runs == []

    assert s3_parts(aws) == local_parts(local_runs, tmp_path)  # byte for byte, part by part
    summary = aggregated(aws)
    assert summary["status"] == "COMPLETED"
    assert summary["chunksSucceeded"] == CHUNKS
    assert summary["totals"]["lines"] == RECORDS
    [status] = aws.status_messages()
    assert status["batchId"] == "awsbatch"
    assert status["batchStatus"] == "SUBMITTED_FOR_PROCESSING"
    assert status["customerId"] == "cust-aws"
    assert status["totalRecordsProcessed"] == RECORDS
    assert status["progress"] == 100
    completion = json.loads(aws.get("notifications/awsbatch/kafka.json"))
    assert completion["type"] == "BATCH_COMPLETION_NOTIFICATION"
    assert completion["resultLocation"]["key"] == "final-results/awsbatch/aggregated-results.json"
    assert run.output["statusMessage"] == status


def test_chunks_too_big_for_lambda_run_as_batch_jobs_and_write_the_same(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    # 3,000 records in chunks of at most 700: four of 700 go to Batch, the last 200 to Lambda.
    deployment_env.setenv("SCM_BATCH_BATCH_PROCESSING_THRESHOLD", "600")
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(maxConcurrentChunks=4, maxChunkSize=700), "mixed")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    assert chunks_on_lambda(aws) == ["chunk_000004"]
    jobs = sorted(aws.record.batch_runs, key=lambda r: r.parameters["chunkId"])
    assert [r.parameters["chunkId"] for r in jobs] == [f"chunk_{n:06d}" for n in range(4)]
    assert all(r.exit_code == 0 and r.attempt == 1 for r in jobs)
    # The job ran the job definition's command with the Ref:: parameters filled in: strings.
    assert jobs[0].argv == [
        "scm-batch", "aws", "process-chunk",
        "--bucket", BUCKET, "--batch-id", "awsbatch", "--chunk-id", "chunk_000000",
    ]  # fmt: skip
    assert s3_parts(aws) == local_parts(local_runs, tmp_path, chunks=4, largest=700)
    manifest = json.loads(aws.get("metadata/awsbatch/chunks/chunk_000000.json"))
    assert manifest["route"] == "batch"
    assert aggregated(aws)["chunksSucceeded"] == 5


def test_a_transient_failure_is_retried_with_backoff_and_then_succeeds(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000001=transient:2")
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(), "transient")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    attempts = [
        call["attempt"]
        for call in aws.record.calls_of(UPDATE_RECORDS)
        if call["chunk"]["chunkId"] == "chunk_000001"
    ]
    assert attempts == [0, 1, 2]  # the state's retry count, passed to the function
    # IntervalSeconds 1, BackoffRate 2, full jitter (drawn at the top of its range here).
    assert aws.record.retry_waits == [1.0, 2.0]
    manifest = json.loads(aws.get("metadata/awsbatch/chunks/chunk_000001.json"))
    assert manifest["attempts"][-1]["attempt"] == 3
    assert s3_parts(aws) == local_parts(local_runs, tmp_path)
    assert aws.keys("metadata/awsbatch/failures/") == []


def test_a_permanent_chunk_failure_is_recorded_and_tolerated(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000002=terminal")
    deployment_env.setenv("SCM_BATCH_TOLERATED_FAILURE_COUNT", "1")
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(), "tolerated")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    tries = [
        c for c in aws.record.calls_of(UPDATE_RECORDS) if c["chunk"]["chunkId"] == "chunk_000002"
    ]
    assert len(tries) == 1  # a terminal error is not retried
    summary = aggregated(aws)
    assert summary["status"] == "COMPLETED"
    assert summary["chunksFailed"] == 1
    [failed] = summary["failedChunks"]
    assert failed["chunkId"] == "chunk_000002"
    assert failed["errorType"] == "InjectedTerminalError"
    assert failed["message"] == "injected terminal fault in chunk_000002"
    assert aws.keys("metadata/awsbatch/failures/") == [
        "metadata/awsbatch/failures/chunk_000002.json"
    ]
    expected = {
        key: data
        for key, data in local_parts(local_runs, tmp_path).items()
        if "chunk_000002" not in key
    }
    assert s3_parts(aws) == expected  # nothing of the failed chunk, everything of the others
    [status] = aws.status_messages()
    assert status["batchStatus"] == "SUBMITTED_FOR_PROCESSING"
    assert "ReportFailure" not in run.states_entered()


def _failing_as(name: str, chunk_id: str, times: int) -> Any:
    """update-records failing ``times`` times for ``chunk_id`` under the error name ``name`` (the
    name AWS gives the Task's error), then running as deployed."""
    deployed = FUNCTIONS[UPDATE_RECORDS]
    error = type(name, (Exception,), {})
    left = [times]

    def update_records(event: dict[str, Any], context: object) -> dict[str, Any]:
        if event["chunk"]["chunkId"] == chunk_id and left[0] > 0:
            left[0] -= 1
            raise error("simulated")
        return deployed(event, context)

    return update_records


def test_a_throttled_chunk_waits_for_capacity_however_long_and_never_fails(
    aws: Sandbox, monkeypatch: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    # Another execution holds the capacity for a long while: 40 throttles in a row (the old
    # retrier gave up after 10, about 25 minutes).
    throttled = _failing_as("Lambda.TooManyRequestsException", "chunk_000001", 40)
    monkeypatch.setitem(FUNCTIONS, UPDATE_RECORDS, throttled)
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(), "throttled")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    assert s3_parts(aws) == local_parts(local_runs, tmp_path)
    waits = aws.record.retry_waits
    assert len(waits) == 40
    assert max(waits) == 300  # never more than 5 minutes between two tries
    assert sum(waits) > 2 * 3600  # and it waited hours rather than fail the chunk


def test_a_chunk_whose_lambda_was_killed_runs_next_as_a_batch_job(
    aws: Sandbox, monkeypatch: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    killed = _failing_as("Lambda.Unknown", "chunk_000002", 1)  # timed out, or out of memory
    monkeypatch.setitem(FUNCTIONS, UPDATE_RECORDS, killed)
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(), "killed")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    tries = [
        c for c in aws.record.calls_of(UPDATE_RECORDS) if c["chunk"]["chunkId"] == "chunk_000002"
    ]
    assert len(tries) == 1  # not on Lambda again: it did not fit there
    [job] = aws.record.batch_runs
    assert (job.parameters["chunkId"], job.exit_code) == ("chunk_000002", 0)
    assert s3_parts(aws) == local_parts(local_runs, tmp_path)
    assert aws.keys("metadata/awsbatch/failures/") == []


def test_what_the_state_machine_writes_itself_uses_the_deployments_kms_key(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    key = aws.clients["kms"].create_key()["KeyMetadata"]["Arn"]
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000002=terminal")
    deployment_env.setenv("SCM_BATCH_TOLERATED_FAILURE_COUNT", "1")
    machine = deploy(aws, sse_kms_key=key)
    run = aws.execute(machine, execution_input(), "encrypted")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    s3 = aws.clients["s3"]
    for written in (
        "metadata/awsbatch/failures/chunk_000002.json",
        "metadata/awsbatch/notified.json",
    ):
        head = s3.head_object(Bucket=BUCKET, Key=written)
        assert head["ServerSideEncryption"] == "aws:kms", written
        assert head["SSEKMSKeyId"] == key, written


def test_too_many_failed_chunks_end_in_failure_state_with_a_failure_status(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000002=terminal,chunk_000004=terminal")
    deployment_env.setenv("SCM_BATCH_TOLERATED_FAILURE_COUNT", "1")
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(), "too-many")

    assert run.status == "FAILED"
    assert run.error == "ChunksFailed"
    assert run.cause == "2 of 6 chunks failed"
    entered = run.states_entered()
    assert entered[-7:] == [
        "ToleratedFailureCheck",
        "DescribeBatchFailure",
        "ReportFailure",
        "FailureReported",
        "RecordFailureNotified",
        "FailureName",
        "FailureState",
    ]
    assert "SendToKafka" not in entered
    assert "SendToSQS" not in entered
    [status] = aws.status_messages()
    assert status["batchId"] == "awsbatch"
    assert status["batchStatus"] == "SUBMISSION_FAILED"
    assert status["errorMessage"] == "2 of 6 chunks failed"
    summary = aggregated(aws)
    assert summary["status"] == "CHUNK_FAILED"
    assert sorted(f["errorType"] for f in summary["failedChunks"]) == ["InjectedTerminalError"] * 2
    assert aws.keys("notifications/awsbatch/kafka.json") == []  # no completion message


def test_batch_jobs_retry_transient_exits_and_record_terminal_ones(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    deployment_env.setenv("SCM_BATCH_BATCH_PROCESSING_THRESHOLD", "600")
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000001=transient:1,chunk_000003=terminal")
    deployment_env.setenv("SCM_BATCH_TOLERATED_FAILURE_COUNT", "1")
    machine = deploy(aws)
    run = aws.execute(
        machine, execution_input(maxConcurrentChunks=4, maxChunkSize=700), "batch-faults"
    )

    assert (run.status, run.error) == ("SUCCEEDED", None)
    exits = {(r.parameters["chunkId"], r.attempt): r.exit_code for r in aws.record.batch_runs}
    # Exit 75 (transient) is retried by the job definition's strategy; exit 1 (a terminal
    # error) is not, and the state machine records the chunk as failed.
    assert exits[("chunk_000001", 1)] == 75
    assert exits[("chunk_000001", 2)] == 0
    assert exits[("chunk_000003", 1)] == 1
    assert ("chunk_000003", 2) not in exits
    [failed] = aggregated(aws)["failedChunks"]
    assert failed["chunkId"] == "chunk_000003"
    assert failed["errorType"] == "States.TaskFailed"
    assert "exit code 1" in failed["message"]
    manifest = json.loads(aws.get("metadata/awsbatch/chunks/chunk_000001.json"))
    assert manifest["attempts"][-1]["attempt"] == 2  # the job attempt Batch reported


@pytest.mark.parametrize(
    ("changes", "error", "batch_id", "message"),
    [
        ({"batchId": None}, "ConfigError", None, "batchId: is required"),
        ({"batchId": "bad/id"}, "ConfigError", "bad/id", "batchId: must be 1-128 letters, "),
        (
            {"file": "input/missing.jsonl"},
            "InputError",
            "awsbatch",
            f"input file s3://{BUCKET}/input/missing.jsonl: no such object",
        ),
    ],
    ids=["missing-batch-id", "unsafe-batch-id", "missing-file"],
)
def test_a_bad_execution_input_is_reported_and_fails_the_execution(
    aws: Sandbox, changes: dict[str, Any], error: str, batch_id: str | None, message: str
) -> None:
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(**changes), "bad-input")

    assert run.status == "FAILED"
    assert run.error == error
    entered = run.states_entered()
    assert entered[0] == "InitializeBatchProcessing"
    # Nothing was planned: no notified marker is recorded.
    assert entered[-4:] == ["ReportFailure", "FailureReported", "FailureName", "FailureState"]
    assert "ValidateBatchConfig" not in entered
    [status] = aws.status_messages()
    # Without a batch id the batch is unknown: the message says so rather than guessing.
    assert status["batchId"] == batch_id
    assert status["customerId"] == (None if batch_id is None else "cust-aws")
    assert status["executionId"].endswith(":bad-input")
    assert status["batchStatus"] == "SUBMISSION_FAILED"
    # The function's own message, not the Lambda runtime's envelope with its stack trace.
    assert run.cause is not None
    assert run.cause.startswith(message)
    assert status["errorMessage"] == f"{error}: {run.cause}"
    assert aws.keys("metadata/") == []  # nothing planned, nothing written


def test_an_inline_map_passes_small_plans_through_the_state_and_refuses_large_ones(
    aws: Sandbox, local_runs: LocalRun, tmp_path: Path
) -> None:
    machine = deploy(aws, map_mode="inline", max_concurrent_chunks=4, max_inline_chunks=6)
    run = aws.execute(machine, execution_input(), "inline")
    assert (run.status, run.error) == ("SUCCEEDED", None)
    assert run.states_entered().count("ProcessWithLambda") == CHUNKS  # iterations in the history
    assert s3_parts(aws) == local_parts(local_runs, tmp_path)

    too_big = aws.execute(machine, execution_input(batchId="big", maxConcurrentChunks=7), "big")
    assert (too_big.status, too_big.error) == ("FAILED", "PlanTooLargeError")
    assert aws.keys("metadata/big/") == []


def test_an_object_created_event_starts_the_batch_its_manifest_describes(aws: Sandbox) -> None:
    machine = deploy(aws)
    manifest = {k: v for k, v in execution_input().items() if k != "bucket"}
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="manifests/job 1.json", Body=json.dumps(manifest).encode()
    )
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": "manifests/job+1.json"}},
    }
    run = aws.execute(machine, event, "from-event")
    assert (run.status, run.error) == ("SUCCEEDED", None)
    assert aggregated(aws)["chunksSucceeded"] == CHUNKS


def test_an_execution_started_again_resumes_its_batch_and_other_input_is_refused(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000003=terminal")
    deployment_env.setenv("SCM_BATCH_TOLERATED_FAILURE_COUNT", "0")
    machine = deploy(aws)
    first = aws.execute(machine, execution_input(), "first")
    assert (first.status, first.error) == ("FAILED", "ChunksFailed")

    deployment_env.delenv("SCM_BATCH_FAULTS")  # the cause is gone: run the same input again
    aws.record.lambda_calls.clear()
    again = aws.execute(machine, execution_input(), "again")
    assert (again.status, again.error) == ("SUCCEEDED", None)
    calls = aws.record.calls_of(UPDATE_RECORDS)
    assert len(calls) == CHUNKS
    redone = [c["chunk"]["chunkId"] for c in calls]
    assert sorted(redone) == [f"chunk_{n:06d}" for n in range(CHUNKS)]
    summary = aggregated(aws)
    assert (summary["chunksSucceeded"], summary["chunksFailed"]) == (CHUNKS, 0)
    assert summary["chunksResumed"] == CHUNKS - 1
    assert aws.keys("metadata/awsbatch/failures/") == []
    assert s3_parts(aws) == local_parts(local_runs, tmp_path)
    marker = json.loads(aws.get("metadata/awsbatch/notified.json"))
    assert (marker["batchStatus"], marker["channels"]) == (
        "SUBMITTED_FOR_PROCESSING",
        ["kafka", "batch-proc"],
    )
    assert [m["batchStatus"] for m in aws.status_messages()] == [
        "SUBMISSION_FAILED",
        "SUBMITTED_FOR_PROCESSING",
    ]

    # Done and notified: started once more, it neither reruns nor sends nor rewrites anything,
    # and so needs no channel to send on (here: none configured at all).
    deployment_env.delenv("SCM_BATCH_COMPLETION_OUTBOX_ONLY")
    summary_bytes = aws.get("final-results/awsbatch/aggregated-results.json")
    completion_bytes = aws.get("notifications/awsbatch/kafka.json")
    aws.record.lambda_calls.clear()
    once_more = aws.execute(machine, execution_input(), "once-more")
    assert (once_more.status, once_more.error) == ("SUCCEEDED", None)
    entered = once_more.states_entered()
    assert "ProcessChunksInParallel" not in entered
    assert entered[-3:] == ["ToleratedFailureCheck", "BatchAlreadyReported", "SuccessState"]
    assert aws.record.calls_of(UPDATE_RECORDS) == []
    assert once_more.output["status"] == "COMPLETED"
    assert aws.status_messages() == []
    assert aws.get("final-results/awsbatch/aggregated-results.json") == summary_bytes
    assert aws.get("notifications/awsbatch/kafka.json") == completion_bytes

    # Another batch's input under this id is refused, and not reported under the id: the
    # status of batch "awsbatch" is that of the batch above.
    other = aws.execute(machine, execution_input(customerId="someone-else"), "other")
    assert (other.status, other.error) == ("FAILED", "BatchExistsError")
    assert "ValidateBatchConfig" in other.states_entered()
    assert "ReportFailure" not in other.states_entered()
    assert aws.status_messages() == []


def test_damaged_parts_of_a_finished_batch_are_rebuilt_on_both_routes_and_nothing_is_sent_again(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    # Records and the completion go to one queue: what is on it counts every message ever sent.
    sqs = aws.clients["sqs"]
    core = sqs.create_queue(QueueName="sqs-core")["QueueUrl"]
    deployment_env.setenv("SQS_CORE_QUEUE", core)
    deployment_env.setenv("SCM_BATCH_BATCH_PROCESSING_THRESHOLD", "600")

    def sent() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=core, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    machine = deploy(aws)
    job = execution_input(
        deployment="CORE", destination="sqs_core", maxConcurrentChunks=4, maxChunkSize=700
    )
    first = aws.execute(machine, job, "first")
    assert (first.status, first.error) == ("SUCCEEDED", None)
    messages = sent()
    assert messages > 1  # the records, and the completion
    assert [m["batchStatus"] for m in aws.status_messages()] == ["SUBMITTED_FOR_PROCESSING"]
    expected = s3_parts(aws)
    assert expected == local_parts(local_runs, tmp_path, chunks=4, largest=700)
    summary_bytes = aws.get("final-results/awsbatch/aggregated-results.json")

    # Damage a part of a Batch chunk (gone) and of the Lambda chunk (cut short).
    s3 = aws.clients["s3"]
    s3.delete_object(Bucket=BUCKET, Key="results/awsbatch/chunk_000001.jsonl")
    lambda_part = "results/awsbatch/chunk_000004.jsonl"
    s3.put_object(Bucket=BUCKET, Key=lambda_part, Body=expected[lambda_part][:100])

    # A rebuild that fails leaves the outcome standing, reports nothing, and says why.
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000004=terminal")
    aws.record.lambda_calls.clear()
    failed = aws.execute(machine, job, "rebuild-fails")
    assert (failed.status, failed.error) == ("FAILED", "RebuildFailedError")
    assert failed.cause is not None
    assert "chunk_000004" in failed.cause
    assert "ReportFailure" not in failed.states_entered()
    assert aws.status_messages() == []
    assert aws.get("final-results/awsbatch/aggregated-results.json") == summary_bytes
    assert sent() == messages

    deployment_env.delenv("SCM_BATCH_FAULTS")
    aws.record.lambda_calls.clear()
    aws.record.batch_runs.clear()
    again = aws.execute(machine, job, "rebuilt")
    assert (again.status, again.error) == ("SUCCEEDED", None)
    entered = again.states_entered()
    assert "ProcessChunksInParallel" in entered
    assert entered[-3:] == ["ToleratedFailureCheck", "BatchAlreadyReported", "SuccessState"]
    assert s3_parts(aws) == expected
    # Each rebuilt chunk was told what it had delivered; the others were found done.
    [call] = aws.record.calls_of(UPDATE_RECORDS)
    assert call["chunk"]["deliveredBefore"] > 0
    rebuilt = [r for r in aws.record.batch_runs if r.parameters["chunkId"] == "chunk_000001"]
    assert [r.exit_code for r in rebuilt] == [0]
    assert sent() == messages  # no record, and no completion, sent again
    assert aws.status_messages() == []
    assert aws.get("final-results/awsbatch/aggregated-results.json") == summary_bytes


def test_a_failure_of_the_workflow_itself_fails_under_a_name_of_its_own(
    aws: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    calculate = "scm-batch-processor-calculate-chunks"
    planned = FUNCTIONS[calculate]

    def plan_then_spoil_the_items(event: dict[str, Any], context: object) -> dict[str, Any]:
        answer = planned(event, context)
        # Not a JSON array: the distributed Map's ItemReader fails (States.ItemReaderFailed).
        aws.clients["s3"].put_object(Bucket=BUCKET, Key=answer["plan"]["itemsKey"], Body=b"{}")
        return answer

    monkeypatch.setitem(FUNCTIONS, calculate, plan_then_spoil_the_items)
    machine = deploy(aws, map_mode="distributed")
    run = aws.execute(machine, execution_input(), "spoiled")

    assert (run.status, run.error) == ("FAILED", "WorkflowFailed")
    assert run.cause is not None
    assert run.cause.startswith("States.ItemReaderFailed: ")
    assert run.states_entered()[-3:] == ["FailureName", "NameWorkflowFailure", "FailureState"]
    [status] = aws.status_messages()
    assert (status["batchId"], status["batchStatus"]) == ("awsbatch", "SUBMISSION_FAILED")
    assert status["errorMessage"].startswith("States.ItemReaderFailed: ")


def test_a_core_deployment_sends_its_completion_to_sqs_core(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    core = aws.clients["sqs"].create_queue(QueueName="sqs-core")["QueueUrl"]
    deployment_env.setenv("SQS_CORE_QUEUE", core)
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(deployment="CORE", destination="none"), "core")

    assert (run.status, run.error) == ("SUCCEEDED", None)
    entered = run.states_entered()
    assert "SendToSqsCore" in entered
    assert "SendToKafka" not in entered
    [message] = aws.clients["sqs"].receive_message(QueueUrl=core).get("Messages", [])
    completion = json.loads(message["Body"])
    assert completion["type"] == "BATCH_COMPLETION_NOTIFICATION"
    assert completion["deployment"] == "CORE"
    assert completion["status"] == "COMPLETED"


def test_a_critically_invalid_batch_fails_after_aggregating_with_its_verdict(
    aws: Sandbox,
) -> None:
    lines, _ = generate_lines(0, 1_000, seed=3, invalid_rate=0.2, malformed_rate=0.0)
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="input/bad.jsonl", Body=("\n".join(lines) + "\n").encode()
    )
    machine = deploy(aws)
    run = aws.execute(machine, execution_input(file="input/bad.jsonl"), "critical")

    assert (run.status, run.error) == ("FAILED", "ValidationFailedCritical")
    assert (
        run.cause == "validation failed critically; see validation/awsbatch/validation-results.json"
    )
    summary = aggregated(aws)
    assert (summary["status"], summary["validationStatus"]) == (
        "COMPLETED",
        "VALIDATION_FAILED_CRITICAL",
    )
    [status] = aws.status_messages()
    assert status["batchStatus"] == "SUBMISSION_FAILED"
    assert status["totalRecordsProcessed"] == 1_000
    marker = json.loads(aws.get("metadata/awsbatch/notified.json"))
    assert (marker["batchStatus"], marker["channels"]) == ("SUBMISSION_FAILED", ["batch-proc"])

    # Started again, the verdict stands: the same failure, nothing redone or sent again.
    summary_bytes = aws.get("final-results/awsbatch/aggregated-results.json")
    again = aws.execute(machine, execution_input(file="input/bad.jsonl"), "critical-again")
    assert (again.status, again.error, again.cause) == (run.status, run.error, run.cause)
    assert again.states_entered()[-5:] == [
        "ToleratedFailureCheck",
        "BatchAlreadyReported",
        "RepeatBatchFailure",
        "FailureName",
        "FailureState",
    ]
    assert aws.status_messages() == []
    assert aws.get("final-results/awsbatch/aggregated-results.json") == summary_bytes


def test_an_execution_of_a_batch_another_run_holds_fails_fast_without_a_report(
    aws: Sandbox,
) -> None:
    machine = deploy(aws)
    since = "2026-05-01T00:00:00.000Z"
    claim = {
        "host": socket.gethostname(),
        "pid": os.getpid(),  # alive: this very process holds it
        "since": since,
        "expires": "2999-01-01T00:00:00.000Z",
    }
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="metadata/awsbatch.lease", Body=json.dumps(claim).encode()
    )
    run = aws.execute(machine, execution_input(), "busy")

    assert (run.status, run.error) == ("FAILED", "BatchBusyError")
    assert run.cause is not None
    assert f"being run by pid {os.getpid()} on {socket.gethostname()} since {since}" in run.cause
    assert "CalculateChunks" not in run.states_entered()
    assert aws.status_messages() == []  # that batch's status is the other run's to report
    assert aws.keys("metadata/awsbatch/") == []

    # Once the holder is gone (its claim expired), the next execution takes the batch over.
    claim["expires"] = "2000-01-01T00:00:00.000Z"
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="metadata/awsbatch.lease", Body=json.dumps(claim).encode()
    )
    again = aws.execute(machine, execution_input(), "after")
    assert (again.status, again.error) == ("SUCCEEDED", None)
    lease = json.loads(aws.get("metadata/awsbatch.lease"))
    assert lease["execution"].endswith(":after")


def test_an_input_too_big_to_plan_in_lambda_is_planned_by_a_batch_job(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch, local_runs: LocalRun, tmp_path: Path
) -> None:
    # Compressed, the input is staged by whoever plans it: here everything is "too big" for
    # CalculateChunks, so a Batch job stages it; the chunks then read their staged copies.
    deployment_env.setenv("SCM_BATCH_LAMBDA_PLAN_MAX_BYTES", "1000")
    machine = deploy(aws)
    aws.clients["s3"].put_object(
        Bucket=BUCKET, Key="input/records.jsonl.gz", Body=gzip.compress(INPUT)
    )
    run = aws.execute(
        machine, execution_input(file="input/records.jsonl.gz", targetTotalRecords=RECORDS), "gz"
    )

    assert (run.status, run.error) == ("SUCCEEDED", None)
    entered = run.states_entered()
    assert entered.count("CalculateChunks") == 2
    assert "PlanOnBatch" in entered
    [job] = aws.record.batch_runs
    assert job.argv == [
        "scm-batch", "aws", "plan-input", "--bucket", f"s3://{BUCKET}", "--batch-id", "awsbatch",
    ]  # fmt: skip
    assert job.exit_code == 0
    # Decompressed offsets are the file's own: the same parts as JSON Lines run locally.
    assert s3_parts(aws) == local_parts(local_runs, tmp_path)
    assert aws.keys("staged/awsbatch/") == []  # deleted once the batch completed
    assert aggregated(aws)["source"]["compression"] == "gzip"


def test_a_broken_array_planned_by_a_batch_job_fails_the_execution_with_its_error(
    aws: Sandbox, deployment_env: pytest.MonkeyPatch
) -> None:
    deployment_env.setenv("SCM_BATCH_LAMBDA_PLAN_MAX_BYTES", "10")
    machine = deploy(aws)
    broken = b"[" + b",".join(INPUT.splitlines()[:50]) + b"]  ]"
    aws.clients["s3"].put_object(Bucket=BUCKET, Key="input/broken.json", Body=broken)
    run = aws.execute(machine, execution_input(file="input/broken.json"), "broken")

    assert run.status == "FAILED"
    assert run.error == "InputStructureError"
    assert "data after the array's closing ']'" in (run.cause or "")
    [job] = aws.record.batch_runs  # failed for good: recorded, not retried, not run again
    assert job.exit_code == 0  # the failure is recorded for CalculateChunks to report
    assert run.states_entered().count("CalculateChunks") == 2
    assert not aws.keys("metadata/awsbatch/chunks.json")
