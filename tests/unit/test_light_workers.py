"""A worker that reads a local bucket and delivers nowhere loads neither boto3 nor librdkafka:
each costs a fifth of a second and ten-odd MiB per worker process."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from scm_batch.executors import local
from scm_batch.sinks.options import DeliveryOptions
from scm_batch.sinks.routing import open_record_sink, preflight
from scm_batch.storage import open_storage
import scm_batch.cli
assert open_record_sink("none", DeliveryOptions()) is None
open_storage(".")
preflight("none", "WORKSPACE", DeliveryOptions())
heavy = [m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "confluent_kafka")]
print(",".join(heavy))
"""


def test_heavy_clients_load_only_when_used() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
