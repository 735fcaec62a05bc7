"""Records and completion messages delivered to a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from scm_batch.errors import DeliveryError
from scm_batch.records.generate import generate_file
from tests.conftest import Cli
from tests.integration.kafka_tools import (
    create_topics,
    key_of,
    read_all,
    same_keys,
    unique,
    value_of,
)
from tests.integration.servers import FaultProxy, KafkaBroker, free_port, kafka_broker

PROCESSED_AT = "2026-05-01T00:00:00.000Z"


def run_args(bucket: Path, brokers: str, records: str, notices: str, *extra: str) -> list[str]:
    return [
        "run",
        "--bucket", str(bucket),
        "--file", "input/records.jsonl",
        "--customer-id", "cust-k",
        "--tenant-id", "ten-k",
        "--batch-id", "kbatch",
        "--processed-at", PROCESSED_AT,
        "--destination", "kafka",
        "--kafka-brokers", brokers,
        "--kafka-topic", records,
        "--kafka-notification-topic", notices,
        "--workers", "2",
        "--progress", "log",
        "--json",
        *extra,
    ]  # fmt: skip


def result_records(bucket: Path) -> dict[str, bytes]:
    """Every result line by the record's id."""
    lines: dict[str, bytes] = {}
    for part in sorted((bucket / "results" / "kbatch").glob("*.jsonl")):
        for line in part.read_bytes().splitlines():
            lines[json.loads(line)["id"]] = line
    return lines


@pytest.fixture(scope="module")
def records_200k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kafka") / "records.jsonl"
    generate_file(path, 200_000, seed=31, invalid_rate=0.003, malformed_rate=0.0002)
    return path


def bucket_with(tmp_path: Path, source: Path) -> Path:
    bucket = tmp_path / "bucket"
    (bucket / "input").mkdir(parents=True)
    (bucket / "input" / "records.jsonl").symlink_to(source)
    return bucket


@pytest.mark.slow
def test_every_valid_record_once_then_the_completion_message(
    cli: Cli, kafka: KafkaBroker, tmp_path: Path, records_200k: Path
) -> None:
    records, notices = unique("records"), unique("notices")
    create_topics(kafka.bootstrap, records, notices)
    bucket = bucket_with(tmp_path, records_200k)
    ran = cli(*run_args(bucket, kafka.bootstrap, records, notices))
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    valid = summary["totals"]["validRecords"]

    messages = read_all(kafka.bootstrap, records)
    assert len(messages) == valid
    keys = [key_of(m) for m in messages]
    assert len(set(keys)) == valid
    expected = result_records(bucket)
    assert not (problem := same_keys(keys, expected)), problem
    for message in messages:
        envelope = json.loads(value_of(message))
        key = key_of(message)
        assert envelope["record"] == json.loads(expected[key])
        meta = envelope["metadata"]
        assert (meta["batchId"], meta["customerId"], meta["tenantId"]) == (
            "kbatch",
            "cust-k",
            "ten-k",
        )
        assert (meta["processedAt"], meta["source"], meta["destination"]) == (
            PROCESSED_AT,
            "scm-batch",
            "kafka",
        )
        assert isinstance(meta["recordIndex"], int)
    per_chunk = Counter(json.loads(value_of(m))["metadata"]["chunkId"] for m in messages)
    assert per_chunk == {d["chunkId"]: d["validRecords"] for d in summary["chunkDetails"]}

    (completion,) = read_all(kafka.bootstrap, notices)
    body = json.loads(value_of(completion))
    assert (body["type"], body["batchId"], body["status"]) == (
        "BATCH_COMPLETION_NOTIFICATION",
        "kbatch",
        "COMPLETED",
    )
    assert body["summary"]["totalRecordsProcessed"] == summary["summary"]["totalRecordsProcessed"]
    last_record = max(m.timestamp()[1] for m in messages)
    assert completion.timestamp()[1] >= last_record  # the completion comes after the last record


def test_the_bare_variant_with_headers(cli: Cli, kafka: KafkaBroker, tmp_path: Path) -> None:
    records, notices = unique("records"), unique("notices")
    create_topics(kafka.bootstrap, records, notices)
    bucket = tmp_path / "bucket"
    generate_file(bucket / "input" / "records.jsonl", 3_000, seed=5)
    ran = cli(*run_args(bucket, kafka.bootstrap, records, notices, "--message-format", "bare"))
    assert ran.returncode == 0, ran.stderr
    expected = result_records(bucket)
    messages = read_all(kafka.bootstrap, records)
    assert len(messages) == len(expected) == 3_000
    for message in messages:
        key = key_of(message)
        assert value_of(message) == expected[key]
        headers = dict(message.headers() or [])
        assert headers["batchId"] == b"kbatch"
        assert headers["correlationId"] == json.loads(expected[key])["gssId"].encode()


@pytest.mark.slow
def test_a_broker_outage_mid_run_loses_nothing(
    cli: Cli, tmp_path: Path, records_200k: Path
) -> None:
    proxy_port = free_port()
    with kafka_broker(advertised_port=proxy_port) as broker:
        proxy = FaultProxy(f"http://127.0.0.1:{broker.listen_port}", port=proxy_port)
        try:
            records, notices = unique("records"), unique("notices")
            create_topics(broker.bootstrap, records, notices)
            # Once ~3 MB went out (compressed: roughly a third of the records), the broker is
            # unreachable for 4 seconds.
            proxy.outage_after(3_000_000, seconds=4.0)
            bucket = bucket_with(tmp_path, records_200k)
            ran = cli(*run_args(bucket, broker.bootstrap, records, notices))
            assert ran.returncode == 0, ran.stderr
            assert proxy.outages == 1
            messages = read_all(broker.bootstrap, records)
        finally:
            proxy.close()
    expected = result_records(bucket)
    by_key: dict[str, set[bytes]] = {}
    for message in messages:
        by_key.setdefault(key_of(message), set()).add(value_of(message))
    assert not (problem := same_keys(by_key, expected)), problem  # no record missing
    assert all(len(values) == 1 for values in by_key.values())  # repeats, if any, are identical


def test_resume_sends_only_what_was_not_delivered(
    cli: Cli, kafka: KafkaBroker, tmp_path: Path, records_200k: Path
) -> None:
    records, notices = unique("records"), unique("notices")
    create_topics(kafka.bootstrap, records, notices)
    bucket = bucket_with(tmp_path, records_200k)
    args = run_args(bucket, kafka.bootstrap, records, notices)
    killed = cli(*args, env={"SCM_BATCH_FAULTS": "driver=after-chunks:4"})
    assert killed.returncode == -signal.SIGKILL
    done_before = {p.stem for p in (bucket / "metadata/kbatch/chunks").glob("*.json")}
    assert len(done_before) >= 4
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    expected = result_records(bucket)
    messages = read_all(kafka.bootstrap, records)
    counts = Counter(key_of(m) for m in messages)
    assert not (problem := same_keys(counts, expected)), problem  # nothing missing
    chunk_of: dict[str, Any] = {
        key_of(m): json.loads(value_of(m))["metadata"]["chunkId"] for m in messages
    }
    repeated = {key for key, count in counts.items() if count > 1}
    # Only chunks that were not finished when the driver died can have been sent twice.
    assert not {chunk_of[key] for key in repeated} & done_before


def test_bad_kafka_configuration_is_refused_before_any_chunk(
    cli: Cli, kafka: KafkaBroker, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"
    generate_file(bucket / "input" / "records.jsonl", 1_000, seed=1)
    base = [
        "run",
        "--bucket",
        str(bucket),
        "--file",
        "input/records.jsonl",
        "--customer-id",
        "c",
        "--tenant-id",
        "t",
    ]

    def refused(code: int, words: str, *args: str) -> None:
        batch = unique("b")
        result = cli(*base, "--batch-id", batch, *args)
        assert result.returncode == code, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        assert words in errors[0], result.stderr
        assert not (bucket / "results" / batch).exists()  # no chunk was processed

    refused(2, "kafka needs brokers", "--destination", "kafka")
    refused(
        2, "does not exist", "--kafka-brokers", kafka.bootstrap, "--kafka-topic", unique("absent")
    )
    refused(6, "cannot reach the Kafka brokers", "--kafka-brokers", f"127.0.0.1:{free_port()}")
    refused(
        2,
        "--kafka-topic-policy",
        "--kafka-brokers",
        kafka.bootstrap,
        "--kafka-topic-policy",
        "maybe",
    )
    created = cli(
        *base, "--batch-id", unique("b"), "--kafka-brokers", kafka.bootstrap,
        "--kafka-topic", unique("made"), "--kafka-notification-topic", unique("made"),
        "--kafka-topic-policy", "create", "--progress", "none",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr


def test_messages_the_broker_never_acknowledges_fail_the_chunk(tmp_path: Path) -> None:
    from scm_batch.sinks.kafka import KafkaSink
    from scm_batch.sinks.messages import MessageBlock
    from scm_batch.sinks.options import KafkaOptions
    from tests.helpers import job_input, plan_input

    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')
    _, plan = plan_input(tmp_path, job_input(tmp_path, destination="kafka"))
    dead = KafkaOptions(brokers=f"127.0.0.1:{free_port()}", delivery_timeout_ms=1500)
    sink = KafkaSink(dead, "envelope")
    delivery = sink.begin(plan.chunks[0])
    delivery.send(MessageBlock(["k1", "k2"], [b"{}", b"{}"], [None, None]))
    with pytest.raises(DeliveryError, match=r"2 of 2 messages .* were not delivered"):
        delivery.finish()


@pytest.mark.slow
def test_an_outage_longer_than_the_delivery_timeout_is_retried_until_delivered(
    tmp_path: Path, records_200k: Path
) -> None:
    from scm_batch.config import RunOptions
    from scm_batch.lifecycle import run_batch
    from scm_batch.model import PlanOptions
    from scm_batch.retry import RetryPolicy
    from scm_batch.sinks.options import DeliveryOptions, KafkaOptions
    from tests.helpers import job_input

    proxy_port = free_port()
    with kafka_broker(advertised_port=proxy_port) as broker:
        proxy = FaultProxy(f"http://127.0.0.1:{broker.listen_port}", port=proxy_port)
        try:
            records, notices = unique("records"), unique("notices")
            create_topics(broker.bootstrap, records, notices)
            proxy.outage_after(3_000_000, seconds=5.0)  # longer than the 1.5 s delivery timeout
            kafka = KafkaOptions(
                brokers=broker.bootstrap,
                topic=records,
                notification_topic=notices,
                delivery_timeout_ms=1500,
            )
            options = RunOptions(
                workers=2,
                plan=PlanOptions(min_chunk_size=1),
                retry=RetryPolicy(attempts=10, base_delay_seconds=1.0, max_delay_seconds=3.0),
                delivery=DeliveryOptions(kafka=kafka),
            )
            bucket = bucket_with(tmp_path, records_200k)
            job = job_input(
                bucket, "input/records.jsonl", batch_id="kbatch", max_concurrent_chunks=20
            )
            report = run_batch(job, options)
            assert report.exit_code == 0, [
                (a.attempt, a.error_type, (a.message or "")[:60])
                for f in report.summary.failed_chunks
                for a in f.attempts
            ]
            assert proxy.outages == 1
            messages = read_all(broker.bootstrap, records)
        finally:
            proxy.close()
    retried = [d for d in report.summary.chunk_details if d.attempts > 1]
    assert retried  # the outage failed some chunks' deliveries, and they were sent again
    expected = result_records(bucket)
    by_key: dict[str, set[bytes]] = {}
    for message in messages:
        by_key.setdefault(key_of(message), set()).add(value_of(message))
    assert not (problem := same_keys(by_key, expected)), problem
    assert all(len(values) == 1 for values in by_key.values())


def test_a_resumed_batch_cannot_switch_format_or_topic(
    cli: Cli, kafka: KafkaBroker, tmp_path: Path
) -> None:
    records, notices = unique("records"), unique("notices")
    create_topics(kafka.bootstrap, records, notices)
    bucket = tmp_path / "bucket"
    generate_file(bucket / "input" / "records.jsonl", 3_000, seed=6)
    args = run_args(
        bucket,
        kafka.bootstrap,
        records,
        notices,
        "--max-concurrent-chunks",
        "3",
        "--min-chunk-size",
        "1",
    )
    killed = cli(
        *args, "--message-format", "bare", env={"SCM_BATCH_FAULTS": "driver=after-chunks:1"}
    )
    assert killed.returncode == -signal.SIGKILL
    switched = cli(*args)  # the envelope format this time
    assert switched.returncode == 2
    assert "was planned to deliver to kafka" in switched.stderr
    assert "as bare messages" in switched.stderr
    resumed = cli(*args, "--message-format", "bare")
    assert resumed.returncode == 0, resumed.stderr
    assert {m.headers() is not None for m in read_all(kafka.bootstrap, records)} == {True}


def test_kafka_settings_librdkafka_refuses_are_configuration_errors(
    cli: Cli, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"
    generate_file(bucket / "input" / "records.jsonl", 100, seed=1)
    base = [
        "run", "--bucket", str(bucket), "--file", "input/records.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", "b", "--kafka-brokers", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    cases: list[tuple[str, list[str]]] = [
        (
            "KAFKA_SASL_USERNAME",
            ["--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-mechanism", "PLAIN"],
        ),
        ("ssl.ca.location", ["--kafka-security-protocol", "SSL", "--kafka-ssl-ca", "/no/ca.pem"]),
        ("pip install 'scm-batch[msk]'", ["--kafka-msk-iam-region", "eu-west-1"]),
    ]
    for words, extra in cases:
        result = cli(*base, *extra)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        assert words in errors[0], result.stderr
        assert "%3|" not in result.stderr  # librdkafka's own log stays out of the way


def test_a_resume_to_another_topic_is_refused_before_any_broker_is_asked(
    cli: Cli, kafka: KafkaBroker, tmp_path: Path
) -> None:
    records, notices, other = unique("records"), unique("notices"), unique("other")
    create_topics(kafka.bootstrap, records, notices)
    bucket = tmp_path / "bucket"
    generate_file(bucket / "input" / "records.jsonl", 500, seed=8)
    args = run_args(bucket, kafka.bootstrap, records, notices)
    planned = cli(*args, env={"SCM_BATCH_FAULTS": "driver=after-plan"})
    assert planned.returncode == -signal.SIGKILL
    # Told to create missing topics, a resume to another topic would create it were the
    # brokers asked first: the changed destination is refused before that.
    moved = run_args(bucket, kafka.bootstrap, other, notices, "--kafka-topic-policy", "create")
    refused = cli(*moved)
    assert refused.returncode == 2, refused.stderr
    assert f"was planned to deliver to kafka {records}" in refused.stderr
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    assert other not in admin.list_topics(timeout=10).topics
    assert cli(*args).returncode == 0
