"""An S3 bucket (or any S3-compatible service) as the working bucket.

* **Reads** stream a byte range with one ranged GET. If the connection drops mid-stream, the read
  resumes with a new ranged GET from the first byte not yet handed to the caller, with ``If-Match``
  on the object's ETag so a changed object cannot be spliced in: no byte is lost or repeated, so no
  line either. (Resuming at the next byte rather than the last complete line is the same guarantee
  with less to re-read.)
* **Writes** go out as a single PUT when small, and as a multipart upload in parts of
  ``part_size`` when larger. An upload that fails, or whose writer is interrupted, is aborted, so
  no partial object ever appears; :meth:`S3Storage.discard_incomplete` aborts what a killed
  process could not.
* **Errors** become the project's storage errors with one clear line each: a missing bucket or key,
  access denied, a bucket in another region, an endpoint that does not answer
  (:mod:`scm_batch.storage.s3_errors`).

Credentials come from boto3's standard chain; the endpoint from ``--endpoint-url`` or
``AWS_ENDPOINT_URL``; server-side encryption from ``--sse`` / ``--sse-kms-key-id``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
import botocore.config
import botocore.exceptions
import urllib3.exceptions

from scm_batch.errors import (
    ConfigError,
    LeaseLostError,
    ObjectNotFoundError,
    StorageError,
    StorageRequestError,
    StorageUnavailableError,
)
from scm_batch.storage.base import HeldLease, ObjectInfo, check_key
from scm_batch.storage.options import MIN_PART_SIZE, S3Options, StorageOptions
from scm_batch.storage.s3_errors import storage_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_STREAM_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
)


# Requests in flight when many small objects are read (a ledger of thousands of receipts): S3
# answers each after tens of milliseconds, so one at a time leaves a Lambda function waiting out
# its timeout. The client is thread-safe; its pool holds a connection for each, and a few more
# for what runs beside them (the lease's renewals), so that no connection is made and dropped.
CONCURRENT_REQUESTS = 32


def make_client(options: S3Options) -> S3Client:
    """An S3 client; ``ConfigError`` for an endpoint or region that cannot be right."""
    region = options.region or os.environ.get("AWS_REGION")  # botocore reads AWS_DEFAULT_REGION
    config = botocore.config.Config(
        region_name=region,
        connect_timeout=options.connect_timeout_seconds,
        read_timeout=options.read_timeout_seconds,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=CONCURRENT_REQUESTS + 4,
    )
    try:
        client: S3Client = boto3.session.Session().client(
            "s3", endpoint_url=options.endpoint_url, config=config
        )
    except botocore.exceptions.InvalidRegionError as exc:
        raise ConfigError("--region", f"{region!r} is not a region name") from exc
    except ValueError as exc:  # botocore's word for an endpoint URL it cannot use
        raise ConfigError("--endpoint-url", f"{options.endpoint_url!r}: {exc}") from exc
    return client


def open_bucket(name: str, options: StorageOptions) -> S3Storage:
    """The storage backend's opener (see :data:`scm_batch.storage.BACKENDS`): ``s3://bucket``."""
    return S3Storage(name.removeprefix("s3://"), options.s3)


# What S3 answers to a write whose condition failed (or raced another conditional write).
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


def _age(answer: Mapping[str, Any]) -> float | None:
    """How long ago the object was written, by S3's clock alone: the answer's ``Date`` less the
    object's ``LastModified`` (to the second). ``None`` when either is missing."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    modified = answer.get("LastModified")
    if not isinstance(date, str) or not isinstance(modified, datetime):
        return None
    try:
        return (parsedate_to_datetime(date) - modified).total_seconds()
    except (TypeError, ValueError):
        return None


class _HeldObject:
    """A lease object this process holds: its ETag is the proof, each renewal a new one."""

    def __init__(self, storage: S3Storage, key: str, etag: str) -> None:
        self._storage = storage
        self._key = key
        self._etag: str | None = etag

    def renew(self, claim: bytes) -> None:
        if self._etag is None:
            return
        where = self._storage.uri_for(self._key)
        etag = self._storage._put_if(self._key, claim, where, IfMatch=self._etag)
        if etag is None:
            self._etag = None
            raise LeaseLostError(f"{where} was taken over by another run")
        self._etag = etag

    def release(self) -> None:
        if self._etag is None:
            return
        storage, etag, self._etag = self._storage, self._etag, None
        with suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            storage._client.delete_object(Bucket=storage._bucket, Key=self._key, IfMatch=etag)


class S3Storage:
    """A bucket in S3."""

    def __init__(
        self, bucket: str, options: S3Options | None = None, client: S3Client | None = None
    ) -> None:
        self._bucket = bucket
        self._options = options or S3Options()
        self._client = client if client is not None else make_client(self._options)

    # ---- naming ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"s3://{self._bucket}"

    def uri_for(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def local_file(self, key: str) -> str | None:
        del key
        return None

    @property
    def concurrent_requests(self) -> int:
        return CONCURRENT_REQUESTS

    # ---- errors ---------------------------------------------------------------------------
    @property
    def _endpoint(self) -> str:
        return self._options.endpoint_url or "the S3 endpoint"

    def _raise(self, error: Exception, what: str) -> NoReturn:
        raise storage_error(error, what, bucket=self._bucket, endpoint=self._endpoint) from error

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            self._raise(error, what)

    # ---- reading --------------------------------------------------------------------------
    def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        with self._errors(self.uri_for(key)):
            try:
                head = self._client.head_object(Bucket=self._bucket, Key=key)
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    self._check_bucket()
                raise
        modified: datetime = head["LastModified"]
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            mtime_ns=int(modified.timestamp() * 1_000_000_000),
            etag=head.get("ETag"),
            version_id=head.get("VersionId"),
        )

    def _check_bucket(self) -> None:
        """Tell a missing bucket from a missing key (HEAD answers both with a bare 404)."""
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise ObjectNotFoundError(f"bucket {self.uri} does not exist") from error
            raise

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        return b"".join(self.iter_range(key, start, end, max(1, end - start)))

    def iter_range(
        self, key: str, start: int, end: int, block_size: int, *, etag: str | None = None
    ) -> Iterator[bytes]:
        check_key(key)
        where = self.uri_for(key)
        position = start
        failures = 0  # consecutive drops without a byte of progress in between
        while position < end:
            request: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": key,
                "Range": f"bytes={position}-{end - 1}",
            }
            if etag is not None:
                request["IfMatch"] = etag  # the same object, or an error: never a spliced one
            with self._errors(where):
                response = self._client.get_object(**request)
            etag = etag or response.get("ETag")
            served = response.get("ContentRange", "")  # "bytes first-last/size"
            if not served.startswith(f"bytes {position}-"):
                response["Body"].close()
                raise StorageRequestError(
                    f"{where}: asked for bytes {position}-{end - 1}, was sent {served or 'all'}"
                )
            size = served.rpartition("/")[2]
            if size.isdigit():
                end = min(end, int(size))  # a range past the end is cut at the end
            body = response["Body"]
            dropped: Exception | None = None
            try:
                while position < end:
                    try:
                        block = body.read(min(block_size, end - position))
                    except _STREAM_ERRORS as error:
                        dropped = error
                        break
                    if not block:
                        dropped = ConnectionError("the response ended early")
                        break
                    position += len(block)
                    failures = 0
                    yield block
            finally:
                body.close()
            if dropped is not None:
                failures += 1
                if failures > self._options.max_reconnects:
                    raise StorageError(
                        f"{where}: the connection dropped {failures} times in a row at byte "
                        f"{position}: {dropped}"
                    ) from dropped

    def get_bytes(self, key: str) -> bytes:
        check_key(key)
        with self._errors(self.uri_for(key)):
            return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        check_key(key)
        with self._errors(self.uri_for(key)):
            try:
                self._client.head_object(Bucket=self._bucket, Key=key)
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    self._check_bucket()
                    return False
                raise
        return True

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        sizes: dict[str, int] = {}
        with self._errors(self.uri_for(prefix)):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            )
            for page in pages:
                sizes.update((item["Key"], item["Size"]) for item in page.get("Contents", []))
        return sizes

    # ---- writing --------------------------------------------------------------------------
    def _encryption(self) -> dict[str, str]:
        options = self._options
        if options.sse is None:
            return {}
        settings: dict[str, str] = {"ServerSideEncryption": options.sse}
        if options.sse == "aws:kms" and options.sse_kms_key_id:
            settings["SSEKMSKeyId"] = options.sse_kms_key_id
        return settings

    @contextmanager
    def open_writer(self, key: str) -> Iterator[S3Writer]:
        check_key(key)
        writer = S3Writer(self, key)
        try:
            yield writer
            writer.finish()
        except BaseException:
            writer.abort()
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._errors(self.uri_for(key)):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, **self._encryption())  # type: ignore[arg-type]

    def put_new(self, key: str, data: bytes) -> bool:
        check_key(key)
        return self._put_if(key, data, self.uri_for(key), IfNoneMatch="*") is not None

    def delete(self, key: str) -> None:
        check_key(key)
        with self._errors(self.uri_for(key)):
            self._client.delete_object(Bucket=self._bucket, Key=key)

    def hold(
        self, key: str, claim: bytes, stale: Callable[[bytes, float | None], bool]
    ) -> HeldLease | bytes:
        """A conditional create (``If-None-Match: *``); a claim that is ``stale`` is taken over
        with a conditional replace (``If-Match`` its ETag), so two takers cannot both win."""
        check_key(key)
        where = self.uri_for(key)
        for _ in range(3):  # a hold let go, or taken over, between two of the calls below
            etag = self._put_if(key, claim, where, IfNoneMatch="*")
            if etag is not None:
                return _HeldObject(self, key, etag)
            try:
                with self._errors(where):
                    current = self._client.get_object(Bucket=self._bucket, Key=key)
            except ObjectNotFoundError:
                continue
            theirs: bytes = current["Body"].read()
            if not stale(theirs, _age(current)):
                return theirs
            etag = self._put_if(key, claim, where, IfMatch=current["ETag"])
            if etag is not None:
                return _HeldObject(self, key, etag)
        raise StorageUnavailableError(f"{where}: held and let go again and again; try again")

    def _put_if(self, key: str, data: bytes, where: str, **condition: str) -> str | None:
        """Write ``data`` under the condition; its new ETag, or ``None`` if the condition failed."""
        try:
            with self._errors(where):
                try:
                    settings: dict[str, Any] = {**condition, **self._encryption()}
                    answer = self._client.put_object(
                        Bucket=self._bucket, Key=key, Body=data, **settings
                    )
                except botocore.exceptions.ClientError as error:
                    if error.response.get("Error", {}).get("Code") in _CONFLICT_CODES:
                        return None
                    raise
        except ObjectNotFoundError:  # If-Match on an object deleted meanwhile
            return None
        return str(answer["ETag"])

    def check_deletable(self, prefix: str) -> None:
        """S3 has no links: every prefix of the bucket is the bucket's."""

    def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"prefix must end with '/': {prefix!r}")
        self.discard_incomplete(prefix)
        keys = self.list_keys(prefix)
        with self._errors(self.uri_for(prefix)):
            for first in range(0, len(keys), 1000):
                batch: list[ObjectIdentifierTypeDef] = [
                    {"Key": key} for key in keys[first : first + 1000]
                ]
                answer = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
                )
                # DeleteObjects succeeds as a whole and reports the keys it could not delete.
                if failed := answer.get("Errors", []):
                    example = failed[0]
                    raise StorageError(
                        f"{self.uri_for(prefix)}: {len(failed)} objects were not deleted, e.g. "
                        f"{example.get('Key')}: {example.get('Code')} {example.get('Message', '')}"
                    )

    def discard_incomplete(self, prefix: str) -> int:
        """Abort the multipart uploads under ``prefix`` that a killed writer left open."""
        removed = 0
        with self._errors(self.uri_for(prefix)):
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self._bucket, Prefix=prefix
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    try:
                        self._client.abort_multipart_upload(
                            Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except botocore.exceptions.ClientError as error:
                        if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
                            raise
                        continue  # another cleaner got there first
                    removed += 1
        return removed


class S3Writer:
    """An object being written: buffered into parts, uploaded, committed or aborted as a whole."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        self._storage = storage
        self._client = storage._client
        self._bucket = storage._bucket
        self._key = key
        self._part_size = max(MIN_PART_SIZE, storage._options.part_size)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes, /) -> int:
        view = memoryview(data)
        while view:  # fill parts straight from the caller's bytes, never re-joining the buffer
            room = self._part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._part_size:
                self._upload_part(bytes(self._buffer))
                self._buffer.clear()
        return len(data)

    def _upload_part(self, body: bytes) -> None:
        with self._storage._errors(self._storage.uri_for(self._key)):
            if self._upload_id is None:
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    **self._storage._encryption(),  # type: ignore[arg-type]
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
            self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def finish(self) -> None:
        if self._upload_id is None:  # small: one PUT
            self._storage.put_bytes(self._key, bytes(self._buffer))
            return
        if self._buffer:
            self._upload_part(bytes(self._buffer))  # the last part may be small
            self._buffer.clear()
        with self._storage._errors(self._storage.uri_for(self._key)):
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            )
        self._upload_id = None

    def abort(self) -> None:
        if self._upload_id is None:
            return
        # If even the abort fails, discard_incomplete() on the next run aborts it.
        with suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        self._upload_id = None
