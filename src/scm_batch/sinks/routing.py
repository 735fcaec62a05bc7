"""Which sink a destination means, which channel a notification takes, and the checks before work.

* Records: ``kafka`` → the records topic, ``sqs_core`` → the SQS Core queue, ``none`` → nowhere
  (the result parts are the output).
* Notifications: channel ``kafka`` → the notification topic, ``sqs_core`` → SQS Core,
  ``batch-proc`` → the status queue — each where configured. Every message is also written to the
  bucket's outbox (``notifications/{batchId}/{channel}.json``), so a batch always keeps a record of
  what it sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scm_batch.errors import ConfigError
from scm_batch.model import DeliveryTarget, Deployment, Destination
from scm_batch.sinks.base import RecordSink
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.sinks.options import DeliveryOptions
from scm_batch.stages.notify import (
    KAFKA_CHANNEL,
    SQS_CORE_CHANNEL,
    STATUS_CHANNEL,
    completion_channel,
)


def resolve_destination(asked: Destination | None, options: DeliveryOptions) -> Destination:
    """The destination a batch delivers its records to.

    Given explicitly (the contract's ``destination``) it is used as is. Left out, it follows the
    configuration: Kafka if brokers are configured, else SQS Core if its queue is, else ``none``
    (the contract's default is ``kafka``; a machine with no broker configured keeps its results in
    the bucket rather than failing).
    """
    if asked is not None:
        return asked
    if options.kafka.configured:
        return "kafka"
    if options.sqs.core_queue_url:
        return "sqs_core"
    return "none"


# The Kafka and SQS clients take a tenth of a second each to import, and a worker that delivers
# nowhere needs neither: they are loaded where used.


def delivery_target(destination: Destination, options: DeliveryOptions) -> DeliveryTarget:
    """What a batch's records go to under these options."""
    address = {"kafka": options.kafka.topic, "sqs_core": options.sqs.core_queue_url}.get(
        destination
    )
    return DeliveryTarget(
        destination=destination, message_format=options.message_format, address=address
    )


def open_record_sink(destination: Destination, options: DeliveryOptions) -> RecordSink | None:
    """The sink for a destination (created in the worker that uses it)."""
    if destination == "kafka":
        from scm_batch.sinks.kafka import KafkaSink  # noqa: PLC0415 - heavy, loaded when used

        return KafkaSink(options.kafka, options.message_format)
    if destination == "sqs_core":
        from scm_batch.sinks.sqs import SqsSink  # noqa: PLC0415 - heavy, loaded when used

        if not options.sqs.core_queue_url:
            raise ConfigError("--sqs-core-queue", "destination sqs_core needs SQS_CORE_QUEUE")
        return SqsSink(options.sqs.core_queue_url, options.sqs, options.message_format)
    return None


def preflight(destination: Destination, deployment: Deployment, options: DeliveryOptions) -> None:
    """Check, before any chunk is processed, every broker and queue the batch will use."""
    kafka_topics: list[str] = []
    queues: list[tuple[str, str]] = []
    if destination == "kafka":
        if not options.kafka.configured:
            raise ConfigError(
                "destination",
                "kafka needs brokers: set --kafka-brokers or KAFKA_BROKERS "
                "(or deliver nowhere with --destination none)",
            )
        kafka_topics.append(options.kafka.topic)
    if destination == "sqs_core":
        if not options.sqs.core_queue_url:
            raise ConfigError(
                "destination", "sqs_core needs a queue: set --sqs-core-queue or SQS_CORE_QUEUE"
            )
        queues.append(("--sqs-core-queue", options.sqs.core_queue_url))
    if completion_channel(deployment) == KAFKA_CHANNEL and options.kafka.configured:
        kafka_topics.append(options.kafka.notification_topic)
    if completion_channel(deployment) == SQS_CORE_CHANNEL and options.sqs.core_queue_url:
        queues.append(("--sqs-core-queue", options.sqs.core_queue_url))
    if options.sqs.status_queue_url:
        queues.append(("--status-queue", options.sqs.status_queue_url))
    if kafka_topics:
        from scm_batch.sinks import kafka  # noqa: PLC0415 - heavy, loaded when used

        kafka.preflight(options.kafka, kafka_topics)
    if queues:
        from scm_batch.sinks import sqs  # noqa: PLC0415 - heavy, loaded when used

        for _flag, url in dict.fromkeys(queues):
            sqs.preflight(options.sqs, url)


class DeliveringNotifier:
    """Sends each notification where its channel is configured, and keeps a copy in the outbox."""

    def __init__(self, outbox: OutboxNotifier, options: DeliveryOptions, batch_id: str) -> None:
        self._outbox = outbox
        self._options = options
        self._batch_id = batch_id

    def send(self, channel: str, message: Mapping[str, Any]) -> str:
        copy = self._outbox.send(channel, message)
        options = self._options
        if channel == KAFKA_CHANNEL and options.kafka.configured:
            from scm_batch.sinks import kafka  # noqa: PLC0415 - heavy, loaded when used

            kafka.send_one(options.kafka, options.kafka.notification_topic, self._batch_id, message)
            return f"kafka topic {options.kafka.notification_topic}"
        queue = {
            SQS_CORE_CHANNEL: options.sqs.core_queue_url,
            STATUS_CHANNEL: options.sqs.status_queue_url,
        }.get(channel)
        if queue:
            from scm_batch.sinks import sqs  # noqa: PLC0415 - heavy, loaded when used

            sqs.send_one(options.sqs, queue, message)
            return queue
        return copy
