"""ValidateBatchConfig: every input field and option checked before any work.

Each problem is reported as a ``ConfigError`` whose one-line message names the field. Ids become
parts of object keys and record ids, so they are held to a strict alphabet.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

import msgspec

from scm_batch import layout
from scm_batch.config import RunOptions
from scm_batch.errors import ConfigError
from scm_batch.model import JobInput
from scm_batch.records.native import native_engine
from scm_batch.records.parts import require_output_format
from scm_batch.sinks.routing import resolve_destination
from scm_batch.storage import check_key, normalize_bucket
from scm_batch.storage.options import MIN_PART_SIZE

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ID_RULE = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
PROCESSED_AT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z"
)

MAX_CONCURRENT_CHUNKS = 10_000  # the Step Functions Distributed Map limit
MAX_WORKERS = 1024


def _check_id(field: str, value: str) -> None:
    if ID_PATTERN.fullmatch(value) is None or ".." in value:
        raise ConfigError(field, f"{ID_RULE}, without '..' (got {value!r})")


def _check_range(field: str, value: float, low: float, high: float | None = None) -> None:
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(field, f"must be {bound} (got {value})")


def _check_processed_at(value: str) -> None:
    problem = f"must be a UTC timestamp like 2026-01-31T12:00:00.000Z (got {value!r})"
    if PROCESSED_AT.fullmatch(value) is None:
        raise ConfigError("processedAt", problem)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError("processedAt", problem) from None


def _check_input_outside_outputs(job: JobInput) -> None:
    """No run may write or delete its own input: an input under a prefix the batch writes to or
    deletes (its results, errors, metadata…), or its lease, is refused, whatever the storage."""
    if job.file == layout.lease_key(job.batch_id):
        raise ConfigError(
            "file",
            f"{job.file!r} is the lease of batch {job.batch_id!r}, which the run writes: it "
            "cannot be its input",
        )
    for prefix in layout.batch_prefixes(job.batch_id):
        if job.file.startswith(prefix):
            raise ConfigError(
                "file",
                f"{job.file!r} is under {prefix}, where batch {job.batch_id!r} writes its "
                "outputs: the run would overwrite or delete its own input (move the input, or use "
                "another batch id)",
            )


def validate_batch_config(job: JobInput, options: RunOptions) -> JobInput:
    """Check the execution input and run options; return the input with its bucket normalized."""
    bucket = normalize_bucket(job.bucket, options.storage.kind)
    check_key(job.file, "file")
    _check_id("customerId", job.customer_id)
    _check_id("tenantId", job.tenant_id)
    _check_id("batchId", job.batch_id)
    _check_input_outside_outputs(job)
    if job.snapshot_id is not None:
        _check_id("snapshotId", job.snapshot_id)
    _check_range("maxConcurrentChunks", job.max_concurrent_chunks, 1, MAX_CONCURRENT_CHUNKS)
    _check_range("maxChunkSize", job.max_chunk_size, 1)
    if job.target_total_records is not None:
        _check_range("targetTotalRecords", job.target_total_records, 1)
    if job.processed_at is not None:
        _check_processed_at(job.processed_at)

    _check_range("workers", options.workers, 1, MAX_WORKERS)
    native_engine()  # SCM_BATCH_ENGINE named wrongly, or "native" without it: before any work
    if options.chunk_timeout_seconds is not None:
        _check_range("chunkTimeoutSeconds", options.chunk_timeout_seconds, 1, 7 * 86_400)
    _check_range("blockSize", options.block_size, 4096, 1 << 30)
    retry = options.retry
    _check_range("retryAttempts", retry.attempts, 1, 100)
    _check_range("retryBaseDelay", retry.base_delay_seconds, 0, 3600)
    _check_range("retryBackoffRate", retry.backoff_rate, 1, 100)
    _check_range("retryMaxDelay", retry.max_delay_seconds, 0, 86_400)
    if options.tolerance.percentage is not None:
        _check_range("toleratedFailurePercentage", options.tolerance.percentage, 0, 100)
    if options.tolerance.count is not None:
        _check_range("toleratedFailureCount", options.tolerance.count, 0)
    s3 = options.storage.s3
    _check_range("s3PartSize", s3.part_size, MIN_PART_SIZE, 5 << 30)
    if s3.sse_kms_key_id is not None and s3.sse != "aws:kms":
        raise ConfigError("--sse-kms-key-id", "needs --sse aws:kms")
    plan = options.plan
    _check_range("minChunkSize", plan.min_chunk_size, 1)
    _check_range("sampleBytes", plan.sample_bytes, 4096, 1 << 30)
    _check_range("maxLineBytes", plan.max_line_bytes, 1024, 1 << 30)
    routing = plan.routing
    _check_range("lambdaTimeoutSeconds", routing.lambda_timeout_seconds, 1, 900)
    _check_range("lambdaSafetyMargin", routing.lambda_safety_margin, 0, 0.95)
    per_record = routing.estimated_processing_time_per_record
    if not (math.isfinite(per_record) and per_record > 0):
        raise ConfigError("estimatedProcessingTimePerRecord", f"must be above 0 (got {per_record})")
    _check_range("batchProcessingThreshold", routing.batch_processing_threshold, 1)
    if plan.output_format is not None:
        require_output_format(plan.output_format)

    destination = resolve_destination(job.destination, options.delivery)
    return msgspec.structs.replace(job, bucket=bucket, destination=destination)
