"""Retry policy for chunks: which errors deserve another try, and how long to wait first.

The backoff is exponential with "full jitter" (a uniform draw between 0 and the exponential
bound, capped), the strategy Step Functions calls ``JitterStrategy: FULL``: retries of many chunks
that failed together spread out instead of hitting a struggling service in waves.
"""

from __future__ import annotations

import random

from scm_batch.errors import ChunkFailedError, ScmBatchError
from scm_batch.model import CamelStruct

# Failures of the machinery rather than the data: worth trying again.
_TRANSIENT_BUILTINS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    MemoryError,
)
# Their names as a Lambda reports them, spelled out rather than found by walking subclasses:
# which subclasses exist depends on what was imported (boto3 brings http.client's
# RemoteDisconnected, say), and the generated state machine must not. An error raised under any
# other name (a library's own ConnectionError subclass) is not retried by Step Functions; the
# storage and sink adapters translate their clients' errors into the project's own.
_TRANSIENT_BUILTIN_NAMES = (
    "BrokenPipeError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "MemoryError",
    "TimeoutError",
)


def is_transient(error: BaseException) -> bool:
    """Whether trying the same chunk again may succeed.

    The project's errors say so themselves; of the rest, connection problems, timeouts and memory
    exhaustion are transient, and anything else (a bug, input that can never parse) is terminal.
    """
    if isinstance(error, ChunkFailedError):
        return error.retryable
    if isinstance(error, ScmBatchError):
        return error.transient
    return isinstance(error, _TRANSIENT_BUILTINS)


class RetryPolicy(CamelStruct, frozen=True):
    """How often, and after how long, a failed chunk is tried again."""

    attempts: int = 3
    base_delay_seconds: float = 1.0
    backoff_rate: float = 2.0
    max_delay_seconds: float = 30.0

    def delay_before(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before ``attempt`` (2 for the first retry), with full jitter."""
        bound = self.base_delay_seconds * self.backoff_rate ** max(0, attempt - 2)
        return rng.uniform(0.0, min(self.max_delay_seconds, bound))

    def allows(self, attempt: int) -> bool:
        """Whether ``attempt`` (1-based) may be made at all."""
        return attempt <= self.attempts


def _subclasses(root: type[BaseException]) -> list[type[BaseException]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def transient_error_names() -> list[str]:
    """Class names of every error :func:`is_transient` calls transient, sorted.

    A Lambda error's name is its class name, and a Step Functions ``Retry`` matches names exactly
    (not subclasses), so the state machine's Retry lists them all; it is generated from here.
    """
    names = {
        cls.__name__
        for cls in _subclasses(ScmBatchError)
        if issubclass(cls, ScmBatchError) and cls.transient and cls is not ChunkFailedError
    }
    names.update(_TRANSIENT_BUILTIN_NAMES)
    return sorted(names)
