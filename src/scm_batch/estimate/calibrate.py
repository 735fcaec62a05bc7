"""Calibration: how fast this machine processes the real input, measured on a sample of it.

The sample is the start of the plan's first chunk, at most :data:`MAX_SAMPLE_RECORDS` records
and :data:`MAX_SAMPLE_BYTES` bytes, cut on record boundaries (decompressed first, for a
compressed input; a JSON array's elements are found by the same structural scan the chunks use).
It is copied into a temporary directory, which is the bucket of the calibration runs: the
user's bucket is only read. Each run is the real chunk step,
:func:`scm_batch.stages.process.process_chunk`, with the record engine a run would use, writing
its parts and receipt there, with no sink.

Workers of a run share the machine's cores, and a core busy beside another is slower than one
alone (shared caches, memory bandwidth, a sibling hyperthread, a neighbour on a shared host). So
the sample is run by as many processes as the run would have workers, started like the local
pool's (``forkserver``), in rounds held together by a barrier:

1. every process once, untimed (imports, the engine loaded, caches warm); the time the
   processes took to be ready is the pool's start-up;
2. the first process alone, :data:`ROUNDS` times: one core's speed (what a Lambda function, a
   Fargate job or a Dask worker has), the median of the rounds;
3. every process at once, round after round for at least :data:`LOADED_SECONDS`: each worker's
   speed with all of them busy, the median of the rounds. The stretch is long so that the
   figure is the machine's usual state: a burst of another program during a round or two
   (a shared host) does not decide it, as it would the mean or a single short measurement;
4. the first process alone on the sample's first :data:`TINY_RECORDS` records: with step 2, a
   chunk's fixed cost (its parts opened, ``fsync``'d and committed, its receipt) apart from its
   cost per record.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from scm_batch.errors import ScmBatchError
from scm_batch.estimate.values import Calibration
from scm_batch.model import ChunkPlan, ChunkTask
from scm_batch.records.compression import decompressed
from scm_batch.storage import LocalStorage, Storage

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

MAX_SAMPLE_RECORDS = 20_000
MAX_SAMPLE_BYTES = 8 << 20
TINY_RECORDS = 100
ROUNDS = 5
LOADED_SECONDS = 1.5  # how long the loaded rounds last at least
MAX_LOADED_ROUNDS = 100
READ_BLOCK = 1 << 20
# How long a calibration process may take to answer before the estimate gives up on it: far
# beyond what a sample of 8 MiB takes, short of hanging a command for good.
ANSWER_TIMEOUT = 300.0
# Where a process's start-up cannot be read (not Linux): what this command takes to start here.
ASSUMED_STARTUP_SECONDS = 0.5
SAMPLE_KEY = "sample/input"


class CalibrationError(ScmBatchError):
    """The sample could not be processed (a calibration process died or failed)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The sample's bytes as a chunk reads them, and how many records they hold."""

    data: bytes  # the object written to the temporary bucket
    byte_start: int  # where the sample's records start in it
    records: int
    input_format: str  # "jsonl" or "json-array"


# ---- the sample ---------------------------------------------------------------------------------
def _first_bytes(plan: ChunkPlan, storage: Storage, start: int, end: int) -> bytes:
    """Bytes ``start``-``end`` of the input as the chunks read it (decompressed if it is
    compressed: only as much of the stream as needed is read)."""
    source = plan.source
    if source.compression == "none":
        return storage.read_range(source.key, start, end)
    stream = decompressed(
        storage.iter_range(source.key, 0, source.size, READ_BLOCK, etag=source.etag),
        source.compression,
        storage.uri_for(source.key),
    )
    held = bytearray()
    for block in stream:
        held += block
        if len(held) >= end:
            break  # the rest of the stream is never read (the generator closes when dropped)
    return bytes(held[start:end])


def _line_sample(data: bytes, whole_chunk: bool) -> Sample:
    """The first lines of ``data``: at most :data:`MAX_SAMPLE_RECORDS`, whole lines only (the
    last may lack its newline when ``data`` is the whole chunk)."""
    end = 0
    lines = 0
    while lines < MAX_SAMPLE_RECORDS:
        found = data.find(b"\n", end)
        if found < 0:
            if whole_chunk and end < len(data):
                end, lines = len(data), lines + 1
            break
        end, lines = found + 1, lines + 1
    if lines == 0:  # one line longer than the cap: the sample is that line's start, cut
        raise CalibrationError(
            f"the first record of the input is longer than {MAX_SAMPLE_BYTES:,} bytes: no "
            "sample to calibrate on"
        )
    return Sample(data[:end], 0, lines, "jsonl")


def _element_sample(data: bytes, whole_chunk: bool) -> Sample:
    """The first elements of a JSON array's chunk ``data`` (which starts at an element), cut
    at a separating comma found by the chunks' own structural scan; written as an array."""
    from scm_batch.records.structure import ScanState, scan_block  # noqa: PLC0415 (numpy)

    commas = scan_block(data, ScanState(position=0)).commas
    if len(commas) >= MAX_SAMPLE_RECORDS:
        end, records = int(commas[MAX_SAMPLE_RECORDS - 1]), MAX_SAMPLE_RECORDS
    elif whole_chunk:
        end, records = len(data), len(commas) + 1
    elif len(commas):
        end, records = int(commas[-1]), len(commas)
    else:
        raise CalibrationError(
            f"the first element of the input is longer than {MAX_SAMPLE_BYTES:,} bytes: no "
            "sample to calibrate on"
        )
    return Sample(b"[" + data[:end] + b"]", 1, records, "json-array")


def cut_sample(plan: ChunkPlan, storage: Storage) -> Sample:
    """The sample of ``plan``'s input: the start of its first chunk."""
    chunk = plan.chunks[0]
    end = min(chunk.byte_end, chunk.byte_start + MAX_SAMPLE_BYTES)
    data = _first_bytes(plan, storage, chunk.byte_start, end)
    whole = end == chunk.byte_end
    if chunk.input_format == "json-array":
        return _element_sample(data, whole)
    return _line_sample(data, whole)


def sample_task(plan: ChunkPlan, sample: Sample, bucket: Path, records: int) -> ChunkTask:
    """The first chunk's task, pointed at the first ``records`` records of the sample in the
    temporary ``bucket`` (written there by the caller)."""
    storage = LocalStorage(bucket)
    info = storage.stat(SAMPLE_KEY)
    return msgspec.structs.replace(
        plan.chunks[0],
        bucket=str(bucket),
        file=SAMPLE_KEY,
        byte_start=sample.byte_start,
        byte_end=info.size - (1 if sample.input_format == "json-array" else 0),
        start_index=0,
        end_index=records - 1,
        chunk_size=records,
        indices_exact=False,  # a sample's count is not checked against its lines
        source_size=info.size,
        source_mtime_ns=info.mtime_ns,
        source_etag=info.etag,
        source_version_id=None,
        staged_key=None,
        delivered_before=None,
    )


def _tiny(sample: Sample) -> Sample:
    """The sample's first :data:`TINY_RECORDS` records (all of it when it is that small)."""
    if sample.records <= TINY_RECORDS:
        return sample
    if sample.input_format == "jsonl":
        end = 0
        for _ in range(TINY_RECORDS):
            end = sample.data.index(b"\n", end) + 1
        return Sample(sample.data[:end], 0, TINY_RECORDS, "jsonl")
    from scm_batch.records.structure import ScanState, scan_block  # noqa: PLC0415 (numpy)

    body = sample.data[1:-1]
    commas = scan_block(body, ScanState(position=0)).commas
    end = int(commas[TINY_RECORDS - 1])
    return Sample(b"[" + body[:end] + b"]", 1, TINY_RECORDS, "json-array")


# ---- the calibration processes ------------------------------------------------------------------
def _run(task: ChunkTask, run: str) -> tuple[float, int, int, str]:
    """One real chunk run of ``task`` under batch id ``run``: its seconds (as the chunk step
    measures them), valid records, result part bytes and engine; its outputs removed after."""
    from scm_batch.stages.process import process_chunk  # noqa: PLC0415 (in the worker only)

    storage = LocalStorage(Path(task.bucket))
    result = process_chunk(msgspec.structs.replace(task, batch_id=run), storage=storage)
    for folder in ("results", "errors", "metadata"):
        shutil.rmtree(Path(task.bucket, folder, run), ignore_errors=True)
    result_bytes = result.parts[0].size if result.parts else 0
    return result.duration_seconds, result.valid_records, result_bytes, result.engine


def loaded_rounds(alone_seconds: float, rounds: int) -> int:
    """Loaded rounds enough to last :data:`LOADED_SECONDS` (each takes at least the time of a
    round alone), no fewer than ``rounds``."""
    wanted = math.ceil(LOADED_SECONDS / max(alone_seconds, 1e-3))
    return max(rounds, min(MAX_LOADED_ROUNDS, wanted))


def _measure(
    index: int,
    full: bytes,
    tiny: bytes,
    barrier: Barrier,
    answers: Any,
    rounds: int,
    loaded_count: Any,
) -> None:
    """A calibration process (see the module's text); answers on ``answers``."""
    answers.put(("ready", index, None))
    try:
        task = msgspec.json.decode(full, type=ChunkTask)
        small = msgspec.json.decode(tiny, type=ChunkTask)
        name = f"estimate-{index}"
        _, valid, result_bytes, engine = _run(task, f"{name}-warm")
        barrier.wait(ANSWER_TIMEOUT)
        alone = []
        if index == 0:  # alone; then it says how many loaded rounds all will run
            alone = [_run(task, f"{name}-alone-{n}")[0] for n in range(rounds)]
            loaded_count.value = loaded_rounds(statistics.median(alone), rounds)
        barrier.wait(ANSWER_TIMEOUT)
        loaded = []
        for n in range(loaded_count.value):
            barrier.wait(ANSWER_TIMEOUT)
            loaded.append(_run(task, f"{name}-loaded-{n}")[0])
        barrier.wait(ANSWER_TIMEOUT)
        fixed = []
        if index == 0:
            fixed = [_run(small, f"{name}-tiny-{n}")[0] for n in range(rounds)]
        answers.put(
            (
                "done",
                index,
                {
                    "alone": alone,
                    "loaded": loaded,
                    "tiny": fixed,
                    "valid": valid,
                    "resultBytes": result_bytes,
                    "engine": engine,
                },
            )
        )
    except BaseException as exc:  # told to the estimate, which fails with one line
        barrier.abort()
        answers.put(("failed", index, f"{type(exc).__name__}: {exc}"))


@dataclass(frozen=True, slots=True)
class Measured:
    """The calibration processes' answers."""

    alone: list[float]  # seconds of the whole sample, one process alone
    loaded: list[float]  # seconds of the whole sample, each process with all of them running
    tiny: list[float]  # seconds of the tiny sample, one process alone
    valid: int
    result_bytes: int
    engine: str
    pool_start_seconds: float


def _context() -> Any:
    """Processes started as the local pool starts its workers: forked by a fork server that has
    the workers' modules loaded (``spawn`` where there is none), so that their start-up is the
    pool's too."""
    from scm_batch.executors.local import start_fork_server  # noqa: PLC0415

    start_fork_server()
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def measure(full: ChunkTask, tiny: ChunkTask, workers: int, rounds: int = ROUNDS) -> Measured:
    """Run the sample in ``workers`` processes at once (see the module's text)."""
    started = time.perf_counter()  # the pool's start-up: from its fork server's start on
    ctx = _context()
    barrier = ctx.Barrier(workers)
    answers = ctx.Queue()
    count = ctx.Value("i", rounds)
    encoded = msgspec.json.encode(full), msgspec.json.encode(tiny)
    processes = [
        ctx.Process(
            target=_measure,
            args=(i, *encoded, barrier, answers, rounds, count),
            name=f"scm-batch-estimate-{i}",
            daemon=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    ready = 0
    pool_start = 0.0
    done: dict[int, dict[str, Any]] = {}
    try:
        while len(done) < workers:
            try:
                kind, index, payload = answers.get(timeout=ANSWER_TIMEOUT)
            except queue.Empty:
                raise CalibrationError(
                    f"the calibration processes did not answer in {ANSWER_TIMEOUT:.0f} s"
                ) from None
            if kind == "ready":
                ready += 1
                if ready == workers:
                    pool_start = time.perf_counter() - started
            elif kind == "failed":
                raise CalibrationError(f"calibrating on a sample of the input failed: {payload}")
            else:
                done[index] = payload
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    first = done[0]
    return Measured(
        alone=first["alone"],
        loaded=[s for answer in done.values() for s in answer["loaded"]],
        tiny=first["tiny"],
        valid=first["valid"],
        result_bytes=first["resultBytes"],
        engine=first["engine"],
        pool_start_seconds=pool_start,
    )


# ---- the figures ------------------------------------------------------------------------------
def fit(records: int, tiny_records: int, full: float, tiny: float) -> tuple[float, float]:
    """Seconds per record and a chunk's fixed seconds from two runs of ``records`` and
    ``tiny_records`` records: a straight line through both. Where noise would make either
    negative (or the runs cannot be told apart), all of it is charged per record: the whole
    sample's time is kept either way."""
    if records > tiny_records:
        per_record = (full - tiny) / (records - tiny_records)
        fixed = tiny - tiny_records * per_record
        if per_record > 0 and fixed >= 0:
            return per_record, fixed
    return full / max(1, records), 0.0


def process_age_seconds() -> float | None:
    """How long ago this process started (Linux: from /proc), or ``None`` where unknown."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, ticks from boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError):
        return None


def calibrate(
    plan: ChunkPlan,
    storage: Storage,
    *,
    workers: int,
    planning_seconds: float,
    startup_seconds: float,
    rounds: int = ROUNDS,
) -> Calibration:
    """Measure ``plan``'s input on this machine (see the module's text)."""
    sample = cut_sample(plan, storage)
    tiny = _tiny(sample)
    with tempfile.TemporaryDirectory(prefix="scm-batch-estimate-") as directory:
        full_bucket, tiny_bucket = Path(directory, "full"), Path(directory, "tiny")
        for bucket, part in ((full_bucket, sample), (tiny_bucket, tiny)):
            bucket.mkdir()
            LocalStorage(bucket).put_bytes(SAMPLE_KEY, part.data)
        full_task = sample_task(plan, sample, full_bucket, sample.records)
        tiny_task = sample_task(plan, tiny, tiny_bucket, tiny.records)
        got = measure(full_task, tiny_task, max(1, workers), rounds)
    alone = statistics.median(got.alone)
    per_record, fixed = fit(sample.records, tiny.records, alone, statistics.median(got.tiny))
    loaded = statistics.median(got.loaded)
    loaded_per_record = max(per_record, (loaded - fixed) / sample.records)
    return Calibration(
        sample_chunk=plan.chunks[0].chunk_id,
        sample_records=sample.records,
        sample_bytes=len(sample.data),
        engine=got.engine,
        one_process_seconds=alone,
        per_record_seconds=per_record,
        per_chunk_seconds=fixed,
        workers=max(1, workers),
        loaded_per_record_seconds=loaded_per_record,
        result_bytes_per_record=got.result_bytes / sample.records,
        valid_share=got.valid / sample.records,
        rounds=rounds,
        loaded_rounds=len(got.loaded) // max(1, workers),
        planning_seconds=planning_seconds,
        startup_seconds=startup_seconds,
        pool_start_seconds=got.pool_start_seconds,
    )
