"""Records and notifications delivered to a real SQS API (moto over HTTP)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest

from scm_batch.errors import DeliveryError, DeliveryRejectedError
from scm_batch.model import ChunkTask
from scm_batch.records.generate import generate_file
from scm_batch.sinks.messages import MessageBlock
from scm_batch.sinks.options import SqsOptions
from scm_batch.sinks.sqs import SqsSink
from tests.conftest import Cli
from tests.helpers import job_input, plan_input
from tests.integration.servers import MotoServer, free_port

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@pytest.fixture(scope="session")
def sqs(moto: MotoServer) -> SQSClient:
    client: SQSClient = boto3.client("sqs", endpoint_url=moto.endpoint)
    return client


def new_queue(sqs: SQSClient, fifo: bool = False) -> str:
    name = f"q-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
    if fifo:
        return sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    return sqs.create_queue(QueueName=name)["QueueUrl"]


def drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    """Every message now in the queue, each deleted once received (a FIFO queue shows a group's
    next messages only then), so the loop ends when the queue is empty."""
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=3600
    ).get("Messages", []):
        messages.extend(batch)  # type: ignore[arg-type]
        receipts = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
        ]
        sqs.delete_message_batch(QueueUrl=url, Entries=receipts)  # type: ignore[arg-type]
    return messages


def test_records_completion_and_status_to_sqs(
    cli: Cli, sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    core, status = new_queue(sqs), new_queue(sqs)
    bucket = tmp_path / "bucket"
    # 400 records: moto's SendMessageBatch and ReceiveMessage slow down as its queue grows (each
    # call costs in proportion to the messages queued), so larger counts test moto, not this code.
    generate_file(bucket / "input" / "records.jsonl", 400, seed=9, invalid_rate=0.005)
    ran = cli(
        "run", "--bucket", str(bucket), "--file", "input/records.jsonl", "--customer-id", "c",
        "--tenant-id", "t", "--batch-id", "sqsbatch", "--deployment", "CORE",
        "--destination", "sqs_core", "--sqs-core-queue", core, "--status-queue", status,
        "--sqs-endpoint-url", moto.endpoint, "--progress", "none", "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    bodies = [json.loads(m["Body"]) for m in drain(sqs, core)]
    completions = [b for b in bodies if b.get("type") == "BATCH_COMPLETION_NOTIFICATION"]
    envelopes = [b for b in bodies if "record" in b]
    assert len(completions) == 1  # CORE: the completion message goes to SQS Core
    assert (
        len(envelopes)
        == summary["totals"]["validRecords"]
        == sum(d["validRecords"] for d in summary["chunkDetails"])
    )
    results = {
        json.loads(line)["id"]: json.loads(line)
        for part in (bucket / "results" / "sqsbatch").glob("*.jsonl")
        for line in part.read_bytes().splitlines()
    }
    assert {e["record"]["id"]: e["record"] for e in envelopes} == results
    assert {e["metadata"]["destination"] for e in envelopes} == {"sqs_core"}
    (state,) = [json.loads(m["Body"]) for m in drain(sqs, status)]
    assert (state["batchId"], state["batchStatus"]) == ("sqsbatch", "SUBMITTED_FOR_PROCESSING")


def test_damaged_parts_of_a_delivered_batch_are_rebuilt_without_sending_again(
    cli: Cli, sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    core, status = new_queue(sqs), new_queue(sqs)
    bucket = tmp_path / "bucket"
    generate_file(bucket / "in.jsonl", 400, seed=3, invalid_rate=0.0)
    run = [
        "run", "--bucket", str(bucket), "--batch-id", "again", "--file", "in.jsonl",
        "--customer-id", "c", "--tenant-id", "t", "--deployment", "CORE", "--destination",
        "sqs_core", "--sqs-core-queue", core, "--status-queue", status, "--sqs-endpoint-url",
        moto.endpoint, "--max-concurrent-chunks", "4", "--min-chunk-size", "1", "--progress",
        "none",
    ]  # fmt: skip
    ran = cli(*run)
    assert ran.returncode == 0, ran.stderr
    assert len(drain(sqs, core)) > 100
    assert len(drain(sqs, status)) == 1
    results, metadata = bucket / "results" / "again", bucket / "metadata" / "again"
    parts = {p.name: p.read_bytes() for p in results.iterdir()}
    receipt = json.loads((metadata / "chunks" / "chunk_000002.json").read_bytes())
    notified = (metadata / "notified.json").read_bytes()
    (results / "chunk_000002.jsonl").unlink()  # a lifecycle rule expired it, say

    # The same run again (a duplicated trigger): the batch is final, its part rebuilt.
    again = cli(*run)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stderr + again.stdout
    assert {p.name: p.read_bytes() for p in results.iterdir()} == parts
    assert (drain(sqs, core), drain(sqs, status)) == ([], [])  # nothing sent again
    assert (metadata / "notified.json").read_bytes() == notified
    rebuilt = json.loads((metadata / "chunks" / "chunk_000002.json").read_bytes())
    assert rebuilt["delivered"] == receipt["delivered"] > 0
    assert json.loads((metadata / "rebuilt" / "chunk_000002.json").read_bytes()) == {
        "chunkId": "chunk_000002",
        "delivered": receipt["delivered"],
    }


def test_a_resume_rebuilds_damaged_parts_and_sends_only_what_was_never_sent(
    cli: Cli, sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    core, status = new_queue(sqs), new_queue(sqs)
    bucket = tmp_path / "bucket"
    generate_file(bucket / "in.jsonl", 400, seed=4, invalid_rate=0.0)
    run = [
        "run", "--bucket", str(bucket), "--batch-id", "part", "--file", "in.jsonl",
        "--customer-id", "c", "--tenant-id", "t", "--deployment", "CORE", "--destination",
        "sqs_core", "--sqs-core-queue", core, "--status-queue", status, "--sqs-endpoint-url",
        moto.endpoint, "--max-concurrent-chunks", "4", "--min-chunk-size", "1", "--progress",
        "none",
    ]  # fmt: skip
    failed = cli(*run, env={"SCM_BATCH_FAULTS": "chunk_000003=terminal"})
    assert failed.returncode == 4, failed.stderr
    first = {json.loads(m["Body"])["record"]["id"] for m in drain(sqs, core)}
    drain(sqs, status)
    (bucket / "results" / "part" / "chunk_000001.jsonl").unlink()

    resumed = cli(*run)
    assert resumed.returncode == 0, resumed.stderr
    bodies = [json.loads(m["Body"]) for m in drain(sqs, core)]
    sent = {b["record"]["id"] for b in bodies if "record" in b}
    results = bucket / "results" / "part"

    def ids(chunk: str) -> set[str]:
        return {json.loads(line)["id"] for line in (results / chunk).read_bytes().splitlines()}

    assert ids("chunk_000001.jsonl") <= first  # sent the first time, rebuilt now
    assert not sent & ids("chunk_000001.jsonl")  # and not sent again
    assert ids("chunk_000003.jsonl") <= sent  # the failed chunk, sent now
    assert sent | first == set().union(*(ids(p.name) for p in results.glob("*.jsonl")))


class FlakyClient:
    """The real client, except that some calls report some entries as failed without sending
    them, as SQS does when it cannot take part of a batch."""

    def __init__(
        self,
        real: SQSClient,
        failing_calls: int,
        sender_fault: bool = False,
        refuse_all: bool = False,
    ) -> None:
        self._real = real
        self._failing_calls = failing_calls
        self._sender_fault = sender_fault
        self._refuse_all = refuse_all
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls > self._failing_calls:
            return dict(self._real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries))
        kept, refused = ([], Entries) if self._refuse_all else (Entries[::2], Entries[1::2])
        answer = (
            dict(self._real.send_message_batch(QueueUrl=QueueUrl, Entries=kept)) if kept else {}
        )
        failed = [
            {
                "Id": e["Id"],
                "Code": "InternalError",
                "SenderFault": self._sender_fault,
                "Message": "try again",
            }
            for e in refused
        ]
        return {**answer, "Failed": failed}


def chunk_task(tmp_path: Path) -> ChunkTask:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')
    _, plan = plan_input(tmp_path, job_input(tmp_path, destination="sqs_core"))
    return plan.chunks[0]


def block(count: int, size: int = 100) -> MessageBlock:
    keys = [f"record-{n}" for n in range(count)]
    values = [json.dumps({"id": key, "pad": "x" * size}).encode() for key in keys]
    return MessageBlock(keys, values, [None] * count)


def test_entries_sqs_reports_failed_are_sent_again(
    sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    url = new_queue(sqs)
    flaky = FlakyClient(sqs, failing_calls=6)
    options = SqsOptions(endpoint_url=moto.endpoint, parallel_batches=1)
    sink = SqsSink(url, options, "envelope", client=cast("SQSClient", flaky))
    delivery = sink.begin(chunk_task(tmp_path))
    delivery.send(block(95))
    assert delivery.finish() == 95
    assert flaky.calls > 10  # ten batches, and the failed halves again
    received = sorted(json.loads(m["Body"])["id"] for m in drain(sqs, url))
    assert received == sorted(f"record-{n}" for n in range(95))  # each exactly once
    sink.close()


def test_entries_that_keep_failing_fail_the_chunk(
    sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    url = new_queue(sqs)
    options = SqsOptions(endpoint_url=moto.endpoint, parallel_batches=1, entry_attempts=3)
    failing = FlakyClient(sqs, failing_calls=100, refuse_all=True)
    sink = SqsSink(url, options, "envelope", client=cast("SQSClient", failing))
    delivery = sink.begin(chunk_task(tmp_path))
    delivery.send(block(4))
    with pytest.raises(DeliveryError, match="still failing after 3 attempts"):
        delivery.finish()
    invalid = FlakyClient(sqs, failing_calls=100, sender_fault=True)
    refusing = SqsSink(url, options, "envelope", client=cast("SQSClient", invalid))
    delivery = refusing.begin(chunk_task(tmp_path))
    delivery.send(block(4))
    with pytest.raises(DeliveryRejectedError, match="refused a message"):
        delivery.finish()


class MeasuringClient:
    """The real client, noting how many entries and body bytes each call carried."""

    def __init__(self, real: SQSClient) -> None:
        self._real = real
        self.calls: list[tuple[int, int]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> dict[str, Any]:
        self.calls.append((len(Entries), sum(len(e["MessageBody"].encode()) for e in Entries)))
        return dict(self._real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries))


def test_calls_respect_the_entry_and_byte_limits_and_oversized_records_are_refused(
    sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    url = new_queue(sqs)
    measuring = MeasuringClient(sqs)
    options = SqsOptions(endpoint_url=moto.endpoint, max_batch_bytes=60_000)
    sink = SqsSink(url, options, "envelope", client=cast("SQSClient", measuring))
    delivery = sink.begin(chunk_task(tmp_path))
    delivery.send(block(25, size=20_000))  # two fit under 60 kB, not three
    delivery.send(block(23, size=100))  # small ones: ten to a call
    assert delivery.finish() == 48
    assert len(drain(sqs, url)) == 48
    assert all(entries <= 10 and size <= 60_000 for entries, size in measuring.calls)
    assert max(entries for entries, _ in measuring.calls) == 10
    assert max(size for _, size in measuring.calls) > 40_000  # calls are filled, not one each
    delivery = sink.begin(chunk_task(tmp_path))
    with pytest.raises(DeliveryRejectedError, match="limit is 60,000"):
        delivery.send(block(1, size=70_000))


def test_a_fifo_queue_keeps_order_and_drops_a_retried_chunk_repeats(
    sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    url = new_queue(sqs, fifo=True)
    sink = SqsSink(url, SqsOptions(endpoint_url=moto.endpoint), "bare")
    task = chunk_task(tmp_path)
    for _attempt in range(2):  # the chunk sent, then sent again as a retry would
        delivery = sink.begin(task)
        delivery.send(block(60))
        delivery.finish()
    messages = drain(sqs, url)
    assert [json.loads(m["Body"])["id"] for m in messages] == [f"record-{n}" for n in range(60)]
    assert {m["MessageAttributes"]["batchId"]["StringValue"] for m in messages} == {task.batch_id}
    assert all("correlationId" not in m["MessageAttributes"] for m in messages)  # no gssId


def test_a_long_batch_id_still_makes_a_valid_fifo_group(
    sqs: SQSClient, moto: MotoServer, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')
    _, plan = plan_input(tmp_path, job_input(tmp_path, batch_id="b" * 128, destination="sqs_core"))
    sent: list[Any] = []

    class Recording:
        def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> dict[str, Any]:
            sent.extend(Entries)
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    fifo = f"{moto.endpoint}/123456789012/long.fifo"
    sink = SqsSink(fifo, SqsOptions(), "envelope", client=cast("SQSClient", Recording()))
    delivery = sink.begin(plan.chunks[0])
    delivery.send(block(3))
    delivery.finish()
    assert {len(e["MessageGroupId"]) for e in sent} == {64}  # hashed: SQS allows 128 at most
    assert all(len(e["MessageDeduplicationId"]) <= 128 for e in sent)


def test_bad_queue_configuration_is_refused_before_any_chunk(
    cli: Cli, moto: MotoServer, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"
    generate_file(bucket / "input" / "records.jsonl", 500, seed=1)
    base = [
        "run",
        "--bucket",
        str(bucket),
        "--file",
        "input/records.jsonl",
        "--customer-id",
        "c",
        "--tenant-id",
        "t",
    ]
    absent = f"{moto.endpoint}/123456789012/no-such-queue"
    for code, words, args in [
        (2, "sqs_core needs a queue", ["--destination", "sqs_core"]),
        (2, "does not exist", ["--sqs-core-queue", absent, "--sqs-endpoint-url", moto.endpoint]),
        (
            6,
            "cannot reach SQS",
            ["--status-queue", absent, "--sqs-endpoint-url", f"http://127.0.0.1:{free_port()}"],
        ),
    ]:
        batch = f"b-{uuid.uuid4().hex[:6]}"
        result = cli(*base, "--batch-id", batch, *args)
        assert result.returncode == code, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        assert words in errors[0], result.stderr
        assert not (bucket / "results" / batch).exists()
