"""The S3 adapter against a real S3 API server (moto) over HTTP."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from scm_batch.errors import (
    ConfigError,
    InputChangedError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
    StorageRequestError,
    StorageUnavailableError,
    WrongRegionError,
)
from scm_batch.storage import S3Options
from scm_batch.storage.s3 import S3Storage, make_client
from tests.integration.servers import FaultProxy, MotoServer, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1 << 20


@pytest.fixture
def bucket(s3: S3Client) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def storage(moto: MotoServer, bucket: str, **options: object) -> S3Storage:
    return S3Storage(bucket, S3Options(endpoint_url=moto.endpoint, **options))  # type: ignore[arg-type]


def open_uploads(s3: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_small_objects_are_one_put(moto: MotoServer, s3: S3Client, bucket: str) -> None:
    store = storage(moto, bucket)
    with store.open_writer("a/small.jsonl") as out:
        out.write(b"one\n")
        out.write(b"two\n")
    assert s3.get_object(Bucket=bucket, Key="a/small.jsonl")["Body"].read() == b"one\ntwo\n"
    assert open_uploads(s3, bucket) == []
    info = store.stat("a/small.jsonl")
    assert (info.size, info.etag is not None) == (8, True)
    assert store.exists("a/small.jsonl")
    assert not store.exists("a/absent")


def test_large_objects_are_multipart_and_exact(moto: MotoServer, s3: S3Client, bucket: str) -> None:
    store = storage(moto, bucket, part_size=5 * MiB)
    blocks = [bytes([i]) * (MiB + 7) for i in range(12)]
    with store.open_writer("big.bin") as out:
        for block in blocks:
            out.write(block)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert "-" in head["ETag"]  # a multipart ETag
    assert store.get_bytes("big.bin") == b"".join(blocks)
    assert b"".join(store.iter_range("big.bin", 3, 9 * MiB, MiB)) == b"".join(blocks)[3 : 9 * MiB]


def test_a_failed_write_leaves_no_object_and_no_upload(
    moto: MotoServer, s3: S3Client, bucket: str
) -> None:
    store = storage(moto, bucket, part_size=5 * MiB)

    def interrupted() -> None:
        with store.open_writer("half.bin") as out:
            out.write(b"x" * (6 * MiB))  # a part is already uploaded
            raise RuntimeError("worker crashed")

    with pytest.raises(RuntimeError):
        interrupted()
    assert not store.exists("half.bin")
    assert open_uploads(s3, bucket) == []


def test_uploads_left_by_a_killed_writer_are_discarded(
    moto: MotoServer, s3: S3Client, bucket: str
) -> None:
    s3.create_multipart_upload(Bucket=bucket, Key="results/b/chunk_000001.jsonl")
    s3.create_multipart_upload(Bucket=bucket, Key="results/b/chunk_000002.jsonl")
    store = storage(moto, bucket)
    assert store.discard_incomplete("results/b/chunk_000001.jsonl") == 1
    assert open_uploads(s3, bucket) == ["results/b/chunk_000002.jsonl"]
    assert store.discard_incomplete("results/b/") == 1
    assert open_uploads(s3, bucket) == []


def test_listing_and_deleting(moto: MotoServer, bucket: str) -> None:
    store = storage(moto, bucket)
    for key in ["m/b/chunks/c1.json", "m/b/chunks/c2.json", "m/b2/x.json", "r/b/p.jsonl"]:
        store.put_bytes(key, b"{}")
    assert store.list_keys("m/b/") == ["m/b/chunks/c1.json", "m/b/chunks/c2.json"]
    store.put_bytes("m/b/chunks/c2.json", b"[1, 2]")
    assert store.list_sizes("m/b/") == {"m/b/chunks/c1.json": 2, "m/b/chunks/c2.json": 6}
    store.delete("m/b/chunks/c1.json")
    store.delete("m/b/chunks/absent.json")
    store.delete_prefix("m/")
    assert store.list_keys("") == ["r/b/p.jsonl"]


def test_server_side_encryption_is_requested(moto: MotoServer, s3: S3Client, bucket: str) -> None:
    store = storage(moto, bucket, sse="AES256", part_size=5 * MiB)
    store.put_bytes("small", b"x")
    with store.open_writer("large") as out:
        out.write(b"y" * (6 * MiB))
    for key in ("small", "large"):
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_a_dropped_connection_resumes_at_the_next_byte(
    moto: MotoServer, s3: S3Client, bucket: str
) -> None:
    data = bytes(range(256)) * (16 * 1024)  # 4 MiB
    s3.put_object(Bucket=bucket, Key="data", Body=data)
    proxy = FaultProxy(moto.endpoint)
    try:
        store = S3Storage(bucket, S3Options(endpoint_url=proxy.endpoint))
        proxy.drop_ranged_gets(3, after=300_000)
        read = b"".join(store.iter_range("data", 1000, len(data) - 5, 64 * 1024))
        assert read == data[1000:-5]
        assert proxy.drops == 3
        ranges = [r for r in proxy.requests if r.startswith("GET")]
        starts = [int(r.split("bytes=")[1].split("-")[0]) for r in ranges]
        assert starts[0] == 1000
        assert len(starts) == 4
        assert starts == sorted(set(starts))
    finally:
        proxy.close()


def test_an_object_replaced_during_a_read_is_not_spliced(
    moto: MotoServer, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="data", Body=b"a" * (2 * MiB))
    proxy = FaultProxy(moto.endpoint)
    try:
        store = S3Storage(bucket, S3Options(endpoint_url=proxy.endpoint))
        proxy.drop_ranged_gets(1, after=500_000)
        blocks = store.iter_range("data", 0, 2 * MiB, 64 * 1024)
        next(blocks)
        s3.put_object(Bucket=bucket, Key="data", Body=b"b" * (2 * MiB))
        with pytest.raises(InputChangedError, match="changed while it was being read"):
            list(blocks)
    finally:
        proxy.close()


def test_missing_bucket_and_missing_key(moto: MotoServer, bucket: str) -> None:
    with pytest.raises(
        ObjectNotFoundError, match=r"bucket s3://no-such-bucket-here does not exist"
    ):
        storage(moto, "no-such-bucket-here").stat("in.jsonl")
    with pytest.raises(ObjectNotFoundError, match="no such object"):
        storage(moto, bucket).stat("absent.jsonl")
    with pytest.raises(ObjectNotFoundError):
        storage(moto, bucket).get_bytes("absent.jsonl")


def test_an_endpoint_that_does_not_answer(bucket: str) -> None:
    store = S3Storage(
        bucket, S3Options(endpoint_url=f"http://127.0.0.1:{free_port()}", connect_timeout_seconds=1)
    )
    with pytest.raises(StorageUnavailableError, match="cannot reach"):
        store.stat("in.jsonl")


def test_a_bucket_in_another_region(moto: MotoServer, bucket: str) -> None:
    # moto does not enforce regions; this is S3's own answer to a request sent to the wrong one.
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code>'
        b"<Message>The bucket you are attempting to access must be addressed using the specified "
        b"endpoint.</Message><Endpoint>b.s3.eu-west-1.amazonaws.com</Endpoint></Error>"
    )
    proxy = FaultProxy(moto.endpoint)
    proxy.answer_with(
        b"HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\n"
        b"Content-Type: application/xml\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    try:
        store = S3Storage(bucket, S3Options(endpoint_url=proxy.endpoint))
        with pytest.raises(WrongRegionError, match=r"eu-west-1.*--region"):
            store.get_bytes("in.jsonl")
    finally:
        proxy.close()


def test_access_denied(
    locked: tuple[MotoServer, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, credentials = locked
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    store = storage(server, "locked-bucket")
    with pytest.raises(StorageAccessError, match="access denied"):
        store.stat("in.jsonl")
    with pytest.raises(StorageAccessError, match="access denied"):
        store.get_bytes("in.jsonl")


def test_reads_give_up_after_repeated_drops_without_progress(
    moto: MotoServer, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="data", Body=b"z" * (2 * MiB))
    proxy = FaultProxy(moto.endpoint)
    try:
        store = S3Storage(bucket, S3Options(endpoint_url=proxy.endpoint, max_reconnects=2))
        proxy.drop_ranged_gets(10, after=0)  # every response dies right after its headers
        with pytest.raises(StorageError, match="dropped 3 times in a row"):
            b"".join(store.iter_range("data", 0, 2 * MiB, MiB))
    finally:
        proxy.close()


def canned(status: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode()
    return head + body


def test_a_server_that_ignores_ranges_is_not_believed(
    moto: MotoServer, s3: S3Client, bucket: str
) -> None:
    proxy = FaultProxy(moto.endpoint)
    proxy.answer_with(canned("200 OK", b"the whole object", 'ETag: "x"\r\n'), method="GET")
    try:
        store = S3Storage(bucket, S3Options(endpoint_url=proxy.endpoint))
        with pytest.raises(StorageRequestError, match="asked for bytes 5-9"):
            store.read_range("data", 5, 10)
    finally:
        proxy.close()


def test_keys_a_bulk_delete_could_not_delete_are_reported(moto: MotoServer, bucket: str) -> None:
    store = storage(moto, bucket)
    store.put_bytes("m/b/one.json", b"{}")
    proxy = FaultProxy(moto.endpoint)
    refused = (
        b'<?xml version="1.0" encoding="UTF-8"?><DeleteResult><Error><Key>m/b/one.json</Key>'
        b"<Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        b"</DeleteResult>"
    )
    proxy.answer_with(canned("200 OK", refused, "Content-Type: application/xml\r\n"), method="POST")
    try:
        with pytest.raises(
            StorageError, match=r"1 objects were not deleted.*m/b/one.json: SlowDown"
        ):
            S3Storage(bucket, S3Options(endpoint_url=proxy.endpoint)).delete_prefix("m/")
    finally:
        proxy.close()


def test_a_throttling_or_failing_service_is_unavailable_not_a_bug(
    moto: MotoServer, bucket: str
) -> None:
    proxy = FaultProxy(moto.endpoint)
    proxy.answer_with(canned("503 Slow Down"), method="HEAD")
    try:
        store = S3Storage(bucket, S3Options(endpoint_url=proxy.endpoint))
        with pytest.raises(StorageUnavailableError, match="failing or throttling"):
            store.stat("in.jsonl")
    finally:
        proxy.close()


def test_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert make_client(S3Options()).meta.region_name == "eu-west-1"
    assert make_client(S3Options(region="ap-south-1")).meta.region_name == "ap-south-1"
    with pytest.raises(ConfigError, match="--region"):
        make_client(S3Options(region="not a region"))
    with pytest.raises(ConfigError, match="--endpoint-url"):
        make_client(S3Options(endpoint_url="not a url"))


def test_put_new_creates_once(moto: MotoServer, s3: S3Client, bucket: str) -> None:
    store = storage(moto, bucket)
    assert store.put_new("chunks/a.json", b"first")
    assert not store.put_new("chunks/a.json", b"second")
    assert s3.get_object(Bucket=bucket, Key="chunks/a.json")["Body"].read() == b"first"
