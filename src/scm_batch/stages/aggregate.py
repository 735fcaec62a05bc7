"""AggregateResults: fold chunk results, never records, into the run's summary and verdict.

The only records this stage reads are the first error samples (at most ``maxSamples`` lines, read
from the error parts in chunk order), so its cost does not grow with the size of the input.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import msgspec

from scm_batch import layout
from scm_batch.clock import utc_timestamp
from scm_batch.model import (
    ChunkDetail,
    ChunkFailure,
    ChunkPlan,
    ChunkResult,
    ChunkTask,
    ContractSummary,
    RunSummary,
    StatusWord,
    Tolerance,
    Totals,
    ValidationReport,
    ValidationThresholds,
)
from scm_batch.records.codecs import DECODE_ERRORS, iter_line_blocks
from scm_batch.records.validate import Category
from scm_batch.storage import Storage
from scm_batch.storage.base import concurrently

_SAMPLE_READ_BLOCK = 256 << 10
SAMPLE_RAW_CHARS = 4096  # of a line, in the validation report's samples


def _merge_counts(target: dict[str, int], source: dict[str, int]) -> None:
    for key, count in source.items():
        target[key] = target.get(key, 0) + count


def _totals(
    results: Iterable[ChunkResult],
) -> tuple[Totals, dict[str, int], dict[str, dict[str, int]]]:
    lines = blank = valid = missing = empty = bytes_read = 0
    by_category: dict[str, int] = {}
    field_errors: dict[str, dict[str, int]] = {}
    for r in results:
        lines += r.lines
        blank += r.blank_lines
        valid += r.valid_records
        missing += r.records_with_missing_fields
        empty += r.records_with_empty_fields
        bytes_read += r.bytes_read
        _merge_counts(by_category, r.errors_by_category)
        for name, kinds in r.field_errors.items():
            _merge_counts(field_errors.setdefault(name, {}), kinds)
    records = lines - blank
    totals = Totals(
        lines=lines,
        blank_lines=blank,
        records=records,
        valid_records=valid,
        errors=records - valid,
        malformed_lines=by_category.get(Category.MALFORMED, 0),
        empty_records=by_category.get(Category.EMPTY_RECORD, 0),
        records_with_missing_fields=missing,
        records_with_empty_fields=empty,
        bytes_read=bytes_read,
    )
    ordered_fields = {k: dict(sorted(v.items())) for k, v in sorted(field_errors.items())}
    return totals, dict(sorted(by_category.items())), ordered_fields


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def judge(totals: Totals, thresholds: ValidationThresholds) -> tuple[StatusWord, list[str]]:
    """The verdict under the original thresholds, with every threshold that was crossed."""
    checks = [
        ("error rate", _rate(totals.errors, totals.records), thresholds.max_error_rate, True),
        (
            "missing-field rate",
            _rate(totals.records_with_missing_fields, totals.records),
            thresholds.max_missing_field_rate,
            True,
        ),
        (
            "empty-field rate",
            _rate(totals.records_with_empty_fields, totals.records),
            thresholds.max_empty_field_rate,
            True,
        ),
        ("malformed lines", totals.malformed_lines, thresholds.max_malformed_lines, False),
        ("empty records", totals.empty_records, thresholds.max_empty_records, False),
    ]
    reasons = [
        f"{name} {value:.2%} > {limit:.2%}" if is_rate else f"{name} {value} > {limit}"
        for name, value, limit, is_rate in checks
        if value > limit
    ]
    if reasons:
        return StatusWord.VALIDATION_FAILED_CRITICAL, reasons
    if totals.errors:
        return StatusWord.VALIDATION_FAILED, []
    return StatusWord.VALIDATION_PASSED, []


def _iter_error_entries(storage: Storage, key: str) -> Iterator[dict[str, Any]]:
    decode = msgspec.json.Decoder(dict[str, Any]).decode
    size = storage.stat(key).size
    for lines in iter_line_blocks(storage.iter_range(key, 0, size, _SAMPLE_READ_BLOCK)):
        for line in lines:
            if line:
                yield decode(line)


def _as_sample(entry: dict[str, Any], chunk_id: str) -> dict[str, object]:
    """An error-part entry in the contract's sample shape: line, error, field errors, record.

    A sample is small whatever the line: a record longer than :data:`SAMPLE_RAW_CHARS` is not
    decoded, and its line is cut there with a marker (``rawTruncated``, ``rawLength``); the error
    part keeps the whole line."""
    sample: dict[str, object] = {
        "lineNumber": entry.get("line"),
        "offset": entry.get("offset"),
        "chunkId": chunk_id,
        "category": entry.get("category"),
        "error": entry.get("error"),
        "fieldErrors": entry.get("fieldErrors", {}),
        "record": None,
    }
    raw = entry.get("raw")
    if (
        entry.get("category") not in (Category.MALFORMED, Category.TOO_LONG)
        and isinstance(raw, str)
        and len(raw) <= SAMPLE_RAW_CHARS
    ):
        # The line decoded during processing (a byte order mark aside), its values raw: one
        # Python cannot hold (a number beyond a double's range) leaves the sample its raw line.
        try:
            sample["record"] = msgspec.json.decode(raw.removeprefix("\ufeff"))
        except DECODE_ERRORS:
            pass
        else:
            return sample
    for name in ("raw", "rawBase64"):
        text = entry.get(name)
        if isinstance(text, str):
            sample[name] = text[:SAMPLE_RAW_CHARS]
            if len(text) > SAMPLE_RAW_CHARS:
                sample.update(rawTruncated=True, rawLength=len(text))
    if "length" in entry:  # a line over the length limit: only its length is known
        sample["length"] = entry["length"]
    return sample


def _shares(results: Iterable[ChunkResult], wanted: int) -> list[tuple[ChunkResult, int]]:
    """The chunks whose error parts hold the first ``wanted`` entries, each with how many of
    them: a chunk's error part holds one entry per error its receipt counts."""
    shares = []
    for result in results:
        if wanted == 0:
            break
        if result.errors:
            shares.append((result, min(result.errors, wanted)))
            wanted -= shares[-1][1]
    return shares


def _first_samples(storage: Storage, share: tuple[ChunkResult, int]) -> list[dict[str, object]]:
    result, count = share
    entries = itertools.islice(_iter_error_entries(storage, result.error_key), count)
    return [_as_sample(entry, result.chunk_id) for entry in entries]


def collect_samples(
    storage: Storage, results: Iterable[ChunkResult], limit: int
) -> tuple[list[dict[str, object]], bool]:
    """The first ``limit`` error entries in file order, and whether more exist. The error parts
    that hold them (and one more) are known from the receipts, and read many at a time: one per
    chunk when a thousand chunks have an error each."""
    shares = _shares(results, limit + 1)
    read = functools.partial(_first_samples, storage)
    samples = [sample for part in concurrently(storage, read, shares) for sample in part]
    return samples[:limit], len(samples) > limit


def _detail(
    plan_chunk: ChunkTask, result: ChunkResult | None, failure: ChunkFailure | None
) -> ChunkDetail:
    common: dict[str, Any] = {
        "chunk_id": plan_chunk.chunk_id,
        "chunk_number": plan_chunk.chunk_number,
        "route": plan_chunk.route,
        "start_index": plan_chunk.start_index,
        "end_index": plan_chunk.end_index,
        "byte_start": plan_chunk.byte_start,
        "byte_end": plan_chunk.byte_end,
    }
    if result is not None:
        return ChunkDetail(
            **common,
            status=StatusWord.CHUNK_PROCESSED,
            records=result.records,
            valid_records=result.valid_records,
            errors=result.errors,
            duration_seconds=result.duration_seconds,
            attempts=max(1, len(result.attempts)),
            result_key=result.result_key,
            error_key=result.error_key,
        )
    return ChunkDetail(
        **common,
        status=StatusWord.CHUNK_FAILED,
        records=0,
        valid_records=0,
        errors=0,
        duration_seconds=0.0,
        attempts=len(failure.attempts) if failure else 0,
        result_key=None,
        error_key=None,
        error_type=failure.error_type if failure else "NotProcessed",
        message=failure.message if failure else "not started: the run failed fast",
    )


def aggregate_results(
    plan: ChunkPlan,
    results: Iterable[ChunkResult],
    failures: Iterable[ChunkFailure],
    *,
    storage: Storage,
    started_at: datetime,
    finished_at: datetime,
    elapsed_seconds: float,
    tolerance: Tolerance | None = None,
    chunks_resumed: int = 0,
    session_records: int | None = None,
    thresholds: ValidationThresholds | None = None,
) -> tuple[RunSummary, ValidationReport]:
    """The aggregated results and the validation report of a batch.

    ``results`` are every done chunk's receipt, from this session and earlier ones
    (``chunks_resumed`` of them were done before); ``failures`` the chunks given up on. Time and
    records/s describe this session: ``elapsed_seconds`` and ``session_records`` (default: all).
    """
    limits = thresholds or ValidationThresholds()
    allowed = tolerance or Tolerance()
    by_id = {r.chunk_id: r for r in results}
    failed = {f.chunk_id: f for f in failures if f.chunk_id not in by_id}
    ordered = [by_id[c.chunk_id] for c in plan.chunks if c.chunk_id in by_id]
    failed_chunks = [failed[c.chunk_id] for c in plan.chunks if c.chunk_id in failed]
    not_processed = len(plan.chunks) - len(ordered) - len(failed_chunks)
    beyond_tolerance = not_processed > 0 or allowed.exceeded(len(failed_chunks), len(plan.chunks))
    counted = _totals(ordered)
    totals = counted[0]
    report = _validation_report(plan.batch_id, counted, storage, ordered, limits)
    verdict = report.validation_status
    job = plan.job
    elapsed = max(elapsed_seconds, 1e-9)
    details = [_detail(c, by_id.get(c.chunk_id), failed.get(c.chunk_id)) for c in plan.chunks]
    processed_now = totals.records if session_records is None else session_records
    summary = RunSummary(
        batch_id=plan.batch_id,
        customer_id=job.customer_id,
        tenant_id=job.tenant_id,
        snapshot_id=job.snapshot_id,
        deployment=job.deployment,
        destination=job.destination or "none",
        status=StatusWord.CHUNK_FAILED if beyond_tolerance else StatusWord.COMPLETED,
        validation_status=verdict,
        summary=ContractSummary(
            total_records_processed=totals.records,
            total_errors=totals.errors,
            success_rate=round(100.0 * _rate(totals.valid_records, totals.records), 4),
            processing_time=round(elapsed_seconds, 3),
            records_per_second=round(processed_now / elapsed, 1),
        ),
        totals=totals,
        errors_by_category=report.errors_by_category,
        field_errors=report.field_errors,
        chunks_total=len(plan.chunks),
        chunks_succeeded=len(ordered),
        chunks_failed=len(failed_chunks),
        chunks_not_processed=not_processed,
        chunks_resumed=chunks_resumed,
        tolerance=allowed,
        failed_chunks=failed_chunks,
        chunk_details=details,
        result_keys=[r.result_key for r in ordered],
        error_keys=[r.error_key for r in ordered],
        plan_key=layout.plan_key(plan.batch_id),
        validation_key=layout.validation_key(plan.batch_id),
        processed_at=plan.processed_at,
        started_at=utc_timestamp(started_at),
        finished_at=utc_timestamp(finished_at),
        max_worker_peak_rss_bytes=max((r.worker_peak_rss_bytes for r in ordered), default=0),
        source=plan.source,
        engines=dict(sorted(Counter(r.engine for r in ordered).items())),
    )
    return summary, report


def _validation_report(
    batch_id: str,
    counted: tuple[Totals, dict[str, int], dict[str, dict[str, int]]],
    storage: Storage,
    ordered: list[ChunkResult],
    limits: ValidationThresholds,
) -> ValidationReport:
    """The verdict on the records of the done chunks (``counted`` by :func:`_totals`), with its
    rates and the first error samples."""
    totals, by_category, field_errors = counted
    verdict, reasons = judge(totals, limits)
    samples, truncated = collect_samples(storage, ordered, limits.max_samples)
    return ValidationReport(
        batch_id=batch_id,
        validation_status=verdict,
        total_records=totals.records,
        valid_records=totals.valid_records,
        error_records=totals.errors,
        error_rate=round(_rate(totals.errors, totals.records), 6),
        missing_field_rate=round(_rate(totals.records_with_missing_fields, totals.records), 6),
        empty_field_rate=round(_rate(totals.records_with_empty_fields, totals.records), 6),
        malformed_lines=totals.malformed_lines,
        empty_records=totals.empty_records,
        thresholds=limits,
        critical_reasons=reasons,
        errors_by_category=by_category,
        field_errors=field_errors,
        samples=samples,
        samples_truncated=truncated,
    )
