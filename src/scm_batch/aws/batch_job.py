"""The AWS Batch job: one chunk too big for Lambda, run by ``scm-batch aws process-chunk``.

The job definition (``deploy/terraform/batch.tf``) runs :data:`JOB_COMMAND`, Batch substituting
the ``Ref::`` parameters that ``SubmitBatchJob`` passes (strings: bucket, batch id, chunk id).
The job reads its chunk item from the plan in the bucket, so the submission stays a few ids.

Its exit code drives the job definition's retry strategy: :data:`TRANSIENT_EXIT_CODE` (75,
``EX_TEMPFAIL``) when the failure may pass (a storage or broker outage), which Batch retries;
any other non-zero code is final, and the state machine records the chunk as failed.
"""

from __future__ import annotations

from collections.abc import Mapping

from scm_batch import lifecycle
from scm_batch.aws.chunks import run_chunk
from scm_batch.aws.telemetry import Telemetry
from scm_batch.model import ChunkResult
from scm_batch.settings import aws_settings

TRANSIENT_EXIT_CODE = 75
JOB_COMMAND = (
    "scm-batch",
    "aws",
    "process-chunk",
    "--bucket",
    "Ref::bucket",
    "--batch-id",
    "Ref::batchId",
    "--chunk-id",
    "Ref::chunkId",
)
STAGE = "SubmitBatchJob"


def process_planned_chunk(
    bucket: str, batch_id: str, chunk_id: str, *, attempt: int, env: Mapping[str, str]
) -> tuple[ChunkResult, bool]:
    """Process chunk ``chunk_id`` of the batch planned in ``bucket``; return its result and
    whether it was done before (a job attempt after an interruption)."""
    settings = aws_settings(env)
    task = lifecycle.open_ledger(bucket, batch_id, settings.run).chunk(chunk_id)
    telemetry = Telemetry(STAGE, settings.metrics_namespace)
    ran = run_chunk(task, settings, attempt=attempt, telemetry=telemetry)
    return ran.result, ran.done_before
