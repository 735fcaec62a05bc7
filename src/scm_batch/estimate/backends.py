"""Wall time and cost of a planned batch on each backend: pure functions over typed values.

Every model takes the plan's shape (:class:`PlanShape`), what was measured on this machine
(:class:`Calibration`), the prices (:class:`PriceSheet`) and the figures it cannot measure
(:class:`Assumptions`, each one stated in the output), and answers a :class:`BackendEstimate`:
its wall time as a sum of named parts, its cost as a list of priced terms. Nothing here runs
anything, so each is checked against hand-computed values.

Chunks are scheduled as the backends schedule them: in plan order, each to the first free slot
(a worker, an iteration of the Map), :func:`makespan`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scm_batch.estimate.prices import PriceSheet
from scm_batch.estimate.requests import (
    NONE,
    S3Requests,
    batch_s3_requests,
    chunk_s3_requests,
    sqs_batch_requests,
)
from scm_batch.estimate.transitions import Transitions
from scm_batch.estimate.values import (
    Assumptions,
    BackendEstimate,
    Calibration,
    CostTerm,
    DeploymentShape,
    PlanShape,
    TimeTerm,
)
from scm_batch.model import Route

GB = 1e9  # data transfer is priced per GB of bytes
MB = 1e6
HOUR = 3600.0
STORAGE_CONCURRENCY = 16  # requests a function keeps in flight reading many small objects


# ---- scheduling ---------------------------------------------------------------------------------
def makespan(durations: Iterable[float], slots: int) -> float:
    """When the last of ``durations`` ends, each started in order on the first free of
    ``slots`` (a worker, a concurrent iteration)."""
    free = [0.0] * max(1, slots)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        finish = start + duration
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end


def first_wave(chunks: int, slots: int) -> int:
    """Chunks that start at once, on slots nobody used before (cold Lambda environments)."""
    return min(chunks, max(1, slots))


# ---- what the chunks carry --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChunkLoad:
    """One chunk's work as the models need it."""

    records: int
    read_bytes: float  # from the bucket (the staged, compressed copy for a compressed input)
    result_bytes: float  # its result part
    valid: float  # records delivered
    route: Route


def loads(shape: PlanShape, cal: Calibration) -> list[ChunkLoad]:
    """The chunks' loads, from the plan and the sample's output per record."""
    # A compressed input's chunks are read from staged copies, about as compressed as the input.
    ratio = shape.input_bytes / shape.chunk_bytes if shape.compressed and shape.chunk_bytes else 1.0
    return [
        ChunkLoad(
            records=c.records,
            read_bytes=c.bytes * ratio,
            result_bytes=c.records * cal.result_bytes_per_record,
            valid=c.records * cal.valid_share,
            route=c.route,
        )
        for c in shape.chunks
    ]


def message_bytes(cal: Calibration, a: Assumptions) -> float:
    """A record message's size: its result line and the envelope around it."""
    line = cal.result_bytes_per_record / cal.valid_share if cal.valid_share else 0.0
    return line + a.sqs_envelope_bytes


# ---- priced terms -------------------------------------------------------------------------------
def term(
    what: str,
    quantity: float,
    unit: str,
    price: float,
    per: float = 1.0,
    *,
    counted: bool = True,
    note: str | None = None,
) -> CostTerm:
    return CostTerm(
        what=what,
        quantity=quantity,
        unit=unit,
        price=price,
        per=per,
        cost=quantity / per * price,
        counted=counted,
        note=note,
    )


def s3_terms(requests: S3Requests, prices: PriceSheet) -> list[CostTerm]:
    s3 = prices.s3
    return [
        term(
            "S3 PUT, COPY, POST, LIST requests",
            requests.put_class,
            "requests",
            s3.per_thousand_put_copy_post_list,
            1000,
        ),
        term(
            "S3 GET, HEAD and other requests",
            requests.get_class,
            "requests",
            s3.per_thousand_get_and_other,
            1000,
        ),
    ]


def sqs_terms(
    shape: PlanShape,
    chunks: Sequence[ChunkLoad],
    cal: Calibration,
    prices: PriceSheet,
    a: Assumptions,
    *,
    on_aws: bool,
) -> list[CostTerm]:
    """SQS requests: the records (destination sqs_core), the completion notice of a CORE
    deployment (to SQS Core), and on AWS the status message the state machine sends."""
    sqs = prices.sqs
    core_price = (
        sqs.per_million_fifo_requests if shape.sqs_fifo else sqs.per_million_standard_requests
    )
    core = "SQS Core (FIFO)" if shape.sqs_fifo else "SQS Core (standard)"
    size = message_bytes(cal, a)
    terms = []
    if shape.destination == "sqs_core":
        records = sum(
            sqs_batch_requests(round(c.valid), size, sqs.billed_chunk_bytes) for c in chunks
        )
        terms.append(
            term(
                f"{core} requests: the records, 10 a SendMessageBatch",
                records,
                "requests",
                core_price,
                1e6,
                note=f"~{size:,.0f} bytes a message; each 64 KiB of a call is billed as a request",
            )
        )
    if shape.deployment == "CORE":
        terms.append(
            term(f"{core} requests: the completion notice", 1, "requests", core_price, 1e6)
        )
    if on_aws:
        terms.append(
            term(
                "SQS (standard) requests: the status message (batch-proc)",
                1,
                "requests",
                sqs.per_million_standard_requests,
                1e6,
            )
        )
    return terms


def transfer_terms(
    shape: PlanShape,
    chunks: Sequence[ChunkLoad],
    cal: Calibration,
    prices: PriceSheet,
    a: Assumptions,
    *,
    compute: str,
) -> list[CostTerm]:
    """Data transfer: S3 to the compute in its region (free), and out to the internet, which
    applies only where the records go outside AWS (Kafka brokers elsewhere): shown, not added."""
    moved = sum(c.read_bytes + c.result_bytes for c in chunks) / GB
    terms = [
        term(
            f"data transfer, S3 to {compute} in the same region",
            moved,
            "GB",
            prices.data_transfer.s3_to_compute_same_region_per_gb,
        )
    ]
    if shape.destination == "kafka":
        delivered = sum(c.valid for c in chunks) * message_bytes(cal, a) / GB
        terms.append(
            term(
                "data transfer out to the internet: the records to Kafka",
                delivered,
                "GB",
                prices.data_transfer.out_to_internet_per_gb,
                counted=False,
                note="only if the brokers are outside AWS; not in the total",
            )
        )
    return terms


def _total(terms: Iterable[CostTerm]) -> float:
    return sum(t.cost for t in terms if t.counted)


def _chunk_requests(chunks: Sequence[ChunkLoad], route: Route | None = None) -> S3Requests:
    total = NONE
    for c in chunks:
        total = total + chunk_s3_requests(c.result_bytes, route or c.route)
    return total


# ---- this machine -------------------------------------------------------------------------------
def worker_seconds_per_record(cal: Calibration, busy: int) -> float:
    """A worker's seconds per record with ``busy`` workers running: one core's figure alone,
    the loaded one with all the calibrated workers busy, in proportion in between."""
    if cal.workers <= 1 or busy <= 1:
        return cal.per_record_seconds if busy <= 1 else cal.loaded_per_record_seconds
    share = min(1.0, (busy - 1) / (cal.workers - 1))
    return cal.per_record_seconds + share * (cal.loaded_per_record_seconds - cal.per_record_seconds)


def local_pool(
    shape: PlanShape,
    cal: Calibration,
    prices: PriceSheet,
    a: Assumptions,
    *,
    workers: int,
) -> BackendEstimate:
    """``scm-batch run`` on this machine with ``workers`` worker processes."""
    chunks = loads(shape, cal)
    busy = min(workers, len(chunks))
    per_record = worker_seconds_per_record(cal, busy)
    run = makespan((cal.per_chunk_seconds + c.records * per_record for c in chunks), workers)
    # The run starts its pool while it plans: only what the start takes beyond planning shows.
    pool_wait = max(0.0, cal.pool_start_seconds - cal.planning_seconds)
    finish = a.local_finish + a.local_finish_per_chunk * len(chunks)
    time = (
        TimeTerm(what="start-up (as this command's, measured)", seconds=cal.startup_seconds),
        TimeTerm(
            what="planning: stat, sample, count lines, cut (measured)", seconds=cal.planning_seconds
        ),
        TimeTerm(what="worker pool start beyond planning (measured)", seconds=pool_wait),
        TimeTerm(
            what=f"chunks on {workers} workers ({per_record * 1e6:.2f} µs a record each, "
            f"{cal.per_chunk_seconds * 1e3:.1f} ms a chunk)",
            seconds=run,
        ),
        TimeTerm(what="aggregation, reports, notifications (assumed)", seconds=finish),
    )
    terms: list[CostTerm] = []
    notes = ["your own machine: no charge beyond what it costs you to run it"]
    if shape.bucket_on_s3:
        terms += s3_terms(
            _chunk_requests(chunks, "lambda") + batch_s3_requests(len(chunks)), prices
        )
        terms.append(
            term(
                "data transfer out of AWS: the input read from the bucket (uploads are free)",
                sum(c.read_bytes for c in chunks) / GB,
                "GB",
                prices.data_transfer.out_to_internet_per_gb,
                counted=False,
                note="only if this machine is outside the bucket's region; not in the total",
            )
        )
    terms += sqs_terms(shape, chunks, cal, prices, a, on_aws=False)
    return BackendEstimate(
        key="local",
        label=f"this machine, local pool of {workers} workers",
        wall_seconds=sum(t.seconds for t in time),
        cost=_total(terms),
        chunks=len(chunks),
        time=time,
        terms=tuple(terms),
        notes=tuple(notes),
    )


# ---- AWS ----------------------------------------------------------------------------------------
def lambda_cpu_share(memory_mb: float, a: Assumptions) -> float:
    """The share of one core a function of ``memory_mb`` gets (a chunk uses one core at most)."""
    return min(1.0, memory_mb / a.lambda_full_core_mb)


def chunk_io_seconds(c: ChunkLoad, route: Route, a: Assumptions) -> float:
    """A chunk's S3 time on AWS: each request's latency, and its bytes through one stream."""
    requests = chunk_s3_requests(c.result_bytes, route)
    latency = (requests.put_class + requests.get_class) * a.s3_request_latency
    return latency + (c.read_bytes + c.result_bytes) / (a.s3_stream_mb_per_second * MB)


def lambda_chunk_seconds(
    c: ChunkLoad, cal: Calibration, d: DeploymentShape, a: Assumptions
) -> float:
    """update-records' time on a chunk, warm: the records at the function's share of a core,
    the chunk's fixed cost, its S3 requests and bytes."""
    cpu = lambda_cpu_share(d.lambda_memory_mb, a)
    work = (c.records * cal.per_record_seconds + cal.per_chunk_seconds) / cpu
    return work + chunk_io_seconds(c, "lambda", a)


def fargate_run_seconds(
    c: ChunkLoad, cal: Calibration, d: DeploymentShape, a: Assumptions
) -> float:
    """A chunk job's time once running: one core (of ``batch_job_vcpus``), its S3 requests and
    bytes (a job reads its chunk item from the stored plan first: four more requests)."""
    cpu = min(1.0, d.batch_job_vcpus)
    work = (c.records * cal.per_record_seconds + cal.per_chunk_seconds) / cpu
    return work + chunk_io_seconds(c, "batch", a)


def fargate_billed_seconds(run: float, a: Assumptions) -> float:
    return max(a.fargate_minimum_billed, a.fargate_billed_start + run)


def batch_slots(shape: PlanShape, d: DeploymentShape) -> int:
    """Chunk jobs at once: the Map's concurrency, within the compute environment's vCPUs."""
    return max(1, min(shape.max_concurrent_chunks, int(d.batch_max_vcpus // d.batch_job_vcpus)))


@dataclass(frozen=True, slots=True)
class MainPath:
    """The state machine's steps around the Map: their time and what they cost."""

    before: tuple[TimeTerm, ...]
    after: tuple[TimeTerm, ...]
    gb_seconds: float
    requests: int
    fargate_seconds: float  # a planning job on Batch, billed


def main_path(
    shape: PlanShape,
    cal: Calibration,
    d: DeploymentShape,
    a: Assumptions,
    transitions: Transitions,
) -> MainPath:
    """InitializeBatchProcessing … CalculateChunks, and AggregateResults … SuccessState: five
    functions, each cold (executions are far apart), and the transitions between them."""
    step = a.lambda_cold_start + a.lambda_step_work
    chunks = len(shape.chunks)
    # CalculateChunks: JSON Lines on S3 are cut at estimated offsets (a ranged read a boundary,
    # 16 at a time); a JSON array or a compressed input is read whole (scanned, or decompressed
    # and staged) at the function's share of a core, or by a Batch job when it is too big.
    whole_read = shape.input_format == "json-array" or shape.compressed
    planning = math.ceil(max(0, chunks - 1) / STORAGE_CONCURRENCY) * a.s3_request_latency
    planning_job = 0.0
    if whole_read:
        read = shape.input_bytes / (a.s3_stream_mb_per_second * MB)
        size = shape.decompressed_bytes or shape.chunk_bytes
        if size > shape.lambda_plan_max_bytes:
            planning_job = cal.planning_seconds + read
            planning = a.fargate_start + planning_job
        else:
            cpu = lambda_cpu_share(d.calculate_chunks_memory_mb, a)
            planning = cal.planning_seconds / cpu + read
    aggregate = math.ceil(chunks / STORAGE_CONCURRENCY) * a.s3_request_latency
    latency = transitions.per_batch * a.transition_latency
    before = (
        TimeTerm(
            what="InitializeBatchProcessing, ValidateBatchConfig: cold starts", seconds=2 * step
        ),
        TimeTerm(what="CalculateChunks: cold start, cutting the input", seconds=step + planning),
        TimeTerm(what="state transitions of the main path", seconds=latency),
        TimeTerm(what="the distributed Map starting", seconds=a.map_start),
    )
    after = (
        TimeTerm(what="AggregateResults: cold start, every receipt read", seconds=step + aggregate),
        TimeTerm(what="the completion notice: cold start", seconds=step),
    )
    gb_seconds = (
        step * (d.read_s3_memory_mb + d.validate_data_memory_mb) / 1024
        + (step + (0.0 if planning_job else planning)) * d.calculate_chunks_memory_mb / 1024
        + (step + aggregate) * d.aggregate_results_memory_mb / 1024
        + step * d.send_memory_mb / 1024
    )
    billed_job = fargate_billed_seconds(planning_job, a) if planning_job else 0.0
    return MainPath(before, after, gb_seconds, 5, billed_job)


def _fargate_terms(
    label: str, billed: float, d: DeploymentShape, vcpu_hour: float, gb_hour: float
) -> list[CostTerm]:
    return [
        term(f"{label} vCPU-hours", billed * d.batch_job_vcpus / HOUR, "vCPU-h", vcpu_hour),
        term(f"{label} GB-hours", billed * d.batch_job_memory_mib / 1024 / HOUR, "GB-h", gb_hour),
    ]


def aws_backend(
    shape: PlanShape,
    cal: Calibration,
    prices: PriceSheet,
    a: Assumptions,
    transitions: Transitions,
    d: DeploymentShape,
    *,
    mode: str,
) -> BackendEstimate:
    """The batch on AWS, its chunks run as ``mode`` says: ``lambda`` (as the plan routed them:
    Lambda, and Batch on Fargate for the chunks routed there), ``fargate`` or ``fargate-spot``
    (every chunk a Batch job on Fargate, or Fargate Spot)."""
    chunks = loads(shape, cal)
    spot = mode == "fargate-spot"
    fargate = prices.fargate_spot if spot else prices.fargate
    concurrency = max(1, shape.max_concurrent_chunks)
    routes: list[Route] = [c.route if mode == "lambda" else "batch" for c in chunks]
    slots = concurrency if "lambda" in routes else batch_slots(shape, d)
    on_lambda = [i for i, r in enumerate(routes) if r == "lambda"]
    cold = set(on_lambda[: first_wave(len(on_lambda), slots)])
    timeout = shape.lambda_timeout_seconds
    durations: list[float] = []
    lambda_seconds = 0.0
    fargate_seconds = 0.0
    too_long = 0
    requests = NONE
    chunk_transitions = 0
    for i, (c, route) in enumerate(zip(chunks, routes, strict=True)):
        chunk_transitions += transitions.per_chunk(route)
        if route == "lambda":
            warm = lambda_chunk_seconds(c, cal, d, a)
            # A cold start's INIT phase is billed but not held to the function's timeout.
            seconds = warm + (a.lambda_cold_start if i in cold else 0.0)
            requests = requests + chunk_s3_requests(c.result_bytes, "lambda")
            if warm <= timeout:
                durations.append(seconds)
                lambda_seconds += seconds
                continue
            # Killed at its timeout, the chunk's next attempt is a Batch job (the state machine
            # catches it): both are paid for.
            too_long += 1
            lambda_seconds += timeout
            chunk_transitions += 1  # SubmitBatchJob, in the same child execution
            run = fargate_run_seconds(c, cal, d, a)
            durations.append(timeout + a.fargate_start + run)
            fargate_seconds += fargate_billed_seconds(run, a)
            requests = requests + chunk_s3_requests(c.result_bytes, "batch")
            continue
        run = fargate_run_seconds(c, cal, d, a)
        durations.append(a.fargate_start + run)
        fargate_seconds += fargate_billed_seconds(run, a)
        requests = requests + chunk_s3_requests(c.result_bytes, "batch")
    main = main_path(shape, cal, d, a, transitions)
    run_time = makespan(durations, slots)
    jobs = len(chunks) - len(on_lambda) + too_long
    time = (
        *main.before,
        TimeTerm(
            what=f"chunks: {len(on_lambda) - too_long} on Lambda, {jobs} Batch jobs, "
            f"{slots} at a time",
            seconds=run_time,
        ),
        *main.after,
    )
    lambda_gb_seconds = lambda_seconds * d.lambda_memory_mb / 1024
    terms = []
    if on_lambda:
        terms.append(
            term(
                "Lambda compute: update-records on the chunks",
                lambda_gb_seconds,
                "GB-s",
                prices.lambda_.per_gb_second,
            )
        )
    terms += [
        term(
            "Lambda compute: the main path's five functions",
            main.gb_seconds,
            "GB-s",
            prices.lambda_.per_gb_second,
        ),
        term(
            "Lambda requests",
            len(on_lambda) + main.requests,
            "requests",
            prices.lambda_.per_million_requests,
            1e6,
        ),
        term(
            "Step Functions state transitions",
            transitions.per_batch + chunk_transitions,
            "transitions",
            prices.step_functions.per_thousand_state_transitions,
            1000,
            note=f"{transitions.per_batch} a batch, {transitions.per_lambda_chunk} a chunk on "
            f"Lambda, {transitions.per_batch_chunk} a Batch job (a child execution each)",
        ),
    ]
    label = "Fargate Spot" if spot else "Fargate"
    if fargate_seconds or main.fargate_seconds:
        terms += _fargate_terms(
            f"{label}: chunk jobs ({d.batch_job_vcpus:g} vCPU, {d.batch_job_memory_mib:,} MiB)",
            fargate_seconds + main.fargate_seconds,
            d,
            fargate.per_vcpu_hour,
            fargate.per_gb_hour,
        )
    terms += s3_terms(requests + batch_s3_requests(len(chunks)), prices)
    terms += sqs_terms(shape, chunks, cal, prices, a, on_aws=True)
    compute = "Lambda and Fargate" if mode == "lambda" else "Fargate"
    terms += transfer_terms(shape, chunks, cal, prices, a, compute=compute)
    notes = []
    if too_long:
        notes.append(
            f"{too_long} chunks routed to Lambda would outlast its {timeout:.0f} s timeout: "
            "each is killed and run again as a Batch job (both paid for); lower the chunk size"
        )
    if spot:
        notes.append(
            "Spot capacity may be taken back: an interrupted job is retried (not modelled)"
        )
    if d.batch_job_vcpus > 1 and jobs:
        notes.append(
            f"a chunk job uses one of its {d.batch_job_vcpus:g} vCPUs (one process a chunk): "
            "batch_job_vcpus = 1 would cost less for the same time"
        )
    key = mode
    labels = {
        "lambda": "AWS Step Functions + Lambda (chunks as routed)",
        "fargate": "AWS Step Functions + Batch on Fargate (every chunk)",
        "fargate-spot": "AWS Step Functions + Batch on Fargate Spot (every chunk)",
    }
    return BackendEstimate(
        key=key,
        label=labels[mode],
        wall_seconds=sum(t.seconds for t in time),
        cost=_total(terms),
        chunks=len(chunks),
        time=time,
        terms=tuple(terms),
        notes=tuple(notes),
    )


# ---- a Dask cluster -----------------------------------------------------------------------------
def dask_cluster(
    shape: PlanShape,
    cal: Calibration,
    prices: PriceSheet,
    a: Assumptions,
    *,
    workers: int,
) -> BackendEstimate:
    """``scm-batch run --executor dask`` on a running cluster of ``workers`` workers (one a
    vCPU), each as fast as a worker here with every core busy; the driver plans here."""
    chunks = loads(shape, cal)
    per_record = cal.loaded_per_record_seconds

    def seconds(c: ChunkLoad) -> float:
        work = cal.per_chunk_seconds + c.records * per_record + a.dask_task_overhead
        return work + (chunk_io_seconds(c, "lambda", a) if shape.bucket_on_s3 else 0.0)

    run = makespan(map(seconds, chunks), workers)
    finish = a.local_finish + a.local_finish_per_chunk * len(chunks)
    time = (
        TimeTerm(what="driver start-up (as this command's, measured)", seconds=cal.startup_seconds),
        TimeTerm(what="planning on the driver (measured)", seconds=cal.planning_seconds),
        TimeTerm(
            what=f"chunks on {workers} workers ({per_record * 1e6:.2f} µs a record each)",
            seconds=run,
        ),
        TimeTerm(what="aggregation, reports, notifications (assumed)", seconds=finish),
    )
    wall = sum(t.seconds for t in time)
    machine = prices.dask_instance
    instances = math.ceil(workers / machine.vcpus)
    terms = [
        term(
            f"{instances} x {machine.instance_type} ({machine.vcpus} vCPU, "
            f"{machine.memory_gib:g} GiB) for the batch's time",
            instances * wall / HOUR,
            "instance-h",
            machine.per_hour,
            note=machine.note,
        )
    ]
    if shape.bucket_on_s3:
        terms += s3_terms(
            _chunk_requests(chunks, "lambda") + batch_s3_requests(len(chunks)), prices
        )
    terms += sqs_terms(shape, chunks, cal, prices, a, on_aws=False)
    return BackendEstimate(
        key="dask",
        label=f"a Dask cluster of {workers} workers",
        wall_seconds=wall,
        cost=_total(terms),
        chunks=len(chunks),
        time=time,
        terms=tuple(terms),
        notes=(
            "the cluster is up already: its start is not counted, nor its cost while idle",
            "the bucket on S3 in the cluster's region, or a shared directory as fast as this disk",
        ),
    )


def all_backends(
    shape: PlanShape,
    cal: Calibration,
    prices: PriceSheet,
    transitions: Transitions,
    *,
    workers: int,
    dask_workers: int,
    deployment: DeploymentShape | None = None,
    assumptions: Assumptions | None = None,
) -> tuple[BackendEstimate, ...]:
    """Every backend's estimate, in the order they are shown."""
    a = assumptions or Assumptions()
    d = deployment or DeploymentShape()
    return (
        local_pool(shape, cal, prices, a, workers=workers),
        aws_backend(shape, cal, prices, a, transitions, d, mode="lambda"),
        aws_backend(shape, cal, prices, a, transitions, d, mode="fargate"),
        aws_backend(shape, cal, prices, a, transitions, d, mode="fargate-spot"),
        dask_cluster(shape, cal, prices, a, workers=dask_workers),
    )


__all__ = [
    "Assumptions",
    "all_backends",
    "aws_backend",
    "dask_cluster",
    "local_pool",
    "makespan",
]
