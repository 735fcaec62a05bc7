"""The lifecycle, once: its steps in the workflow's order on every driver, each step done once per
run, and backends chosen through their registries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from scm_batch import lease, lifecycle
from scm_batch.aws.definition import build_definition, resources_for_account
from scm_batch.config import RunOptions
from scm_batch.errors import ConfigError, LeaseLostError, ObjectNotFoundError, RebuildFailedError
from scm_batch.faults import ChunkFault, FaultPlan
from scm_batch.ledger import Ledger
from scm_batch.model import PlanOptions
from scm_batch.records.generate import generate_file
from scm_batch.sinks import routing
from scm_batch.sinks.options import DeliveryOptions, SqsOptions
from scm_batch.storage import BACKENDS, Backend, LocalStorage, StorageOptions, open_storage
from tests.helpers import job_input
from tests.unit import memory_transport

STATUS_QUEUE = "memory://status"


def success_path(states: dict[str, Any], start: str) -> Iterator[str]:
    """The states a batch that succeeds passes through: a Choice's default way each time."""
    name: str | None = start
    while name is not None:
        yield name
        state = states[name]
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")


def test_the_state_machine_runs_the_steps_in_the_lifecycle_order() -> None:
    resources = resources_for_account(region="eu-west-1", account="123456789012")
    definition = build_definition(resources)
    passed = list(success_path(definition["States"], definition["StartAt"]))
    assert passed[-1] == "SuccessState"
    assert [name for name in passed if name in lifecycle.STATES] == list(lifecycle.STATES)


class Spy:
    """Counts the calls of a function it stands in front of, and calls it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
        self.calls = 0
        self._function: Callable[..., Any] = getattr(owner, name)
        monkeypatch.setattr(owner, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._function(*args, **kwargs)


@pytest.fixture
def memory_status_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The status channel routed to the memory transport, as a new transport would be."""
    memory_transport.forget()
    route = routing.CHANNELS[routing.STATUS_CHANNEL]
    monkeypatch.setitem(
        routing.CHANNELS,
        routing.STATUS_CHANNEL,
        routing.Route("tests.unit.memory_transport", route.address, route.configured, "-"),
    )
    yield
    memory_transport.forget()


def test_a_run_checks_its_input_opens_its_bucket_and_checks_its_channels_once(
    bucket: Path, monkeypatch: pytest.MonkeyPatch, memory_status_queue: None
) -> None:
    generate_file(bucket / "in.jsonl", 2_000, seed=3)
    validations = Spy(monkeypatch, lifecycle, "validate_batch_config")
    openings = Spy(monkeypatch, lifecycle, "open_storage")
    options = RunOptions(
        workers=1,
        plan=PlanOptions(min_chunk_size=1),
        delivery=DeliveryOptions(sqs=SqsOptions(status_queue_url=STATUS_QUEUE)),
    )
    job = job_input(bucket, max_concurrent_chunks=2)

    report = lifecycle.run_batch(job, options)
    assert report.exit_code == 0
    assert (validations.calls, openings.calls) == (1, 1)
    assert memory_transport.CHECKED == [[STATUS_QUEUE]]  # the preflight, once
    [(address, key, sent)] = memory_transport.DELIVERED
    assert (address, key) == (STATUS_QUEUE, "b")
    assert json.loads(sent)["batchStatus"] == "SUBMITTED_FOR_PROCESSING"
    assert [n.location for n in report.notifications][-1] == f"memory {STATUS_QUEUE}"

    # Run again, the batch is finished: nothing is checked or sent, and the report stands.
    memory_transport.forget()
    again = lifecycle.run_batch(job, options)
    assert again.already_complete
    assert (memory_transport.CHECKED, memory_transport.DELIVERED) == ([], [])
    assert again.summary == report.summary


def open_memory(name: str, options: StorageOptions) -> LocalStorage:
    """A storage backend of the tests: ``mem://dir`` is the local directory ``dir``."""
    return LocalStorage(name.removeprefix("mem://"))


def test_a_storage_backend_is_chosen_through_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        BACKENDS,
        "mem",
        Backend(
            "tests.unit.test_lifecycle:open_memory",
            lambda parsed, given: f"mem://{parsed.path}",
            lambda name: f"mem://{name}",
        ),
    )
    storage = open_storage(f"mem://{tmp_path}")
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path
    with pytest.raises(ConfigError, match="unsupported scheme 'gs'"):
        open_storage("gs://somewhere")


def test_a_finished_batch_is_reported_from_its_ledger_without_being_aggregated_again(
    bucket: Path,
) -> None:
    generate_file(bucket / "in.jsonl", 500, seed=4)
    options = RunOptions(workers=1, plan=PlanOptions(min_chunk_size=1))
    first = lifecycle.run_batch(job_input(bucket, max_concurrent_chunks=2), options)
    aggregated = (bucket / "final-results/b/aggregated-results.json").read_bytes()
    again = lifecycle.resume_batch(str(bucket), "b", options)
    assert again.already_complete
    assert (bucket / "final-results/b/aggregated-results.json").read_bytes() == aggregated
    assert msgspec.to_builtins(again.summary) == msgspec.to_builtins(first.summary)


def test_a_finished_batch_missing_part_of_its_outcome_is_an_error_never_sent_again(
    bucket: Path,
) -> None:
    generate_file(bucket / "in.jsonl", 300, seed=5)
    options = RunOptions(workers=1, plan=PlanOptions(min_chunk_size=1))
    lifecycle.run_batch(job_input(bucket), options)
    sent = (bucket / "notifications/b/batch-proc.json").read_bytes()
    (bucket / "validation/b/validation-results.json").unlink()
    with pytest.raises(ObjectNotFoundError, match=r"validation/b/validation-results\.json"):
        lifecycle.resume_batch(str(bucket), "b", options)
    assert (bucket / "notifications/b/batch-proc.json").read_bytes() == sent


def test_a_chunk_to_rebuild_is_known_as_delivered_across_a_crash(bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 400, seed=6)
    options = RunOptions(workers=1, plan=PlanOptions(min_chunk_size=1))
    lifecycle.run_batch(job_input(bucket, max_concurrent_chunks=2), options)
    ledger = Ledger(LocalStorage(bucket), "b")
    receipt = ledger.done()["chunk_000001"]
    (bucket / "results/b/chunk_000001.jsonl").unlink()
    # A run noted the damage and forgot the receipt, then died before rebuilding the chunk.
    ledger.rebuild({"chunk_000001": receipt})
    stored = ledger.stored_plan()
    assert stored.delivery is not None
    planned = lifecycle.plan(stored.job, None, stored.delivery, ledger, options)
    assert planned.finished  # its records went out: the batch stays final
    [task] = planned.todo
    assert (task.chunk_id, task.delivered_before) == ("chunk_000001", receipt.delivered)


def test_a_rebuild_that_fails_leaves_the_outcome_standing_and_says_so(bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 400, seed=6)
    options = RunOptions(workers=1, plan=PlanOptions(min_chunk_size=1))
    lifecycle.run_batch(job_input(bucket, max_concurrent_chunks=2), options)
    outcome = (bucket / "final-results/b/aggregated-results.json").read_bytes()
    (bucket / "results/b/chunk_000001.jsonl").unlink()
    failing = FaultPlan(chunks={"chunk_000001": ChunkFault(kind="terminal", times=None)})
    with pytest.raises(RebuildFailedError, match="chunk_000001: InjectedTerminalError") as failed:
        lifecycle.resume_batch(str(bucket), "b", msgspec.structs.replace(options, faults=failing))
    assert failed.value.exit_code == 4
    assert (bucket / "final-results/b/aggregated-results.json").read_bytes() == outcome
    ledger = Ledger(LocalStorage(bucket), "b")
    assert ledger.finished(ledger.stored_plan())


def test_a_run_that_lost_its_lease_sends_nothing(
    bucket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_file(bucket / "in.jsonl", 300, seed=5)
    aggregated = bucket / "final-results/b/aggregated-results.json"

    class LostAfterAggregating:
        """A lease found lost once the batch is aggregated (taken over meanwhile, say)."""

        def check(self) -> None:
            if aggregated.exists():
                raise LeaseLostError("s3://b/metadata/b.lease was taken over by another run")

    @contextmanager
    def held(ledger: Ledger) -> Iterator[LostAfterAggregating]:
        yield LostAfterAggregating()

    monkeypatch.setattr(lease, "held", held)
    options = RunOptions(workers=1, plan=PlanOptions(min_chunk_size=1))
    with pytest.raises(LeaseLostError, match="taken over"):
        lifecycle.run_batch(job_input(bucket), options)
    assert aggregated.exists()
    assert not (bucket / "metadata/b/notified.json").exists()
    assert not (bucket / "notifications").exists()
