"""Delivery to Kafka against the broker's own limit: ``python -m bench.kafka [RECORDS]``.

Starts a tansu broker on 127.0.0.1 (the Kafka-protocol broker the tests use, in-memory storage)
and measures, on the first RECORDS lines (default 500,000) of the benchmark's input:

1. **scm-batch** ``run`` with ``--kafka-brokers``: records processed, written and acknowledged
   by the broker, per second (2 workers);
2. **the broker alone**: the same messages (scm-batch's envelopes, read back from the topic of
   run 1) produced again by 2 processes with scm-batch's producer settings (idempotent, acks=all,
   zstd, linger 20 ms), each flushing to the end: the most this broker takes on this machine.

Not part of ``make bench`` (the broker's in-memory log holds every message); the figures go to
BENCHMARKS.md by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from tests.integration.kafka_tools import create_topics
from tests.integration.servers import kafka_broker

from bench.data import ensure
from scm_batch.sinks.kafka import producer_config
from scm_batch.sinks.options import KafkaOptions

TOPIC = "processed-records"
PARTITIONS = 3
PRODUCERS = 2


def _messages(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the topic."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False}
    )
    found: list[tuple[bytes, bytes]] = []
    try:
        for partition in range(PARTITIONS):
            end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            consumer.assign([TopicPartition(topic, partition, 0)])
            taken = 0
            while taken < end:
                for message in consumer.consume(10_000, timeout=5):
                    if message.error() is None:
                        found.append((message.key() or b"", message.value() or b""))
                        taken += 1
    finally:
        consumer.close()
    return found


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Seconds to produce ``messages`` and have every one acknowledged."""
    producer = Producer(producer_config(KafkaOptions(brokers=bootstrap)))
    started = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:  # the bounded queue is full: wait for acknowledgements
                producer.poll(0.05)
        producer.poll(0)
    producer.flush()
    return time.perf_counter() - started


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    source = ensure(2_000_000).path
    with tempfile.TemporaryDirectory() as tmp, kafka_broker() as broker:
        bucket = Path(tmp) / "bucket"
        (bucket / "input").mkdir(parents=True)
        with source.open("rb") as lines, (bucket / "input" / "x.jsonl").open("wb") as out:
            for _ in range(records):
                out.write(lines.readline())
        create_topics(
            broker.bootstrap, TOPIC, "batch-notifications", "again", partitions=PARTITIONS
        )
        command = [
            str(Path(sys.executable).parent / "scm-batch"), "run", "--bucket", str(bucket),
            "--file", "input/x.jsonl", "--customer-id", "c", "--tenant-id", "t",
            "--batch-id", "kafka", "--workers", "2", "--progress", "none", "--json",
            "--kafka-brokers", broker.bootstrap, "--kafka-topic", TOPIC,
        ]  # fmt: skip
        started = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if run.returncode not in (0, 3):
            sys.exit(f"scm-batch failed: {run.stderr[-2000:]}")
        summary: dict[str, Any] = json.loads(run.stdout)
        delivered = summary["totals"]["validRecords"]
        messages = _messages(broker.bootstrap, TOPIC)
        assert len(messages) == delivered, (len(messages), delivered)
        shares = [messages[i::PRODUCERS] for i in range(PRODUCERS)]
        started = time.perf_counter()
        with ProcessPoolExecutor(PRODUCERS) as pool:
            list(pool.map(_produce, [broker.bootstrap] * PRODUCERS, ["again"] * PRODUCERS, shares))
        alone = time.perf_counter() - started
    size = sum(len(v) for _, v in messages) / len(messages)
    print(
        json.dumps(
            {
                "records": records,
                "messages": delivered,
                "mean_message_bytes": round(size),
                "scm_batch_seconds": round(seconds, 2),
                "scm_batch_records_per_s": round(records / seconds),
                "broker_alone_seconds": round(alone, 2),
                "broker_alone_messages_per_s": round(delivered / alone),
                "share_of_broker_limit": round(alone / seconds, 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
