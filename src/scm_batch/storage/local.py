"""A directory on the local disk as the working bucket.

Objects are files below the root; writes go to a hidden temporary file beside the target, which is
flushed to disk (``fsync``) and then renamed over it with ``os.replace``: no reader ever sees a
half-written object under its final name, and an object written before another (a chunk's parts
before its receipt) is on disk before it, even across a power loss.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from scm_batch.errors import ObjectNotFoundError, StorageAccessError, StorageError
from scm_batch.storage.base import HeldLease, ObjectInfo, check_key
from scm_batch.storage.options import StorageOptions

TEMP_SUFFIX = ".tmp"


class _DurableFile:
    """Unbuffered writes that hand each written range to the kernel for write-back at once.

    Callers write in large blocks, so a user-space buffer would only add a copy. Asking the kernel
    to start writing each range back as soon as it is written (``POSIX_FADV_DONTNEED`` does that
    for dirty pages, and then drops them from the cache) means the ``fsync`` before the rename
    finds little left to wait for, and a run writing gigabytes does not flood the page cache.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._written = 0

    def write(self, data: bytes, /) -> int:
        view = memoryview(data)
        start = self._written
        while view:
            count = os.write(self._fd, view)
            view = view[count:]
            self._written += count
        if _FADVISE is not None:
            _FADVISE(self._fd, start, self._written - start, os.POSIX_FADV_DONTNEED)
        return len(data)


_FADVISE = getattr(os, "posix_fadvise", None)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


@contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """Turn OS errors into the project's storage errors, naming the object concerned."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ObjectNotFoundError(f"{what}: no such file or directory") from exc
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise ObjectNotFoundError(f"{what}: not a regular file") from exc
    except PermissionError as exc:
        raise StorageAccessError(f"{what}: permission denied") from exc
    except OSError as exc:
        raise StorageError(f"{what}: {exc.strerror or exc}") from exc


_CLAIM_WAIT = 0.02  # seconds between reads of a claim being written, for at most a second


def _their_claim(held: BinaryIO) -> bytes:
    """The claim in a locked lease file. A run that has just taken the lock writes its claim a
    moment later: an empty file is read again, briefly, before it is reported as it is."""
    for _ in range(50):
        held.seek(0)
        claim = held.read()
        if claim:
            return claim
        time.sleep(_CLAIM_WAIT)
    return b""


class _LockedFile:
    """A lease file this process holds the lock of, open for the lock's lifetime."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def renew(self, claim: bytes) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, claim, 0)

    def release(self) -> None:
        """Empty the claim and let go (closing lets go of the lock). The file stays: removing
        it would let a run that opened it before and one that creates it anew both lock one."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def open_bucket(name: str, options: StorageOptions) -> LocalStorage:
    """The storage backend's opener (see :data:`scm_batch.storage.BACKENDS`): a directory."""
    return LocalStorage(name)


def _link_new(tmp: Path, path: Path) -> None:
    """Give ``tmp``'s file the name ``path`` unless it is taken (``FileExistsError``): a hard
    link is atomic and never replaces. Where the file system has no hard links (some network
    mounts), a check then a rename: two writers racing there may both succeed."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.ENOSYS,
        ):
            with _os_errors(str(path)):
                raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        with _os_errors(str(path)):
            os.replace(tmp, path)


class LocalStorage:
    """A bucket that is a local directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).expanduser().absolute()
        if not path.exists():
            raise ObjectNotFoundError(f"bucket directory {path} does not exist")
        if not path.is_dir():
            raise ObjectNotFoundError(f"bucket {path} is not a directory")
        self._root = path

    @property
    def root(self) -> Path:
        return self._root

    @property
    def uri(self) -> str:
        return str(self._root)

    def uri_for(self, key: str) -> str:
        return str(self._path(key))

    def local_file(self, key: str) -> str | None:
        return str(self._path(key))

    @property
    def concurrent_requests(self) -> int:
        return 1  # a file is read at once: threads would only add their cost

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with _os_errors(str(path)):
            st = path.stat()
            if not path.is_file():
                raise IsADirectoryError(str(path))
        return ObjectInfo(key=key, size=st.st_size, mtime_ns=st.st_mtime_ns)

    def read_range(self, key: str, start: int, end: int) -> bytes:
        path = self._path(key)
        with _os_errors(str(path)), path.open("rb") as fh:
            fh.seek(start)
            return fh.read(max(0, end - start))

    def iter_range(
        self, key: str, start: int, end: int, block_size: int, *, etag: str | None = None
    ) -> Iterator[bytes]:
        del etag  # local files have none; the size and mtime checks stand in for it
        path = self._path(key)
        with _os_errors(str(path)), path.open("rb", buffering=0) as fh:
            fh.seek(start)
            remaining = end - start
            while remaining > 0:
                block = fh.read(min(block_size, remaining))
                if not block:
                    break
                remaining -= len(block)
                yield block

    @contextmanager
    def open_writer(self, key: str) -> Iterator[_DurableFile]:
        with self._writer(key, exclusive=False) as writer:
            yield writer

    def put_new(self, key: str, data: bytes) -> bool:
        try:
            with self._writer(key, exclusive=True) as fh:
                fh.write(data)
        except FileExistsError:
            return False
        return True

    @contextmanager
    def _writer(self, key: str, *, exclusive: bool) -> Iterator[_DurableFile]:
        """Write through a temporary file; then its name replaces the object (or, ``exclusive``,
        is linked to the object's name, which fails with ``FileExistsError`` if it is taken)."""
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        with _os_errors(str(path)):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with _os_errors(str(path)):
                try:
                    writer = _DurableFile(fd)
                    yield writer
                    os.fsync(fd)  # the data is on disk before its name says it is
                finally:
                    os.close(fd)
                # No fsync of the directory: journaling file systems (ext4, XFS, btrfs) commit
                # renames in order, so a receipt's name is durable only after the names of the
                # parts renamed before it; and a lost last rename only means a chunk is redone.
                if not exclusive:
                    os.replace(tmp, path)
            if exclusive:
                try:
                    _link_new(tmp, path)
                finally:
                    with suppress(OSError):
                        tmp.unlink()
        except BaseException:
            with suppress(OSError):
                tmp.unlink()
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_writer(key) as fh:
            fh.write(data)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with _os_errors(str(path)):
            return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _os_errors(str(path)), suppress(FileNotFoundError):
            path.unlink()

    def _directory_of(self, prefix: str) -> tuple[Path, str]:
        """The directory a prefix points into, and the start of names within it."""
        head, _, name_start = prefix.rpartition("/")
        return (self._path(head) if head else self._root), name_start

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        directory, _ = self._directory_of(prefix)
        if not directory.is_dir():
            return {}
        sizes = {}
        with _os_errors(str(directory)):
            for path in directory.rglob("*"):
                key = path.relative_to(self._root).as_posix()
                if key.startswith(prefix) and not _is_temporary(path.name):
                    with suppress(FileNotFoundError):  # removed while listed: not there
                        info = path.stat()
                        if stat.S_ISREG(info.st_mode):
                            sizes[key] = info.st_size
        return sizes

    def discard_incomplete(self, prefix: str) -> int:
        directory, name_start = self._directory_of(prefix)
        if not directory.is_dir():
            return 0
        pattern = f".{glob.escape(name_start)}*{TEMP_SUFFIX}"
        found = directory.glob(pattern) if name_start else directory.rglob(f".*{TEMP_SUFFIX}")
        removed = 0
        for path in list(found):
            with suppress(FileNotFoundError):  # another cleaner got there first
                path.unlink()
                removed += 1
        return removed

    def _deletable(self, prefix: str) -> tuple[Path, Path]:
        """The folder of ``prefix`` as named and as it really is; ``StorageAccessError`` when it
        is, or lies below, a link that leads out of the bucket."""
        if not prefix.endswith("/"):
            raise ValueError(f"prefix must end with '/': {prefix!r}")
        path = self._path(prefix.rstrip("/"))
        real, root = path.resolve(), self._root.resolve()
        if real != root and root not in real.parents:
            raise StorageAccessError(
                f"{path} leads out of the bucket (to {real}) through a link: its files are not "
                "the bucket's to delete; remove them, or the link, yourself"
            )
        return path, real

    def hold(
        self, key: str, claim: bytes, stale: Callable[[bytes, float | None], bool]
    ) -> HeldLease | bytes:
        """An exclusive lock (``flock``) on the file: the kernel lets go when its holder dies,
        however it dies, so ``stale`` is never needed. The file stays (empty once let go)."""
        path = self._path(key)
        with _os_errors(str(path)):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with os.fdopen(fd, "rb") as held:
                    return _their_claim(held)
            lease = _LockedFile(fd)
            lease.renew(claim)
            return lease

    def check_deletable(self, prefix: str) -> None:
        self._deletable(prefix)

    def delete_prefix(self, prefix: str) -> None:
        path, real = self._deletable(prefix)
        with _os_errors(str(path)):
            if real.is_dir():
                shutil.rmtree(real)  # rmtree removes links inside as links, never follows them
            if path.is_symlink():
                path.unlink()
