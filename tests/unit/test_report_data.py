"""The run report's numbers, from receipts made by hand: each can be checked on paper."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from scm_batch.model import Attempt, ChunkFailure, ChunkPlan, ChunkResult, StatusWord
from scm_batch.report.data import build_report
from scm_batch.report.page import per_second, render_html, seconds
from tests.helpers import job_input, plan_input

T0 = 1_800_000_000.0  # the first chunk's start, in Unix seconds


def receipt(number: int, start: float, took: float, worker: str, **changes: object) -> ChunkResult:
    made = ChunkResult(
        chunk_id=f"chunk_{number:06d}", chunk_number=number + 1, route="lambda", lines=100,
        blank_lines=0, valid_records=90, records_with_missing_fields=0,
        records_with_empty_fields=0, errors_by_category={"invalid_field": 6, "malformed": 4},
        field_errors={"email": {"missing": 5, "invalid": 1}}, bytes_read=1000, result_key="r",
        error_key="e", duration_seconds=took, worker_peak_rss_bytes=number << 20,
        attempts=[Attempt(attempt=1, status=StatusWord.CHUNK_PROCESSED, duration_seconds=took)],
        started_at=T0 + start, worker=worker,
    )  # fmt: skip
    return msgspec.structs.replace(made, **changes)


@pytest.fixture
def plan(tmp_path: Path) -> ChunkPlan:
    (tmp_path / "in.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(500)))
    return plan_input(
        tmp_path, job_input(tmp_path, max_chunk_size=100, max_concurrent_chunks=5), min_chunk_size=1
    )[1]


def test_the_timeline_throughput_and_errors_add_up(plan: ChunkPlan) -> None:
    failed_attempt = Attempt(
        attempt=1, status=StatusWord.CHUNK_FAILED, duration_seconds=None, error_type="X",
        message="m", transient=True, finished_at=T0 + 0.5,
    )  # fmt: skip
    done = [
        receipt(0, 0.0, 2.0, "host:1"),
        receipt(1, 0.0, 4.0, "host:2"),
        receipt(2, 2.0, 2.0, "host:1", attempts=[failed_attempt, *receipt(2, 0, 2, "").attempts]),
    ]
    failure = ChunkFailure(
        chunk_id="chunk_000003", chunk_number=4, error_type="Boom", message="no",
        transient=False, attempts=[msgspec.structs.replace(failed_attempt, finished_at=T0 + 3)],
    )  # fmt: skip
    report = build_report(
        plan, done, [failure], None, bucket="b", critical_reasons=[], generated_at="now"
    )
    assert len(plan.chunks) == 5
    assert (report.state, report.chunks_done, report.chunks_failed, report.chunks_pending) == (
        "running", 3, 1, 1
    )  # fmt: skip
    assert report.retries == 1
    assert [row.worker for row in report.timeline] == ["host:1", "host:2"]
    assert [(b.start, b.end, b.attempts) for b in report.timeline[0].chunks] == [
        (0.0, 2.0, 1),
        (2.0, 4.0, 2),
    ]
    assert report.timeline[1].busy_seconds == 4.0
    assert report.worker_busy_share == 1.0  # both busy from 0 s to 4 s
    assert report.failures[0].at == 3.0
    # 300 records over 4 s: 100 in 0-2 s on host:1, 100 over 0-4 s on host:2, 100 in 2-4 s.
    assert sum(b.records_per_second * b.width for b in report.throughput) == pytest.approx(300)
    assert report.throughput[0].records_per_second == pytest.approx(75.0)
    assert report.errors_by_category == {"invalid_field": 18, "malformed": 12}
    assert [(e.field, e.problem, e.count) for e in report.errors_by_field] == [
        ("email", "missing", 15),
        ("email", "invalid", 3),
    ]
    assert report.slowest_chunks[0].chunk_id == "chunk_000001"
    assert report.peak_worker_rss_bytes == 2 << 20
    assert report.time_went[-1].label == "processing chunks"  # no aggregate yet: only that


def test_a_batch_planned_and_nothing_done_yet(plan: ChunkPlan) -> None:
    report = build_report(plan, [], [], None, bucket="b", critical_reasons=[], generated_at="t")
    assert report.state == "planned"
    assert (report.timeline, report.throughput, report.time_went) == ([], [], [])
    html = render_html(report)
    assert html.count('class="empty"') == 6  # every chart says why it is empty
    assert "<script" in html  # the data, as JSON: never run
    assert 'type="application/json"' in html


def test_receipts_from_before_the_timeline_have_no_bars(plan: ChunkPlan) -> None:
    old = msgspec.structs.replace(receipt(0, 0.0, 1.0, "host:1"), started_at=None, worker=None)
    report = build_report(plan, [old], [], None, bucket="b", critical_reasons=[], generated_at="t")
    assert report.chunks_done == 1
    assert report.timeline == []
    assert report.slowest_chunks[0].worker is None


def test_text_in_the_page_is_escaped(plan: ChunkPlan) -> None:
    failure = ChunkFailure(
        chunk_id="chunk_000000", chunk_number=1, error_type="E",
        message="<script>alert(1)</script></script>", transient=False,
    )  # fmt: skip
    html = render_html(
        build_report(plan, [], [failure], None, bucket="b", critical_reasons=[], generated_at="t")
    )
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)" in html
    assert html.count("</script>") == 1  # the data block's own end, the message's escaped
    block = html.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(block)["failures"][0]["message"] == failure.message  # the data, intact


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 s"), (0.0042, "4 ms"), (0.42, "0.42 s"), (12.34, "12.3 s"), (245, "4 min 05 s"),
     (7380, "2 h 03 min")],
)  # fmt: skip
def test_durations_for_people(value: float, text: str) -> None:
    assert seconds(value) == text


def test_rates_for_people() -> None:
    assert per_second(1_234_567) == "1.23M records/s"
    assert per_second(503_400) == "503k records/s"
    assert per_second(950) == "950 records/s"


def test_a_replaced_worker_is_a_row_but_not_one_more_worker(plan: ChunkPlan) -> None:
    done = [
        receipt(0, 0.0, 2.0, "host:1"),  # host:1 dies after this chunk; host:3 replaces it
        receipt(1, 0.0, 4.0, "host:2"),
        receipt(2, 2.0, 2.0, "host:3"),
    ]
    report = build_report(plan, done, [], None, bucket="b", critical_reasons=[], generated_at="t")
    assert len(report.timeline) == 3
    assert report.worker_busy_share == 1.0  # two at a time, never idle


def test_a_failure_before_the_first_committed_chunk_is_at_the_start(plan: ChunkPlan) -> None:
    early = ChunkFailure(
        chunk_id="chunk_000000", chunk_number=1, error_type="E", message="m", transient=False,
        attempts=[Attempt(attempt=1, status=StatusWord.CHUNK_FAILED, duration_seconds=None,
                          finished_at=T0 - 1.0)],
    )  # fmt: skip
    done = [receipt(1, 0.0, 1.0, "host:1")]
    report = build_report(
        plan, done, [early], None, bucket="b", critical_reasons=[], generated_at="t"
    )
    assert report.failures[0].at == 0.0
