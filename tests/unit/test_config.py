"""ValidateBatchConfig: every field checked, with a one-line error naming it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from scm_batch.config import RunOptions, load_input_file, parse_job_input, unknown_input_fields
from scm_batch.errors import (
    BatchExistsError,
    ChunkFailedError,
    ConfigError,
    InputError,
    ObjectNotFoundError,
    ScmBatchError,
)
from scm_batch.model import PlanOptions, RoutingPolicy
from scm_batch.sinks.options import DeliveryOptions, KafkaOptions, SqsOptions
from scm_batch.stages.validate_config import validate_batch_config

VALID: dict[str, Any] = {
    "bucket": "/tmp",
    "file": "input/records.jsonl",
    "customerId": "customer123",
    "tenantId": "tenant456",
    "batchId": "batch-789",
    "deployment": "WORKSPACE",
    "snapshotId": "snapshot-001",
}


def test_the_contract_example_parses_with_defaults() -> None:
    job = parse_job_input(VALID)
    assert (job.customer_id, job.batch_id, job.snapshot_id) == (
        "customer123",
        "batch-789",
        "snapshot-001",
    )
    assert (job.max_concurrent_chunks, job.max_chunk_size, job.destination) == (50, 500_000, None)
    validate_batch_config(job, RunOptions())


def test_the_destination_follows_the_configuration_unless_given() -> None:
    job = parse_job_input(VALID)
    kafka = DeliveryOptions(kafka=KafkaOptions(brokers="127.0.0.1:9092"))
    sqs = DeliveryOptions(sqs=SqsOptions(core_queue_url="http://127.0.0.1/q"))
    assert validate_batch_config(job, RunOptions()).destination == "none"
    assert validate_batch_config(job, RunOptions(delivery=kafka)).destination == "kafka"
    assert validate_batch_config(job, RunOptions(delivery=sqs)).destination == "sqs_core"
    given = parse_job_input({**VALID, "destination": "sqs_core"})
    assert validate_batch_config(given, RunOptions(delivery=kafka)).destination == "sqs_core"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"customerId": None}, "customerId"),
        ({"batchId": 7}, "batchId"),
        ({"deployment": "PROD"}, "deployment"),
        ({"destination": "email"}, "destination"),
        ({"maxChunkSize": "10"}, "maxChunkSize"),
        ({"maxConcurrentChunks": True}, "maxConcurrentChunks"),
    ],
)
def test_type_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    mapping = {**VALID, **changes}
    if changes.get(field, "") is None:
        del mapping[field]
    with pytest.raises(ConfigError) as caught:
        parse_job_input(mapping)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"batchId": "a/b"}, "batchId"),
        ({"batchId": ".."}, "batchId"),
        ({"batchId": "a..b"}, "batchId"),
        ({"customerId": "tab\there"}, "customerId"),
        ({"tenantId": ""}, "tenantId"),
        ({"snapshotId": "x" * 200}, "snapshotId"),
        ({"file": "../etc/passwd"}, "file"),
        ({"file": "/etc/passwd"}, "file"),
        ({"file": "a//b"}, "file"),
        ({"file": "a\x00b"}, "file"),
        ({"bucket": "   "}, "bucket"),
        ({"bucket": "ftp://host/x"}, "bucket"),
        ({"maxConcurrentChunks": 0}, "maxConcurrentChunks"),
        ({"maxConcurrentChunks": 10_001}, "maxConcurrentChunks"),
        ({"maxChunkSize": -5}, "maxChunkSize"),
        ({"targetTotalRecords": 0}, "targetTotalRecords"),
        ({"processedAt": "yesterday"}, "processedAt"),
        ({"processedAt": "2024-13-45T99:99:99Z"}, "processedAt"),
        ({"file": "a\udcff.jsonl"}, "file"),
    ],
)
def test_unsafe_or_out_of_range_values_are_refused(changes: dict[str, Any], field: str) -> None:
    job = parse_job_input({**VALID, **changes})
    with pytest.raises(ConfigError) as caught:
        validate_batch_config(job, RunOptions())
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (RunOptions(workers=0), "workers"),
        (RunOptions(plan=PlanOptions(min_chunk_size=0)), "minChunkSize"),
        (
            RunOptions(plan=PlanOptions(routing=RoutingPolicy(lambda_timeout_seconds=901))),
            "lambdaTimeoutSeconds",
        ),
        (
            RunOptions(
                plan=PlanOptions(routing=RoutingPolicy(estimated_processing_time_per_record=0))
            ),
            "estimatedProcessingTimePerRecord",
        ),
    ],
)
def test_bad_options_are_refused(options: RunOptions, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_batch_config(parse_job_input(VALID), options)
    assert caught.value.field == field


def test_relative_and_file_uri_buckets_become_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = validate_batch_config(parse_job_input({**VALID, "bucket": "data"}), RunOptions())
    assert job.bucket == str(tmp_path / "data")
    job = validate_batch_config(
        parse_job_input({**VALID, "bucket": f"file://{tmp_path}/d"}), RunOptions()
    )
    assert job.bucket == str(tmp_path / "d")


def test_unknown_fields_are_reported() -> None:
    assert unknown_input_fields({**VALID, "maxChunksize": 5, "x": 1}) == ["maxChunksize", "x"]


def test_input_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_input_file(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_input_file(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError, match="one JSON object"):
        load_input_file(tmp_path / "list.json")


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("batchId", "bad"),
        InputError("gone"),
        ObjectNotFoundError("missing"),
        BatchExistsError("exists"),
        ChunkFailedError("chunk_000001", "StorageError", "disk full"),
    ],
)
def test_errors_survive_pickling(error: ScmBatchError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__
    assert (copy.exit_code, copy.transient) == (error.exit_code, error.transient)
