"""Helpers for the tests that read what was delivered to Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # where mypy sees it exported


def create_topics(bootstrap: str, *names: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(n, num_partitions=partitions) for n in names]
    ).values():
        future.result(timeout=30)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def key_of(message: Message) -> str:
    key = message.key()
    assert isinstance(key, bytes)
    return key.decode()


def value_of(message: Message) -> bytes:
    value = message.value()
    assert isinstance(value, bytes)
    return value


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every message in ``topic``, partition by partition up to each partition's end.

    Partitions are assigned directly (no consumer group: tansu's group coordination is slow), and
    reading stops at the high watermarks, so the call ends when everything was read."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = {p: end for p, end in ends.items() if end > 0}
        messages: list[Message] = []
        while remaining:
            for message in consumer.consume(10_000, timeout=5.0):
                if message.error() is not None:
                    continue
                messages.append(message)
                partition, offset = message.partition(), message.offset()
                if partition in remaining and (offset or 0) + 1 >= remaining[partition]:
                    del remaining[partition]
        return messages
    finally:
        consumer.close()


def same_keys(delivered: Iterable[str], expected: Mapping[str, object], where: str = "") -> str:
    """ "" when the delivered keys are the expected ones; otherwise a short account of the
    difference (counts and a few keys of each side), short enough to survive a CI log's tail,
    where pytest's full diff of two 200,000-key sets would not."""
    got = set(delivered)
    missing = sorted(set(expected) - got)
    extra = sorted(got - set(expected))
    if not missing and not extra:
        return ""
    return (
        f"{where}{len(missing)} expected keys never delivered {missing[:3]}…{missing[-2:]}; "
        f"{len(extra)} delivered keys not in the results {extra[:3]}…{extra[-2:]} "
        f"(of {len(expected)} expected, {len(got)} delivered)"
    )
