"""``scm-batch report``: the HTML page opened in headless Chromium (no network), for a finished
batch with retries, a tolerated failure and rejected records, for a failed batch and for one
whose driver died mid-run; and the report's data beside the aggregate it must agree with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from scm_batch.records.generate import generate_file
from tests.conftest import Cli, run_cli
from tests.integration.browser import Page, artifact_dir, headless_chromium
from tests.integration.servers import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FAULTS = "chunk_000002=transient:1,chunk_000005=kill:1,chunk_000004=terminal"


def run_args(bucket: Path, batch: str, *extra: str) -> list[str]:
    return [
        "run", "--bucket", str(bucket), "--file", "input/records.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", batch, "--max-chunk-size", "2000",
        "--min-chunk-size", "1", "--workers", "2", "--progress", "none", "--json", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bucket = tmp_path_factory.mktemp("report") / "bucket"
    generate_file(
        bucket / "input" / "records.jsonl",
        20_000,
        seed=12,
        invalid_rate=0.006,
        malformed_rate=0.001,
    )
    return bucket


@pytest.fixture(scope="module")
def browser() -> Any:
    with headless_chromium() as page:
        yield page


def receipts(bucket: Path, batch: str) -> list[dict[str, Any]]:
    folder = bucket / "metadata" / batch / "chunks"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def counts(page: Page) -> dict[str, int]:
    """The marks of each chart, and the rows of the timeline, as the browser laid them out."""
    value = page.evaluate(
        """JSON.stringify({
        categoryBars: document.querySelectorAll('#errors-by-category .mark.bar').length,
        fieldBars: document.querySelectorAll('#errors-by-field .mark.bar').length,
        workerRows: document.querySelectorAll('#timeline .lane:not(.failed)').length,
        chunkMarks: document.querySelectorAll('#timeline .mark.chunk').length,
        retriedMarks: document.querySelectorAll('#timeline .mark.chunk.retried').length,
        failureMarks: document.querySelectorAll('#timeline .mark.failure').length,
        throughputBins: document.querySelectorAll('#throughput .mark.bin').length,
        slowBars: document.querySelectorAll('#slowest-chunks .mark.bar').length,
        timeSegments: document.querySelectorAll('#time-went .mark.segment').length,
        emptyCharts: document.querySelectorAll('.chart .empty').length,
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        })"""
    )
    assert isinstance(value, str)
    parsed: dict[str, int] = json.loads(value)
    return parsed


def rendered(cli: Cli, bucket: Path, batch: str, out: Path) -> dict[str, Any]:
    """Write the batch's report, check it in the browser's hands later; its JSON data now."""
    made = cli("report", "--bucket", str(bucket), "--batch-id", batch, "--html", str(out), "--json")
    assert made.returncode == 0, made.stderr
    assert "Traceback" not in made.stderr
    data: dict[str, Any] = json.loads(made.stdout)
    return data


def look(page: Page, report: Path, name: str) -> dict[str, int]:
    """Open ``report`` light at 1280 px, dark on a phone; screenshots of both kept."""
    page.events.clear()
    page.open(report.as_uri(), width=1280, height=900)
    assert page.problems() == []
    wide = counts(page)
    assert wide["overflow"] <= 0  # nothing wider than the window
    page.screenshot(artifact_dir() / f"report-{name}-1280-light.png")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.open(report.as_uri(), width=390, height=844, dark=True)
    assert page.problems() == []
    phone = counts(page)
    assert phone["overflow"] <= 0, "the page scrolls sideways on a phone"
    assert {k: v for k, v in phone.items() if k != "overflow"} == {
        k: v for k, v in wide.items() if k != "overflow"
    }
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light == "rgb(255, 255, 255)"
    assert dark != light
    page.screenshot(artifact_dir() / f"report-{name}-phone-dark.png")
    return wide


def test_a_finished_batch_with_retries_and_a_tolerated_failure(
    cli: Cli, bucket: Path, browser: Page, tmp_path: Path
) -> None:
    ran = cli(*run_args(bucket, "done", "--tolerated-failure-count", "1"), env={
        "SCM_BATCH_FAULTS": FAULTS
    })  # fmt: skip
    assert ran.returncode == 5, ran.stderr  # completed, with the failure it tolerated
    summary = json.loads(ran.stdout)
    data = rendered(cli, bucket, "done", tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644  # for sharing
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left
    marks = look(browser, tmp_path / "report.html", "finished")

    categories = {k for k, v in summary["errorsByCategory"].items() if v}
    assert len(categories) >= 3  # the known batch has several kinds of rejected records
    assert marks["categoryBars"] == len(categories)
    assert data["errorsByCategory"] == {k: summary["errorsByCategory"][k] for k in categories}
    fields = {(f, p) for f, ps in summary["fieldErrors"].items() for p in ps}
    assert marks["fieldBars"] == min(15, len(fields))
    workers = {r["worker"] for r in receipts(bucket, "done")}
    assert len(workers) >= 3  # two workers, and the one that replaced the killed worker
    assert marks["workerRows"] == len(workers)
    assert marks["chunkMarks"] == summary["chunksSucceeded"] == data["chunksDone"]
    assert marks["retriedMarks"] == 2  # chunk 2 (a transient error) and chunk 5 (its worker died)
    assert marks["failureMarks"] == summary["chunksFailed"] == 1
    assert marks["slowBars"] == 10
    assert marks["throughputBins"] == len(data["throughput"]) > 0
    assert marks["timeSegments"] == 4  # checks, planning and workers starting, chunks, aggregating
    assert marks["emptyCharts"] == 0
    # The data agrees with the aggregate.
    assert data["state"] == "completed"
    assert data["verdict"] == summary["validationStatus"]
    assert data["recordsDone"] == summary["totals"]["records"]
    assert data["validRecords"] == summary["totals"]["validRecords"]
    assert data["errors"] == summary["totals"]["errors"]
    assert data["retries"] == 2
    spread = sum(b["recordsPerSecond"] * b["width"] for b in data["throughput"])
    assert spread == pytest.approx(summary["totals"]["records"], rel=0.01)


def test_a_failed_batch_renders_with_its_failure(
    cli: Cli, bucket: Path, browser: Page, tmp_path: Path
) -> None:
    ran = cli(*run_args(bucket, "failed"), env={"SCM_BATCH_FAULTS": "chunk_000003=terminal"})
    assert ran.returncode != 0
    data = rendered(cli, bucket, "failed", tmp_path / "failed.html")
    assert data["state"] == "failed"
    marks = look(browser, tmp_path / "failed.html", "failed")
    assert marks["failureMarks"] == 1
    assert marks["chunkMarks"] == data["chunksDone"]
    text = browser.evaluate("document.querySelector('.problems').innerText")
    assert "chunk_000003" in text
    assert "InjectedTerminalError" in text


def test_a_batch_whose_driver_died_renders_as_unfinished(
    cli: Cli, bucket: Path, browser: Page, tmp_path: Path
) -> None:
    killed = cli(*run_args(bucket, "running"), env={"SCM_BATCH_FAULTS": "driver=after-chunks:3"})
    assert killed.returncode == -signal.SIGKILL
    data = rendered(cli, bucket, "running", tmp_path / "running.html")
    assert data["state"] == "running"
    assert data["wallSeconds"] is None
    assert data["status"] is None
    assert data["chunksDone"] == len(receipts(bucket, "running")) >= 3
    assert data["chunksPending"] == data["chunksTotal"] - data["chunksDone"] > 0
    marks = look(browser, tmp_path / "running.html", "running")
    assert marks["chunkMarks"] == data["chunksDone"]
    # Where the time went: the chunks so far; planning and aggregation are the aggregate's to say.
    assert [share["label"] for share in data["timeWent"]] == ["processing chunks"]
    assert marks["timeSegments"] == 1
    assert marks["emptyCharts"] == 0
    badge = browser.evaluate("document.querySelector('.badge').innerText")
    assert "not finished" in badge

    # Resumed: the timeline is the resuming session's; the chunks done before are in the totals.
    before = len(receipts(bucket, "running"))
    resumed = cli("resume", "--bucket", str(bucket), "--batch-id", "running", "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    data = rendered(cli, bucket, "running", tmp_path / "resumed.html")
    assert (data["state"], data["chunksDone"]) == ("completed", data["chunksTotal"])
    assert data["chunksOffTimeline"] == before
    marks = look(browser, tmp_path / "resumed.html", "resumed")
    assert marks["chunkMarks"] == data["chunksTotal"] - before
    assert "not drawn" in browser.evaluate("document.querySelector('#timeline').innerText")


def test_bad_requests_are_one_line_errors(cli: Cli, bucket: Path, tmp_path: Path) -> None:
    def refused(code: int, words: str, *args: str) -> None:
        result = cli("report", "--bucket", str(bucket), *args)
        assert result.returncode == code, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        assert words in errors[0], result.stderr

    refused(2, "does not exist", "--batch-id", "x", "--html", str(tmp_path / "no" / "r.html"))
    refused(2, "is a directory", "--batch-id", "x", "--html", str(tmp_path))
    absent = cli("report", "--bucket", str(bucket), "--batch-id", "never-planned")
    assert absent.returncode != 0
    assert "Traceback" not in absent.stderr
    assert "never-planned" in absent.stderr
    assert not list(tmp_path.glob("*.html"))


def test_a_batch_on_s3_reports_as_on_disk(
    cli: Cli, s3: S3Client, moto: MotoServer, bucket: Path, browser: Page, tmp_path: Path
) -> None:
    name = f"report-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.upload_file(str(bucket / "input" / "records.jsonl"), name, "input/records.jsonl")
    args = run_args(bucket, "s3", "--endpoint-url", moto.endpoint, "--max-concurrent-chunks", "6")
    args[args.index("--bucket") + 1] = f"s3://{name}"
    ran = cli(*args)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    made = cli(
        "report", "--bucket", f"s3://{name}", "--batch-id", "s3", "--endpoint-url", moto.endpoint,
        "--html", str(tmp_path / "s3.html"), "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["bucket"] == f"s3://{name}"
    assert (data["state"], data["chunksDone"], data["validRecords"]) == (
        "completed",
        summary["chunksSucceeded"],
        summary["totals"]["validRecords"],
    )
    marks = look(browser, tmp_path / "s3.html", "s3")
    assert marks["chunkMarks"] == summary["chunksSucceeded"] > 1
    assert marks["categoryBars"] == len([v for v in summary["errorsByCategory"].values() if v])


def test_a_batch_reported_while_it_runs(bucket: Path, browser: Page, tmp_path: Path) -> None:
    # One chunk's worker stops itself (SIGSTOP): the run goes on, waiting for that chunk; the
    # report is made meanwhile, from another process, as a user would.
    args = run_args(bucket, "live", "--chunk-timeout", "600")  # the driver is killed long before
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCM_BATCH_")}
    env["SCM_BATCH_FAULTS"] = "chunk_000001=stall:1"
    driver = subprocess.Popen(
        [sys.executable, "-m", "scm_batch", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        plan = bucket / "metadata" / "live" / "chunks.json"
        while not plan.exists() or len(receipts(bucket, "live")) < planned(plan) - 1:
            assert driver.poll() is None, "the run ended before the report could be made"
            assert time.monotonic() < deadline, "the chunks were not done in 60 s"
            time.sleep(0.05)  # polling the ledger for a condition, not waiting for time to pass
        data = rendered(run_cli, bucket, "live", tmp_path / "live.html")
        assert driver.poll() is None  # still running when the report was made
    finally:
        driver.kill()  # its workers die with it
        driver.wait(timeout=60)
    total = planned(plan)
    assert (data["state"], data["chunksDone"], data["chunksPending"]) == ("running", total - 1, 1)
    marks = look(browser, tmp_path / "live.html", "live")
    assert marks["chunkMarks"] == total - 1


def planned(plan: Path) -> int:
    chunks: list[Any] = json.loads(plan.read_text())["chunks"]
    return len(chunks)
