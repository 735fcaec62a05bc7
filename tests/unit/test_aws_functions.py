"""The Lambda functions' parts that need no state machine: settings, telemetry, failures, logs."""

from __future__ import annotations

import io
import json

import pytest

from scm_batch.aws import handlers
from scm_batch.aws.telemetry import Metric, Telemetry, emf_document
from scm_batch.errors import ConfigError
from scm_batch.ledger import readable as explain
from scm_batch.model import ChunkFailure, Tolerance
from scm_batch.settings import JobDefaults
from scm_batch.settings import aws_settings as settings_from_env


def test_settings_come_from_the_deployment_environment() -> None:
    settings = settings_from_env(
        {
            "SCM_BATCH_MAX_CONCURRENT_CHUNKS": "80",
            "SCM_BATCH_MAX_RECORDS_PER_CHUNK": "250000",
            "SCM_BATCH_DESTINATION": "sqs_core",
            "SCM_BATCH_LAMBDA_TIMEOUT": "600",
            "SCM_BATCH_ESTIMATED_PROCESSING_TIME_PER_RECORD": "0.002",
            "SCM_BATCH_BATCH_PROCESSING_THRESHOLD": "290000",
            "SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE": "5",
            "KAFKA_BROKERS": "b-1:9098",
            "KAFKA_TOPIC": "records",
            "SQS_CORE_QUEUE": "https://sqs.eu-west-1.amazonaws.com/210987654321/core",
            "SCM_BATCH_SSE": "aws:kms",
            "SCM_BATCH_SSE_KMS_KEY_ID": "alias/scm",
        }
    )
    assert settings.job_defaults == JobDefaults(
        max_concurrent_chunks=80, max_chunk_size=250_000, destination="sqs_core"
    )
    routing = settings.run.plan.routing
    assert routing.lambda_timeout_seconds == 600
    assert routing.estimated_processing_time_per_record == 0.002
    assert routing.batch_processing_threshold == 290_000
    assert settings.run.tolerance == Tolerance(percentage=5.0)
    assert settings.run.storage.kind == "s3"  # a bare bucket name is never a local directory
    assert settings.run.storage.s3.sse == "aws:kms"
    assert settings.run.delivery.kafka.brokers == "b-1:9098"
    assert settings.run.delivery.kafka.topic == "records"
    assert settings.run.delivery.sqs.core_queue_url is not None


def test_an_empty_environment_gives_the_contract_defaults() -> None:
    settings = settings_from_env({})
    assert settings.job_defaults == JobDefaults()
    assert settings.run.plan.routing.batch_processing_threshold == 1_000_000
    assert settings.run.tolerance == Tolerance()
    assert settings.run.faults is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCM_BATCH_MAX_CONCURRENT_CHUNKS", "lots"),
        ("SCM_BATCH_LAMBDA_TIMEOUT", "-1"),
        ("SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE", "150"),
        ("SCM_BATCH_DESTINATION", "carrier-pigeon"),
        ("SCM_BATCH_SSE", "rot13"),
        ("SCM_BATCH_COUNT_RECORDS", "maybe"),
        ("SCM_BATCH_MESSAGE_FORMAT", "xml"),
        ("KAFKA_SECURITY_PROTOCOL", "SMOKE_SIGNALS"),
    ],
)
def test_a_bad_setting_is_an_error_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({name: value})
    assert caught.value.field == name


def test_metrics_are_embedded_metric_format_documents() -> None:
    document = emf_document(
        "ScmBatch",
        {"Stage": "ProcessWithLambda"},
        [Metric("RecordsProcessed", 500), Metric("ChunkDuration", 1.5, "Seconds")],
        {"batchId": "b1"},
        timestamp_ms=1_700_000_000_000,
    )
    assert document == {
        "batchId": "b1",
        "Stage": "ProcessWithLambda",
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "ScmBatch",
                    "Dimensions": [["Stage"]],
                    "Metrics": [
                        {"Name": "RecordsProcessed", "Unit": "Count"},
                        {"Name": "ChunkDuration", "Unit": "Seconds"},
                    ],
                }
            ],
        },
        "RecordsProcessed": 500,
        "ChunkDuration": 1.5,
    }
    stream = io.StringIO()
    Telemetry("AggregateResults", "Custom", stream).metrics([Metric("ChunksFailed", 2)])
    [line] = stream.getvalue().splitlines()
    parsed = json.loads(line)
    assert parsed["ChunksFailed"] == 2
    assert parsed["Stage"] == "AggregateResults"
    assert parsed["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Custom"


def failure(message: str, error_type: str = "InjectedTerminalError") -> ChunkFailure:
    return ChunkFailure(
        chunk_id="chunk_000001",
        chunk_number=2,
        error_type=error_type,
        message=message,
        transient=False,
    )


def test_failures_the_state_machine_records_are_reduced_to_their_cause() -> None:
    lambda_cause = json.dumps(
        {"errorMessage": "the input changed", "errorType": "InputChangedError", "stackTrace": []}
    )
    recorded = json.dumps({"Error": "InputChangedError", "Cause": lambda_cause})
    assert explain(failure(recorded)).message == "the input changed"

    job = {"StatusReason": "Essential container in task exited", "Container": {"ExitCode": 1}}
    recorded = json.dumps({"Error": "States.TaskFailed", "Cause": json.dumps(job)})
    assert explain(failure(recorded)).message == "Essential container in task exited (exit code 1)"

    recorded = json.dumps({"Error": "States.Timeout"})
    assert explain(failure(recorded)).message == "no cause given"
    recorded = json.dumps({"Error": "States.Timeout", "Cause": "task timed out"})
    assert explain(failure(recorded)).message == "task timed out"
    recorded = json.dumps({"Error": "X", "Cause": "y" * 5000})
    assert len(explain(failure(recorded)).message) == 2000


def test_failures_recorded_by_a_local_run_are_left_as_they_are() -> None:
    for message in ("injected terminal fault in chunk_000001", '{"not": "an error"}', "[1]"):
        assert explain(failure(message)).message == message


def test_a_handler_given_a_bad_event_raises_a_config_error_and_logs_its_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCM_BATCH_FAULTS", raising=False)
    with pytest.raises(ConfigError) as caught:
        handlers.update_records({"chunk": {"chunkId": 7}}, None)
    assert caught.value.field == "event.chunk"
    with pytest.raises(ConfigError) as caught:
        handlers.calculate_chunks({"batch": {}}, None)
    assert caught.value.field == "event.batch.job"
    with pytest.raises(ConfigError):
        handlers.read_s3([], None)  # type: ignore[arg-type]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["stage"], line["event"], line["error"]) for line in lines] == [
        ("ProcessWithLambda", "failed", "ConfigError"),
        ("CalculateChunks", "failed", "ConfigError"),
        ("InitializeBatchProcessing", "failed", "ConfigError"),
    ]
    assert all(line["transient"] is False for line in lines)


def test_a_bad_deployment_setting_fails_the_function_with_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCM_BATCH_LAMBDA_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="SCM_BATCH_LAMBDA_TIMEOUT"):
        handlers.read_s3({"bucket": "b"}, None)


def test_the_function_table_has_the_seven_contract_names() -> None:
    assert list(handlers.FUNCTIONS) == [
        "scm-batch-processor-read-s3",
        "scm-batch-processor-validate-data",
        "scm-batch-processor-calculate-chunks",
        "scm-batch-processor-update-records",
        "scm-batch-processor-aggregate-results",
        "scm-batch-processor-send-to-kafka",
        "scm-batch-processor-send-to-sqs-core",
    ]
    for name, handler in handlers.FUNCTIONS.items():
        assert handler.__name__ == name.removeprefix("scm-batch-processor-").replace("-", "_")
