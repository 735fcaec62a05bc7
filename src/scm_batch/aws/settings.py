"""The configuration of the Lambda functions and the Batch job, read from their environment.

Terraform sets these variables (``deploy/terraform``); the names are the command line's
``envvar`` names, so a setting means the same on a laptop and on AWS. Every value is checked here
and a bad one is a ``ConfigError`` naming the variable, raised before any work.

* ``SCM_BATCH_MAX_CONCURRENT_CHUNKS``, ``SCM_BATCH_MAX_RECORDS_PER_CHUNK``,
  ``SCM_BATCH_DESTINATION``: ``maxConcurrentChunks``, ``maxChunkSize`` and ``destination`` for
  an execution input that leaves them out;
* ``SCM_BATCH_LAMBDA_TIMEOUT``, ``SCM_BATCH_ESTIMATED_PROCESSING_TIME_PER_RECORD``,
  ``SCM_BATCH_BATCH_PROCESSING_THRESHOLD``, ``SCM_BATCH_MIN_CHUNK_SIZE``,
  ``SCM_BATCH_COUNT_RECORDS``: planning and routing;
* ``SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE``, ``SCM_BATCH_TOLERATED_FAILURE_COUNT``: the failed
  chunks a batch survives;
* ``KAFKA_*``, ``SQS_CORE_QUEUE``, ``SCM_BATCH_MESSAGE_FORMAT``: delivery, as for ``scm-batch run``;
* ``SCM_BATCH_SSE``, ``SCM_BATCH_SSE_KMS_KEY_ID``: encryption of written objects;
* ``SCM_BATCH_METRICS_NAMESPACE``: the CloudWatch namespace of the metrics (``ScmBatch``);
* ``SCM_BATCH_COMPLETION_OUTBOX_ONLY``: ``true`` lets a deployment without a notification
  broker (``KAFKA_BROKERS`` for WORKSPACE, ``SQS_CORE_QUEUE`` for CORE) keep its completion
  message in the bucket's outbox only; without it such a batch is refused before any work,
  rather than finishing with a completion message nobody receives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from scm_batch.config import RunOptions
from scm_batch.errors import ConfigError
from scm_batch.faults import FAULTS_ENV, parse_faults
from scm_batch.model import Destination, PlanOptions, Record, RoutingPolicy, Tolerance
from scm_batch.sinks.options import DeliveryOptions
from scm_batch.storage.options import S3Options, StorageOptions

T = TypeVar("T")

DEFAULT_NAMESPACE = "ScmBatch"
_DESTINATIONS = ("kafka", "sqs_core", "none")
_ROUTING = RoutingPolicy()


class AwsSettings(Record, frozen=True):
    """What a function or the Batch job needs beyond its event: plain data."""

    run: RunOptions
    max_concurrent_chunks: int | None = None
    max_records_per_chunk: int | None = None
    destination: Destination | None = None
    metrics_namespace: str = DEFAULT_NAMESPACE
    completion_outbox_only: bool = False

    def input_defaults(self) -> dict[str, Any]:
        """Execution input fields the deployment fills in when an input leaves them out."""
        defaults: dict[str, Any] = {
            "maxConcurrentChunks": self.max_concurrent_chunks,
            "maxChunkSize": self.max_records_per_chunk,
            "destination": self.destination,
        }
        return {name: value for name, value in defaults.items() if value is not None}


def _parse(env: Mapping[str, str], name: str, convert: Callable[[str], T], rule: str) -> T | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise ConfigError(name, f"must be {rule} (got {raw!r})") from None


def _whole(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _number(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(raw)
    return value


def _one_of(*choices: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        if raw not in choices:
            raise ValueError(raw)
        return raw

    return convert


def _delivery(env: Mapping[str, str]) -> DeliveryOptions:
    mapping: dict[str, Any] = {
        "kafka": {
            "brokers": env.get("KAFKA_BROKERS") or None,
            "topic": env.get("KAFKA_TOPIC") or "processed-records",
            "notification_topic": env.get("KAFKA_NOTIFICATION_TOPIC") or "batch-notifications",
            "security_protocol": env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT",
            "sasl_mechanism": env.get("KAFKA_SASL_MECHANISM") or None,
            "msk_iam_region": env.get("KAFKA_MSK_IAM_REGION") or None,
        },
        "sqs": {
            "core_queue_url": env.get("SQS_CORE_QUEUE") or None,
            "endpoint_url": env.get("AWS_ENDPOINT_URL_SQS") or None,
            "region": env.get("AWS_REGION") or None,
        },
    }
    if env.get("SCM_BATCH_MESSAGE_FORMAT"):
        mapping["message_format"] = env["SCM_BATCH_MESSAGE_FORMAT"]
    try:
        return msgspec.convert(mapping, DeliveryOptions)
    except msgspec.ValidationError as exc:
        where = str(exc).rpartition("$.")[2].rstrip("`")
        name = {
            "message_format": "SCM_BATCH_MESSAGE_FORMAT",
            "kafka.security_protocol": "KAFKA_SECURITY_PROTOCOL",
            "kafka.sasl_mechanism": "KAFKA_SASL_MECHANISM",
        }.get(where, where)
        raise ConfigError(name, f"{env.get(name)!r} is not one of the accepted values") from None


def _storage(env: Mapping[str, str]) -> StorageOptions:
    sse = _parse(env, "SCM_BATCH_SSE", _one_of("AES256", "aws:kms"), "AES256 or aws:kms")
    return StorageOptions(
        kind="s3",  # on AWS a bare bucket name is an S3 bucket, never a local directory
        s3=S3Options(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or None,
            region=env.get("AWS_REGION") or None,
            sse=sse,  # type: ignore[arg-type]
            sse_kms_key_id=env.get("SCM_BATCH_SSE_KMS_KEY_ID") or None,
        ),
    )


def _plan(env: Mapping[str, str]) -> PlanOptions:
    timeout = _parse(env, "SCM_BATCH_LAMBDA_TIMEOUT", _number, "a number of seconds")
    per_record = _parse(
        env, "SCM_BATCH_ESTIMATED_PROCESSING_TIME_PER_RECORD", _number, "a number of seconds"
    )
    threshold = _parse(env, "SCM_BATCH_BATCH_PROCESSING_THRESHOLD", _whole, "a whole number")
    min_chunk = _parse(env, "SCM_BATCH_MIN_CHUNK_SIZE", _whole, "a whole number")
    count = _parse(env, "SCM_BATCH_COUNT_RECORDS", _one_of("true", "false"), "true or false")
    defaults = PlanOptions()
    return PlanOptions(
        min_chunk_size=min_chunk if min_chunk is not None else defaults.min_chunk_size,
        # Left unset, the record count of an S3 object is estimated from a sample (counting means
        # reading the object twice); the chunks are cut on record boundaries all the same.
        count_records=None if count is None else count == "true",
        routing=RoutingPolicy(
            lambda_timeout_seconds=(
                timeout if timeout is not None else _ROUTING.lambda_timeout_seconds
            ),
            estimated_processing_time_per_record=(
                per_record
                if per_record is not None
                else _ROUTING.estimated_processing_time_per_record
            ),
            batch_processing_threshold=(
                threshold if threshold is not None else _ROUTING.batch_processing_threshold
            ),
        ),
    )


def settings_from_env(env: Mapping[str, str]) -> AwsSettings:
    """Read and check the deployment's settings; a bad value names its variable."""
    tolerance = Tolerance(
        percentage=_parse(env, "SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE", _number, "0 to 100"),
        count=_parse(env, "SCM_BATCH_TOLERATED_FAILURE_COUNT", _whole, "a whole number"),
    )
    if tolerance.percentage is not None and tolerance.percentage > 100:
        raise ConfigError("SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE", "must be 0 to 100")
    destination = _parse(
        env, "SCM_BATCH_DESTINATION", _one_of(*_DESTINATIONS), "kafka, sqs_core or none"
    )
    return AwsSettings(
        run=RunOptions(
            workers=1,
            plan=_plan(env),
            tolerance=tolerance,
            storage=_storage(env),
            delivery=_delivery(env),
            faults=parse_faults(env.get(FAULTS_ENV)),
        ),
        max_concurrent_chunks=_parse(
            env, "SCM_BATCH_MAX_CONCURRENT_CHUNKS", _whole, "a whole number"
        ),
        max_records_per_chunk=_parse(
            env, "SCM_BATCH_MAX_RECORDS_PER_CHUNK", _whole, "a whole number"
        ),
        destination=destination,  # type: ignore[arg-type]
        metrics_namespace=env.get("SCM_BATCH_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
        completion_outbox_only=_parse(
            env, "SCM_BATCH_COMPLETION_OUTBOX_ONLY", _one_of("true", "false"), "true or false"
        )
        == "true",
    )
