"""What the functions and the Batch job tell CloudWatch: JSON log lines and metrics.

Metrics go out as CloudWatch Embedded Metric Format: a log line whose ``_aws`` member declares
which of its fields are metrics, under which namespace and dimensions. CloudWatch extracts them
from the log stream, so no API call, client or permission is needed and nothing is lost when a
function ends abruptly after printing.

Log lines carry ids, counts, keys and error names only. Records never reach a log: they go to
the result and error parts in the bucket, which is where their contents belong (and what the
bucket's access policy protects).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO, Literal

import msgspec

Unit = Literal["Count", "Seconds", "Bytes", "Count/Second", "Percent"]

_encode = msgspec.json.Encoder().encode


class Metric(msgspec.Struct, frozen=True):
    name: str
    value: float
    unit: Unit = "Count"


def emf_document(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: list[Metric],
    properties: Mapping[str, object] | None = None,
    *,
    timestamp_ms: int | None = None,
) -> dict[str, object]:
    """One EMF document: the metrics, their dimensions and searchable properties."""
    document: dict[str, object] = dict(properties or {})
    document.update(dimensions)
    document["_aws"] = {
        "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "CloudWatchMetrics": [
            {
                "Namespace": namespace,
                "Dimensions": [sorted(dimensions)],
                "Metrics": [{"Name": m.name, "Unit": m.unit} for m in metrics],
            }
        ],
    }
    for metric in metrics:
        document[metric.name] = metric.value
    return document


class Telemetry:
    """Writes log lines and EMF metrics for one stage, one JSON document per line."""

    def __init__(self, stage: str, namespace: str, stream: IO[str] | None = None) -> None:
        self.stage = stage
        self.namespace = namespace
        self._stream = stream

    def _write(self, document: Mapping[str, object]) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(_encode(document).decode() + "\n")
        stream.flush()

    def log(self, event: str, **fields: object) -> None:
        """A log line: what happened, with ids and counts (never record contents)."""
        self._write({"stage": self.stage, "event": event, **fields})

    def metrics(self, metrics: list[Metric], **properties: object) -> None:
        """Metrics with the stage as their one dimension; ``properties`` are searchable fields."""
        self._write(emf_document(self.namespace, {"Stage": self.stage}, metrics, properties))
