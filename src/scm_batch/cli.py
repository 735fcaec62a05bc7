"""The ``scm-batch`` command line: builds configuration, calls the library, prints the outcome.

Errors the project raises on purpose end the command with one line on standard error and the
documented exit code; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.markup import escape
from rich.table import Table

from scm_batch._version import __version__
from scm_batch.aws.cli import aws_app
from scm_batch.config import (
    RunOptions,
    load_input_file,
    load_manifest,
    manifest_of_event,
    manifest_ref,
    parse_job_input,
    unknown_input_fields,
)
from scm_batch.console import err as _err
from scm_batch.console import fail as _fail
from scm_batch.console import guarded as _guarded
from scm_batch.console import out as _out
from scm_batch.errors import ConfigError, ExitCode
from scm_batch.faults import FAULTS_ENV, parse_faults
from scm_batch.model import JobInput, OutputFormat, PlanOptions, RoutingPolicy, Tolerance
from scm_batch.observe.progress import ProgressMode, choose_progress
from scm_batch.observe.status import batch_status
from scm_batch.pipeline import RunReport, prepare_plan, resume_batch, run_batch
from scm_batch.records.generate import generate_file
from scm_batch.retry import RetryPolicy
from scm_batch.sinks.options import DeliveryOptions, KafkaOptions
from scm_batch.stages.plan import encode_plan
from scm_batch.storage import S3Options, StorageOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Split very large JSON Lines files into chunks, process them in parallel, aggregate.",
)

T = TypeVar("T")

# ---- options shared by `run` and `plan` -------------------------------------------------------
InputOpt = Annotated[
    Path | None,
    typer.Option(
        "--input", "-i", help="Execution input JSON file (the contract's event); flags override it."
    ),
]
BucketOpt = Annotated[
    str | None,
    typer.Option(
        help="Working bucket: s3://name, or a local directory (path or file:// URI).",
        envvar="SCM_BATCH_BUCKET",
    ),
]
FileOpt = Annotated[
    str | None, typer.Option("--file", help="Key of the input object inside the bucket.")
]
CustomerOpt = Annotated[str | None, typer.Option(help="customerId stamped on every record.")]
TenantOpt = Annotated[str | None, typer.Option(help="tenantId stamped on every record.")]
BatchOpt = Annotated[str | None, typer.Option(help="batchId: names every output of the run.")]
SnapshotOpt = Annotated[str | None, typer.Option(help="snapshotId (optional).")]
DeploymentOpt = Annotated[str | None, typer.Option(help="WORKSPACE (default) or CORE.")]
DestinationOpt = Annotated[str | None, typer.Option(help="kafka (default) or sqs_core.")]
TargetOpt = Annotated[
    int | None, typer.Option(help="Expected record count; sizes chunks when lines are not counted.")
]
ConcurrentOpt = Annotated[
    int | None,
    typer.Option(
        help="maxConcurrentChunks: the file is split at least this many ways (default 50)."
    ),
]
ChunkSizeOpt = Annotated[
    int | None, typer.Option(help="maxChunkSize: records per chunk at most (default 500000).")
]
ProcessedAtOpt = Annotated[
    str | None,
    typer.Option(
        help="Pin processedAt (e.g. 2026-01-31T12:00:00.000Z) to reproduce a batch exactly."
    ),
]
MinChunkOpt = Annotated[
    int,
    typer.Option(
        help="Records per chunk at least, so small files are not over-split.",
        envvar="SCM_BATCH_MIN_CHUNK_SIZE",
    ),
]
CountOpt = Annotated[
    bool | None,
    typer.Option(
        "--count-records/--estimate-records",
        help="Count lines exactly before splitting (exact indices; the default for local files),"
        " or estimate them from a sample (the default for S3, where counting means reading twice).",
        envvar="SCM_BATCH_COUNT_RECORDS",
    ),
]
LambdaTimeoutOpt = Annotated[
    float,
    typer.Option(
        help="Lambda timeout in seconds, for routing chunks.", envvar="SCM_BATCH_LAMBDA_TIMEOUT"
    ),
]
PerRecordOpt = Annotated[
    float,
    typer.Option(
        help="Estimated seconds per record, for routing chunks.",
        envvar="SCM_BATCH_ESTIMATED_PROCESSING_TIME_PER_RECORD",
    ),
]
ThresholdOpt = Annotated[
    int,
    typer.Option(
        help="Chunks above this many records go to AWS Batch.",
        envvar="SCM_BATCH_BATCH_PROCESSING_THRESHOLD",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on standard output.")
]
OutputFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--output-format",
        help="Result parts as jsonl (the default for a new batch) or parquet (zstd; needs "
        "scm-batch[parquet]). A resumed batch keeps the format it was planned with.",
        envvar="SCM_BATCH_OUTPUT_FORMAT",
    ),
]

_DEFAULT_ROUTING = RoutingPolicy()
_DEFAULT_PLAN = PlanOptions()


StorageOpt = Annotated[
    str,
    typer.Option(
        "--storage",
        help="auto: s3:// buckets are S3, others local directories; s3: bare names are S3 buckets.",
        envvar="SCM_BATCH_STORAGE",
    ),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(help="S3 endpoint URL, for S3-compatible services (AWS_ENDPOINT_URL works too)."),
]
RegionOpt = Annotated[str | None, typer.Option(help="AWS region of the bucket (or AWS_REGION).")]
SseOpt = Annotated[
    str | None,
    typer.Option(help="Encrypt written objects: AES256 or aws:kms.", envvar="SCM_BATCH_SSE"),
]
SseKeyOpt = Annotated[
    str | None,
    typer.Option(help="KMS key id for --sse aws:kms.", envvar="SCM_BATCH_SSE_KMS_KEY_ID"),
]
ManifestOpt = Annotated[
    str | None,
    typer.Option(help="Read the execution input from a manifest object: s3://bucket/key."),
]
EventOpt = Annotated[
    Path | None,
    typer.Option(help="An EventBridge S3 'Object Created' event (JSON file) naming a manifest."),
]


MessageFormatOpt = Annotated[
    str,
    typer.Option(
        help="envelope: the contract's {record, metadata}; bare: the record, with headers.",
        envvar="SCM_BATCH_MESSAGE_FORMAT",
    ),
]
KafkaBrokersOpt = Annotated[
    str | None, typer.Option(help="Kafka bootstrap servers, host:port,…", envvar="KAFKA_BROKERS")
]
KafkaTopicOpt = Annotated[str, typer.Option(help="Topic for the records.", envvar="KAFKA_TOPIC")]
KafkaNotificationTopicOpt = Annotated[
    str,
    typer.Option(help="Topic for completion messages.", envvar="KAFKA_NOTIFICATION_TOPIC"),
]
KafkaTopicPolicyOpt = Annotated[
    str,
    typer.Option(
        help="require: a missing topic is an error; create: create it.", envvar="KAFKA_TOPIC_POLICY"
    ),
]
KafkaProtocolOpt = Annotated[
    str,
    typer.Option(
        help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", envvar="KAFKA_SECURITY_PROTOCOL"
    ),
]
KafkaSaslOpt = Annotated[
    str | None,
    typer.Option(
        help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (user and password from KAFKA_SASL_USERNAME "
        "and KAFKA_SASL_PASSWORD).",
        envvar="KAFKA_SASL_MECHANISM",
    ),
]
KafkaCaOpt = Annotated[
    str | None, typer.Option(help="CA certificate file for TLS.", envvar="KAFKA_SSL_CA_LOCATION")
]
KafkaMskOpt = Annotated[
    str | None,
    typer.Option(
        help="Authenticate to MSK with IAM in this region (SASL OAUTHBEARER).",
        envvar="KAFKA_MSK_IAM_REGION",
    ),
]
SqsCoreOpt = Annotated[
    str | None, typer.Option(help="SQS Core queue URL.", envvar="SQS_CORE_QUEUE")
]
StatusQueueOpt = Annotated[
    str | None,
    typer.Option(help="Status queue (batch-proc) URL.", envvar="SQS_STATUS_QUEUE"),
]
SqsEndpointOpt = Annotated[
    str | None,
    typer.Option(help="SQS endpoint URL (or AWS_ENDPOINT_URL_SQS).", envvar="AWS_ENDPOINT_URL_SQS"),
]
_DEFAULT_KAFKA = KafkaOptions()


def _delivery_options(
    message_format: str = "envelope",
    kafka_brokers: str | None = None,
    kafka_topic: str = _DEFAULT_KAFKA.topic,
    kafka_notification_topic: str = _DEFAULT_KAFKA.notification_topic,
    kafka_topic_policy: str = _DEFAULT_KAFKA.topic_policy,
    kafka_security_protocol: str = _DEFAULT_KAFKA.security_protocol,
    kafka_sasl_mechanism: str | None = None,
    kafka_ssl_ca: str | None = None,
    kafka_msk_iam_region: str | None = None,
    sqs_core_queue: str | None = None,
    status_queue: str | None = None,
    sqs_endpoint_url: str | None = None,
    region: str | None = None,
) -> DeliveryOptions:
    """Delivery settings from flags and the environment; errors name the flag."""
    settings = {
        "message_format": ("--message-format", message_format),
        "kafka.topic_policy": ("--kafka-topic-policy", kafka_topic_policy),
        "kafka.security_protocol": ("--kafka-security-protocol", kafka_security_protocol),
        "kafka.sasl_mechanism": ("--kafka-sasl-mechanism", kafka_sasl_mechanism),
    }
    mapping: dict[str, Any] = {
        "message_format": message_format,
        "kafka": {
            "brokers": kafka_brokers,
            "topic": kafka_topic,
            "notification_topic": kafka_notification_topic,
            "topic_policy": kafka_topic_policy,
            "security_protocol": kafka_security_protocol,
            "sasl_mechanism": kafka_sasl_mechanism,
            "sasl_username": os.environ.get("KAFKA_SASL_USERNAME"),
            "sasl_password": os.environ.get("KAFKA_SASL_PASSWORD"),
            "ssl_ca_location": kafka_ssl_ca,
            "msk_iam_region": kafka_msk_iam_region,
        },
        "sqs": {
            "core_queue_url": sqs_core_queue,
            "status_queue_url": status_queue,
            "endpoint_url": sqs_endpoint_url,
            "region": region or os.environ.get("AWS_REGION"),
        },
    }
    try:
        return msgspec.convert(mapping, DeliveryOptions)
    except msgspec.ValidationError as exc:
        where = str(exc).rpartition("$.")[2].rstrip("`")
        flag, value = settings.get(where, (where, None))
        raise ConfigError(flag, f"{value!r} is not one of the accepted values") from None


def _storage_options(
    kind: str,
    endpoint_url: str | None,
    region: str | None,
    sse: str | None,
    sse_kms_key_id: str | None,
) -> StorageOptions:
    if kind not in ("auto", "local", "s3"):
        raise ConfigError("--storage", f"must be auto, local or s3 (got {kind!r})")
    if sse not in (None, "AES256", "aws:kms"):
        raise ConfigError("--sse", f"must be AES256 or aws:kms (got {sse!r})")
    return StorageOptions(
        kind=kind,  # type: ignore[arg-type]
        s3=S3Options(
            endpoint_url=endpoint_url,
            region=region,
            sse=sse,  # type: ignore[arg-type]
            sse_kms_key_id=sse_kms_key_id,
        ),
    )


def _job_input(
    input_file: Path | None,
    flags: dict[str, Any],
    *,
    manifest: str | None = None,
    event: Path | None = None,
    storage: StorageOptions | None = None,
) -> JobInput:
    given = [
        name
        for name, value in (("--input", input_file), ("--manifest", manifest), ("--event", event))
        if value
    ]
    if len(given) > 1:
        raise ConfigError(
            given[1], f"give one of --input, --manifest or --event, not {' and '.join(given)}"
        )
    mapping: dict[str, Any] = {}
    if input_file is not None:
        mapping = load_input_file(input_file)
    elif manifest is not None:
        mapping = load_manifest(manifest_ref(manifest), storage or StorageOptions())
    elif event is not None:
        mapping = load_manifest(manifest_of_event(event), storage or StorageOptions())
    mapping.update({name: value for name, value in flags.items() if value is not None})
    unknown = unknown_input_fields(mapping)
    if unknown:
        names = escape(", ".join(unknown))
        _err.print(f"[yellow]warning:[/] ignoring unknown input fields: {names}")
    return parse_job_input(mapping)


def _output_format(value: str | None) -> OutputFormat | None:
    if value not in (None, "jsonl", "parquet"):
        raise ConfigError("--output-format", f"must be jsonl or parquet (got {value!r})")
    return value  # type: ignore[return-value]


def _plan_options(
    min_chunk_size: int,
    count_records: bool | None,
    lambda_timeout: float,
    per_record: float,
    threshold: int,
    output_format: str | None = None,
) -> PlanOptions:
    return PlanOptions(
        min_chunk_size=min_chunk_size,
        count_records=count_records,
        output_format=_output_format(output_format),
        routing=RoutingPolicy(
            lambda_timeout_seconds=lambda_timeout,
            estimated_processing_time_per_record=per_record,
            batch_processing_threshold=threshold,
        ),
    )


def _print_version(value: bool) -> None:
    if value:
        _out.print(__version__)
        raise typer.Exit(0)


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks.", envvar="SCM_BATCH_DEBUG")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    ctx.obj = debug


@app.command()
def generate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the JSON Lines file.")],
    records: Annotated[int, typer.Option(min=0, help="Number of lines to write.")],
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same file.")] = 1,
    invalid_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of records that break one validation rule."),
    ] = 0.0,
    malformed_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of lines that are not JSON.")
    ] = 0.0,
) -> None:
    """Write deterministic synthetic supply-chain records (JSON Lines)."""

    def action() -> None:
        if invalid_rate + malformed_rate > 1.0:
            raise ConfigError("--invalid-rate", "plus --malformed-rate must be at most 1")
        started = time.perf_counter()
        done = 0
        last_report = started

        def on_progress(count: int) -> None:
            nonlocal done, last_report
            done += count
            now = time.perf_counter()
            if now - last_report >= 10:
                last_report = now
                _err.print(f"generate: {done:,}/{records:,} lines")

        try:
            stats = generate_file(
                file,
                records,
                seed=seed,
                invalid_rate=invalid_rate,
                malformed_rate=malformed_rate,
                on_progress=on_progress,
            )
        except (FileExistsError, NotADirectoryError):
            raise _fail(
                f"cannot write {file}: a parent of it is not a directory", ExitCode.BAD_INPUT
            ) from None
        except OSError as exc:
            raise _fail(f"cannot write {file}: {exc.strerror or exc}", ExitCode.BAD_INPUT) from None
        seconds = time.perf_counter() - started
        _out.print(
            f"wrote {stats.lines:,} lines ({stats.valid:,} valid, {stats.invalid:,} invalid, "
            f"{stats.malformed:,} malformed), {stats.bytes / 1e6:,.1f} MB to {file} "
            f"in {seconds:.1f}s"
        )

    _guarded(ctx, action)


@app.command()
def plan(
    ctx: typer.Context,
    input_file: InputOpt = None,
    bucket: BucketOpt = None,
    file: FileOpt = None,
    customer_id: CustomerOpt = None,
    tenant_id: TenantOpt = None,
    batch_id: BatchOpt = None,
    snapshot_id: SnapshotOpt = None,
    deployment: DeploymentOpt = None,
    destination: DestinationOpt = None,
    target_total_records: TargetOpt = None,
    max_concurrent_chunks: ConcurrentOpt = None,
    max_chunk_size: ChunkSizeOpt = None,
    processed_at: ProcessedAtOpt = None,
    min_chunk_size: MinChunkOpt = _DEFAULT_PLAN.min_chunk_size,
    count_records: CountOpt = None,
    lambda_timeout: LambdaTimeoutOpt = _DEFAULT_ROUTING.lambda_timeout_seconds,
    estimated_time_per_record: PerRecordOpt = _DEFAULT_ROUTING.estimated_processing_time_per_record,
    batch_processing_threshold: ThresholdOpt = _DEFAULT_ROUTING.batch_processing_threshold,
    output_format: OutputFormatOpt = None,
    manifest: ManifestOpt = None,
    event: EventOpt = None,
    storage: StorageOpt = "auto",
    endpoint_url: EndpointOpt = None,
    region: RegionOpt = None,
    kafka_brokers: KafkaBrokersOpt = None,
    sqs_core_queue: SqsCoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the chunk plan (byte ranges, records, route) without processing or writing anything."""
    flags = _flags(locals())

    def action() -> None:
        storage_options = _storage_options(storage, endpoint_url, region, None, None)
        job = _job_input(input_file, flags, manifest=manifest, event=event, storage=storage_options)
        options = RunOptions(
            storage=storage_options,
            delivery=_delivery_options(kafka_brokers=kafka_brokers, sqs_core_queue=sqs_core_queue),
            plan=_plan_options(
                min_chunk_size,
                count_records,
                lambda_timeout,
                estimated_time_per_record,
                batch_processing_threshold,
                output_format,
            ),
        )
        _, chunk_plan = prepare_plan(job, options, choose_progress("none"))
        if as_json:
            sys.stdout.write(encode_plan(chunk_plan).decode() + "\n")
            return
        exact = "exact" if chunk_plan.records_exact else "estimated"
        _out.print(
            f"{chunk_plan.source.size:,} bytes, {chunk_plan.total_records:,} records ({exact}), "
            f"{chunk_plan.source.bytes_per_record:.0f} bytes/record; "
            f"{chunk_plan.chunk_count} chunks of up to {chunk_plan.chunk_size:,} records; "
            f"{chunk_plan.output_format} result parts"
        )
        table = Table("chunk", "route", "bytes", "records", "first-last index", "est. seconds")
        for c in chunk_plan.chunks:
            table.add_row(
                c.chunk_id,
                c.route,
                f"{c.byte_start:,}-{c.byte_end:,}",
                f"{c.chunk_size:,}",
                f"{c.start_index:,}-{c.end_index:,}",
                f"{c.estimated_processing_time:,.1f}",
            )
        _out.print(table)

    _guarded(ctx, action)


_JOB_FLAG_NAMES = {
    "bucket": "bucket",
    "file": "file",
    "customer_id": "customerId",
    "tenant_id": "tenantId",
    "batch_id": "batchId",
    "snapshot_id": "snapshotId",
    "deployment": "deployment",
    "destination": "destination",
    "target_total_records": "targetTotalRecords",
    "max_concurrent_chunks": "maxConcurrentChunks",
    "max_chunk_size": "maxChunkSize",
    "processed_at": "processedAt",
}


def _flags(params: dict[str, Any]) -> dict[str, Any]:
    """The execution-input fields given as flags, under their contract names."""
    return {contract: params[name] for name, contract in _JOB_FLAG_NAMES.items()}


WorkersOpt = Annotated[
    int | None,
    typer.Option(help="Worker processes (default: one per core).", envvar="SCM_BATCH_WORKERS"),
]
ProgressOpt = Annotated[
    str,
    typer.Option(
        help="auto (live in a terminal, log lines otherwise), live, log or none.",
        envvar="SCM_BATCH_PROGRESS",
    ),
]
_DEFAULT_RETRY = RetryPolicy()
RetryAttemptsOpt = Annotated[
    int,
    typer.Option(help="Attempts per chunk, the first included.", envvar="SCM_BATCH_RETRY_ATTEMPTS"),
]
RetryDelayOpt = Annotated[
    float,
    typer.Option(
        help="Backoff before the first retry, seconds (full jitter).",
        envvar="SCM_BATCH_RETRY_BASE_DELAY",
    ),
]
RetryRateOpt = Annotated[
    float,
    typer.Option(help="Backoff growth per retry.", envvar="SCM_BATCH_RETRY_BACKOFF_RATE"),
]
RetryMaxOpt = Annotated[
    float,
    typer.Option(help="Longest backoff, seconds.", envvar="SCM_BATCH_RETRY_MAX_DELAY"),
]
TolerancePctOpt = Annotated[
    float | None,
    typer.Option(
        help="Failed chunks tolerated, as a percentage of all chunks.",
        envvar="SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE",
    ),
]
ToleranceCountOpt = Annotated[
    int | None,
    typer.Option(
        help="Failed chunks tolerated, as a number.", envvar="SCM_BATCH_TOLERATED_FAILURE_COUNT"
    ),
]


def _progress_mode(value: str) -> ProgressMode:
    if value not in ("auto", "live", "log", "none"):
        raise ConfigError("--progress", f"must be auto, live, log or none (got {value!r})")
    return value  # type: ignore[return-value]


def _fault_handling(
    attempts: int,
    base_delay: float,
    backoff_rate: float,
    max_delay: float,
    tolerated_percentage: float | None,
    tolerated_count: int | None,
) -> dict[str, Any]:
    """The retry policy and tolerance from their flags, as ``_run_options`` arguments."""
    return {
        "retry": RetryPolicy(
            attempts=attempts,
            base_delay_seconds=base_delay,
            backoff_rate=backoff_rate,
            max_delay_seconds=max_delay,
        ),
        "tolerance": Tolerance(percentage=tolerated_percentage, count=tolerated_count),
    }


def _run_options(
    *,
    workers: int | None,
    retry: RetryPolicy,
    tolerance: Tolerance,
    storage: StorageOptions,
    delivery: DeliveryOptions,
    plan: PlanOptions | None = None,
    overwrite: bool = False,
) -> RunOptions:
    defaults = RunOptions()
    return RunOptions(
        workers=workers if workers is not None else defaults.workers,
        storage=storage,
        delivery=delivery,
        overwrite=overwrite,
        plan=plan or defaults.plan,
        retry=retry,
        tolerance=tolerance,
        faults=parse_faults(os.environ.get(FAULTS_ENV)),
    )


def _finish(report: RunReport, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report.summary)).decode() + "\n")
    else:
        _print_report(report)
    return report.exit_code


def _print_report(report: RunReport) -> None:
    s = report.summary
    t = s.totals
    if report.already_complete:
        _out.print(f"batch {s.batch_id} was already complete; its results as recorded:")
    verdict_style = {
        "VALIDATION_PASSED": "green",
        "VALIDATION_FAILED": "yellow",
        "VALIDATION_FAILED_CRITICAL": "red",
    }.get(s.validation_status, "white")
    table = Table(title=f"batch {s.batch_id}: {s.status}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    chunks = f"{s.chunks_succeeded}/{s.chunks_total} processed, {s.chunks_failed} failed"
    if s.chunks_not_processed:
        chunks += f", {s.chunks_not_processed} not started"
    if s.chunks_resumed:
        chunks += f" ({s.chunks_resumed} done by an earlier session)"
    rows = [
        ("records processed", f"{s.summary.total_records_processed:,}"),
        ("valid", f"{t.valid_records:,}"),
        (
            "errors",
            f"{t.errors:,}  " + ", ".join(f"{k}={v:,}" for k, v in s.errors_by_category.items()),
        ),
        ("blank lines skipped", f"{t.blank_lines:,}"),
        ("success rate", f"{s.summary.success_rate:.4f} %"),
        ("validation", f"[{verdict_style}]{s.validation_status}[/]"),
        ("chunks", chunks),
        ("time", f"{s.summary.processing_time:,.2f} s"),
        ("throughput", f"{s.summary.records_per_second:,.0f} records/s"),
        ("peak worker memory", f"{s.max_worker_peak_rss_bytes / 2**20:,.0f} MiB"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    _out.print(table)
    for reason in report.validation.critical_reasons:
        _out.print(f"[red]critical:[/] {escape(reason)}")
    for failure in s.failed_chunks:
        _out.print(
            f"[red]failed:[/] {failure.chunk_id} after {len(failure.attempts)} attempt(s): "
            + escape(f"{failure.error_type}: {failure.message}")
        )
    _out.print(escape(f"aggregated results: {report.aggregated_uri}"))
    _out.print(escape(f"validation report:  {report.validation_uri}"))
    _out.print(escape(f"result parts:       {report.results_uri}"))
    _out.print(escape(f"error parts:        {report.errors_uri}"))
    for sent in report.notifications:
        _out.print(escape(f"notification ({sent.channel}): {sent.location}"))


@app.command()
def run(
    ctx: typer.Context,
    input_file: InputOpt = None,
    bucket: BucketOpt = None,
    file: FileOpt = None,
    customer_id: CustomerOpt = None,
    tenant_id: TenantOpt = None,
    batch_id: BatchOpt = None,
    snapshot_id: SnapshotOpt = None,
    deployment: DeploymentOpt = None,
    destination: DestinationOpt = None,
    target_total_records: TargetOpt = None,
    max_concurrent_chunks: ConcurrentOpt = None,
    max_chunk_size: ChunkSizeOpt = None,
    processed_at: ProcessedAtOpt = None,
    workers: WorkersOpt = None,
    min_chunk_size: MinChunkOpt = _DEFAULT_PLAN.min_chunk_size,
    count_records: CountOpt = None,
    lambda_timeout: LambdaTimeoutOpt = _DEFAULT_ROUTING.lambda_timeout_seconds,
    estimated_time_per_record: PerRecordOpt = _DEFAULT_ROUTING.estimated_processing_time_per_record,
    batch_processing_threshold: ThresholdOpt = _DEFAULT_ROUTING.batch_processing_threshold,
    retry_attempts: RetryAttemptsOpt = _DEFAULT_RETRY.attempts,
    retry_base_delay: RetryDelayOpt = _DEFAULT_RETRY.base_delay_seconds,
    retry_backoff_rate: RetryRateOpt = _DEFAULT_RETRY.backoff_rate,
    retry_max_delay: RetryMaxOpt = _DEFAULT_RETRY.max_delay_seconds,
    tolerated_failure_percentage: TolerancePctOpt = None,
    tolerated_failure_count: ToleranceCountOpt = None,
    output_format: OutputFormatOpt = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the outputs of an earlier run of this batch id.")
    ] = False,
    manifest: ManifestOpt = None,
    event: EventOpt = None,
    storage: StorageOpt = "auto",
    endpoint_url: EndpointOpt = None,
    region: RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
    message_format: MessageFormatOpt = "envelope",
    kafka_brokers: KafkaBrokersOpt = None,
    kafka_topic: KafkaTopicOpt = _DEFAULT_KAFKA.topic,
    kafka_notification_topic: KafkaNotificationTopicOpt = _DEFAULT_KAFKA.notification_topic,
    kafka_topic_policy: KafkaTopicPolicyOpt = _DEFAULT_KAFKA.topic_policy,
    kafka_security_protocol: KafkaProtocolOpt = _DEFAULT_KAFKA.security_protocol,
    kafka_sasl_mechanism: KafkaSaslOpt = None,
    kafka_ssl_ca: KafkaCaOpt = None,
    kafka_msk_iam_region: KafkaMskOpt = None,
    sqs_core_queue: SqsCoreOpt = None,
    status_queue: StatusQueueOpt = None,
    sqs_endpoint_url: SqsEndpointOpt = None,
    progress: ProgressOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Run a batch end to end: validate, plan, process chunks in parallel, aggregate, notify.

    A batch id whose plan is already in the bucket is resumed rather than started again.
    """
    flags = _flags(locals())

    def action() -> int:
        storage_options = _storage_options(storage, endpoint_url, region, sse, sse_kms_key_id)
        job = _job_input(input_file, flags, manifest=manifest, event=event, storage=storage_options)
        options = _run_options(
            workers=workers,
            storage=storage_options,
            delivery=_delivery_options(
                message_format,
                kafka_brokers,
                kafka_topic,
                kafka_notification_topic,
                kafka_topic_policy,
                kafka_security_protocol,
                kafka_sasl_mechanism,
                kafka_ssl_ca,
                kafka_msk_iam_region,
                sqs_core_queue,
                status_queue,
                sqs_endpoint_url,
                region,
            ),
            overwrite=overwrite,
            plan=_plan_options(
                min_chunk_size,
                count_records,
                lambda_timeout,
                estimated_time_per_record,
                batch_processing_threshold,
                output_format,
            ),
            **_fault_handling(
                retry_attempts,
                retry_base_delay,
                retry_backoff_rate,
                retry_max_delay,
                tolerated_failure_percentage,
                tolerated_failure_count,
            ),
        )
        report = run_batch(job, options, progress=choose_progress(_progress_mode(progress)))
        return _finish(report, as_json)

    raise typer.Exit(_guarded(ctx, action))


RequiredBucketOpt = Annotated[
    str,
    typer.Option(
        help="The batch's bucket: s3://name or a local directory.", envvar="SCM_BATCH_BUCKET"
    ),
]
RequiredBatchOpt = Annotated[str, typer.Option(help="The batch id.")]


@app.command()
def resume(
    ctx: typer.Context,
    bucket: RequiredBucketOpt,
    batch_id: RequiredBatchOpt,
    workers: WorkersOpt = None,
    retry_attempts: RetryAttemptsOpt = _DEFAULT_RETRY.attempts,
    retry_base_delay: RetryDelayOpt = _DEFAULT_RETRY.base_delay_seconds,
    retry_backoff_rate: RetryRateOpt = _DEFAULT_RETRY.backoff_rate,
    retry_max_delay: RetryMaxOpt = _DEFAULT_RETRY.max_delay_seconds,
    tolerated_failure_percentage: TolerancePctOpt = None,
    tolerated_failure_count: ToleranceCountOpt = None,
    output_format: OutputFormatOpt = None,
    storage: StorageOpt = "auto",
    endpoint_url: EndpointOpt = None,
    region: RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
    message_format: MessageFormatOpt = "envelope",
    kafka_brokers: KafkaBrokersOpt = None,
    kafka_topic: KafkaTopicOpt = _DEFAULT_KAFKA.topic,
    kafka_notification_topic: KafkaNotificationTopicOpt = _DEFAULT_KAFKA.notification_topic,
    kafka_topic_policy: KafkaTopicPolicyOpt = _DEFAULT_KAFKA.topic_policy,
    kafka_security_protocol: KafkaProtocolOpt = _DEFAULT_KAFKA.security_protocol,
    kafka_sasl_mechanism: KafkaSaslOpt = None,
    kafka_ssl_ca: KafkaCaOpt = None,
    kafka_msk_iam_region: KafkaMskOpt = None,
    sqs_core_queue: SqsCoreOpt = None,
    status_queue: StatusQueueOpt = None,
    sqs_endpoint_url: SqsEndpointOpt = None,
    progress: ProgressOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Continue an interrupted batch from its plan: finished chunks are kept, the rest run."""

    def action() -> int:
        options = _run_options(
            workers=workers,
            plan=PlanOptions(output_format=_output_format(output_format)),
            storage=_storage_options(storage, endpoint_url, region, sse, sse_kms_key_id),
            delivery=_delivery_options(
                message_format,
                kafka_brokers,
                kafka_topic,
                kafka_notification_topic,
                kafka_topic_policy,
                kafka_security_protocol,
                kafka_sasl_mechanism,
                kafka_ssl_ca,
                kafka_msk_iam_region,
                sqs_core_queue,
                status_queue,
                sqs_endpoint_url,
                region,
            ),
            **_fault_handling(
                retry_attempts,
                retry_base_delay,
                retry_backoff_rate,
                retry_max_delay,
                tolerated_failure_percentage,
                tolerated_failure_count,
            ),
        )
        report = resume_batch(
            bucket, batch_id, options, progress=choose_progress(_progress_mode(progress))
        )
        return _finish(report, as_json)

    raise typer.Exit(_guarded(ctx, action))


@app.command()
def status(
    ctx: typer.Context,
    bucket: RequiredBucketOpt,
    batch_id: RequiredBatchOpt,
    storage: StorageOpt = "auto",
    endpoint_url: EndpointOpt = None,
    region: RegionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a batch stands, from its bucket alone: chunks done, failed, pending; records so far."""

    def action() -> None:
        storage_options = _storage_options(storage, endpoint_url, region, None, None)
        state = batch_status(bucket, batch_id, storage_options)
        if as_json:
            sys.stdout.write(msgspec.json.format(msgspec.json.encode(state)).decode() + "\n")
            return
        exact = "" if state.records_exact else " (estimated)"
        share = state.records_done / state.records_total if state.records_total else 0.0
        _out.print(escape(f"batch {state.batch_id} in {state.bucket}: {state.phase}"))
        _out.print(escape(f"input:   {state.file}, planned {state.planned_at}"))
        _out.print(
            f"chunks:  {state.chunks_done}/{state.chunks_total} done, "
            f"{state.chunks_failed} failed, {state.chunks_pending} pending"
        )
        _out.print(
            f"records: {state.records_done:,} of {state.records_total:,}{exact} ({share:.1%})"
        )
        for failure in state.failed_chunks:
            _out.print(
                escape(
                    f"failed:  {failure.chunk_id} after {len(failure.attempts)} attempt(s): "
                    f"{failure.error_type}: {failure.message}"
                )
            )
        if state.batch_status is not None:
            _out.print(f"result:  {state.batch_status}, {state.validation_status}")
        if state.notification_status is not None:
            _out.print(f"notified: {state.notification_status}")

    _guarded(ctx, action)


app.add_typer(aws_app, name="aws")


def main() -> None:
    """Console entry point: usage errors, like every other error, are one line on stderr."""
    try:
        code = app(standalone_mode=False, prog_name="scm-batch")
    except typer.Abort:
        _err.print("[bold red]error:[/] interrupted", soft_wrap=True)
        sys.exit(ExitCode.INTERRUPTED)
    except typer.TyperException as exc:  # usage errors: unknown option, value of the wrong type
        message = exc.format_message()
        if message:  # empty when the help was shown for a bare command
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _err.print(f"[bold red]error:[/] {escape(message + hint)}", soft_wrap=True)
        sys.exit(ExitCode.BAD_INPUT)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
