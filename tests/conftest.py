"""Shared fixtures: a bucket directory, generated inputs, and the command line as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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


@pytest.fixture
def cli() -> Cli:
    """Run ``scm-batch`` in a child process, as a user would; never raises on a non-zero exit."""

    def run(
        *args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # The child sees only the SCM_BATCH_* settings the test gives it.
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

    return run
