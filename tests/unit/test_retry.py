"""Retry policy, error classification, tolerance, and the scheduler that applies them.

The scheduler runs against an in-memory executor whose chunks succeed or fail as each test
scripts them, and a clock whose sleep only records how long it was asked to wait: the backoff is
checked exactly, without waiting for it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest

from scm_batch.errors import (
    ChunkFailedError,
    ConfigError,
    InjectedTerminalError,
    InjectedTransientError,
    InputChangedError,
    LeaseLostError,
    StorageError,
    WorkerDiedError,
)
from scm_batch.executors.worker import portable_error
from scm_batch.ledger import Ledger
from scm_batch.model import Attempt, ChunkResult, ChunkTask, StatusWord, Tolerance
from scm_batch.retry import RetryPolicy, is_transient
from scm_batch.scheduler import ChunkScheduler
from tests.helpers import job_input, plan_input


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (StorageError("disk hiccup"), True),
        (WorkerDiedError("killed"), True),
        (InjectedTransientError("x"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (InputChangedError("changed"), False),
        (ConfigError("f", "bad"), False),
        (InjectedTerminalError("x"), False),
        (KeyError("bug"), False),
        (ValueError("bad data"), False),
    ],
)
def test_classification(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    policy = RetryPolicy(
        attempts=6, base_delay_seconds=1.0, backoff_rate=2.0, max_delay_seconds=5.0
    )
    bounds = {2: 1.0, 3: 2.0, 4: 4.0, 5: 5.0, 6: 5.0}
    rng = random.Random(3)
    for attempt, bound in bounds.items():
        draws = [policy.delay_before(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= bound for d in draws)
        assert max(draws) > 0.8 * bound  # the whole range is used: full jitter
    assert policy.allows(6)
    assert not policy.allows(7)


@pytest.mark.parametrize(
    ("tolerance", "failed", "total", "exceeded"),
    [
        (Tolerance(), 0, 10, False),
        (Tolerance(), 1, 10, True),  # nothing set: no failure tolerated
        (Tolerance(count=2), 2, 10, False),
        (Tolerance(count=2), 3, 10, True),
        (Tolerance(percentage=10.0), 1, 10, False),
        (Tolerance(percentage=10.0), 2, 10, True),
        (Tolerance(percentage=50.0, count=1), 2, 10, True),  # either limit breaks the run
        (Tolerance(percentage=100.0), 10, 10, False),
    ],
)
def test_tolerance(tolerance: Tolerance, failed: int, total: int, exceeded: bool) -> None:
    assert tolerance.exceeded(failed, total) is exceeded


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedExecutor:
    """Chunks end as scripted, per attempt; unscripted chunks stay queued (never start)."""

    def __init__(self, script: dict[str, list[BaseException | None]]) -> None:
        self.script = script
        self.calls: list[tuple[str, int, int]] = []
        self.description = "scripted"

    def check_reach(self, task: ChunkTask) -> None:
        pass

    def submit(
        self, task: ChunkTask, attempt: int = 1, previous: Sequence[Attempt] = ()
    ) -> Future[ChunkResult]:
        self.calls.append((task.chunk_id, attempt, len(previous)))
        future: Future[ChunkResult] = Future()
        outcomes = self.script.get(task.chunk_id)
        if outcomes is None:
            return future  # queued behind busy workers
        outcome = outcomes[attempt - 1]
        if outcome is None:
            done = Attempt(attempt=attempt, status=StatusWord.CHUNK_PROCESSED, duration_seconds=0.1)
            future.set_result(result_for(task, [*previous, done]))
        else:
            future.set_exception(outcome)
        return future

    def lines_done(self) -> int:
        return 0

    def shutdown(self, *, cancel: bool) -> None:
        pass


def result_for(task: ChunkTask, attempts: list[Attempt]) -> ChunkResult:
    return ChunkResult(
        chunk_id=task.chunk_id,
        chunk_number=task.chunk_number,
        route=task.route,
        lines=task.chunk_size,
        blank_lines=0,
        valid_records=task.chunk_size,
        records_with_missing_fields=0,
        records_with_empty_fields=0,
        errors_by_category={},
        field_errors={},
        bytes_read=0,
        result_key="r",
        error_key="e",
        duration_seconds=0.1,
        worker_peak_rss_bytes=0,
        attempts=attempts,
    )


@pytest.fixture
def tasks(bucket: Path) -> tuple[Ledger, list[ChunkTask]]:
    (bucket / "in.jsonl").write_text('{"n": 1}\n' * 40)
    storage, plan = plan_input(bucket, job_input(bucket, max_concurrent_chunks=4), min_chunk_size=1)
    return Ledger(storage, "b"), plan.chunks


def scheduler(
    ledger: Ledger, executor: ScriptedExecutor, clock: FakeClock, **kwargs: object
) -> ChunkScheduler:
    defaults: dict[str, object] = {
        "retry": RetryPolicy(
            attempts=3, base_delay_seconds=2.0, backoff_rate=3.0, max_delay_seconds=60.0
        ),
        "tolerance": Tolerance(),
        "total_chunks": 4,
        "clock": clock,
        "rng": random.Random(7),
    }
    defaults.update(kwargs)
    return ChunkScheduler(executor=executor, ledger=ledger, **defaults)  # type: ignore[arg-type]


def test_transient_failures_are_retried_after_the_backoff(
    tasks: tuple[Ledger, list[ChunkTask]],
) -> None:
    ledger, chunks = tasks
    flaky = chunks[1].chunk_id
    executor = ScriptedExecutor({c.chunk_id: [None] for c in chunks})
    executor.script[flaky] = [StorageError("hiccup"), WorkerDiedError("killed"), None]
    clock = FakeClock()
    outcome = scheduler(ledger, executor, clock).run(chunks)

    assert [r.chunk_id for r in outcome.failures] == []
    result = next(r for r in outcome.results if r.chunk_id == flaky)
    assert [(a.attempt, a.status, a.error_type, a.transient) for a in result.attempts] == [
        (1, StatusWord.CHUNK_FAILED, "StorageError", True),
        (2, StatusWord.CHUNK_FAILED, "WorkerDiedError", True),
        (3, StatusWord.CHUNK_PROCESSED, None, None),
    ]
    expected = random.Random(7)
    policy = RetryPolicy(
        attempts=3, base_delay_seconds=2.0, backoff_rate=3.0, max_delay_seconds=60.0
    )
    assert clock.sleeps == pytest.approx(
        [policy.delay_before(2, expected), policy.delay_before(3, expected)]
    )
    assert clock.sleeps[1] <= 6.0  # base 2 s x rate 3, jittered
    assert (flaky, 3, 2) in executor.calls  # the third try carries the two failures before it
    assert ledger.failures() == {}


def test_a_terminal_failure_is_not_retried(tasks: tuple[Ledger, list[ChunkTask]]) -> None:
    ledger, chunks = tasks
    executor = ScriptedExecutor({c.chunk_id: [None] for c in chunks})
    executor.script[chunks[2].chunk_id] = [InputChangedError("changed")]
    clock = FakeClock()
    outcome = scheduler(ledger, executor, clock, tolerance=Tolerance(count=1)).run(chunks)
    assert [(f.chunk_id, f.error_type, f.transient, len(f.attempts)) for f in outcome.failures] == [
        (chunks[2].chunk_id, "InputChangedError", False, 1)
    ]
    assert clock.sleeps == []
    assert not outcome.failed_fast
    assert len(outcome.results) == 3
    assert set(ledger.failures()) == {chunks[2].chunk_id}


def test_attempts_run_out(tasks: tuple[Ledger, list[ChunkTask]]) -> None:
    ledger, chunks = tasks
    executor = ScriptedExecutor({c.chunk_id: [None] for c in chunks})
    executor.script[chunks[0].chunk_id] = [StorageError("a"), StorageError("b"), StorageError("c")]
    outcome = scheduler(ledger, executor, FakeClock(), tolerance=Tolerance(count=1)).run(chunks)
    (failure,) = outcome.failures
    assert (failure.error_type, failure.message, len(failure.attempts)) == ("StorageError", "c", 3)


def test_beyond_tolerance_nothing_new_starts(tasks: tuple[Ledger, list[ChunkTask]]) -> None:
    ledger, chunks = tasks
    # chunk 0 fails for good at once; chunk 1 is waiting for a retry; 2 and 3 are still queued.
    executor = ScriptedExecutor(
        {
            chunks[0].chunk_id: [InjectedTerminalError("no")],
            chunks[1].chunk_id: [StorageError("x"), None],
        }
    )
    clock = FakeClock()
    outcome = scheduler(ledger, executor, clock).run(chunks)
    assert outcome.failed_fast
    assert [f.chunk_id for f in outcome.failures] == [chunks[0].chunk_id]
    # Aborted, not failed: a chunk that would have been retried, and chunks still queued.
    assert {t.chunk_id for t in outcome.not_started} == {c.chunk_id for c in chunks[1:]}
    assert set(ledger.failures()) == {chunks[0].chunk_id}
    assert outcome.results == []
    assert clock.sleeps == []  # the pending retry was abandoned, not waited for
    assert [call for call in executor.calls if call[1] > 1] == []


def test_the_backoff_counts_from_when_the_failure_is_seen(
    tasks: tuple[Ledger, list[ChunkTask]],
) -> None:
    ledger, chunks = tasks
    executor = ScriptedExecutor({chunks[0].chunk_id: [StorageError("slow failure"), None]})
    clock = FakeClock()
    submitted: dict[int, float] = {}
    real_submit = executor.submit

    def timed_submit(
        task: ChunkTask, attempt: int = 1, previous: Sequence[Attempt] = ()
    ) -> Future[ChunkResult]:
        submitted[attempt] = clock.now
        return real_submit(task, attempt, previous)

    def slow_wait(
        pending: Iterable[Future[ChunkResult]], timeout: float
    ) -> set[Future[ChunkResult]]:
        clock.now += 0.9  # the chunk takes 0.9 s to fail
        return {f for f in pending if f.done()}

    executor.submit = timed_submit  # type: ignore[method-assign]
    policy = RetryPolicy(attempts=2, base_delay_seconds=5.0, max_delay_seconds=5.0)
    outcome = scheduler(ledger, executor, clock, retry=policy, waiter=slow_wait).run(chunks[:1])
    assert [r.chunk_id for r in outcome.results] == [chunks[0].chunk_id]
    delay = policy.delay_before(2, random.Random(7))
    assert submitted[2] - submitted[1] == pytest.approx(0.9 + delay)


class RefusedError(ConnectionError):
    """Like many client libraries' errors: required constructor arguments and a live handle, so
    pickling fails (even where a library taught pickle to rebuild errors without calling their
    constructor, as distributed does through tblib once a Dask client has run here)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"{host}:{port} refused")
        self.handle = threading.Lock()


def test_an_error_that_cannot_travel_keeps_its_transience(
    tasks: tuple[Ledger, list[ChunkTask]],
) -> None:
    _, chunks = tasks
    stand_in = portable_error(RefusedError("broker", 9092), chunks[0])
    assert isinstance(stand_in, ChunkFailedError)
    assert (stand_in.error_type, stand_in.detail) == ("RefusedError", "broker:9092 refused")
    assert is_transient(stand_in)
    assert not is_transient(portable_error(InputChangedError("x"), chunks[0]))


def test_failure_records_of_chunks_done_later_are_forgotten(
    tasks: tuple[Ledger, list[ChunkTask]],
) -> None:
    ledger, chunks = tasks
    executor = ScriptedExecutor({c.chunk_id: [None] for c in chunks})
    executor.script[chunks[3].chunk_id] = [InjectedTerminalError("no")]
    scheduler(ledger, executor, FakeClock(), tolerance=Tolerance(count=1)).run(chunks)
    assert set(ledger.failures()) == {chunks[3].chunk_id}
    ledger.forget_failures_of_done_chunks([chunks[0].chunk_id])
    assert set(ledger.failures()) == {chunks[3].chunk_id}
    ledger.forget_failures_of_done_chunks([chunks[3].chunk_id])
    assert ledger.failures() == {}


def test_a_failed_checkpoint_stops_the_run_before_anything_new_starts(
    tasks: tuple[Ledger, list[ChunkTask]],
) -> None:
    ledger, chunks = tasks
    flaky = chunks[0].chunk_id
    executor = ScriptedExecutor({c.chunk_id: [None] for c in chunks})
    executor.script[flaky] = [StorageError("hiccup"), None]  # a retry, started by a later round
    rounds: list[int] = []

    def checkpoint() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise LeaseLostError("taken over")

    with pytest.raises(LeaseLostError, match="taken over"):
        scheduler(ledger, executor, FakeClock(), checkpoint=checkpoint).run(chunks)
    assert (flaky, 2, 1) not in executor.calls  # the retry never started
