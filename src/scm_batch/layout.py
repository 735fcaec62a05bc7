"""Object keys of the contract's layout inside the working bucket.

Result and error parts end in ``.jsonl`` rather than the original ``.json``: they hold one JSON
document per line, and the ending tells every tool that reads them so. A batch planned with
``--output-format parquet`` writes its result parts as ``.parquet`` files instead; its error parts
stay JSON Lines (they hold the raw lines).
"""

from __future__ import annotations

from scm_batch.model import DEFAULT_OUTPUT_FORMAT, OutputFormat

CHUNK_ID_WIDTH = 6

# Prefixes owned by one batch; `--overwrite` clears exactly these.
BATCH_PREFIXES = (
    "metadata",
    "staged",
    "results",
    "errors",
    "validation",
    "final-results",
    "notifications",
)


def chunk_id(index: int) -> str:
    """``chunk_000000`` for the first chunk (0-based index)."""
    return f"chunk_{index:0{CHUNK_ID_WIDTH}d}"


def plan_key(batch_id: str) -> str:
    return f"metadata/{batch_id}/chunks.json"


def chunk_items_key(batch_id: str) -> str:
    """The plan's chunk items alone, as a JSON array: what a Step Functions Distributed Map reads
    its items from (it takes an array, not the plan object around it)."""
    return f"metadata/{batch_id}/chunk-items.json"


def results_prefix(batch_id: str) -> str:
    return f"results/{batch_id}"


def errors_prefix(batch_id: str) -> str:
    return f"errors/{batch_id}"


def result_key(
    batch_id: str, chunk: str, output_format: OutputFormat = DEFAULT_OUTPUT_FORMAT
) -> str:
    """The chunk's result part: ``.jsonl``, or ``.parquet`` for a batch planned as Parquet."""
    return f"{results_prefix(batch_id)}/{chunk}.{output_format}"


def error_key(batch_id: str, chunk: str) -> str:
    return f"{errors_prefix(batch_id)}/{chunk}.jsonl"


def receipt_prefix(batch_id: str) -> str:
    return f"metadata/{batch_id}/chunks/"


def receipt_key(batch_id: str, chunk: str) -> str:
    """The chunk's receipt: written last, its existence means the chunk is done."""
    return f"{receipt_prefix(batch_id)}{chunk}.json"


def failure_prefix(batch_id: str) -> str:
    return f"metadata/{batch_id}/failures/"


def failure_key(batch_id: str, chunk: str) -> str:
    return f"{failure_prefix(batch_id)}{chunk}.json"


def rebuild_prefix(batch_id: str) -> str:
    return f"metadata/{batch_id}/rebuilt/"


def rebuild_key(batch_id: str, chunk: str) -> str:
    """A note that the chunk, done once, had damaged parts rebuilt: what it delivered then."""
    return f"{rebuild_prefix(batch_id)}{chunk}.json"


def staged_prefix(batch_id: str) -> str:
    """Compressed input, decompressed once and cut into chunks (each zstd-compressed again)."""
    return f"staged/{batch_id}/"


def staged_key(batch_id: str, chunk: str) -> str:
    return f"{staged_prefix(batch_id)}{chunk}.zst"


def staging_key(batch_id: str) -> str:
    """How the compressed input is being staged: fixed before the first chunk is staged."""
    return f"metadata/{batch_id}/staging.json"


def staged_receipt_prefix(batch_id: str) -> str:
    return f"metadata/{batch_id}/staged/"


def staged_receipt_key(batch_id: str, chunk: str) -> str:
    """A staged chunk's receipt: written after its staged copy, which it describes."""
    return f"{staged_receipt_prefix(batch_id)}{chunk}.json"


def plan_request_key(batch_id: str) -> str:
    """On AWS: what an AWS Batch job needs to plan the batch, left by CalculateChunks."""
    return f"metadata/{batch_id}/plan-request.json"


def plan_failure_key(batch_id: str) -> str:
    """On AWS: why the AWS Batch job planning the batch failed, for CalculateChunks to report."""
    return f"metadata/{batch_id}/plan-failure.json"


def lease_key(batch_id: str) -> str:
    """Who runs the batch now: beside its folders, not in them (``--overwrite`` keeps it)."""
    return f"metadata/{batch_id}.lease"


def notified_key(batch_id: str) -> str:
    return f"metadata/{batch_id}/notified.json"


def validation_key(batch_id: str) -> str:
    return f"validation/{batch_id}/validation-results.json"


def aggregated_key(batch_id: str) -> str:
    return f"final-results/{batch_id}/aggregated-results.json"


def notification_key(batch_id: str, channel: str) -> str:
    return f"notifications/{batch_id}/{channel}.json"


def batch_prefixes(batch_id: str) -> list[str]:
    return [f"{prefix}/{batch_id}/" for prefix in BATCH_PREFIXES]
