"""The test-only fault switch, and the ledger's storage operations."""

from __future__ import annotations

from pathlib import Path

import pytest

from scm_batch.errors import ConfigError, InjectedTerminalError, InjectedTransientError
from scm_batch.faults import ChunkFault, FaultPlan, parse_faults
from scm_batch.storage import LocalStorage


def test_the_fault_spec() -> None:
    plan = parse_faults(
        "chunk_000001=transient:2, chunk_000002=terminal,chunk_000003=kill,"
        "chunk_000004=kill:2@7,driver=after-chunks:4"
    )
    assert plan is not None
    assert plan.chunks == {
        "chunk_000001": ChunkFault(kind="transient", times=2),
        "chunk_000002": ChunkFault(kind="terminal", times=None),
        "chunk_000003": ChunkFault(kind="kill", times=1),
        "chunk_000004": ChunkFault(kind="kill", times=2, after_blocks=7),
    }
    assert (plan.driver_point, plan.driver_after_chunks) == ("after-chunks", 4)
    assert parse_faults(None) is None
    assert parse_faults("  ") is None


@pytest.mark.parametrize(
    "spec",
    ["chunk_000001", "chunk_000001=explode", "driver=whenever", "x=transient:two", "x=kill@z"],
)
def test_bad_fault_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="SCM_BATCH_FAULTS"):
        parse_faults(spec)


def test_hooks_strike_only_the_attempts_asked_for() -> None:
    plan = FaultPlan(
        chunks={
            "a": ChunkFault(kind="transient", times=2),
            "b": ChunkFault(kind="terminal", times=None),
        }
    )
    for attempt in (1, 2):
        hook = plan.hook("a", attempt)
        assert hook is not None
        with pytest.raises(InjectedTransientError):
            hook(1)
    assert plan.hook("a", 3) is None
    terminal = plan.hook("b", 9)
    assert terminal is not None
    with pytest.raises(InjectedTerminalError):
        terminal(1)
    late = FaultPlan(chunks={"c": ChunkFault(kind="terminal", times=None, after_blocks=3)}).hook(
        "c", 1
    )
    assert late is not None
    late(1)
    late(2)  # not yet
    with pytest.raises(InjectedTerminalError):
        late(3)
    assert plan.hook("c", 1) is None
    assert (
        FaultPlan(chunks={"d": ChunkFault(kind="kill-driver")}).hook("d", 1) is None
    )  # no driver pid


def test_listing_skips_and_discarding_removes_interrupted_writes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("results/b/chunk_000001.jsonl", b"x")
    storage.put_bytes("metadata/b/chunks/chunk_000001.json", b"{}")
    leftovers = [
        tmp_path / "results/b/.chunk_000001.jsonl.0a1b2c.tmp",
        tmp_path / "results/b/.chunk_000002.jsonl.0a1b2c.tmp",
        tmp_path / "metadata/b/chunks/.chunk_000003.json.99.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    assert storage.list_keys("results/b/") == ["results/b/chunk_000001.jsonl"]
    assert storage.list_keys("metadata/b/") == ["metadata/b/chunks/chunk_000001.json"]
    assert storage.list_keys("results/b/chunk_0000") == ["results/b/chunk_000001.jsonl"]
    assert storage.list_keys("absent/") == []
    assert storage.list_sizes("results/") == {"results/b/chunk_000001.jsonl": 1}
    assert storage.list_sizes("absent/") == {}

    assert storage.discard_incomplete("results/b/chunk_000002.jsonl") == 1  # one key's leftovers
    assert leftovers[0].exists()
    assert storage.discard_incomplete("metadata/b/") == 1  # a whole prefix, nested
    assert storage.discard_incomplete("results/b/") == 1
    assert not any(path.exists() for path in leftovers)
    assert storage.get_bytes("results/b/chunk_000001.jsonl") == b"x"
    storage.delete("results/b/chunk_000001.jsonl")
    storage.delete("results/b/chunk_000001.jsonl")  # deleting nothing is fine
    assert storage.list_keys("results/") == []


def test_an_unreadable_manifest_means_the_chunk_is_redone(bucket: Path) -> None:
    from scm_batch.ledger import Ledger
    from scm_batch.stages.process import process_chunk
    from tests.helpers import job_input, plan_input

    (bucket / "in.jsonl").write_text('{"n": 1}\n' * 20)
    storage, plan = plan_input(bucket, job_input(bucket, max_concurrent_chunks=2), min_chunk_size=1)
    for task in plan.chunks:
        process_chunk(task, storage=storage)
    ledger = Ledger(storage, "b")
    assert set(ledger.done()) == {"chunk_000000", "chunk_000001"}
    (bucket / "metadata/b/chunks/chunk_000001.json").write_bytes(b"")  # torn by a full disk
    assert set(ledger.done()) == {"chunk_000000"}
    assert not (bucket / "metadata/b/chunks/chunk_000001.json").exists()
