"""Fixtures of the AWS tests: the offline sandbox and the deployment's environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.aws.sandbox import Sandbox, sandbox

# The interpreter logs every caught error at ERROR level: the tests cause many on purpose.
logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)

DEPLOYMENT_ENV = {
    # Small test files still make several chunks, counted exactly so a local run of the same
    # input cuts the same chunks.
    "SCM_BATCH_MIN_CHUNK_SIZE": "1",
    "SCM_BATCH_COUNT_RECORDS": "true",
    # No broker here: completion messages stay in the bucket's outbox, where tests read them.
    "SCM_BATCH_COMPLETION_OUTBOX_ONLY": "true",
}


@pytest.fixture
def deployment_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The functions' environment: only what a test sets, on top of :data:`DEPLOYMENT_ENV`."""
    import os

    for name in list(os.environ):
        if name.startswith(("SCM_BATCH_", "KAFKA_", "SQS_")):
            monkeypatch.delenv(name)
    for name, value in DEPLOYMENT_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.fixture
def aws(deployment_env: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with sandbox() as box:
        yield box
