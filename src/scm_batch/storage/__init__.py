"""Storage adapters behind one port, chosen from the bucket the user names.

``s3://name`` is an S3 bucket; a path or ``file://`` URI is a local directory. A bare name, as the
contract's execution input writes S3 buckets (``"bucket": "your-data-bucket"``), is a local
directory unless storage is set to ``s3`` (``--storage s3`` or ``SCM_BATCH_STORAGE=s3``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import ParseResult, unquote, urlparse

from scm_batch.errors import ConfigError
from scm_batch.storage.base import (
    HeldLease,
    ObjectInfo,
    ObjectWriter,
    Storage,
    check_key,
    key_problem,
)
from scm_batch.storage.local import LocalStorage
from scm_batch.storage.options import S3Options, StorageKind, StorageOptions

__all__ = [
    "BACKENDS",
    "Backend",
    "HeldLease",
    "LocalStorage",
    "ObjectInfo",
    "ObjectWriter",
    "S3Options",
    "Storage",
    "StorageOptions",
    "check_key",
    "key_problem",
    "normalize_bucket",
    "open_storage",
]

_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _s3_bucket(name: str, given: str) -> str:
    if _S3_BUCKET.fullmatch(name) is None or ".." in name:
        raise ConfigError(
            "bucket",
            f"{name!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-'; "
            f"got {given!r})",
        )
    return f"s3://{name}"


def _s3_from_uri(parsed: ParseResult, given: str) -> str:
    if parsed.path not in ("", "/"):
        raise ConfigError("bucket", f"must name a bucket only, without a path (got {given!r})")
    return _s3_bucket(parsed.netloc, given)


def _local_from_uri(parsed: ParseResult, given: str) -> str:
    if parsed.netloc not in ("", "localhost"):
        raise ConfigError("bucket", f"file:// URIs must name a local path (got {given!r})")
    return str(Path(unquote(parsed.path)).absolute())


def _local_from_name(name: str) -> str:
    return str(Path(name).expanduser().absolute())


@dataclass(frozen=True, slots=True)
class Backend:
    """A kind of bucket: how a bucket of it is named, and the adapter that opens one.

    ``adapter`` is ``module:function`` taking the canonical bucket name and the storage options;
    it is imported only when a bucket of its kind is opened (boto3 takes a fifth of a second to
    import, a local run needs none of it).
    """

    adapter: str
    from_uri: Callable[[ParseResult, str], str]  # ``scheme://…`` as given → canonical name
    from_name: Callable[[str], str]  # a bare name meaning this kind → canonical name


# The one registry of storage backends, by URI scheme. A backend is added by writing its adapter
# (a module with an ``open_bucket`` function) and naming it here.
BACKENDS: dict[str, Backend] = {
    "s3": Backend("scm_batch.storage.s3:open_bucket", _s3_from_uri, lambda n: _s3_bucket(n, n)),
    "file": Backend("scm_batch.storage.local:open_bucket", _local_from_uri, _local_from_name),
}
# Which backend a bare bucket name means, for each storage kind.
_BARE_NAMES: dict[StorageKind, str] = {"auto": "file", "local": "file", "s3": "s3"}


def _scheme(bucket: str) -> str:
    scheme = urlparse(bucket).scheme
    return scheme if len(scheme) > 1 else ""  # one letter is a Windows drive, not a scheme


def normalize_bucket(bucket: str, kind: StorageKind = "auto") -> str:
    """The canonical spelling of a bucket: ``s3://name``, or an absolute local path.

    Chunk tasks carry the bucket to workers that may run in another directory or on another
    machine, so it is made unambiguous once, when the plan is made.
    """
    if not bucket.strip():
        raise ConfigError("bucket", "must not be empty")
    try:
        bucket.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("bucket", f"must be valid UTF-8 (got {bucket!r})") from None
    scheme = _scheme(bucket)
    if not scheme:
        return BACKENDS[_BARE_NAMES[kind]].from_name(bucket)
    if kind == "s3" and scheme != "s3":
        raise ConfigError("bucket", f"with storage s3, give a bucket name (got {bucket!r})")
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise ConfigError("bucket", f"unsupported scheme {scheme!r} in {bucket!r}")
    return backend.from_uri(urlparse(bucket), bucket)


def open_storage(bucket: str, options: StorageOptions | None = None) -> Storage:
    """The storage adapter for a bucket as named in the execution input."""
    settings = options or StorageOptions()
    name = normalize_bucket(bucket, settings.kind)
    module, _, function = BACKENDS[_scheme(name) or "file"].adapter.partition(":")
    opener: Callable[[str, StorageOptions], Storage] = getattr(
        importlib.import_module(module), function
    )
    return opener(name, settings)
