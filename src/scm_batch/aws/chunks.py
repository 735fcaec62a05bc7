"""One chunk on AWS, on Lambda (``ProcessWithLambda``) or in a Batch job (``SubmitBatchJob``).

Both run the same stage function as the local workers, :func:`process_chunk`, and honour the same
ledger: a chunk whose manifest exists is done, so a retried task, a re-run execution or a Batch
job attempt after a Spot interruption returns at once instead of doing (and delivering) the chunk
again.
"""

from __future__ import annotations

import msgspec

from scm_batch import layout
from scm_batch.aws.settings import AwsSettings
from scm_batch.aws.telemetry import Metric, Telemetry
from scm_batch.model import ChunkResult, ChunkTask
from scm_batch.sinks.routing import open_record_sink
from scm_batch.stages.process import process_chunk
from scm_batch.storage import Storage, open_storage


def _finished(storage: Storage, task: ChunkTask) -> ChunkResult | None:
    key = layout.manifest_key(task.batch_id, task.chunk_id)
    if not storage.exists(key):
        return None
    try:
        return msgspec.json.decode(storage.get_bytes(key), type=ChunkResult)
    except msgspec.MsgspecError:
        return None  # unreadable: the chunk is simply done again, as a local resume would


def run_chunk(
    task: ChunkTask, settings: AwsSettings, *, attempt: int, telemetry: Telemetry
) -> tuple[ChunkResult, bool]:
    """Process ``task`` unless it is done; return its result and whether it was done before."""
    storage = open_storage(task.bucket, settings.run.storage)
    earlier = _finished(storage, task)
    if earlier is not None:
        telemetry.log(
            "chunk-already-done", batchId=task.batch_id, chunkId=task.chunk_id, attempt=attempt
        )
        return earlier, True
    telemetry.log(
        "chunk-started",
        batchId=task.batch_id,
        chunkId=task.chunk_id,
        attempt=attempt,
        byteStart=task.byte_start,
        byteEnd=task.byte_end,
        route=task.route,
    )
    faults = settings.run.faults
    sink = open_record_sink(task.destination, settings.run.delivery)
    try:
        result = process_chunk(
            task,
            storage=storage,
            sink=sink,
            attempt=attempt,
            fault_hook=faults.hook(task.chunk_id, attempt) if faults is not None else None,
        )
    finally:
        if sink is not None:
            sink.close()
    telemetry.metrics(
        [
            Metric("ChunksProcessed", 1),
            Metric("RecordsProcessed", result.records),
            Metric("RecordsInvalid", result.errors),
            Metric("RecordsDelivered", result.delivered),
            Metric("ChunkDuration", result.duration_seconds, "Seconds"),
            Metric("BytesRead", result.bytes_read, "Bytes"),
        ],
        batchId=task.batch_id,
        chunkId=task.chunk_id,
        attempt=attempt,
    )
    return result, False
