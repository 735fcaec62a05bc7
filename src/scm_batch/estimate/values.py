"""Typed values of an estimate: what it is made from (the plan's shape, the calibration, the
deployment) and what it answers (per backend: wall time and cost, term by term).

All are frozen ``msgspec`` Structs with camelCase JSON names, like the rest of the contract's
values, so ``plan --estimate --json`` is one document of them.
"""

from __future__ import annotations

from datetime import date

import msgspec

from scm_batch.model import CamelStruct, Deployment, Destination, InputFormat, Route

ESTIMATE_FORMAT_VERSION = 1


# ---- what an estimate is made from --------------------------------------------------------------
class ChunkShape(CamelStruct, frozen=True):
    """One planned chunk, as far as time and cost go."""

    records: int
    bytes: int
    route: Route


class PlanShape(CamelStruct, frozen=True):
    """The planned batch, as far as time and cost go (:func:`scm_batch.estimate.shape_of`)."""

    chunks: tuple[ChunkShape, ...]
    input_bytes: int  # of the object as stored (compressed, for a compressed input)
    records_exact: bool
    max_concurrent_chunks: int  # the Map's MaxConcurrency on AWS
    lambda_timeout_seconds: float
    destination: Destination
    deployment: Deployment
    bucket_on_s3: bool
    input_format: InputFormat = "jsonl"
    compressed: bool = False
    decompressed_bytes: int | None = None  # of a compressed input, when the plan knows it
    lambda_plan_max_bytes: int = 2 << 30
    sqs_fifo: bool = False  # the SQS Core queue is a FIFO queue (its URL ends in .fifo)

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chunks)

    @property
    def chunk_bytes(self) -> int:
        """Bytes the chunks read: the input's, decompressed."""
        return sum(c.bytes for c in self.chunks)


class Calibration(CamelStruct, frozen=True):
    """What was measured on this machine, on a sample of the real input, with the real record
    engine (:mod:`scm_batch.estimate.calibrate`)."""

    sample_chunk: str  # the chunk the sample was cut from
    sample_records: int
    sample_bytes: int
    engine: str  # the record engine that ran it: native or python
    one_process_seconds: float  # the whole sample, one process alone (median of the rounds)
    per_record_seconds: float  # one process alone: one core
    per_chunk_seconds: float  # a chunk's fixed cost: open, fsync and commit its parts, its receipt
    workers: int  # processes run at once for the loaded figure
    loaded_per_record_seconds: float  # each of ``workers`` processes, all running at once
    result_bytes_per_record: float  # result part bytes per input record
    valid_share: float  # valid records per input record
    rounds: int  # timed rounds of the process alone (median), and of the tiny sample
    loaded_rounds: int  # timed rounds of every process at once (median), 1.5 s of them at least
    planning_seconds: float  # the planning pass (stat, sample, line count, cuts), measured
    startup_seconds: float  # this command's start-up before it planned, measured (or assumed)
    pool_start_seconds: float  # until the calibration processes were ready: the pool's start-up

    @property
    def efficiency(self) -> float:
        """Per-process speed with every worker busy, as a share of one process alone."""
        if self.loaded_per_record_seconds <= 0:
            return 1.0
        return self.per_record_seconds / self.loaded_per_record_seconds


class DeploymentShape(CamelStruct, frozen=True):
    """The AWS deployment an estimate assumes: the Terraform module's defaults
    (``deploy/terraform/variables.tf`` and ``lambda.tf``; a test keeps the two in step)."""

    lambda_memory_mb: int = 10240  # update-records
    batch_job_vcpus: float = 4
    batch_job_memory_mib: int = 8192
    batch_max_vcpus: int = 256
    # The main path's functions and their memory (MB), in the order a successful batch calls
    # them; the completion sender is the deployment's (Kafka for WORKSPACE, SQS Core for CORE).
    read_s3_memory_mb: int = 1024
    validate_data_memory_mb: int = 1024
    calculate_chunks_memory_mb: int = 1024
    aggregate_results_memory_mb: int = 3008
    send_memory_mb: int = 1024


class Assumptions(CamelStruct, frozen=True):
    """What the models cannot measure here, each stated with the estimate. Seconds unless said."""

    lambda_full_core_mb: int = 1769  # Lambda gives one full vCPU at 1,769 MB, less in proportion
    lambda_cold_start: float = 1.5  # python3.12, a 47 MiB package: boto3 and the engine loaded
    lambda_step_work: float = 0.3  # a main-path function's own work (ids, a few small objects)
    transition_latency: float = 0.05  # Step Functions, per state entered on the main path
    map_start: float = 2.0  # the distributed Map reading its items and starting its children
    s3_request_latency: float = 0.03  # to the first byte of an S3 request, from Lambda or Fargate
    s3_stream_mb_per_second: float = 75.0  # one stream: a chunk reads and writes one at a time
    fargate_start: float = 75.0  # a Batch job from submitted to running on Fargate (60-90 s)
    fargate_billed_start: float = 20.0  # of that, billed: from the image pull on
    fargate_minimum_billed: float = 60.0  # Fargate bills a task for at least a minute
    dask_task_overhead: float = 0.05  # a scheduler round trip per chunk
    local_finish: float = 0.1  # after the chunks: aggregation, reports, the outbox
    local_finish_per_chunk: float = 0.002  # reading each chunk's receipt
    sqs_envelope_bytes: int = 250  # a record message's envelope and attributes around its JSON


# ---- what an estimate answers -------------------------------------------------------------------
class CostTerm(CamelStruct, frozen=True):
    """One line of a bill: ``quantity`` of ``unit`` at ``price`` per ``per`` of them."""

    what: str
    quantity: float
    unit: str
    price: float
    per: float
    cost: float
    counted: bool = True  # False: shown for what it would cost, not in the total (a condition)
    note: str | None = None


class TimeTerm(CamelStruct, frozen=True):
    """One part of a backend's wall time."""

    what: str
    seconds: float


class BackendEstimate(CamelStruct, frozen=True):
    key: str  # local, lambda, fargate, fargate-spot, dask
    label: str
    wall_seconds: float
    cost: float
    chunks: int
    time: tuple[TimeTerm, ...]
    terms: tuple[CostTerm, ...]
    notes: tuple[str, ...] = ()


class PriceInfo(CamelStruct, frozen=True):
    origin: str  # the file's path
    built_in: bool
    region: str
    currency: str
    prices_as_of: date
    source: str


class Estimate(CamelStruct, frozen=True):
    """``scm-batch plan --estimate``: the planned batch's wall time and cost on each backend."""

    format_version: int
    batch_id: str
    file: str
    records: int
    records_exact: bool
    input_bytes: int
    chunks: int
    chunks_on_lambda: int
    chunks_on_batch: int
    max_concurrent_chunks: int
    prices: PriceInfo
    calibration: Calibration
    deployment: DeploymentShape
    model: Assumptions
    backends: tuple[BackendEstimate, ...]
    assumptions: tuple[str, ...]
    notes: tuple[str, ...] = msgspec.field(default_factory=tuple)
