"""Storage adapters behind one port, chosen from the bucket the user names."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from scm_batch.errors import ConfigError
from scm_batch.storage.base import ObjectInfo, ObjectWriter, Storage, check_key, key_problem
from scm_batch.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "ObjectWriter",
    "Storage",
    "check_key",
    "key_problem",
    "normalize_bucket",
    "open_storage",
]


def normalize_bucket(bucket: str) -> str:
    """The canonical spelling of a bucket: an absolute path for a local directory.

    Chunk tasks carry the bucket to workers that may run in another directory, so a relative path
    is made absolute once, when the plan is made.
    """
    if not bucket.strip():
        raise ConfigError("bucket", "must not be empty")
    try:
        bucket.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("bucket", f"must be valid UTF-8 (got {bucket!r})") from None
    parsed = urlparse(bucket)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError("bucket", f"file:// URIs must name a local path (got {bucket!r})")
        return str(Path(unquote(parsed.path)).absolute())
    if parsed.scheme == "s3":
        raise ConfigError("bucket", "S3 buckets are not supported yet; use a local directory")
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ConfigError("bucket", f"unsupported scheme {parsed.scheme!r} in {bucket!r}")
    return str(Path(bucket).expanduser().absolute())


def open_storage(bucket: str) -> Storage:
    """The storage adapter for a bucket as named in the execution input."""
    return LocalStorage(normalize_bucket(bucket))
