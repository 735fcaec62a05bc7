"""Figures of the other input formats (issue 13), measured in the harness between contestants:
the structural scan of the JSON array on one core, and one decompression pass of the gzip file,
both with the code scm-batch runs, both from the page cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from scm_batch.records.compression import decompressed
from scm_batch.stages.array_index import SCAN_BLOCK, index_elements


def _read(path: Path, block: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while data := handle.read(block):
            yield data


def scan_seconds(path: Path) -> float:
    """Seconds to check a whole JSON array and count its elements (CalculateChunks' scan)."""
    started = time.perf_counter()
    index_elements(_read(path, SCAN_BLOCK), str(path))
    return time.perf_counter() - started


def gunzip_seconds(path: Path) -> float:
    """Seconds of one decompression pass over the gzip file (the bytes thrown away)."""
    started = time.perf_counter()
    for _ in decompressed(_read(path, 8 << 20), "gzip", str(path)):
        pass
    return time.perf_counter() - started
