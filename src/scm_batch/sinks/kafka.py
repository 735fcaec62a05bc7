"""Records and completion messages to Kafka, with confluent-kafka (librdkafka).

Delivery guarantee: **at least once; duplicates only from a retried chunk, with identical keys.**
The producer is idempotent (``enable.idempotence``, ``acks=all``), so librdkafka's own retries
never duplicate or reorder a message. A chunk counts as delivered only when the broker has
acknowledged every one of its messages; if any delivery report fails, the chunk fails (a transient
``DeliveryError``) and the retry policy runs it again, sending all of its messages again — under
the same keys (each record's new id, derived from batch and line) and with the same contents, so
consumers can drop the repeats. A chunk whose receipt exists has been delivered: a resumed batch
never sends it again.

Backpressure: the producer's queue is bounded (``queue.buffering.max.kbytes``); when it is full,
``send`` waits for deliveries instead of buffering more.

Security is configuration only: ``security_protocol`` (``SSL``, ``SASL_SSL`` …), SASL/SCRAM
username and password, a CA file, and MSK IAM (SASL OAUTHBEARER with tokens from the
``aws-msk-iam-sasl-signer-python`` package, installed with ``pip install 'scm-batch[msk]'``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

import confluent_kafka
import msgspec
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from scm_batch.errors import (
    ConfigError,
    DeliveryError,
    DeliveryRejectedError,
    DeliveryUnavailableError,
)
from scm_batch.model import ChunkTask
from scm_batch.sinks.messages import MessageBlock
from scm_batch.sinks.options import DeliveryOptions, KafkaOptions, MessageFormat

_C = TypeVar("_C", Producer, AdminClient)
# Delivery errors after which an idempotent producer is refused for good (a broker that fenced
# its producer id after an outage, say): the chunk fails and a fresh producer retries it.
_PRODUCER_GONE = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
    }
)
_QUEUE_KBYTES = 64 * 1024  # at most 64 MiB of messages waiting per worker: backpressure beyond
_PREFLIGHT_TIMEOUT = 5.0

# librdkafka's own log (connection refused, retries…) goes to this logger instead of straight to
# standard error; failures that matter surface as DeliveryError with librdkafka's message.
_LOG = logging.getLogger("scm_batch.kafka")
_LOG.addHandler(logging.NullHandler())
_LOG.propagate = False


def _client(kind: type[_C], config: dict[str, Any]) -> _C:
    """A producer or admin client; librdkafka's refusal of a setting is a ConfigError."""
    try:
        return kind(config)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError._INVALID_ARG:
            raise ConfigError("Kafka settings", error.str()) from None
        raise DeliveryError(f"cannot create the Kafka client: {error.str()}") from None


# Before 2.13, confluent-kafka ran the OAUTHBEARER token callback only from poll(): an admin
# client's first request (the preflight's list_topics) then never authenticated, and every MSK
# IAM batch was refused. The project requires 2.13; this guards an environment pinned older.
_OAUTH_CALLBACK_WITHOUT_POLL = (2, 13)


def confluent_kafka_version() -> str:
    try:
        return metadata.version("confluent-kafka")
    except metadata.PackageNotFoundError:  # installed without its metadata (a vendored copy)
        # A (version, number) pair in older releases, the version string in recent ones.
        reported: object = confluent_kafka.version()
        return reported if isinstance(reported, str) else str(reported[0])  # type: ignore[index]


def _msk_iam_token(region: str) -> Callable[[str], tuple[str, float]]:
    installed = confluent_kafka_version()
    release = re.match(r"(\d+)\.(\d+)", installed)
    if release is None or (int(release[1]), int(release[2])) < _OAUTH_CALLBACK_WITHOUT_POLL:
        raise ConfigError(
            "--kafka-msk-iam-region",
            f"MSK IAM needs confluent-kafka 2.13 or later (this is {installed}): "
            "pip install 'confluent-kafka>=2.13'",
        )
    try:
        from aws_msk_iam_sasl_signer import (  # type: ignore[import-not-found]  # noqa: PLC0415 - optional
            MSKAuthTokenProvider,
        )
    except ImportError:
        raise ConfigError(
            "--kafka-msk-iam-region",
            "MSK IAM needs the signer: pip install 'scm-batch[msk]'",
        ) from None

    def token(_config: str) -> tuple[str, float]:
        value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return value, expiry_ms / 1000

    return token


def client_config(options: KafkaOptions) -> dict[str, Any]:
    """Connection and security settings shared by the producer and the admin client."""
    if not options.brokers:
        raise ConfigError("--kafka-brokers", "no Kafka brokers configured (or set KAFKA_BROKERS)")
    config: dict[str, Any] = {
        "bootstrap.servers": options.brokers,
        "client.id": "scm-batch",
        "security.protocol": options.security_protocol,
        "logger": _LOG,
    }
    if options.msk_iam_region:
        config["security.protocol"] = "SASL_SSL"
        config["sasl.mechanism"] = "OAUTHBEARER"
        config["oauth_cb"] = _msk_iam_token(options.msk_iam_region)
    elif options.sasl_mechanism:
        if not (options.sasl_username and options.sasl_password):
            raise ConfigError(
                "--kafka-sasl-mechanism",
                f"{options.sasl_mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
            )
        config["sasl.mechanism"] = options.sasl_mechanism
        config["sasl.username"] = options.sasl_username
        config["sasl.password"] = options.sasl_password
    if options.ssl_ca_location:
        config["ssl.ca.location"] = options.ssl_ca_location
    return config


def producer_config(options: KafkaOptions) -> dict[str, Any]:
    """An idempotent, compressing, batching producer whose queue is bounded."""
    return {
        **client_config(options),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": options.compression,
        "linger.ms": options.linger_ms,
        "batch.size": 1_000_000,
        "queue.buffering.max.kbytes": _QUEUE_KBYTES,
        "message.timeout.ms": options.delivery_timeout_ms,
        "delivery.report.only.error": True,
    }


def check(delivery: DeliveryOptions, topics: list[str]) -> None:
    """Before any chunk: the brokers answer and the topics exist (or are created, by policy)."""
    options = delivery.kafka
    admin = _client(AdminClient, client_config(options))
    try:
        metadata = admin.list_topics(timeout=_PREFLIGHT_TIMEOUT)
    except KafkaException as exc:
        raise DeliveryUnavailableError(
            f"cannot reach the Kafka brokers {options.brokers}: {exc.args[0]}"
        ) from None
    known = {name for name, topic in metadata.topics.items() if topic.error is None}
    missing = [topic for topic in dict.fromkeys(topics) if topic not in known]
    if not missing:
        return
    if options.topic_policy != "create":
        raise ConfigError(
            "--kafka-topic",
            f"topic {missing[0]!r} does not exist on {options.brokers}; create it, or pass "
            "--kafka-topic-policy create",
        )
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=options.topic_partitions) for topic in missing]
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise DeliveryError(f"cannot create Kafka topic {topic!r}: {exc.args[0]}") from None


class _ChunkDelivery:
    """One chunk's messages: counts what was sent and what the broker refused.

    The producer reports failed deliveries only (``delivery.report.only.error``): a Python
    callback per acknowledged message would cost about a microsecond each. Once ``flush()`` has
    emptied the producer's queue, every message was either acknowledged or reported failed, so
    what was sent and not reported failed was acknowledged.
    """

    def __init__(self, sink: KafkaSink, task: ChunkTask) -> None:
        self._sink = sink
        self._producer = sink.producer
        self._topic = sink.options.topic
        self._batch_header = task.batch_id.encode()
        self._sent = 0
        self._failed = 0
        self._first_error: KafkaError | None = None

    def _report(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:  # not called for successes, but harmless if it is
            return
        self._failed += 1
        self._first_error = self._first_error or error
        if error.fatal() or error.code() in _PRODUCER_GONE:
            # This producer will not deliver again: the worker replaces it before the retry.
            self._sink.fatal = self._sink.fatal or error

    def send(self, block: MessageBlock) -> None:
        produce = self._producer.produce
        poll = self._producer.poll
        report = self._report
        topic = self._topic
        bare = self._sink.bare
        for key, value, correlation in zip(
            block.keys, block.values, block.correlation_ids, strict=True
        ):
            headers: list[tuple[str, str | bytes | None]] | None = None
            if bare:  # correlationId only where the record has a gssId
                headers = [("batchId", self._batch_header)]
                if correlation:
                    headers.append(("correlationId", correlation.encode()))
            while True:
                try:
                    produce(topic, value, key, on_delivery=report, headers=headers)
                    break
                except BufferError:
                    poll(0.05)  # the queue is full: wait for deliveries, buffer no more
                except KafkaException as exc:
                    raise self._refused(exc.args[0], key, value) from None
            self._sent += 1
        poll(0)
        if self._failed or self._sink.fatal is not None:  # no point sending the rest
            raise self._undelivered()

    def _refused(self, error: KafkaError, key: str, value: bytes) -> DeliveryError:
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            return DeliveryRejectedError(
                f"record {key} is {len(value):,} bytes as a message, more than the Kafka "
                "producer accepts (message.max.bytes)"
            )
        if error.fatal():
            self._sink.fatal = self._sink.fatal or error
        return DeliveryError(f"Kafka refused a message to {self._topic!r}: {error.str()}")

    def _undelivered(self, unanswered: int = 0) -> DeliveryError:
        if self._sink.fatal is not None:
            return DeliveryError(f"the Kafka producer failed: {self._sink.fatal.str()}")
        return DeliveryError(
            f"{self._failed} of {self._sent} messages to Kafka topic {self._topic!r} were not "
            f"delivered ({unanswered} still unanswered); first error: {self._first_error}"
        )

    def finish(self) -> int:
        deadline = time.monotonic() + self._sink.options.delivery_timeout_ms / 1000 + 30
        unanswered = self._producer.flush(1.0)
        while unanswered > 0 and self._sink.fatal is None and time.monotonic() < deadline:
            unanswered = self._producer.flush(1.0)
        if self._sink.fatal is not None or self._failed or unanswered:
            raise self._undelivered(unanswered)
        return self._sent

    def abort(self) -> None:
        # Pending messages stay with the producer and are delivered or reported later; their
        # chunk is retried whatever happens to them, under the same keys.
        self._producer.poll(0)


class KafkaSink:
    """A Kafka topic for records, one idempotent producer per worker process."""

    def __init__(
        self, options: KafkaOptions, message_format: MessageFormat, producer: Producer | None = None
    ) -> None:
        self.options = options
        self.message_format = message_format
        self.bare = message_format == "bare"
        self.fatal: KafkaError | None = None
        config = producer_config(options)
        config["error_cb"] = self._error
        self.producer = producer if producer is not None else _client(Producer, config)

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = error

    @property
    def broken(self) -> bool:
        return self.fatal is not None

    def begin(self, task: ChunkTask) -> _ChunkDelivery:
        return _ChunkDelivery(self, task)

    def close(self) -> None:
        self.producer.flush(10)


def open_sink(delivery: DeliveryOptions, topic: str) -> KafkaSink:
    """The records' sink for ``topic`` (made in the worker that uses it)."""
    return KafkaSink(msgspec.structs.replace(delivery.kafka, topic=topic), delivery.message_format)


def deliver(delivery: DeliveryOptions, topic: str, key: str, message: msgspec.Struct) -> str:
    """Deliver one notification and wait for the broker's acknowledgement; say where it went."""
    options = delivery.kafka
    producer = _client(Producer, producer_config(options))
    failures: list[KafkaError] = []
    producer.produce(
        topic,
        msgspec.json.encode(message),
        key,
        on_delivery=lambda error, _msg: failures.append(error) if error is not None else None,
    )
    unanswered = producer.flush(options.delivery_timeout_ms / 1000 + 5)
    if failures or unanswered:
        raise DeliveryError(
            f"the message to Kafka topic {topic!r} was not delivered: "
            f"{failures[0] if failures else 'no acknowledgement'}"
        )
    return f"kafka topic {topic}"
