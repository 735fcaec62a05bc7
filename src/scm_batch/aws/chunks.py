"""One chunk on AWS, on Lambda (``ProcessWithLambda``) or in a Batch job (``SubmitBatchJob``).

Both run the lifecycle's ProcessChunk step, :func:`scm_batch.lifecycle.run_chunk`, as the local
workers do, with clients made for the invocation and closed after it; a chunk whose receipt exists
is done, so a retried task, a re-run execution or a Batch job attempt after a Spot interruption
returns at once instead of doing (and delivering) the chunk again.
"""

from __future__ import annotations

from scm_batch import lifecycle
from scm_batch.aws.telemetry import Metric, Telemetry
from scm_batch.model import ChunkTask
from scm_batch.settings import Settings
from scm_batch.sinks.routing import open_record_sink
from scm_batch.stages.process import ChunkRun
from scm_batch.storage import open_storage


def run_chunk(
    task: ChunkTask, settings: Settings, *, attempt: int, telemetry: Telemetry
) -> ChunkRun:
    """Process ``task`` unless it is done; its receipt, and whether it was done before."""
    ids = {"batchId": task.batch_id, "chunkId": task.chunk_id, "attempt": attempt}

    def started() -> None:
        telemetry.log(
            "chunk-started",
            **ids,
            byteStart=task.byte_start,
            byteEnd=task.byte_end,
            route=task.route,
        )

    storage = open_storage(task.bucket, settings.run.storage)
    sink = open_record_sink(task.destination, settings.run.delivery)
    try:
        ran = lifecycle.run_chunk(
            task,
            storage=storage,
            sink=sink,
            attempt=attempt,
            faults=settings.run.faults,
            on_start=started,
        )
    finally:
        if sink is not None:
            sink.close()
    result = ran.result
    if ran.done_before:
        telemetry.log("chunk-already-done", **ids)
        return ran
    telemetry.metrics(
        [
            Metric("ChunksProcessed", 1),
            Metric("RecordsProcessed", result.records),
            Metric("RecordsInvalid", result.errors),
            Metric("RecordsDelivered", result.delivered),
            Metric("ChunkDuration", result.duration_seconds, "Seconds"),
            Metric("BytesRead", result.bytes_read, "Bytes"),
        ],
        **ids,
    )
    return ran
