"""Shared fixtures: a bucket directory, generated inputs, and the command line as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Tests talk to S3 only through servers they start on 127.0.0.1, with these fake credentials; set
# before any worker process exists, so every worker inherits them. Real ones are never used.
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)

# Shared 2-core CI machines are slow and noisy: no per-example deadline, and no failing a run
# because data generation was slow (that says nothing about the code under test).
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    path = tmp_path / "bucket"
    path.mkdir()
    return path


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``scm-batch`` in a child process, as a user would; never raises on a non-zero exit.

    The child sees only the SCM_BATCH_* settings the test gives it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "scm_batch", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        env=environment,
    )


@pytest.fixture
def cli() -> Cli:
    return run_cli
