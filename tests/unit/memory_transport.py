"""A transport for records and notifications that keeps what it is given, for the tests: it is
routed to by patching :mod:`scm_batch.sinks.routing`'s registry, as a new transport would be."""

from __future__ import annotations

import msgspec

from scm_batch.sinks.options import DeliveryOptions

CHECKED: list[list[str]] = []  # the addresses of each check, in order
DELIVERED: list[tuple[str, str, bytes]] = []  # (address, key, message)


def forget() -> None:
    CHECKED.clear()
    DELIVERED.clear()


def check(options: DeliveryOptions, addresses: list[str]) -> None:
    CHECKED.append(list(addresses))


def deliver(options: DeliveryOptions, address: str, key: str, message: msgspec.Struct) -> str:
    DELIVERED.append((address, key, msgspec.json.encode(message)))
    return f"memory {address}"


def open_sink(options: DeliveryOptions, address: str) -> None:
    raise AssertionError("records are not delivered to memory in these tests")
