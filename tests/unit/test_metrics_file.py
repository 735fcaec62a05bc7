"""``--metrics-file``: the run's metrics in Prometheus text format, read back with
``prometheus_client``'s parser, against the aggregated results of the same run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scm_batch.config import RunOptions
from scm_batch.errors import ConfigError, ExitCode
from scm_batch.faults import parse_faults
from scm_batch.lifecycle import resume_batch, run_batch
from scm_batch.model import PlanOptions, RunSummary, Tolerance
from scm_batch.observe.metrics import MetricsFile, MetricsFileReporter, RunMetrics
from scm_batch.observe.progress import NullProgress, ProgressSnapshot
from scm_batch.records.generate import generate_file
from scm_batch.retry import RetryPolicy
from tests.conftest import Cli
from tests.helpers import job_input

RECORDS = 4_000
FAST_RETRY = ("--retry-base-delay", "0.01", "--retry-max-delay", "0.05")
Samples = dict[tuple[str, str | None], float]  # (metric, its category or state label): value


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "records.jsonl"
    generate_file(path, RECORDS, seed=7, invalid_rate=0.004, malformed_rate=0.001)
    return path


@pytest.fixture
def filled(bucket: Path, source: Path) -> Path:
    shutil.copyfile(source, bucket / "records.jsonl")
    return bucket


def run_flags(bucket: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--bucket", str(bucket),
        "--file", "records.jsonl",
        "--customer-id", "c",
        "--tenant-id", "t",
        "--batch-id", "b",
        "--min-chunk-size", "1",
        "--max-concurrent-chunks", "5",
        "--workers", "2",
        "--progress", "none",
        "--json",
        *extra,
    ]  # fmt: skip


def read_metrics(path: Path, batch_id: str = "b") -> Samples:
    """The file's samples; every family documented, a gauge, and every sample of ``batch_id``."""
    samples: Samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.name.startswith("scm_batch_")
        assert family.type == "gauge"
        assert family.documentation
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("batch_id") == batch_id
            assert set(labels) <= {"category", "state"}
            samples[sample.name, labels.get("category", labels.get("state"))] = sample.value
    return samples


def retries(summary: dict[str, Any]) -> int:
    return sum(max(0, d["attempts"] - 1) for d in summary["chunkDetails"])


def assert_equal_to_aggregate(metrics: Samples, summary: dict[str, Any], exit_code: int) -> None:
    totals = summary["totals"]
    assert metrics["scm_batch_records_processed", None] == totals["records"]
    assert metrics["scm_batch_records_valid", None] == totals["validRecords"]
    assert metrics["scm_batch_records_errors", None] == totals["errors"]
    assert metrics["scm_batch_lines_read", None] == totals["lines"]
    by_category = {c: v for (name, c), v in metrics.items() if name == "scm_batch_errors"}
    assert {c: v for c, v in by_category.items() if v} == summary["errorsByCategory"]
    assert sum(by_category.values()) == totals["errors"]
    assert metrics["scm_batch_chunks", "done"] == summary["chunksSucceeded"]
    assert metrics["scm_batch_chunks", "failed"] == summary["chunksFailed"]
    assert metrics["scm_batch_chunks", "pending"] == summary["chunksNotProcessed"]
    assert metrics["scm_batch_chunks_planned", None] == summary["chunksTotal"]
    assert metrics["scm_batch_chunk_retries", None] == retries(summary)
    assert metrics["scm_batch_records_per_second", None] == summary["summary"]["recordsPerSecond"]
    assert metrics["scm_batch_run_finished", None] == 1
    assert metrics["scm_batch_run_exit_code", None] == exit_code


def only_the_file(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---- after a run: the aggregate's totals --------------------------------------------------------
def test_the_file_after_a_run_says_what_the_aggregate_does(
    cli: Cli, filled: Path, tmp_path: Path
) -> None:
    target = tmp_path / "metrics" / "scm_batch.prom"
    target.parent.mkdir()
    result = cli(*run_flags(filled, "--metrics-file", str(target)))
    assert result.returncode == ExitCode.OK, result.stderr
    summary = json.loads(result.stdout)
    assert summary["chunksTotal"] >= 4  # several chunks, or the sums prove little
    assert summary["totals"]["errors"] > 0
    metrics = read_metrics(target)
    assert_equal_to_aggregate(metrics, summary, ExitCode.OK)
    assert metrics["scm_batch_records_processed", None] == RECORDS
    assert metrics["scm_batch_chunk_retries", None] == 0
    # The aggregated results in the bucket, as a reader of the bucket sees them, agree too.
    stored = json.loads((filled / "final-results/b/aggregated-results.json").read_text())
    assert stored["totals"] == summary["totals"]
    assert only_the_file(target.parent) == ["scm_batch.prom"]  # no temporary file left
    assert target.stat().st_mode & 0o777 == 0o644  # readable by a node exporter of another user


def test_failed_and_retried_chunks_are_counted(cli: Cli, filled: Path, tmp_path: Path) -> None:
    target = tmp_path / "scm_batch.prom"
    faults = "chunk_000001=transient:1,chunk_000003=transient:9"  # retried once; failed after 3
    result = cli(
        *run_flags(filled, "--tolerated-failure-count", "1", *FAST_RETRY),
        env={"SCM_BATCH_FAULTS": faults, "SCM_BATCH_METRICS_FILE": str(target)},
    )
    assert result.returncode == ExitCode.COMPLETED_WITH_TOLERATED_FAILURES, result.stderr
    summary = json.loads(result.stdout)
    metrics = read_metrics(target)
    assert_equal_to_aggregate(metrics, summary, ExitCode.COMPLETED_WITH_TOLERATED_FAILURES)
    assert metrics["scm_batch_chunks", "failed"] == 1
    assert metrics["scm_batch_chunk_retries", None] == 1 + 2
    assert metrics["scm_batch_records_processed", None] < RECORDS  # the failed chunk's are not


def test_a_run_that_ends_in_an_error_leaves_a_finished_file_and_its_error(
    cli: Cli, bucket: Path, tmp_path: Path
) -> None:
    target = tmp_path / "scm_batch.prom"
    result = cli(*run_flags(bucket, "--metrics-file", str(target)))  # no records.jsonl there
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert "records.jsonl" in result.stderr.splitlines()[-1]  # the run's own error, not masked
    assert "Traceback" not in result.stderr
    metrics = read_metrics(target)
    assert metrics["scm_batch_run_finished", None] == 1
    assert metrics["scm_batch_run_exit_code", None] == ExitCode.BAD_INPUT
    assert metrics["scm_batch_records_processed", None] == 0


# ---- while the run goes on: the progress snapshots ----------------------------------------------
class Recorded(NullProgress):
    """A progress reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def phase(self, text: str) -> None:
        self.calls.append(("phase", text))

    def update(self, snap: ProgressSnapshot) -> None:
        self.calls.append(("update", snap))

    def finish(self, snap: ProgressSnapshot) -> None:
        self.calls.append(("finish", snap))

    def last_finish(self) -> ProgressSnapshot:
        snaps = [s for kind, s in self.calls if kind == "finish"]
        assert isinstance(snaps[-1], ProgressSnapshot)
        return snaps[-1]


def assert_counts_of(snap: ProgressSnapshot, summary: RunSummary) -> None:
    totals = summary.totals
    assert snap.records_done == totals.records
    assert snap.valid_records == totals.valid_records
    assert dict(snap.errors_by_category) == summary.errors_by_category
    assert snap.chunk_retries == sum(max(0, d.attempts - 1) for d in summary.chunk_details)
    assert snap.chunks_failed == summary.chunks_failed


def test_progress_snapshots_count_records_errors_and_retries(filled: Path) -> None:
    """The driver's last snapshot of a session counts what the aggregate does, for the chunks of
    this session and (resumed) those of the earlier ones."""
    options = RunOptions(
        workers=2,
        retry=RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05),
        plan=PlanOptions(min_chunk_size=1),
        # Retried once, then done; failed after three attempts.
        faults=parse_faults("chunk_000001=transient:1,chunk_000002=transient:9"),
        tolerance=Tolerance(count=1),
    )
    job = job_input(filled, "records.jsonl", max_concurrent_chunks=5)
    first = Recorded()
    failed = run_batch(job, options, progress=first)
    assert failed.exit_code == ExitCode.COMPLETED_WITH_TOLERATED_FAILURES
    assert_counts_of(first.last_finish(), failed.summary)
    assert (first.last_finish().chunk_retries, first.last_finish().chunks_failed) == (1 + 2, 1)

    again = Recorded()
    report = resume_batch(
        str(filled), "b", msgspec.structs.replace(options, faults=None), progress=again
    )
    assert report.exit_code == ExitCode.OK
    assert report.summary.chunks_resumed > 0  # so earlier sessions' counts are in the sums
    assert_counts_of(again.last_finish(), report.summary)


def snap(records: int, *, elapsed: float = 1.0, retries: int = 0) -> ProgressSnapshot:
    return ProgressSnapshot(
        lines_done=records,
        lines_total=1000,
        chunks_done=records // 100,
        chunks_failed=1,
        chunks_total=10,
        elapsed=elapsed,
        records_done=records,
        valid_records=records - 5,
        errors_by_category={"malformed": 2, "missing_field": 3},
        chunk_retries=retries,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_reporter_rewrites_the_file_throttled_and_hands_everything_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "scm_batch.prom"
    clock = Clock()
    inner = Recorded()
    file = MetricsFile.create(path, "b", wall=lambda: 1_700_000_000.5)
    starting = read_metrics(path)
    assert starting["scm_batch_records_processed", None] == 0
    assert starting["scm_batch_run_finished", None] == 0
    reporter = MetricsFileReporter(inner, file, interval=5.0, clock=clock)
    assert reporter.interval == 1.0  # the inner reporter's pace, faster than the file's

    def records_in_file() -> float:
        return read_metrics(path)["scm_batch_records_processed", None]

    reporter.phase("ProcessChunksInParallel")
    reporter.update(snap(100))
    assert records_in_file() == 100
    clock.now = 4.9
    reporter.update(snap(200))  # within the interval: the file is not rewritten
    assert records_in_file() == 100
    clock.now = 5.0
    reporter.update(snap(300, elapsed=3.0, retries=2))
    metrics = read_metrics(path)
    assert metrics["scm_batch_records_processed", None] == 300
    assert metrics["scm_batch_records_valid", None] == 295
    assert metrics["scm_batch_records_errors", None] == 5
    assert metrics["scm_batch_errors", "malformed"] == 2
    assert metrics["scm_batch_errors", "missing_field"] == 3
    assert metrics["scm_batch_errors", "too_long"] == 0  # every category, from the start
    assert metrics["scm_batch_chunks", "done"] == 3
    assert metrics["scm_batch_chunks", "failed"] == 1
    assert metrics["scm_batch_chunks", "pending"] == 6
    assert metrics["scm_batch_chunk_retries", None] == 2
    assert metrics["scm_batch_records_per_second", None] == 100.0
    assert metrics["scm_batch_run_finished", None] == 0
    assert ("scm_batch_run_exit_code", None) not in metrics  # not over yet
    assert metrics["scm_batch_last_update_timestamp_seconds", None] == 1_700_000_000.5
    clock.now = 5.5
    reporter.finish(snap(1000))  # the end of the chunks is written whatever the time
    assert records_in_file() == 1000
    assert read_metrics(path)["scm_batch_run_finished", None] == 0  # aggregation is still to come
    assert [kind for kind, _ in inner.calls] == ["phase", "update", "update", "update", "finish"]
    assert only_the_file(tmp_path) == ["scm_batch.prom"]

    file.ended(ExitCode.UNAVAILABLE)  # the run then ended in an error
    ended = read_metrics(path)
    assert ended["scm_batch_records_processed", None] == 1000  # the values it had reached
    assert ended["scm_batch_run_finished", None] == 1
    assert ended["scm_batch_run_exit_code", None] == ExitCode.UNAVAILABLE


def test_label_values_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "scm_batch.prom"
    batch_id = 'odd "batch"\\ with\na newline'
    file = MetricsFile.create(path, batch_id)
    file.write(RunMetrics(records=3, errors_by_category={'a "category"': 3}))
    metrics = read_metrics(path, batch_id)
    assert metrics["scm_batch_errors", 'a "category"'] == 3


def test_a_write_that_fails_during_the_run_is_warned_of_once_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    target = tmp_path / "scm_batch.prom"
    target.mkdir()  # the rename over it fails
    warnings: list[str] = []
    file = MetricsFile(target, "b", warn=warnings.append)
    file.write(RunMetrics(records=1))
    file.write(RunMetrics(records=2))
    assert len(warnings) == 1
    assert "--metrics-file" in warnings[0]
    assert only_the_file(tmp_path) == ["scm_batch.prom"]  # no temporary file left behind


# ---- a path that cannot be written --------------------------------------------------------------
def test_a_path_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-directory").mkdir()
    for bad in ("absent/scm_batch.prom", "a-file/scm_batch.prom", "a-directory"):
        with pytest.raises(ConfigError, match="--metrics-file") as caught:
            MetricsFile.create(tmp_path / bad, "b")
        assert "\n" not in str(caught.value)
    assert only_the_file(tmp_path) == ["a-directory", "a-file"]


@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_bad_path_is_one_line_and_exit_2_before_any_work(
    cli: Cli, filled: Path, tmp_path: Path, command: str
) -> None:
    target = tmp_path / "absent" / "scm_batch.prom"
    if command == "run":
        args = run_flags(filled, "--metrics-file", str(target))
    else:
        args = ["resume", "--bucket", str(filled), "--batch-id", "b", "--metrics-file", str(target)]
    result = cli(*args)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: --metrics-file: ")
    assert str(target.parent) in lines[0]
    assert result.stdout == ""
    assert only_the_file(filled) == ["records.jsonl"]  # nothing planned, no chunk run
