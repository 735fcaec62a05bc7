"""``scm-batch plan --estimate``: each backend's arithmetic against hand-computed values for a
tiny plan, every cost term present, the price file's date shown, an override file used, bad
price files refused with one line, and the estimate for this machine against a real run."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from scm_batch.errors import ConfigError
from scm_batch.estimate.backends import (
    aws_backend,
    dask_cluster,
    local_pool,
    makespan,
)
from scm_batch.estimate.prices import PriceSheet, load_prices, parse_prices
from scm_batch.estimate.requests import S3Requests, chunk_s3_requests, sqs_batch_requests
from scm_batch.estimate.transitions import Transitions, count_transitions
from scm_batch.estimate.values import (
    Assumptions,
    BackendEstimate,
    Calibration,
    ChunkShape,
    DeploymentShape,
    PlanShape,
)
from scm_batch.records.generate import generate_file
from tests.conftest import Cli
from tests.deploy.hcl import MODULE, parse

JOB = ["--file", "in.jsonl", "--customer-id", "c", "--tenant-id", "t", "--batch-id", "b"]
BUILT_IN = Path(__file__).parents[2] / "src/scm_batch/estimate/prices/aws-us-east-1.json"

# ---- a tiny plan, figures chosen to add up by hand ----------------------------------------------
# Two chunks of 1,000 records and 375,000 bytes; the sample measured 10 µs a record alone, 20 µs
# with both workers busy, 10 ms a chunk; 400 result bytes a record, every record valid.
TINY = PlanShape(
    chunks=(ChunkShape(records=1000, bytes=375_000, route="lambda"),) * 2,
    input_bytes=750_000,
    records_exact=True,
    max_concurrent_chunks=50,
    lambda_timeout_seconds=900.0,
    destination="none",
    deployment="WORKSPACE",
    bucket_on_s3=False,
)
CAL = Calibration(
    sample_chunk="chunk_000000",
    sample_records=1000,
    sample_bytes=375_000,
    engine="native",
    one_process_seconds=0.02,
    per_record_seconds=1e-5,
    per_chunk_seconds=0.01,
    workers=2,
    loaded_per_record_seconds=2e-5,
    result_bytes_per_record=400.0,
    valid_share=1.0,
    rounds=3,
    loaded_rounds=30,
    planning_seconds=0.5,
    startup_seconds=0.4,
    pool_start_seconds=0.6,
)
PRICES = load_prices().sheet
A = Assumptions()
D = DeploymentShape()
# What the definition gives (checked in test_transitions_are_counted_on_the_definition).
STEPS = Transitions(per_batch=13, per_lambda_chunk=3, per_batch_chunk=3, main_path=())


def costs(backend: BackendEstimate) -> dict[str, float]:
    return {t.what: t.cost for t in backend.terms}


def seconds(backend: BackendEstimate) -> dict[str, float]:
    return {t.what: t.seconds for t in backend.time}


def test_this_machine_by_hand() -> None:
    got = local_pool(TINY, CAL, PRICES, A, workers=2)
    # Both workers busy: 20 µs a record; a chunk 0.01 + 1,000 x 0.00002 = 0.03 s, one each.
    # Start-up 0.4 + planning 0.5 + the pool's 0.6 s start beyond planning 0.1 + 0.03 + the
    # aggregation 0.1 + 2 x 0.002 = 1.134 s. Nothing billed.
    assert got.wall_seconds == pytest.approx(1.134)
    assert sorted(seconds(got).values()) == pytest.approx([0.03, 0.1, 0.104, 0.4, 0.5])
    assert got.cost == 0
    assert got.terms == ()
    # One worker: one process's speed, the chunks one after the other: 2 x 0.02.
    alone = local_pool(TINY, CAL, PRICES, A, workers=1)
    assert alone.wall_seconds == pytest.approx(0.4 + 0.5 + 0.1 + 0.04 + 0.104)


def test_lambda_by_hand() -> None:
    got = aws_backend(TINY, CAL, PRICES, A, STEPS, D, mode="lambda")
    # A chunk on 10,240 MB (a whole core): 1,000 x 0.00001 + 0.01 = 0.02 s of work; 7 S3
    # requests (4 GET class, 3 PUT class) x 0.03 = 0.21 s; 775,000 bytes at 75 MB/s = 0.0103 s;
    # both in the first wave: a cold start of 1.5 s each. 1.740333 s, billed at 10 GB.
    chunk = 0.02 + 0.21 + 775_000 / 75e6 + 1.5
    gb_s = 2 * chunk * 10
    # The main path: a step is 1.5 + 0.3 = 1.8 s; CalculateChunks cuts once (1 ranged GET),
    # AggregateResults reads 2 receipts (one round of 16): 0.03 s each; at 1024 MB but
    # AggregateResults' 3008 MB.
    main_gb_s = 1.8 * 2 + 1.83 + 1.83 * 3008 / 1024 + 1.8
    c = costs(got)
    assert c["Lambda compute: update-records on the chunks"] == pytest.approx(gb_s * 0.0000166667)
    assert c["Lambda compute: the main path's five functions"] == pytest.approx(
        main_gb_s * 0.0000166667
    )
    assert c["Lambda requests"] == pytest.approx(7 * 0.20 / 1e6)
    assert c["Step Functions state transitions"] == pytest.approx((13 + 2 * 3) * 0.025 / 1000)
    # S3: a chunk 3 PUT class, 4 GET class; the batch 9 PUT class, 12 GET class.
    assert c["S3 PUT, COPY, POST, LIST requests"] == pytest.approx(15 * 0.005 / 1000)
    assert c["S3 GET, HEAD and other requests"] == pytest.approx(20 * 0.0004 / 1000)
    assert c["SQS (standard) requests: the status message (batch-proc)"] == pytest.approx(0.4e-6)
    assert c["data transfer, S3 to Lambda and Fargate in the same region"] == 0
    assert got.cost == pytest.approx(sum(c.values()))
    # Before the Map: 2 x 1.8 + 1.83 + 13 transitions x 0.05 + 2 s; the chunks side by side;
    # after it: 1.83 + 1.8.
    assert got.wall_seconds == pytest.approx(3.6 + 1.83 + 0.65 + 2.0 + chunk + 1.83 + 1.8)


@pytest.mark.parametrize(
    ("mode", "vcpu_hour", "gb_hour"),
    [("fargate", 0.04048, 0.004445), ("fargate-spot", 0.01334, 0.00146)],
)
def test_fargate_by_hand(mode: str, vcpu_hour: float, gb_hour: float) -> None:
    got = aws_backend(TINY, CAL, PRICES, A, STEPS, D, mode=mode)
    # A job: 0.02 s of work, 11 S3 requests (a job reads the plan: 4 more) x 0.03 = 0.33 s and
    # 0.0103 s of bytes; billed 20 + 0.36 s, at least 60 s: 2 jobs x 60 s x 4 vCPU, 8 GiB.
    run = 0.02 + 0.33 + 775_000 / 75e6
    c = costs(got)
    label = "Fargate Spot" if mode == "fargate-spot" else "Fargate"
    jobs = f"{label}: chunk jobs (4 vCPU, 8,192 MiB)"
    assert c[f"{jobs} vCPU-hours"] == pytest.approx(2 * 60 * 4 / 3600 * vcpu_hour)
    assert c[f"{jobs} GB-hours"] == pytest.approx(2 * 60 * 8 / 3600 * gb_hour)
    assert "Lambda compute: update-records on the chunks" not in c
    assert c["Lambda requests"] == pytest.approx(5 * 0.20 / 1e6)
    assert c["S3 GET, HEAD and other requests"] == pytest.approx((2 * 8 + 12) * 0.0004 / 1000)
    # Each job starts 75 s after its submission; both at once.
    assert got.wall_seconds == pytest.approx(3.6 + 1.83 + 0.65 + 2.0 + 75 + run + 1.83 + 1.8)


def test_dask_by_hand() -> None:
    got = dask_cluster(TINY, CAL, PRICES, A, workers=8)
    # A chunk: 0.01 + 1,000 x 0.00002 + 0.05 s for the scheduler = 0.08 s, side by side; start-up
    # 0.4 + planning 0.5 + 0.08 + aggregation 0.104 = 1.084 s, on 4 m6i.large (2 vCPU each).
    assert got.wall_seconds == pytest.approx(1.084)
    assert got.cost == pytest.approx(4 * 1.084 / 3600 * 0.0832)


def test_every_term_is_there_for_each_destination() -> None:
    def names(shape: PlanShape, mode: str) -> set[str]:
        return {t.what for t in aws_backend(shape, CAL, PRICES, A, STEPS, D, mode=mode).terms}

    base = {
        "Lambda compute: the main path's five functions",
        "Lambda requests",
        "Step Functions state transitions",
        "S3 PUT, COPY, POST, LIST requests",
        "S3 GET, HEAD and other requests",
        "SQS (standard) requests: the status message (batch-proc)",
    }
    on_lambda = names(TINY, "lambda")
    assert on_lambda >= {*base, "Lambda compute: update-records on the chunks"}
    assert {n for n in on_lambda if n.startswith("data transfer")}
    fargate = names(TINY, "fargate")
    assert fargate >= base
    assert {n for n in fargate if "vCPU-hours" in n}
    assert {n for n in fargate if "GB-hours" in n}
    # Records to a FIFO SQS Core queue, a CORE deployment: the records and the completion notice.
    core = msgspec.structs.replace(TINY, destination="sqs_core", deployment="CORE", sqs_fifo=True)
    got = aws_backend(core, CAL, PRICES, A, STEPS, D, mode="lambda")
    records = next(t for t in got.terms if "the records" in t.what)
    assert records.price == PRICES.sqs.per_million_fifo_requests
    # 1,000 messages of 650 bytes a chunk: 100 calls of 10, each 6,500 bytes: one request.
    assert records.quantity == 200
    assert any("the completion notice" in t.what for t in got.terms)
    # Kafka: what sending the records out of AWS would cost is shown, not added.
    kafka = msgspec.structs.replace(TINY, destination="kafka")
    got = aws_backend(kafka, CAL, PRICES, A, STEPS, D, mode="lambda")
    out = next(t for t in got.terms if "to the internet" in t.what)
    assert not out.counted
    assert out.cost == pytest.approx(2000 * 650 / 1e9 * 0.09)
    assert got.cost == pytest.approx(sum(t.cost for t in got.terms if t.counted))


def test_a_chunk_longer_than_the_lambda_timeout_is_paid_twice() -> None:
    slow = msgspec.structs.replace(TINY, lambda_timeout_seconds=0.2)  # a chunk's work: 0.24 s
    got = aws_backend(slow, CAL, PRICES, A, STEPS, D, mode="lambda")
    c = costs(got)
    # Killed at 0.2 s, then a Batch job each.
    assert c["Lambda compute: update-records on the chunks"] == pytest.approx(
        2 * 10 * 0.2 * 0.0000166667
    )
    assert any("vCPU-hours" in name for name in c)
    assert any("outlast" in note for note in got.notes)


def test_a_cold_start_does_not_count_against_the_lambda_timeout() -> None:
    # 0.24 s of work and a 1.5 s cold start: 1.74 s billed, within a 1 s timeout all the same
    # (Lambda's INIT phase is not held to the function's timeout).
    tight = msgspec.structs.replace(TINY, lambda_timeout_seconds=1.0)
    got = aws_backend(tight, CAL, PRICES, A, STEPS, D, mode="lambda")
    assert not any("vCPU-hours" in name for name in costs(got))
    assert not any("outlast" in note for note in got.notes)


def test_scheduling_and_request_counts() -> None:
    assert makespan([3, 1, 1, 1], 2) == 3
    assert makespan([1, 1, 1], 2) == 2
    assert makespan([], 4) == 0
    # A result part over 16 MiB is a multipart upload: create, 2 parts, complete.
    assert chunk_s3_requests(20 << 20, "lambda") == S3Requests(put_class=6, get_class=4)
    assert chunk_s3_requests(1000, "batch") == S3Requests(put_class=3, get_class=8)
    # 10 messages a call while they fit 256 KiB; each 64 KiB of a call billed as a request.
    assert sqs_batch_requests(25, 1000, 65536) == 3
    assert sqs_batch_requests(20, 30_000, 65536) == 2 * 4 + 2  # 8 a call (240 KB): 4 each
    assert sqs_batch_requests(0, 1000, 65536) == 0


def test_transitions_are_counted_on_the_definition() -> None:
    steps = count_transitions("WORKSPACE")
    assert steps.main_path[0] == "InitializeBatchProcessing"
    assert steps.main_path[-1] == "SuccessState"
    assert "SendToKafka" in steps.main_path
    assert "SendToSqsCore" in count_transitions("CORE").main_path
    # ProcessChunk, then ProcessWithLambda or SubmitBatchJob, and the child execution's start.
    assert (steps.per_batch, steps.per_lambda_chunk, steps.per_batch_chunk) == (13, 3, 3)


def test_the_deployment_shape_is_the_terraform_modules() -> None:
    defaults = {
        name: body.get("default")  # some variables (the required ones) have none
        for block in parse(MODULE / "variables.tf")["variable"]
        for name, body in block.items()
    }
    [local] = parse(MODULE / "lambda.tf")["locals"]
    memory = {key: f["memory_size"] for key, f in local["lambda_functions"].items()}
    d = DeploymentShape()
    assert d.lambda_memory_mb == defaults["lambda_memory"]
    assert memory["update-records"] == "${var.lambda_memory}"
    assert d.batch_job_vcpus == defaults["batch_job_vcpus"]
    assert d.batch_job_memory_mib == defaults["batch_job_memory"]
    assert d.batch_max_vcpus == defaults["batch_max_vcpus"]
    assert (d.read_s3_memory_mb, d.validate_data_memory_mb, d.calculate_chunks_memory_mb) == (
        memory["read-s3"],
        memory["validate-data"],
        memory["calculate-chunks"],
    )
    assert d.aggregate_results_memory_mb == memory["aggregate-results"]
    assert d.send_memory_mb == memory["send-to-kafka"] == memory["send-to-sqs-core"]


# ---- the price file -----------------------------------------------------------------------------
def sheet() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BUILT_IN.read_text())
    return data


def test_the_built_in_prices_are_the_published_ones() -> None:
    prices = load_prices()
    assert prices.built_in
    s = prices.sheet
    assert (s.region, s.currency, s.prices_as_of.isoformat()) == ("us-east-1", "USD", "2025-06-01")
    assert "not fetched live" in s.source.lower() or "Not fetched live" in s.source
    assert (s.lambda_.per_gb_second, s.lambda_.per_million_requests) == (0.0000166667, 0.20)
    assert s.step_functions.per_thousand_state_transitions == 0.025
    assert (s.s3.per_thousand_put_copy_post_list, s.s3.per_thousand_get_and_other) == (
        0.005,
        0.0004,
    )
    assert (s.sqs.per_million_standard_requests, s.sqs.per_million_fifo_requests) == (0.40, 0.50)
    assert (s.fargate.per_vcpu_hour, s.fargate.per_gb_hour) == (0.04048, 0.004445)
    assert (s.fargate_spot.per_vcpu_hour, s.fargate_spot.per_gb_hour) == (0.01334, 0.00146)
    assert s.data_transfer.out_to_internet_per_gb == 0.09
    assert s.dask_instance.per_hour == 0.0832


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["lambda"].pop("perGbSecond"), "missing required field `perGbSecond`"),
        (lambda d: d["fargate"].update(perVcpuHour="cheap"), "Expected `float`, got `str`"),
        (lambda d: d["s3"].update(perThousandGetAndOther=-1), ">= 0"),
        (lambda d: d.update(pricesAsOf="last June"), "pricesAsOf"),
        (lambda d: d.update(schemaVersion=2), "schemaVersion 2"),
    ],
)
def test_a_bad_price_sheet_names_its_field(change: Any, expected: str) -> None:
    data = sheet()
    change(data)
    with pytest.raises(ConfigError) as refused:
        parse_prices(json.dumps(data).encode(), "mine.json")
    assert refused.value.field == "--prices"
    assert "mine.json" in refused.value.message
    assert expected in refused.value.message
    assert "\n" not in refused.value.message


# ---- the command --------------------------------------------------------------------------------
def estimate(cli: Cli, bucket: Path, *flags: str) -> dict[str, Any]:
    done = cli("plan", "--bucket", str(bucket), *JOB, "--estimate", *flags, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_the_estimate_shows_the_prices_and_their_date(cli: Cli, bucket: Path) -> None:
    generate_file(bucket / "in.jsonl", 30_000, seed=1)
    human = cli("plan", "--bucket", str(bucket), *JOB, "--estimate", "--workers", "2")
    assert human.returncode == 0, human.stderr
    text = " ".join(human.stdout.split())  # as wrapped for 80 columns, joined again
    assert "as of 2025-06-01" in text
    assert "aws-us-east-1.json" in text
    for label in ("this machine", "Lambda", "Batch on Fargate", "Fargate Spot", "Dask cluster"):
        assert label in text
    assert "calibration: 10,000 records" in text  # the first chunk, whole
    got = estimate(cli, bucket, "--workers", "2", "--estimate-dask-workers", "4")
    assert got["prices"]["pricesAsOf"] == "2025-06-01"
    assert got["prices"]["builtIn"] is True
    assert [b["key"] for b in got["backends"]] == [
        "local",
        "lambda",
        "fargate",
        "fargate-spot",
        "dask",
    ]
    assert got["backends"][-1]["label"] == "a Dask cluster of 4 workers"
    cal = got["calibration"]
    assert (cal["sampleRecords"], cal["workers"]) == (10_000, 2)
    assert cal["perRecordSeconds"] > 0
    assert cal["loadedPerRecordSeconds"] >= cal["perRecordSeconds"]
    for backend in got["backends"]:
        assert backend["wallSeconds"] > 0
        assert backend["cost"] == pytest.approx(
            sum(t["cost"] for t in backend["terms"] if t["counted"])
        )


def test_an_override_price_file_is_used(cli: Cli, bucket: Path, tmp_path: Path) -> None:
    generate_file(bucket / "in.jsonl", 2_000, seed=1)
    mine = sheet()
    mine.update(pricesAsOf="2026-11-30", region="eu-west-1", currency="EUR")
    mine["lambda"]["perGbSecond"] = 0.001
    mine["fargate"]["perVcpuHour"] = 1.0
    path = tmp_path / "my-prices.json"
    path.write_text(json.dumps(mine))
    got = estimate(cli, bucket, "--prices", str(path))
    assert got["prices"] == {**got["prices"], "origin": str(path), "builtIn": False}
    assert (got["prices"]["pricesAsOf"], got["prices"]["region"]) == ("2026-11-30", "eu-west-1")
    lam = {t["what"]: t for t in got["backends"][1]["terms"]}
    compute = lam["Lambda compute: update-records on the chunks"]
    assert compute["price"] == 0.001
    assert compute["cost"] == pytest.approx(compute["quantity"] * 0.001)
    jobs = next(t for t in got["backends"][2]["terms"] if "vCPU-hours" in t["what"])
    assert jobs["cost"] == pytest.approx(jobs["quantity"] * 1.0)
    human = cli("plan", "--bucket", str(bucket), *JOB, "--estimate", "--prices", str(path))
    assert human.returncode == 0, human.stderr
    assert "as of 2026-11-30" in human.stdout
    assert "EUR" in human.stdout


def test_bad_price_files_and_options_are_one_line_each(
    cli: Cli, bucket: Path, tmp_path: Path
) -> None:
    generate_file(bucket / "in.jsonl", 100, seed=1)
    broken = sheet()
    broken["sqs"]["perMillionFifoRequests"] = "half a dollar"
    cases = {
        "not-json.json": ("{prices}", "JSON is malformed"),
        "missing.json": (json.dumps({"region": "us-east-1"}), "missing required field"),
        "text.json": (json.dumps(broken), "$.sqs.perMillionFifoRequests"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        done = cli("plan", "--bucket", str(bucket), *JOB, "--estimate", "--prices", str(path))
        assert done.returncode == 2, done.stderr
        line = one_error_line(done.stderr)
        assert "--prices" in line
        assert name in line
        assert expected in line
        assert "Traceback" not in done.stderr
    absent = cli("plan", "--bucket", str(bucket), *JOB, "--estimate", "--prices", "nope.json")
    assert absent.returncode == 2
    assert "cannot read it" in one_error_line(absent.stderr)
    alone = cli("plan", "--bucket", str(bucket), *JOB, "--prices", str(BUILT_IN))
    assert alone.returncode == 2
    assert "--prices" in one_error_line(alone.stderr)
    none = cli("plan", "--bucket", str(bucket), *JOB, "--estimate", "--estimate-dask-workers", "0")
    assert none.returncode == 2
    assert "--estimate-dask-workers" in one_error_line(none.stderr)


def test_the_estimate_for_this_machine_is_near_a_real_run(cli: Cli, bucket: Path) -> None:
    """Not a timed test (speed targets are the benchmark's, issue 16): a bound of 3x both ways,
    which units or a part of the run left out would break."""
    generate_file(bucket / "in.jsonl", 150_000, seed=1)
    got = estimate(cli, bucket, "--workers", "2")
    predicted = got["backends"][0]["wallSeconds"]
    assert got["chunks"] == 15
    started = time.perf_counter()
    ran = cli("run", "--bucket", str(bucket), *JOB, "--workers", "2", "--progress", "none")
    measured = time.perf_counter() - started
    assert ran.returncode == 0, ran.stderr
    assert measured / 3 <= predicted <= measured * 3, (predicted, measured)
    assert math.isfinite(predicted)


def test_the_price_sheet_schema_round_trips() -> None:
    """The built-in file is exactly what the schema writes back: no field is ignored on reading."""
    data = sheet()
    again = msgspec.json.decode(msgspec.json.encode(load_prices().sheet))
    assert again == data
    assert isinstance(load_prices().sheet, PriceSheet)


def test_the_benchmark_reports_the_estimate_against_the_run() -> None:
    from bench.estimate import estimate_lines
    from bench.result import Run

    def run(round_no: int, wall: float, ok: bool = True) -> Run:
        return Run("scm-batch", round_no, wall, 0.0, 0, 0, 0, 0, 0.0, ok, "")

    runs = [run(1, 4.0), run(2, 5.0), run(3, 4.0, ok=False)]
    [line] = estimate_lines(runs, {"estimate": [4.4, 5.0, 9.9]})
    # Rounds 1 and 2 only (round 3's run failed): 1.10 and 1.00, median 1.05.
    assert line.startswith("- **met**: the estimate for this machine within 30 %")
    assert "1.05\u00d7" in line
    [missed] = estimate_lines(runs, {"estimate": [6.0, 7.0]})  # 1.5 and 1.4
    assert missed.startswith("- **missed**")
    assert estimate_lines(runs, {}) == []
