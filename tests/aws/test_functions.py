"""The functions called one after another as the state machine would, on moto's S3: what they
hand on, and what they write to their logs (never a record)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from scm_batch.aws import handlers
from scm_batch.aws.handlers import Event
from scm_batch.errors import ConfigError, InjectedTerminalError, OutputFormatChangedError

BUCKET = "scm-batch-logs"
SECRET_EMAIL = "zebediah.quux.7731@example.org"
SECRET_NAME = "Zebediah Quux-Marker"


def records() -> bytes:
    lines = []
    for n in range(400):
        record: dict[str, Any] = {
            "id": f"r{n}",
            "name": SECRET_NAME,
            "email": SECRET_EMAIL,
            "status": "active",
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
        }
        if n % 50 == 0:
            record["email"] = (
                f"not-an-email {SECRET_EMAIL} {SECRET_NAME}"  # invalid: kept in errors
            )
        lines.append(json.dumps(record))
    lines.insert(7, f'{{"broken": "{SECRET_NAME}"')  # malformed
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def s3(deployment_env: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="in/records.jsonl", Body=records())
        yield client


def run_functions(payload: dict[str, Any]) -> dict[str, Any]:
    batch = handlers.read_s3(payload, None)
    batch = handlers.validate_data({"batch": batch}, None)
    batch = handlers.calculate_chunks({"batch": batch}, None)
    items = json.loads(
        boto3.client("s3", region_name="us-east-1")
        .get_object(Bucket=batch["plan"]["bucket"], Key=batch["plan"]["itemsKey"])["Body"]
        .read()
    )
    assert len(items) == batch["plan"]["chunkCount"]
    for attempt, item in enumerate(items):
        with contextlib.suppress(InjectedTerminalError):
            handlers.update_records({"chunk": item, "attempt": attempt % 2}, None)
    outcome = handlers.aggregate_results(
        {"batch": batch, "startedAt": "2026-05-01T00:00:00Z"}, None
    )
    handlers.send_to_kafka({"batch": batch, "outcome": outcome}, None)
    return outcome


def test_logs_carry_ids_and_counts_never_record_contents(
    s3: Any,
    deployment_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    deployment_env.setenv("SCM_BATCH_FAULTS", "chunk_000002=terminal")
    caplog.set_level(logging.DEBUG)
    outcome = run_functions(
        {
            "bucket": BUCKET,
            "file": "in/records.jsonl",
            "customerId": "c1",
            "tenantId": "t1",
            "batchId": "logs",
            "maxConcurrentChunks": 4,
        }
    )
    assert outcome["chunksFailed"] == 0  # failures reach the ledger through the state machine
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    lines = [json.loads(line) for line in captured.out.splitlines()]
    events = [line.get("event") for line in lines]
    assert events.count("chunk-started") == 4
    assert {"initialized", "validated", "planned", "failed", "completion-sent"} <= set(events)
    failed = next(line for line in lines if line.get("event") == "failed")
    assert failed["error"] == "InjectedTerminalError"
    assert any("_aws" in line for line in lines)  # metrics were written
    # The records really were read: the bucket holds their contents, the logs do not.
    errors = s3.get_object(Bucket=BUCKET, Key="errors/logs/chunk_000000.jsonl")["Body"].read()
    assert SECRET_EMAIL.encode() in errors
    for secret in (SECRET_EMAIL, SECRET_NAME, "zebediah"):
        assert secret not in logs


def test_a_batch_with_a_plan_is_planned_once(s3: Any) -> None:
    payload = {
        "bucket": BUCKET,
        "file": "in/records.jsonl",
        "customerId": "c1",
        "tenantId": "t1",
        "batchId": "twice",
        "maxConcurrentChunks": 3,
    }
    batch = handlers.validate_data({"batch": handlers.read_s3(payload, None)}, None)
    first = handlers.calculate_chunks({"batch": batch}, None)
    second = handlers.calculate_chunks({"batch": batch}, None)
    assert (first["plan"]["resumed"], second["plan"]["resumed"]) == (False, True)
    assert first["plan"]["chunkCount"] == second["plan"]["chunkCount"] == 3
    plan = json.loads(s3.get_object(Bucket=BUCKET, Key="metadata/twice/chunks.json")["Body"].read())
    items = json.loads(
        s3.get_object(Bucket=BUCKET, Key="metadata/twice/chunk-items.json")["Body"].read()
    )
    assert items == plan["chunks"]


@pytest.mark.parametrize(
    ("deployment", "variable"), [("WORKSPACE", "KAFKA_BROKERS"), ("CORE", "SQS_CORE_QUEUE")]
)
def test_a_completion_message_with_nowhere_to_go_is_refused_before_any_work(
    s3: Any, deployment_env: pytest.MonkeyPatch, deployment: str, variable: str
) -> None:
    deployment_env.delenv("SCM_BATCH_COMPLETION_OUTBOX_ONLY")
    payload = {
        "bucket": BUCKET,
        "file": "in/records.jsonl",
        "customerId": "c1",
        "tenantId": "t1",
        "batchId": "nowhere",
        "deployment": deployment,
    }
    batch = handlers.read_s3(payload, None)
    with pytest.raises(ConfigError, match=rf"^{variable}: is not set"):
        handlers.validate_data({"batch": batch}, None)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="metadata/")


def test_a_plan_made_by_a_local_run_gets_its_chunk_items(s3: Any) -> None:
    payload = {
        "bucket": BUCKET,
        "file": "in/records.jsonl",
        "customerId": "c1",
        "tenantId": "t1",
        "batchId": "local",
        "maxConcurrentChunks": 3,
    }
    batch = handlers.validate_data({"batch": handlers.read_s3(payload, None)}, None)
    handlers.calculate_chunks({"batch": batch}, None)
    s3.delete_object(Bucket=BUCKET, Key="metadata/local/chunk-items.json")  # as a local run
    again = handlers.calculate_chunks({"batch": batch}, None)
    assert again["plan"]["resumed"] is True
    plan = json.loads(s3.get_object(Bucket=BUCKET, Key="metadata/local/chunks.json")["Body"].read())
    items = json.loads(
        s3.get_object(Bucket=BUCKET, Key="metadata/local/chunk-items.json")["Body"].read()
    )
    assert items == plan["chunks"]


def plan_then_edit(s3: Any, batch_id: str, edit: Callable[[dict[str, Any]], None]) -> Event:
    """Plan ``batch_id`` with the functions, then change its stored plan with ``edit`` (as an
    older version, or a local run, would have stored it) and drop its chunk items."""
    payload = {
        "bucket": BUCKET,
        "file": "in/records.jsonl",
        "customerId": "c1",
        "tenantId": "t1",
        "batchId": batch_id,
        "maxConcurrentChunks": 2,
    }
    batch = handlers.validate_data({"batch": handlers.read_s3(payload, None)}, None)
    handlers.calculate_chunks({"batch": batch}, None)
    key = f"metadata/{batch_id}/chunks.json"
    plan = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    edit(plan)
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(plan).encode())
    s3.delete_object(Bucket=BUCKET, Key=f"metadata/{batch_id}/chunk-items.json")
    return batch


def test_a_plan_stored_without_an_output_format_resumes_as_json_lines(s3: Any) -> None:
    def as_before_the_option(plan: dict[str, Any]) -> None:
        del plan["options"]["outputFormat"]
        for chunk in plan["chunks"]:
            del chunk["outputFormat"]

    batch = plan_then_edit(s3, "older", as_before_the_option)
    again = handlers.calculate_chunks({"batch": batch}, None)
    assert again["plan"]["resumed"] is True
    items = json.loads(
        s3.get_object(Bucket=BUCKET, Key="metadata/older/chunk-items.json")["Body"].read()
    )
    assert [item["outputFormat"] for item in items] == ["jsonl", "jsonl"]
    for item in items:
        handlers.update_records({"chunk": item, "attempt": 0}, None)
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="results/older/")["Contents"]
    ]
    assert keys == ["results/older/chunk_000000.jsonl", "results/older/chunk_000001.jsonl"]


def test_a_parquet_plan_is_refused_with_a_one_line_error(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def as_parquet(plan: dict[str, Any]) -> None:  # as `scm-batch plan --output-format parquet`
        plan["options"]["outputFormat"] = "parquet"
        for chunk in plan["chunks"]:
            chunk["outputFormat"] = "parquet"

    batch = plan_then_edit(s3, "columnar", as_parquet)
    capsys.readouterr()
    with pytest.raises(OutputFormatChangedError) as raised:
        handlers.calculate_chunks({"batch": batch}, None)
    message = raised.value.message
    assert "parquet" in message
    assert "\n" not in message
    # Nothing handed on to process: no chunk items, no result part.
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="metadata/columnar/")["Contents"]
    assert "metadata/columnar/chunk-items.json" not in [o["Key"] for o in listed]
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="results/columnar/")
    failed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(f["event"], f["error"]) for f in failed if f.get("event") == "failed"] == [
        ("failed", "OutputFormatChangedError")
    ]
