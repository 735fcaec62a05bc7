"""How many records a chunk takes, and how many chunks a plan may have: the same on every backend
and for every input format."""

from __future__ import annotations

import math

from scm_batch.errors import ConfigError
from scm_batch.model import JobInput, PlanOptions

# The most chunks a plan may have, on every backend alike. On AWS the distributed Map gathers one
# result per chunk ("{}", 3 bytes with its comma) into a state that may not pass 256 KiB, and
# exceeding it (States.DataLimitExceeded) cannot be caught: 50,000 keeps it near 147 KiB.
MAX_CHUNKS = 50_000


def chunk_record_count(total: int, job: JobInput, options: PlanOptions) -> int:
    """Records per chunk: the contract's formula, floored at ``minChunkSize``."""
    per_chunk = math.ceil(total / job.max_concurrent_chunks)
    per_chunk = min(max(per_chunk, options.min_chunk_size), job.max_chunk_size)
    return max(1, min(per_chunk, total))


def check_chunk_count(total: int, per_chunk: int) -> None:
    count = math.ceil(total / per_chunk)
    if count > MAX_CHUNKS:
        raise ConfigError(
            "maxChunkSize",
            f"{per_chunk:,} records per chunk would cut {total:,} records into {count:,} chunks; "
            f"at most {MAX_CHUNKS:,} are allowed",
        )
