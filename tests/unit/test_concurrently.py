"""Many small requests at a time: answers in order, and an error raised, never lost."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from scm_batch.errors import ObjectNotFoundError
from scm_batch.storage import LocalStorage
from scm_batch.storage.base import concurrently


class Parallel(LocalStorage):
    """A local bucket that asks for four requests in flight, as S3 does for 32."""

    @property
    def concurrent_requests(self) -> int:
        return 4


def test_answers_come_in_the_order_asked_from_several_threads(tmp_path: Path) -> None:
    storage = Parallel(tmp_path)
    threads: set[int] = set()
    release = threading.Barrier(4)  # four calls must be under way at once to get past it

    def call(n: int) -> int:
        threads.add(threading.get_ident())
        if n < 4:
            release.wait(timeout=30)
        return n * n

    assert concurrently(storage, call, list(range(40))) == [n * n for n in range(40)]
    assert len(threads) > 1


def test_an_error_of_one_call_is_raised(tmp_path: Path) -> None:
    storage = Parallel(tmp_path)

    def call(n: int) -> int:
        if n == 7:
            raise ObjectNotFoundError("gone")
        return n

    with pytest.raises(ObjectNotFoundError, match="gone"):
        concurrently(storage, call, list(range(20)))


def test_a_local_bucket_reads_one_after_another_in_this_thread(tmp_path: Path) -> None:
    here = threading.get_ident()
    seen = concurrently(LocalStorage(tmp_path), lambda n: (n, threading.get_ident()), [1, 2, 3])
    assert seen == [(1, here), (2, here), (3, here)]
    assert concurrently(LocalStorage(tmp_path), str, []) == []
