"""Fault injection, for tests only: make chosen chunks fail, kill their worker, or kill the driver.

Set ``SCM_BATCH_FAULTS`` to a comma-separated list of ``target=fault`` entries:

* ``chunk_000003=transient:2`` — the chunk's first 2 attempts raise a transient error;
* ``chunk_000004=terminal`` — every attempt raises a terminal error;
* ``chunk_000005=kill:1`` — the worker running the first attempt kills itself with SIGKILL;
* ``chunk_000007=stall:1`` — the worker running the first attempt stops itself (SIGSTOP), as a
  stuck worker would be: only its chunk's timeout ends it;
* ``chunk_000008=slow:1`` — the worker running the first attempt pauses a quarter of a second
  after every block, as one held back by its destination would: slow, never stuck;
* ``chunk_000006=kill-driver`` — the worker kills the driver, then itself, with SIGKILL, leaving
  the chunk's parts half-written as a machine crash would (first attempt only);
* ``driver=during-staging:N`` (once N chunks of compressed input are staged) |
  ``during-planning`` | ``after-plan`` | ``after-chunks:N`` | ``during-aggregation`` |
  ``before-notify`` — the driver kills itself with SIGKILL at that point.

Chunk faults strike after the chunk's first block has been written to its (uncommitted) parts, so
they exercise the commit protocol as a real crash would; ``@N`` makes one strike after block N
instead (``chunk_000002=kill:1@7``: with 1 MiB blocks, once several MiB are written). Nothing
here runs unless the variable is set; it never is in production.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from scm_batch.errors import ConfigError, InjectedTerminalError, InjectedTransientError
from scm_batch.model import CamelStruct

FAULTS_ENV = "SCM_BATCH_FAULTS"

ChunkFaultKind = Literal["transient", "terminal", "kill", "stall", "slow", "kill-driver"]
SLOW_BLOCK_SECONDS = 0.25
_SIGNALS = {"kill": signal.SIGKILL, "stall": signal.SIGSTOP}
DRIVER_POINTS = (
    "during-staging",
    "during-planning",
    "after-plan",
    "after-chunks",
    "during-aggregation",
    "before-notify",
)


class ChunkFault(CamelStruct, frozen=True):
    kind: ChunkFaultKind
    times: int | None = 1  # attempts it strikes; None: every attempt
    after_blocks: int = 1  # strikes once this many blocks of the chunk are written


class FaultPlan(CamelStruct, frozen=True):
    """Parsed ``SCM_BATCH_FAULTS``; plain data, so it travels to workers with the task."""

    chunks: dict[str, ChunkFault] = msgspec.field(default_factory=dict)
    driver_point: str | None = None
    driver_after_chunks: int = 0
    driver_pid: int | None = None

    def hook(self, chunk_id: str, attempt: int) -> Callable[[int], None] | None:
        """What to do mid-chunk for this attempt, or ``None``: a function told how many blocks
        of the chunk are written so far, which strikes at the fault's block."""
        fault = self.chunks.get(chunk_id)
        if fault is None or (fault.times is not None and attempt > fault.times):
            return None
        strike = self._strike(fault, chunk_id, attempt)
        if strike is None:
            return None

        def at_block(blocks: int) -> None:
            if blocks == fault.after_blocks or (
                fault.kind == "slow" and blocks > fault.after_blocks
            ):
                strike()

        return at_block

    def _strike(self, fault: ChunkFault, chunk_id: str, attempt: int) -> Callable[[], None] | None:
        if fault.kind == "transient":
            message = f"injected transient fault in {chunk_id}, attempt {attempt}"

            def raise_transient() -> None:
                raise InjectedTransientError(message)

            return raise_transient
        if fault.kind == "terminal":
            message = f"injected terminal fault in {chunk_id}"

            def raise_terminal() -> None:
                raise InjectedTerminalError(message)

            return raise_terminal
        if fault.kind in _SIGNALS:  # the worker kills (or stops) itself
            sent = _SIGNALS[fault.kind]
            return lambda: os.kill(os.getpid(), sent)
        if fault.kind == "slow":
            return lambda: time.sleep(SLOW_BLOCK_SECONDS)
        driver = self.driver_pid
        if driver is None:
            return None

        def crash_host() -> None:
            os.kill(driver, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

        return crash_host

    def crash_driver_at(self, point: str, *, chunks_done: int = 0) -> None:
        """Kill this (driver) process if the plan says so at ``point``. Only a driver that runs
        a session (the local run, which records its pid) does: never a Lambda function."""
        if self.driver_point != point or self.driver_pid is None:
            return
        counted = point in ("after-chunks", "during-staging")
        if counted and chunks_done < self.driver_after_chunks:
            return
        os.kill(os.getpid(), signal.SIGKILL)


def _chunk_fault(value: str, entry: str) -> ChunkFault:
    value, _, at = value.partition("@")
    if at and not at.isdigit():
        raise ConfigError(FAULTS_ENV, f"bad block number in {entry!r}")
    after = int(at) if at else 1
    kind, _, times = value.partition(":")
    if kind not in ("transient", "terminal", "kill", "stall", "slow", "kill-driver"):
        raise ConfigError(FAULTS_ENV, f"unknown fault {kind!r} in {entry!r}")
    if kind == "terminal":
        return ChunkFault(kind="terminal", times=None, after_blocks=after)
    try:
        count = int(times) if times else 1
    except ValueError:
        raise ConfigError(FAULTS_ENV, f"bad count in {entry!r}") from None
    return ChunkFault(kind=kind, times=count, after_blocks=after)  # type: ignore[arg-type]


def parse_faults(spec: str | None) -> FaultPlan | None:
    """The fault plan described by ``spec`` (the variable's value), or ``None`` when unset."""
    if not spec or not spec.strip():
        return None
    chunks: dict[str, ChunkFault] = {}
    point: str | None = None
    after = 0
    for raw in spec.split(","):
        entry = raw.strip()
        target, sep, value = entry.partition("=")
        if not sep or not value:
            raise ConfigError(FAULTS_ENV, f"entries look like target=fault, got {entry!r}")
        if target == "driver":
            point, _, count = value.partition(":")
            if point not in DRIVER_POINTS:
                raise ConfigError(FAULTS_ENV, f"unknown driver point {point!r}")
            after = int(count) if count.isdigit() else 0
        else:
            chunks[target] = _chunk_fault(value, entry)
    return FaultPlan(chunks=chunks, driver_point=point, driver_after_chunks=after)
