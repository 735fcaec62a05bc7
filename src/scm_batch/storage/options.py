"""Storage settings: plain data, light to import (the S3 client itself loads only when used)."""

from __future__ import annotations

from typing import Literal

import msgspec

Sse = Literal["AES256", "aws:kms"]
StorageKind = Literal["auto", "local", "s3"]
MIN_PART_SIZE = 5 << 20  # S3's smallest part but the last


class S3Options(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach and write the bucket; plain data, so it travels to workers."""

    endpoint_url: str | None = None
    region: str | None = None
    sse: Sse | None = None
    sse_kms_key_id: str | None = None
    part_size: int = 16 << 20
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 60.0
    max_reconnects: int = 5


class StorageOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Which backend a bare bucket name means, and how to reach S3."""

    kind: StorageKind = "auto"
    s3: S3Options = msgspec.field(default_factory=S3Options)
