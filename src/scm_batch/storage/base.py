"""The storage port: the working bucket as a handful of object operations.

The stages only ever talk to a bucket through this protocol, so the same code runs on a local
directory today and on S3 later. Keys are ``/``-separated relative names; every adapter checks them
with :func:`check_key`, so no key names a path outside its bucket (a symbolic link placed inside
a local bucket is followed like any other file: the bucket's owner put it there).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import msgspec

from scm_batch.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


class ObjectInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Identity of a stored object: enough to notice that it changed."""

    key: str
    size: int
    mtime_ns: int
    etag: str | None = None
    version_id: str | None = None

    @property
    def identity(self) -> tuple[int, int, str | None, str | None]:
        """What must not change between planning a batch and reading it."""
        return (self.size, self.mtime_ns, self.etag, self.version_id)


class HeldLease(Protocol):
    """An exclusive hold on one object of the bucket, taken by :meth:`Storage.hold`."""

    def renew(self, claim: bytes) -> None:
        """Rewrite the claim (a later expiry); ``LeaseLostError`` if another took it over."""
        ...

    def release(self) -> None:
        """Let go (nothing happens if it was lost)."""
        ...


class ObjectWriter(Protocol):
    """The write side of an object being created; it appears under its key only when complete."""

    def write(self, data: bytes, /) -> int: ...


class Storage(Protocol):
    """A bucket: objects addressed by key."""

    @property
    def uri(self) -> str:
        """The bucket as the user should see it in messages (a path or a URI)."""
        ...

    def uri_for(self, key: str) -> str:
        """The full location of one object, for messages and result documents."""
        ...

    @property
    def concurrent_requests(self) -> int:
        """How many requests :func:`concurrently` keeps in flight (1: one after another)."""
        ...

    def local_file(self, key: str) -> str | None:
        """The object's path, when it is a file this machine's processes can open themselves
        (a local bucket); ``None`` otherwise."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size and identity of an object; ``ObjectNotFoundError`` when there is none."""
        ...

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of an object (shorter only at the end of the object)."""
        ...

    def iter_range(
        self, key: str, start: int, end: int, block_size: int, *, etag: str | None = None
    ) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of an object as consecutive blocks of at most ``block_size``.

        With ``etag``, the object must still be that version (where the backend has ETags)."""
        ...

    def open_writer(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """Create or replace an object; a failure inside the block leaves no object behind."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Create or replace a small object in one step."""
        ...

    def put_new(self, key: str, data: bytes) -> bool:
        """Create a small object only if there is none under ``key``, atomically (of two
        writers, one wins); ``False``, and nothing written, if there was one."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The whole content of a small object."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove one object; nothing happens if there is none."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Keys of the complete objects whose key starts with ``prefix``, sorted."""
        ...

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Sizes of the complete objects whose key starts with ``prefix``, by key: one listing,
        where a ``stat`` of each would be one request each."""
        ...

    def discard_incomplete(self, prefix: str) -> int:
        """Remove what interrupted writes left behind for keys starting with ``prefix``
        (temporary files, unfinished uploads); return how many were removed."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with ``prefix`` (which ends in ``/``); never
        through a link that leads out of the bucket (``StorageAccessError``)."""
        ...

    def hold(
        self, key: str, claim: bytes, stale: Callable[[bytes, float | None], bool]
    ) -> HeldLease | bytes:
        """Take the exclusive hold on ``key``, writing ``claim`` into it; or, when another
        process holds it and ``stale`` (given its claim, and how many seconds ago it was written
        by the storage's own clock, ``None`` if unknown) says it still may, that claim."""
        ...

    def check_deletable(self, prefix: str) -> None:
        """Raise what :meth:`delete_prefix` would raise before deleting anything, so that a
        caller deleting several prefixes deletes all of them or none."""
        ...


def concurrently(storage: Storage, call: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``call`` of each item, answered in the items' order, at most
    ``storage.concurrent_requests`` at a time: thousands of small objects (a ledger's receipts)
    are read in the time of a few requests, where S3 answers each after tens of milliseconds.
    An error is raised once the calls before it have ended (those after it may have been made
    already: callers keep each call safe on its own)."""
    workers = min(storage.concurrent_requests, len(items))
    if workers <= 1:
        return [call(item) for item in items]
    # Threads: the calls wait on the network, not on the interpreter. Each call runs in a copy
    # of the caller's context, as it would have run in the caller's thread.
    pool = ThreadPoolExecutor(workers, thread_name_prefix="scm-batch-storage")
    try:
        futures = [pool.submit(contextvars.copy_context().run, call, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(cancel_futures=True)


_FORBIDDEN_KEY_CHARS = frozenset(chr(c) for c in range(32)) | {"\x7f", "\\"}
MAX_KEY_LENGTH = 1024


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a safe object key, or ``None`` when it is."""
    checks = [
        (bool(key), "must not be empty"),
        (len(key) <= MAX_KEY_LENGTH, f"must be at most {MAX_KEY_LENGTH} characters"),
        (not key.startswith("/"), "must be relative to the bucket (no leading '/')"),
        (_is_utf8(key), "must be valid UTF-8"),
        (
            not any(ch in _FORBIDDEN_KEY_CHARS for ch in key),
            "must not contain control characters or '\\'",
        ),
        (
            all(part not in ("", ".", "..") for part in key.split("/")),
            "must not contain empty, '.' or '..' path segments",
        ),
    ]
    return next((problem for ok, problem in checks if not ok), None)


def check_key(key: str, field: str = "key") -> str:
    """Return ``key`` unchanged, or raise ``ConfigError`` naming ``field``."""
    problem = key_problem(key)
    if problem is not None:
        raise ConfigError(field, f"{problem} (got {key!r})")
    return key
