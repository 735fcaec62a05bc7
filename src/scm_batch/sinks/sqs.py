"""Records and notifications to SQS, with ``SendMessageBatch``.

Delivery guarantee: **at least once; duplicates only from a retried chunk, with identical
deduplication ids.** Messages go out ten to a call, split by bytes so no call exceeds SQS's payload
limit, several calls at a time per worker. Entries a call reports as ``Failed`` are sent again with
backoff; a chunk counts as delivered only when every entry was accepted, otherwise it fails (a
transient ``DeliveryError``) and is retried whole. On a FIFO queue each chunk is a message group
(``{batchId}-{chunkId}``, hashed when longer than SQS's 128 characters) whose calls go out one
after the other, so its records arrive in file order (but for entries SQS refused once and that
were sent again); the deduplication id is derived from the record's id, so SQS itself drops a
retried chunk's repeats within its five-minute window. On a standard queue calls run in parallel
and consumers can drop repeats by record id.

Backpressure: at most ``parallel_batches`` calls run and as many wait per worker; ``send`` blocks
until one finishes before queueing another.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions
import msgspec

from scm_batch.errors import (
    ConfigError,
    DeliveryError,
    DeliveryRejectedError,
    DeliveryUnavailableError,
)
from scm_batch.model import ChunkTask
from scm_batch.sinks.messages import MessageBlock
from scm_batch.sinks.options import DeliveryOptions, MessageFormat, SqsOptions

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

MAX_ENTRIES = 10
_ATTRIBUTE_TYPE = "String"


def make_client(options: SqsOptions) -> SQSClient:
    config = botocore.config.Config(
        region_name=options.region,
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=max(10, options.parallel_batches * 2),
    )
    try:
        client: SQSClient = boto3.session.Session().client(
            "sqs", endpoint_url=options.endpoint_url, config=config
        )
    except ValueError as exc:
        raise ConfigError("--sqs-endpoint-url", f"{options.endpoint_url!r}: {exc}") from exc
    return client


def _client_error(error: Exception, queue_url: str) -> DeliveryError:
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if "NonExistentQueue" in code or code == "QueueDoesNotExist":
            return DeliveryRejectedError(f"SQS queue {queue_url} does not exist")
        if code in ("AccessDenied", "AccessDeniedException", "InvalidClientTokenId"):
            return DeliveryRejectedError(f"SQS queue {queue_url}: access denied ({code})")
        return DeliveryError(f"SQS queue {queue_url}: {code}: {error}")
    return DeliveryUnavailableError(f"cannot reach SQS for {queue_url}: {error}")


def check(delivery: DeliveryOptions, queue_urls: list[str]) -> None:
    """Before any chunk: each queue exists and answers."""
    sqs = make_client(delivery.sqs)
    for queue_url in queue_urls:
        try:
            sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise _client_error(error, queue_url) from None


def _entry_bytes(entry: SendMessageBatchRequestEntryTypeDef) -> int:
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name) + len(_ATTRIBUTE_TYPE) + len(value.get("StringValue", "").encode())
    return size


class _ChunkDelivery:
    def __init__(self, sink: SqsSink, task: ChunkTask) -> None:
        self._sink = sink
        self._task = task
        group = f"{task.batch_id}-{task.chunk_id}"
        self._group = group if len(group) <= 128 else hashlib.sha256(group.encode()).hexdigest()
        self._futures: list[Future[int]] = []
        self._slots = threading.BoundedSemaphore(sink.options.parallel_batches * 2)
        self._batch: list[SendMessageBatchRequestEntryTypeDef] = []
        self._batch_bytes = 0
        self._failure: BaseException | None = None

    def _entry(
        self, key: str, value: bytes, correlation: str | None
    ) -> SendMessageBatchRequestEntryTypeDef:
        body = value.decode()
        if "\ufffe" in body or "\uffff" in body:  # SQS refuses these two; JSON can escape them
            body = body.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": str(len(self._batch)),
            "MessageBody": body,
        }
        if self._sink.bare:  # correlationId only where the record has a gssId
            attributes: dict[str, MessageAttributeValueTypeDef] = {
                "batchId": {"DataType": _ATTRIBUTE_TYPE, "StringValue": self._task.batch_id}
            }
            if correlation:
                attributes["correlationId"] = {
                    "DataType": _ATTRIBUTE_TYPE,
                    "StringValue": correlation,
                }
            entry["MessageAttributes"] = attributes
        if self._sink.fifo:
            entry["MessageGroupId"] = self._group
            entry["MessageDeduplicationId"] = hashlib.sha256(key.encode()).hexdigest()
        return entry

    def send(self, block: MessageBlock) -> None:
        limit = self._sink.options.max_batch_bytes
        for key, value, correlation in zip(
            block.keys, block.values, block.correlation_ids, strict=True
        ):
            entry = self._entry(key, value, correlation)
            size = _entry_bytes(entry)
            if size > limit:
                raise DeliveryRejectedError(
                    f"record {key} is {size:,} bytes as an SQS message; the limit is {limit:,}"
                )
            if len(self._batch) == MAX_ENTRIES or self._batch_bytes + size > limit:
                self._flush_batch()
                entry["Id"] = "0"
            self._batch.append(entry)
            self._batch_bytes += size

    def _flush_batch(self) -> None:
        if self._failure is not None:  # a call already failed: the chunk fails, stop sending
            raise self._failure
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if self._sink.fifo:  # one call at a time keeps the group's order
            future: Future[int] = Future()
            try:
                future.set_result(self._sink.send_batch(batch))
            except DeliveryError as failure:
                future.set_exception(failure)
                self._failure = failure
            self._futures.append(future)
            return
        self._slots.acquire()  # backpressure: wait for a call to finish before another
        future = self._sink.pool.submit(self._sink.send_batch, batch)
        future.add_done_callback(self._settled)
        self._futures.append(future)

    def _settled(self, future: Future[int]) -> None:
        self._slots.release()
        if not future.cancelled() and (failure := future.exception()) is not None:
            self._failure = self._failure or failure

    def finish(self) -> int:
        self._flush_batch()
        delivered = 0
        first: BaseException | None = None
        for future in self._futures:
            error = future.exception()
            if error is None:
                delivered += future.result()
            elif first is None:
                first = error
        if first is not None:
            raise first
        return delivered

    def abort(self) -> None:
        for future in self._futures:
            future.cancel()


class SqsSink:
    """An SQS queue for records; a pool of threads sends batches in parallel."""

    def __init__(
        self,
        queue_url: str,
        options: SqsOptions,
        message_format: MessageFormat,
        client: SQSClient | None = None,
    ) -> None:
        self.queue_url = queue_url
        self.options = options
        self.message_format = message_format
        self.bare = message_format == "bare"
        self.fifo = queue_url.endswith(".fifo")
        self.client = client if client is not None else make_client(options)
        self.pool = ThreadPoolExecutor(options.parallel_batches, thread_name_prefix="sqs-send")
        self._random = random.Random()

    @property
    def broken(self) -> bool:
        return False

    def begin(self, task: ChunkTask) -> _ChunkDelivery:
        return _ChunkDelivery(self, task)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def send_batch(self, entries: list[SendMessageBatchRequestEntryTypeDef]) -> int:
        """Send one batch; entries SQS reports as failed are sent again, with backoff."""
        pending = entries
        for attempt in range(1, self.options.entry_attempts + 1):
            try:
                answer = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=pending)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                raise _client_error(error, self.queue_url) from None
            failed = answer.get("Failed", [])
            if not failed:
                return len(entries)
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:
                raise DeliveryRejectedError(
                    f"SQS refused a message for {self.queue_url}: {refused[0].get('Code')}: "
                    f"{refused[0].get('Message', '')}"
                )
            retry = {f["Id"] for f in failed}
            pending = [entry for entry in pending if entry["Id"] in retry]
            if attempt < self.options.entry_attempts:
                time.sleep(self._random.uniform(0, 0.05 * 2**attempt))  # back off, jittered
        raise DeliveryError(
            f"{len(pending)} messages to {self.queue_url} were still failing after "
            f"{self.options.entry_attempts} attempts: {failed[0].get('Code')}"
        )


def open_sink(delivery: DeliveryOptions, queue_url: str) -> SqsSink:
    """The records' sink for ``queue_url`` (made in the worker that uses it)."""
    return SqsSink(queue_url, delivery.sqs, delivery.message_format)


def deliver(delivery: DeliveryOptions, queue_url: str, key: str, message: msgspec.Struct) -> str:
    """Deliver one notification message; say where it went. (``key``: SQS has none.)"""
    client = make_client(delivery.sqs)
    try:
        client.send_message(QueueUrl=queue_url, MessageBody=msgspec.json.encode(message).decode())
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise _client_error(error, queue_url) from None
    return queue_url
