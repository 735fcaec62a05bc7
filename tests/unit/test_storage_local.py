"""The local bucket: safe keys, atomic writes, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scm_batch.errors import ConfigError, ObjectNotFoundError, StorageAccessError, StorageError
from scm_batch.storage import LocalStorage
from scm_batch.storage.local import _os_errors


def test_a_missing_or_non_directory_bucket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        LocalStorage(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ObjectNotFoundError, match="not a directory"):
        LocalStorage(tmp_path / "file")


def test_keys_cannot_escape_the_bucket(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for key in ["../x", "/etc/passwd", "a/../../x", "a\\b", ""]:
        with pytest.raises(ConfigError):
            storage.stat(key)


def test_write_is_atomic_and_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("a/b.txt", b"first")

    def interrupted_write() -> None:
        with storage.open_writer("a/b.txt") as out:
            out.write(b"half of the second")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        interrupted_write()
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path / "a")) == ["b.txt"]  # no temporary debris


def test_ranges_and_blocks(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("f", bytes(range(100)))
    assert storage.read_range("f", 10, 20) == bytes(range(10, 20))
    assert storage.read_range("f", 95, 200) == bytes(range(95, 100))
    assert b"".join(storage.iter_range("f", 3, 97, 7)) == bytes(range(3, 97))
    assert all(len(b) <= 7 for b in storage.iter_range("f", 0, 100, 7))
    assert storage.stat("f").size == 100


def test_stat_errors(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with pytest.raises(ObjectNotFoundError, match="no such file"):
        storage.stat("absent.jsonl")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ObjectNotFoundError, match="not a regular file"):
        storage.stat("dir")


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (PermissionError(13, "Permission denied"), StorageAccessError, "permission denied"),
        (FileNotFoundError(2, "No such file"), ObjectNotFoundError, "no such file"),
        (OSError(28, "No space left on device"), StorageError, "No space left"),
    ],
)
def test_os_errors_become_storage_errors(
    raised: OSError, expected: type[Exception], words: str
) -> None:
    # Root can read anything, so a real permission error cannot be provoked in CI; the mapping is
    # what matters, and every storage call goes through it.
    with pytest.raises(expected, match=words) as caught, _os_errors("/b/key"):
        raise raised
    assert "/b/key" in str(caught.value)


def test_delete_prefix_removes_only_that_prefix(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("results/b1/x", b"1")
    storage.put_bytes("results/b10/x", b"1")
    storage.delete_prefix("results/b1/")
    assert not storage.exists("results/b1/x")
    assert storage.exists("results/b10/x")
    storage.delete_prefix("results/absent/")  # nothing there is fine
