"""``scm-batch plan --estimate``: before a batch runs, its wall time and cost on each backend.

The batch is planned as ``plan`` plans it (timed: the planning pass is part of a run), a sample
of its input is processed on this machine with the real record engine (:mod:`.calibrate`), and
the per-backend models (:mod:`.backends`, pure functions) turn the plan's shape, the measured
speed, the prices (:mod:`.prices`) and the stated assumptions into wall times and bills. The
state transitions a batch takes on AWS are counted on the deployed definition
(:mod:`.transitions`), its S3 and SQS requests from what the code asks (:mod:`.requests`).

* :mod:`.values`: the typed values in and out (the JSON document is an :class:`Estimate`);
* :mod:`.report`: the estimate as tables, for people.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from scm_batch.config import RunOptions
from scm_batch.estimate.backends import all_backends, lambda_chunk_seconds, loads
from scm_batch.estimate.calibrate import (
    ASSUMED_STARTUP_SECONDS,
    calibrate,
    process_age_seconds,
)
from scm_batch.estimate.prices import LoadedPrices, load_prices
from scm_batch.estimate.transitions import count_transitions
from scm_batch.estimate.values import (
    ESTIMATE_FORMAT_VERSION,
    Assumptions,
    Calibration,
    ChunkShape,
    DeploymentShape,
    Estimate,
    PlanShape,
    PriceInfo,
)
from scm_batch.model import ChunkPlan, JobInput
from scm_batch.storage import open_storage

__all__ = ["Estimate", "assumptions_text", "estimate_batch", "estimate_plan", "shape_of"]

DEFAULT_DASK_WORKERS = 8


def shape_of(plan: ChunkPlan, options: RunOptions) -> PlanShape:
    """What of ``plan`` (and of the delivery it was planned with) decides time and cost."""
    source = plan.source
    queue = options.delivery.sqs.core_queue_url or ""
    compressed = source.compression != "none"
    return PlanShape(
        chunks=tuple(
            ChunkShape(records=c.chunk_size, bytes=c.byte_end - c.byte_start, route=c.route)
            for c in plan.chunks
        ),
        input_bytes=source.size,
        records_exact=plan.records_exact,
        max_concurrent_chunks=plan.job.max_concurrent_chunks,
        lambda_timeout_seconds=plan.options.routing.lambda_timeout_seconds,
        destination=plan.job.destination or "none",
        deployment=plan.job.deployment,
        bucket_on_s3=plan.job.bucket.startswith("s3://"),
        input_format=source.format,
        compressed=compressed,
        decompressed_bytes=sum(c.byte_end - c.byte_start for c in plan.chunks)
        if compressed
        else None,
        lambda_plan_max_bytes=plan.options.lambda_plan_max_bytes,
        sqs_fifo=queue.endswith(".fifo"),
    )


def assumptions_text(
    cal: Calibration,
    a: Assumptions,
    d: DeploymentShape,
    shape: PlanShape,
    *,
    dask_workers: int,
    dask_default: bool,
) -> tuple[str, ...]:
    """Every figure the estimate did not measure, in words."""
    efficiency = cal.efficiency
    startup = (
        "measured"
        if cal.startup_seconds != ASSUMED_STARTUP_SECONDS
        else "assumed: not measurable here"
    )
    lambda_cpu = min(1.0, d.lambda_memory_mb / a.lambda_full_core_mb)
    return (
        f"this machine: {cal.workers} workers run {efficiency:.0%} as fast each as one process "
        f"alone, as measured with {cal.workers} processes running the sample at once; start-up "
        f"as this command's ({startup}); {a.local_finish:g} s + {a.local_finish_per_chunk * 1e3:g} "
        "ms a chunk to aggregate and report",
        f"deployment: the Terraform module's defaults: update-records {d.lambda_memory_mb:,} MB "
        f"({lambda_cpu:.0%} of a core; Lambda gives a full vCPU at {a.lambda_full_core_mb:,} MB, "
        f"less below in proportion, and a chunk uses one), Batch jobs {d.batch_job_vcpus:g} vCPU "
        f"and {d.batch_job_memory_mib:,} MiB, at most {d.batch_max_vcpus} vCPUs at once; "
        f"{shape.max_concurrent_chunks} chunks at a time (the plan's maxConcurrentChunks, the "
        "Map's MaxConcurrency); the Lambda timeout of the plan's routing "
        f"({shape.lambda_timeout_seconds:.0f} s)",
        "AWS compute as fast a core as this machine's (Lambda and Fargate x86_64 cores differ by "
        "generation: measure one chunk there to know)",
        f"Lambda: a cold start of {a.lambda_cold_start:g} s (billed) for each function of the "
        f"main path and for each chunk of the first wave; {a.lambda_step_work:g} s of work a "
        f"main-path function; {a.transition_latency:g} s a state transition; "
        f"{a.map_start:g} s for the distributed Map to start",
        f"S3 from Lambda and Fargate: {a.s3_request_latency * 1e3:g} ms to a request's first "
        f"byte, {a.s3_stream_mb_per_second:g} MB/s a stream; a chunk reads its range and then "
        "writes its parts, one stream at a time, not overlapped with the work",
        f"Fargate: {a.fargate_start:g} s from a job's submission to its start (60-90 s is "
        f"usual), of which {a.fargate_billed_start:g} s billed (the image pull on); at least "
        f"{a.fargate_minimum_billed:g} s billed a job",
        f"Dask: {dask_workers} workers"
        + (" (the default of --estimate-dask-workers)" if dask_default else "")
        + f", one a vCPU, each as fast as a worker here with all {cal.workers} busy; "
        f"{a.dask_task_overhead * 1e3:g} ms a chunk for the scheduler",
        f"SQS: a record message is its result line and {a.sqs_envelope_bytes} bytes of envelope",
        "not counted: retries and failures, CloudWatch Logs and metrics, KMS requests of "
        "encrypted objects, S3 storage, the Kafka brokers' own cost, free tiers, taxes",
    )


def estimate_plan(
    plan: ChunkPlan,
    options: RunOptions,
    cal: Calibration,
    prices: LoadedPrices,
    *,
    dask_workers: int = DEFAULT_DASK_WORKERS,
    dask_default: bool = True,
    today: date | None = None,
) -> Estimate:
    """The estimate of ``plan`` from a calibration already made (pure but for the definition
    it counts transitions on)."""
    shape = shape_of(plan, options)
    a, d = Assumptions(), DeploymentShape()
    transitions = count_transitions(plan.job.deployment)
    backends = all_backends(
        shape,
        cal,
        prices.sheet,
        transitions,
        workers=options.workers,
        dask_workers=dask_workers,
        deployment=d,
        assumptions=a,
    )
    sheet = prices.sheet
    age = ((today or date.today()) - sheet.prices_as_of).days
    notes = []
    if age > 365:
        notes.append(
            f"the prices are {age:,} days old ({sheet.prices_as_of.isoformat()}): check them, "
            "and give your own with --prices"
        )
    # Chunks routed to Batch by the pessimistic routing estimate that Lambda would finish, at
    # the speed measured here, within the routing's safety margin.
    margin = 1 - plan.options.routing.lambda_safety_margin
    on_lambda = [
        lambda_chunk_seconds(c, cal, d, a)
        for c in loads(shape, cal)
        if c.route == "batch"
        and lambda_chunk_seconds(c, cal, d, a) < shape.lambda_timeout_seconds * margin
    ]
    if on_lambda:
        per_record = plan.options.routing.estimated_processing_time_per_record
        notes.append(
            f"{len(on_lambda)} chunks are routed to AWS Batch by the routing estimate of "
            f"{per_record:g} s a record; at the speed measured here each would take "
            f"{max(on_lambda):,.0f} s at most on Lambda: measure a chunk there and lower "
            "--estimated-time-per-record (estimated_processing_time_per_record) to route them "
            "to Lambda"
        )
    return Estimate(
        format_version=ESTIMATE_FORMAT_VERSION,
        batch_id=plan.batch_id,
        file=plan.job.file,
        records=plan.total_records,
        records_exact=plan.records_exact,
        input_bytes=plan.source.size,
        chunks=plan.chunk_count,
        chunks_on_lambda=sum(1 for c in plan.chunks if c.route == "lambda"),
        chunks_on_batch=sum(1 for c in plan.chunks if c.route == "batch"),
        max_concurrent_chunks=shape.max_concurrent_chunks,
        prices=PriceInfo(
            origin=prices.origin,
            built_in=prices.built_in,
            region=sheet.region,
            currency=sheet.currency,
            prices_as_of=sheet.prices_as_of,
            source=sheet.source,
        ),
        calibration=cal,
        deployment=d,
        model=a,
        backends=backends,
        assumptions=assumptions_text(
            cal, a, d, shape, dask_workers=dask_workers, dask_default=dask_default
        ),
        notes=tuple(notes),
    )


def estimate_batch(
    job: JobInput,
    options: RunOptions,
    *,
    prices: Path | None = None,
    dask_workers: int = DEFAULT_DASK_WORKERS,
    dask_default: bool = True,
) -> Estimate:
    """Plan ``job`` as ``scm-batch plan`` does (timed), calibrate on a sample of its input, and
    estimate. The price file is read first: a bad one fails before any work."""
    startup = process_age_seconds()
    loaded = load_prices(prices)
    started = time.perf_counter()
    # Loaded here: the lifecycle is what the command line has loaded already, and this package
    # is light to import without it.
    from scm_batch.lifecycle import preview_plan  # noqa: PLC0415

    plan = preview_plan(job, options)
    planning = time.perf_counter() - started
    storage = open_storage(plan.job.bucket, options.storage)
    cal = calibrate(
        plan,
        storage,
        workers=options.workers,
        planning_seconds=planning,
        startup_seconds=ASSUMED_STARTUP_SECONDS if startup is None else startup,
    )
    return estimate_plan(
        plan, options, cal, loaded, dask_workers=dask_workers, dask_default=dask_default
    )
