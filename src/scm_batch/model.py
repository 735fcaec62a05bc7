"""Typed values passed between stages: job input, plan, chunk task, chunk result, summaries.

Every value here is a frozen ``msgspec.Struct`` whose JSON names are the contract's camelCase names
(``chunkId``, ``startIndex``, ``totalRecordsProcessed`` …). They are plain data: picklable, small,
and free of clients or open files, so a chunk task can run in any process on any machine.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

import msgspec

Deployment = Literal["WORKSPACE", "CORE"]
Destination = Literal["kafka", "sqs_core", "none"]
Route = Literal["lambda", "batch"]
InputFormat = Literal["jsonl", "json-array"]
# How the input object is compressed; chunks of compressed input are read from staged copies.
Compression = Literal["none", "gzip", "zstd", "bzip2"]
OutputFormat = Literal["jsonl", "parquet"]
DEFAULT_OUTPUT_FORMAT: OutputFormat = "jsonl"

DEFAULT_MAX_LINE_BYTES = 16 << 20  # as DuckDB's read_json limits an object (16 MB)
DEFAULT_MAX_CONCURRENT_CHUNKS = 50
DEFAULT_MAX_CHUNK_SIZE = 500_000
# What the CalculateChunks function decompresses or scans in its time, with room to spare.
DEFAULT_LAMBDA_PLAN_MAX_BYTES = 2 << 30

PLAN_FORMAT_VERSION = 1


class StatusWord(StrEnum):
    """Status words of the contract, used in messages and result documents."""

    SUBMISSION_FAILED = "SUBMISSION_FAILED"
    CHUNKS_CALCULATED = "CHUNKS_CALCULATED"
    CHUNK_PROCESSED = "CHUNK_PROCESSED"
    CHUNK_FAILED = "CHUNK_FAILED"
    COMPLETED = "COMPLETED"
    SUBMITTED_FOR_PROCESSING = "SUBMITTED_FOR_PROCESSING"
    BATCH_COMPLETION_NOTIFICATION_SENT = "BATCH_COMPLETION_NOTIFICATION_SENT"
    SQS_CORE_NOTIFICATION_SENT = "SQS_CORE_NOTIFICATION_SENT"
    VALIDATION_PASSED = "VALIDATION_PASSED"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    VALIDATION_FAILED_CRITICAL = "VALIDATION_FAILED_CRITICAL"


class CamelStruct(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """Base for every contract value: camelCase JSON names, immutable, keyword construction."""


class JobInput(CamelStruct, frozen=True, forbid_unknown_fields=False):
    """The execution input of one batch, exactly the contract's fields.

    ``processedAt`` is an addition: it pins the one timestamp a run stamps on every record, so a
    batch can be reproduced byte for byte in a fresh bucket. Left out, the plan's creation time is
    used.
    """

    bucket: str
    file: str
    customer_id: str
    tenant_id: str
    batch_id: str
    deployment: Deployment = "WORKSPACE"
    snapshot_id: str | None = None
    destination: Destination | None = None  # left out: follows the configured brokers/queues
    target_total_records: int | None = None
    max_concurrent_chunks: int = DEFAULT_MAX_CONCURRENT_CHUNKS
    max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE
    processed_at: str | None = None


class RoutingPolicy(CamelStruct, frozen=True):
    """How CalculateChunks decides between Lambda and AWS Batch for each chunk.

    A chunk goes to Batch when its estimated duration (records x seconds per record) does not fit
    in the Lambda timeout minus the safety margin, or when it holds more records than
    ``batch_processing_threshold``. The defaults are the Terraform variables the users know.
    """

    lambda_timeout_seconds: float = 900.0
    lambda_safety_margin: float = 0.2
    estimated_processing_time_per_record: float = 0.005
    batch_processing_threshold: int = 1_000_000

    @property
    def lambda_budget_seconds(self) -> float:
        return self.lambda_timeout_seconds * (1.0 - self.lambda_safety_margin)

    def route_for(self, records: int) -> Route:
        estimated = records * self.estimated_processing_time_per_record
        if estimated > self.lambda_budget_seconds or records > self.batch_processing_threshold:
            return "batch"
        return "lambda"


class PlanOptions(CamelStruct, frozen=True):
    """Planner settings that are not part of the execution input."""

    min_chunk_size: int = 10_000
    # None: count the lines of a local file (a pass at disk speed) and estimate those of a remote
    # object (counting would mean downloading it twice).
    count_records: bool | None = None
    sample_bytes: int = 1 << 20
    routing: RoutingPolicy = msgspec.field(default_factory=RoutingPolicy)
    # How result parts are written. None: JSON Lines for a new batch; a resumed batch keeps the
    # format of its plan (which records the resolved value here).
    output_format: OutputFormat | None = None
    # A longer line is an error entry (too_long) whose bytes stay in the input: what bounds a
    # worker's memory whatever the file holds. Fixed per batch, like the format.
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    # On AWS, an input read whole to be planned (compressed: its decompressed size; a JSON array)
    # above this many bytes is planned by an AWS Batch job, not by the CalculateChunks function.
    lambda_plan_max_bytes: int = DEFAULT_LAMBDA_PLAN_MAX_BYTES

    def planned_on_batch(self, source: SourceInfo) -> bool:
        """Whether an AWS deployment plans this input on AWS Batch (see above)."""
        if source.compression == "none" and source.format == "jsonl":
            return False  # cut by reading a few kilobytes per chunk, whatever its size
        return source.size * source.expansion > self.lambda_plan_max_bytes


class SourceInfo(CamelStruct, frozen=True):
    """What InitializeBatchProcessing learned about the input object."""

    key: str
    size: int
    mtime_ns: int
    etag: str | None
    format: InputFormat
    sample_records: int
    bytes_per_record: float
    has_bom: bool
    version_id: str | None = None
    compression: Compression = "none"
    # Of a compressed object: decompressed bytes per compressed byte in the sample (sizes chunks).
    expansion: float = 1.0

    @property
    def identity(self) -> tuple[int, int, str | None, str | None]:
        """What must not change between planning a batch and reading it."""
        return (self.size, self.mtime_ns, self.etag, self.version_id)


class ChunkTask(CamelStruct, frozen=True):
    """One chunk item of the plan: everything a worker anywhere needs to process the chunk.

    The first fields are the contract's chunk item; the rest locate the chunk exactly (byte range on
    record boundaries) and carry the run values the transform stamps on records.
    """

    chunk_id: str
    chunk_number: int
    start_index: int
    end_index: int
    chunk_size: int
    bucket: str
    file: str
    customer_id: str
    tenant_id: str
    batch_id: str
    destination: Destination
    estimated_processing_time: float
    created_at: str
    byte_start: int
    byte_end: int
    route: Route
    indices_exact: bool
    deployment: Deployment
    snapshot_id: str | None
    processed_at: str
    # The input as planned: a worker refuses to process an object that no longer matches.
    source_size: int
    source_mtime_ns: int
    source_etag: str | None
    source_version_id: str | None = None
    output_format: OutputFormat = DEFAULT_OUTPUT_FORMAT  # of the chunk's result part
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES  # a longer line is a too_long error entry
    # Set on a chunk done before whose parts were found missing or resized: its parts are
    # rebuilt, its records (this many messages) went out the first time and are not sent again.
    delivered_before: int | None = None
    # How to split the chunk's bytes: lines, or a JSON array's elements (separated by commas).
    input_format: InputFormat = "jsonl"
    # Of compressed input: the chunk's bytes, decompressed once at planning and staged in the
    # bucket (zstd); byte_start/byte_end are then offsets in the decompressed input.
    staged_key: str | None = None

    @property
    def source_identity(self) -> tuple[int, int, str | None, str | None]:
        return (self.source_size, self.source_mtime_ns, self.source_etag, self.source_version_id)


class DeliveryTarget(CamelStruct, frozen=True):
    """Where and how a batch delivers its records; fixed at planning, so a resumed batch cannot
    switch topic or message format halfway."""

    destination: Destination
    message_format: str
    address: str | None  # the Kafka topic or the SQS queue URL

    def describe(self) -> str:
        if self.destination == "none":
            return "nowhere"
        return f"{self.destination} {self.address} as {self.message_format} messages"


class ChunkPlan(CamelStruct, frozen=True):
    """The whole plan, written to ``metadata/{batchId}/chunks.json``."""

    format_version: int
    status: StatusWord
    batch_id: str
    job: JobInput
    source: SourceInfo
    options: PlanOptions
    total_records: int
    records_exact: bool
    chunk_size: int
    chunk_count: int
    processed_at: str
    created_at: str
    chunks: list[ChunkTask]
    delivery: DeliveryTarget | None = None

    @property
    def output_format(self) -> OutputFormat:
        """The format of the batch's result parts (plans made before the option: JSON Lines)."""
        return self.options.output_format or DEFAULT_OUTPUT_FORMAT


class Attempt(CamelStruct, frozen=True):
    """One try at a chunk: how it ended and how long it took."""

    attempt: int
    status: StatusWord
    duration_seconds: float | None  # known for the attempt that succeeded
    error_type: str | None = None
    message: str | None = None
    transient: bool | None = None
    # When the driver saw the attempt fail (Unix seconds; none in older records or from AWS).
    finished_at: float | None = None


class PartCheck(CamelStruct, frozen=True):
    """A part as its chunk wrote it: enough to notice that it is gone or changed since."""

    key: str
    size: int
    crc32: int  # of the whole object (zlib's CRC-32)


class ChunkResult(CamelStruct, frozen=True):
    """What processing one chunk produced: counts and object keys, never records.

    Written by the worker as the chunk's receipt, after its parts: the ledger entry that says
    the chunk is done.
    """

    chunk_id: str
    chunk_number: int
    route: Route
    lines: int
    blank_lines: int
    valid_records: int
    records_with_missing_fields: int
    records_with_empty_fields: int
    errors_by_category: dict[str, int]
    field_errors: dict[str, dict[str, int]]
    bytes_read: int
    result_key: str
    error_key: str
    duration_seconds: float
    worker_peak_rss_bytes: int
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    delivered: int = 0  # messages the destination acknowledged (0 for destination none)
    status: StatusWord = StatusWord.CHUNK_PROCESSED
    parts: list[PartCheck] = msgspec.field(default_factory=list)  # none in older receipts
    engine: str = "python"  # the record engine that ran it: "native" or "python" (older receipts)
    # When the attempt that committed started (Unix seconds) and where it ran ("host:pid", a
    # Lambda's log stream, a Batch job): the report's timeline. None in older receipts.
    started_at: float | None = None
    worker: str | None = None

    @property
    def records(self) -> int:
        return self.lines - self.blank_lines

    @property
    def errors(self) -> int:
        return self.records - self.valid_records


class ChunkFailure(CamelStruct, frozen=True):
    """A chunk that did not produce a result, with the error that stopped it."""

    chunk_id: str
    chunk_number: int
    error_type: str
    message: str
    transient: bool
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    status: StatusWord = StatusWord.CHUNK_FAILED


class ContractSummary(CamelStruct, frozen=True):
    """The ``summary`` object of the contract's completion message."""

    total_records_processed: int
    total_errors: int
    success_rate: float
    processing_time: float
    records_per_second: float


class ResultLocation(CamelStruct, frozen=True):
    """Where a completion message says the aggregated results are."""

    bucket: str
    key: str


class MessageOrigin(CamelStruct, frozen=True):
    """The ``metadata`` of a completion message: who sent it."""

    source: str
    version: str


class CompletionMessage(CamelStruct, frozen=True, kw_only=True):
    """``BATCH_COMPLETION_NOTIFICATION``, sent by ``SendToKafka`` / ``SendToSqsCore``."""

    type: Literal["BATCH_COMPLETION_NOTIFICATION"] = "BATCH_COMPLETION_NOTIFICATION"
    batch_id: str
    customer_id: str
    tenant_id: str
    deployment: Deployment
    snapshot_id: str | None
    status: StatusWord = StatusWord.COMPLETED
    summary: ContractSummary
    result_location: ResultLocation
    timestamp: str
    metadata: MessageOrigin


class StatusMessage(CamelStruct, frozen=True, omit_defaults=True):
    """The ``batch-proc`` status message (``SendToSQS``; ``ReportFailure``'s form carries an
    ``errorMessage``). Every field has a value even when the run failed early."""

    batch_id: str
    batch_status: StatusWord
    customer_id: str | None
    notification_id: str
    progress: int
    total_records_processed: int
    processing_time: float
    error_message: str | None = None  # left out of the message when there is none


class Totals(CamelStruct, frozen=True):
    """Every input line accounted for: lines = blankLines + valid + errors."""

    lines: int
    blank_lines: int
    records: int
    valid_records: int
    errors: int
    malformed_lines: int
    empty_records: int
    records_with_missing_fields: int
    records_with_empty_fields: int
    bytes_read: int


class ChunkDetail(CamelStruct, frozen=True):
    """One line of the per-chunk table in the aggregated results."""

    chunk_id: str
    chunk_number: int
    route: Route
    status: StatusWord
    start_index: int
    end_index: int
    byte_start: int
    byte_end: int
    records: int
    valid_records: int
    errors: int
    duration_seconds: float
    attempts: int
    result_key: str | None
    error_key: str | None
    error_type: str | None = None
    message: str | None = None


class RunSummary(CamelStruct, frozen=True):
    """``final-results/{batchId}/aggregated-results.json``."""

    batch_id: str
    customer_id: str
    tenant_id: str
    snapshot_id: str | None
    deployment: Deployment
    destination: Destination
    status: StatusWord
    validation_status: StatusWord
    summary: ContractSummary
    totals: Totals
    errors_by_category: dict[str, int]
    field_errors: dict[str, dict[str, int]]
    chunks_total: int
    chunks_succeeded: int
    chunks_failed: int
    chunks_not_processed: int
    chunks_resumed: int
    tolerance: Tolerance
    failed_chunks: list[ChunkFailure]
    chunk_details: list[ChunkDetail]
    result_keys: list[str]
    error_keys: list[str]
    plan_key: str
    validation_key: str
    processed_at: str
    started_at: str
    finished_at: str
    max_worker_peak_rss_bytes: int
    source: SourceInfo
    # Chunks done by each record engine ("native", "python"): the two write the same bytes.
    engines: dict[str, int] = msgspec.field(default_factory=dict)


class ValidationReport(CamelStruct, frozen=True):
    """``validation/{batchId}/validation-results.json``: the verdict and why."""

    batch_id: str
    validation_status: StatusWord
    total_records: int
    valid_records: int
    error_records: int
    error_rate: float
    missing_field_rate: float
    empty_field_rate: float
    malformed_lines: int
    empty_records: int
    thresholds: ValidationThresholds
    critical_reasons: list[str]
    errors_by_category: dict[str, int]
    field_errors: dict[str, dict[str, int]]
    samples: list[dict[str, object]]
    samples_truncated: bool


class Tolerance(CamelStruct, frozen=True):
    """How many failed chunks a run survives, with the semantics of a Distributed Map's
    ``ToleratedFailureCount`` / ``ToleratedFailurePercentage``: the run fails when the failed
    chunks exceed either limit that is set; with neither set, no failure is tolerated."""

    percentage: float | None = None
    count: int | None = None

    def exceeded(self, failed: int, total: int) -> bool:
        if self.percentage is None and self.count is None:
            return failed > 0
        over_count = self.count is not None and failed > self.count
        share = 100.0 * failed / total if total else 0.0
        over_share = self.percentage is not None and share > self.percentage
        return over_count or over_share


class ValidationThresholds(CamelStruct, frozen=True):
    """The original system's limits above which a batch is critical."""

    max_error_rate: float = 0.01
    max_missing_field_rate: float = 0.005
    max_empty_field_rate: float = 0.005
    max_malformed_lines: int = 100
    max_empty_records: int = 1000
    max_samples: int = 1000
