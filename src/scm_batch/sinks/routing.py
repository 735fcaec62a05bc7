"""The one registry of where messages go: record destinations and notification channels.

* Records (a batch's ``destination``): ``kafka`` → the records topic, ``sqs_core`` → the SQS Core
  queue, ``none`` → nowhere (the result parts are the output).
* Notifications (a channel): ``kafka`` → the notification topic, ``sqs_core`` → SQS Core,
  ``batch-proc`` → the status queue — each where configured. Every message is also written to the
  bucket's outbox (``notifications/{batchId}/{channel}.json``), so a batch always keeps a record of
  what it sent.

Each route names its transport: a module (``scm_batch.sinks.kafka``, ``scm_batch.sinks.sqs``)
with three functions, ``open_sink(options, address)``, ``check(options, addresses)`` and
``deliver(options, address, key, message)``. A transport is added by writing that module and
routing to it here; it is imported only when a route uses it (the Kafka and SQS clients take a
tenth of a second each to import, and a worker that delivers nowhere needs neither).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from scm_batch.errors import ConfigError
from scm_batch.model import DeliveryTarget, Deployment, Destination
from scm_batch.sinks.base import RecordSink
from scm_batch.sinks.file import OutboxNotifier
from scm_batch.sinks.options import DeliveryOptions

KAFKA_CHANNEL = "kafka"
SQS_CORE_CHANNEL = "sqs_core"
STATUS_CHANNEL = "batch-proc"


@dataclass(frozen=True, slots=True)
class Route:
    """One place messages can go: the transport that carries them, and where to."""

    transport: str  # the module that carries them: open_sink, check and deliver
    address: Callable[[DeliveryOptions], str | None]  # the topic or queue URL
    configured: Callable[[DeliveryOptions], bool]
    missing: str  # what to set when it is not configured

    def module(self) -> Any:
        return importlib.import_module(self.transport)

    def require(self, options: DeliveryOptions, field: str) -> str:
        """The address, or a ``ConfigError`` naming ``field`` and what to set."""
        address = self.address(options)
        if not self.configured(options) or address is None:
            raise ConfigError(field, self.missing)
        return address


def _kafka(topic: Callable[[DeliveryOptions], str], missing: str) -> Route:
    return Route("scm_batch.sinks.kafka", topic, lambda o: o.kafka.configured, missing)


def _sqs(queue: Callable[[DeliveryOptions], str | None], missing: str) -> Route:
    return Route("scm_batch.sinks.sqs", queue, lambda o: bool(queue(o)), missing)


_KAFKA_MISSING = (
    "kafka needs brokers: set --kafka-brokers or KAFKA_BROKERS "
    "(or deliver nowhere with --destination none)"
)
_SQS_CORE_MISSING = "sqs_core needs a queue: set --sqs-core-queue or SQS_CORE_QUEUE"

# Where records go, by destination; in the order a destination left out is chosen.
DESTINATIONS: dict[Destination, Route] = {
    "kafka": _kafka(lambda o: o.kafka.topic, _KAFKA_MISSING),
    "sqs_core": _sqs(lambda o: o.sqs.core_queue_url, _SQS_CORE_MISSING),
}
# Where notifications go, by channel.
CHANNELS: dict[str, Route] = {
    KAFKA_CHANNEL: _kafka(lambda o: o.kafka.notification_topic, _KAFKA_MISSING),
    SQS_CORE_CHANNEL: _sqs(lambda o: o.sqs.core_queue_url, _SQS_CORE_MISSING),
    STATUS_CHANNEL: _sqs(
        lambda o: o.sqs.status_queue_url, "batch-proc needs a queue: set --status-queue"
    ),
}


def completion_channel(deployment: Deployment) -> str:
    """``DeploymentChoiceState``: where the completion message goes."""
    return SQS_CORE_CHANNEL if deployment == "CORE" else KAFKA_CHANNEL


def resolve_destination(asked: Destination | None, options: DeliveryOptions) -> Destination:
    """The destination a batch delivers its records to.

    Given explicitly (the contract's ``destination``) it is used as is. Left out, it follows the
    configuration: Kafka if brokers are configured, else SQS Core if its queue is, else ``none``
    (the contract's default is ``kafka``; a machine with no broker configured keeps its results in
    the bucket rather than failing).
    """
    if asked is not None:
        return asked
    return next((name for name, r in DESTINATIONS.items() if r.configured(options)), "none")


def delivery_target(destination: Destination, options: DeliveryOptions) -> DeliveryTarget:
    """What a batch's records go to under these options."""
    route = DESTINATIONS.get(destination)
    return DeliveryTarget(
        destination=destination,
        message_format=options.message_format,
        address=route.address(options) if route is not None else None,
    )


def open_record_sink(destination: Destination, options: DeliveryOptions) -> RecordSink | None:
    """The sink for a destination (created in the worker that uses it); ``None`` for none."""
    route = DESTINATIONS.get(destination)
    if route is None:
        return None
    sink: RecordSink = route.module().open_sink(options, route.require(options, "destination"))
    return sink


def preflight(destination: Destination, deployment: Deployment, options: DeliveryOptions) -> None:
    """Check, before any chunk is processed, every broker and queue the batch will use: the
    records' destination (which must be configured), the completion channel and the status queue
    (where configured)."""
    wanted: list[tuple[Route, str]] = []
    route = DESTINATIONS.get(destination)
    if route is not None:
        wanted.append((route, route.require(options, "destination")))
    for channel in (completion_channel(deployment), STATUS_CHANNEL):
        route = CHANNELS[channel]
        address = route.address(options)
        if route.configured(options) and address is not None:
            wanted.append((route, address))
    by_transport: dict[str, tuple[Route, list[str]]] = {}
    for route, address in wanted:
        addresses = by_transport.setdefault(route.transport, (route, []))[1]
        if address not in addresses:
            addresses.append(address)
    for route, addresses in by_transport.values():
        route.module().check(options, addresses)


class DeliveringNotifier:
    """Sends each notification where its channel is configured, and keeps a copy in the outbox."""

    def __init__(self, outbox: OutboxNotifier, options: DeliveryOptions, batch_id: str) -> None:
        self._outbox = outbox
        self._options = options
        self._batch_id = batch_id

    def send(self, channel: str, message: msgspec.Struct) -> str:
        copy = self._outbox.send(channel, message)
        route = CHANNELS[channel]
        address = route.address(self._options)
        if not route.configured(self._options) or address is None:
            return copy
        where: str = route.module().deliver(self._options, address, self._batch_id, message)
        return where
