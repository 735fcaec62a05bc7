"""Where records and notifications are delivered, and how: plain data that travels to workers.

The original deployment's environment names keep working: ``KAFKA_BROKERS``, ``KAFKA_TOPIC``,
``SQS_CORE_QUEUE`` (:mod:`scm_batch.settings` reads them, for the command line and AWS alike).
"""

from __future__ import annotations

from typing import Literal

import msgspec

MessageFormat = Literal["envelope", "bare"]
TopicPolicy = Literal["require", "create"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class KafkaOptions(msgspec.Struct, frozen=True, kw_only=True):
    """A Kafka cluster: where records and completion messages go when the destination is kafka."""

    brokers: str | None = None
    topic: str = "processed-records"
    notification_topic: str = "batch-notifications"
    topic_policy: TopicPolicy = "require"
    topic_partitions: int = 6
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    msk_iam_region: str | None = None  # MSK IAM: SASL OAUTHBEARER tokens from the MSK signer
    compression: Literal["zstd", "lz4", "none"] = "zstd"
    linger_ms: int = 20
    delivery_timeout_ms: int = 120_000

    @property
    def configured(self) -> bool:
        return bool(self.brokers)


class SqsOptions(msgspec.Struct, frozen=True, kw_only=True):
    """SQS queues: SQS Core for records and completion messages, and the status queue."""

    core_queue_url: str | None = None
    status_queue_url: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    max_batch_bytes: int = 256 * 1024  # SQS's payload limit for one SendMessageBatch call
    parallel_batches: int = 8
    entry_attempts: int = 5


class DeliveryOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the record sinks and the notifier need."""

    message_format: MessageFormat = "envelope"
    kafka: KafkaOptions = msgspec.field(default_factory=KafkaOptions)
    sqs: SqsOptions = msgspec.field(default_factory=SqsOptions)
