"""The S3 and SQS requests a batch makes on AWS, counted from what the code does.

S3 bills PUT, COPY, POST and LIST requests at one price and GET, HEAD and the rest at another;
DELETE is free. A chunk (:func:`chunk_s3_requests`), on Lambda or in a Batch job:

* GET class: the receipt looked for (HEAD, absent), the bucket checked on that miss (HEAD), the
  input's identity (HEAD), its byte range (one ranged GET, streamed); a Batch job reads its chunk
  item from the stored plan first (HEAD and GET) and looks for a rebuild note (HEAD, absent; the
  bucket's HEAD again).
* PUT class: the result part (one PUT up to a part size of 16 MiB; above, a multipart upload:
  create, one request a part, complete), the error part (one PUT) and the receipt (one PUT).

A batch's main path (:func:`batch_s3_requests`) reads the input's head and a sample, takes the
lease, finds each cut of the input (a ranged GET per chunk boundary, the S3 default of estimated
lines), writes the plan and chunk items (which the Map's ItemReader reads once), then lists and
reads every receipt, writes the validation report, the summary, the notification and the
notified marker. Those counts are approximate to a few requests a batch: a fraction of a cent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scm_batch.model import Route
from scm_batch.storage.options import S3Options

PART_SIZE = S3Options().part_size  # the S3 writer's part size (16 MiB)
LIST_PAGE = 1000  # keys a LIST request answers
SQS_MAX_ENTRIES = 10  # messages one SendMessageBatch takes
SQS_MAX_BATCH_BYTES = 256 * 1024  # bytes one SendMessageBatch takes


@dataclass(frozen=True, slots=True)
class S3Requests:
    put_class: int  # PUT, COPY, POST, LIST
    get_class: int  # GET, HEAD and the rest

    def __add__(self, other: S3Requests) -> S3Requests:
        return S3Requests(self.put_class + other.put_class, self.get_class + other.get_class)


NONE = S3Requests(0, 0)


def upload_requests(size: float, part_size: int = PART_SIZE) -> int:
    """Requests to write an object of ``size`` bytes: one PUT, or create + parts + complete."""
    if size <= part_size:
        return 1
    return math.ceil(size / part_size) + 2


def chunk_s3_requests(result_bytes: float, route: Route) -> S3Requests:
    """What one chunk's processing asks of S3 (see the module's text)."""
    get = 4
    if route == "batch":
        get += 4
    return S3Requests(put_class=upload_requests(result_bytes) + 2, get_class=get)


def batch_s3_requests(chunks: int) -> S3Requests:
    """What a batch's main path asks of S3, beyond its chunks (see the module's text)."""
    pages = max(1, math.ceil(chunks / LIST_PAGE))
    get = 2 + 2 + max(0, chunks - 1) + 1 + chunks + 4
    put = 1 + 2 + 2 * pages + 4
    return S3Requests(put_class=put, get_class=get)


def sqs_batch_requests(messages: int, message_bytes: float, billed_chunk_bytes: int) -> int:
    """Billed SQS requests to send ``messages`` of ``message_bytes`` each with SendMessageBatch:
    up to 10 messages and 256 KiB a call, and each ``billed_chunk_bytes`` (64 KiB) of a call's
    payload billed as one request."""
    if messages <= 0:
        return 0
    size = max(1.0, message_bytes)
    per_call = max(1, min(SQS_MAX_ENTRIES, int(SQS_MAX_BATCH_BYTES // size)))

    def billed(count: int) -> int:
        return max(1, math.ceil(count * size / billed_chunk_bytes))

    full, rest = divmod(messages, per_call)
    return full * billed(per_call) + (billed(rest) if rest else 0)
