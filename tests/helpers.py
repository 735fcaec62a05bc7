"""Small builders the tests share: a job input and the plan for a file already in a bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scm_batch.model import ChunkPlan, JobInput, PlanOptions
from scm_batch.stages.initialize import initialize_batch
from scm_batch.stages.plan import calculate_chunks
from scm_batch.storage import LocalStorage


def job_input(bucket: Path | str, file: str = "in.jsonl", **changes: Any) -> JobInput:
    """A job for ``file`` in ``bucket``; ``changes`` override fields (snake_case names)."""
    fields: dict[str, Any] = {
        "bucket": str(bucket),
        "file": file,
        "customer_id": "c",
        "tenant_id": "t",
        "batch_id": "b",
    }
    return JobInput(**{**fields, **changes})


def plan_input(bucket: Path, job: JobInput, **options: Any) -> tuple[LocalStorage, ChunkPlan]:
    """InitializeBatchProcessing and CalculateChunks for ``job``; ``options`` go to PlanOptions."""
    storage = LocalStorage(bucket)
    source = initialize_batch(job, storage)
    return storage, calculate_chunks(job, source, storage, PlanOptions(**options))
