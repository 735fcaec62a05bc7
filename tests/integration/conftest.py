"""Fixtures for the tests that talk to real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest

from tests.integration.servers import KafkaBroker, MotoServer, kafka_broker, moto_server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3(moto: MotoServer) -> S3Client:
    client: S3Client = boto3.client("s3", endpoint_url=moto.endpoint)
    return client


@pytest.fixture(scope="session")
def locked() -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """A server that checks credentials after its first four requests, and a user with no rights."""
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="4") as server:
        s3 = boto3.client("s3", endpoint_url=server.endpoint)
        iam = boto3.client("iam", endpoint_url=server.endpoint)
        s3.create_bucket(Bucket="locked-bucket")
        s3.put_object(Bucket="locked-bucket", Key="in.jsonl", Body=b'{"a": 1}\n')
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield (
            server,
            {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            },
        )


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    with kafka_broker() as broker:
        yield broker
