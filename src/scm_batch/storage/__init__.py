"""Storage adapters behind one port, chosen from the bucket the user names.

``s3://name`` is an S3 bucket; a path or ``file://`` URI is a local directory. A bare name, as the
contract's execution input writes S3 buckets (``"bucket": "your-data-bucket"``), is a local
directory unless storage is set to ``s3`` (``--storage s3`` or ``SCM_BATCH_STORAGE=s3``).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from scm_batch.errors import ConfigError
from scm_batch.storage.base import ObjectInfo, ObjectWriter, Storage, check_key, key_problem
from scm_batch.storage.local import LocalStorage
from scm_batch.storage.options import S3Options, StorageKind, StorageOptions

__all__ = [
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
    parsed = urlparse(bucket)
    if parsed.scheme == "s3":
        if parsed.path not in ("", "/"):
            raise ConfigError("bucket", f"must name a bucket only, without a path (got {bucket!r})")
        return _s3_bucket(parsed.netloc, bucket)
    if kind == "s3":
        if parsed.scheme:
            raise ConfigError("bucket", f"with storage s3, give a bucket name (got {bucket!r})")
        return _s3_bucket(bucket, bucket)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError("bucket", f"file:// URIs must name a local path (got {bucket!r})")
        return str(Path(unquote(parsed.path)).absolute())
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ConfigError("bucket", f"unsupported scheme {parsed.scheme!r} in {bucket!r}")
    return str(Path(bucket).expanduser().absolute())


def open_storage(bucket: str, options: StorageOptions | None = None) -> Storage:
    """The storage adapter for a bucket as named in the execution input."""
    settings = options or StorageOptions()
    name = normalize_bucket(bucket, settings.kind)
    if name.startswith("s3://"):
        # boto3 takes a fifth of a second to import: only when a bucket is on S3.
        from scm_batch.storage.s3 import S3Storage  # noqa: PLC0415 - heavy, loaded when used

        return S3Storage(name.removeprefix("s3://"), settings.s3)
    return LocalStorage(name)
