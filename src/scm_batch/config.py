"""Run configuration: the execution input, and the run options.

The execution input is the contract's JSON object (from ``--input FILE``, a manifest object or an
S3 event, and/or flags; flags win). Run options are everything else a run needs; each has a
default, and most a flag and an environment variable (:mod:`scm_batch.settings` loads them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus

import msgspec

from scm_batch.errors import ConfigError, ObjectNotFoundError
from scm_batch.faults import FaultPlan
from scm_batch.model import CamelStruct, JobInput, OutputFormat, PlanOptions, Tolerance
from scm_batch.retry import RetryPolicy
from scm_batch.sinks.options import DeliveryOptions
from scm_batch.stages.process import DEFAULT_BLOCK_SIZE
from scm_batch.storage import StorageOptions, normalize_bucket, open_storage

_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_AT_FIELD = re.compile(r"^(?P<problem>.*) - at `\$\.(?P<field>[^`\[]+)")

ExecutorKind = Literal["local", "dask"]

JOB_INPUT_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(JobInput))


class RunOptions(CamelStruct, frozen=True):
    """How a batch runs, wherever it runs (not part of the execution input); loaded by
    :func:`scm_batch.settings.load_settings`."""

    workers: int = msgspec.field(default_factory=lambda: os.cpu_count() or 1)
    # Where chunks run: a pool of processes here, or a Dask cluster (scm_batch.executors.dask).
    executor: ExecutorKind = "local"
    # The Dask scheduler's address (tcp://host:8786); None: a local cluster of ``workers``.
    dask_scheduler: str | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    # A chunk running longer is stopped and retried; None: from its size and the measured pace.
    chunk_timeout_seconds: float | None = None
    overwrite: bool = False
    # Staged chunks of compressed input are deleted once every chunk is done, unless kept.
    keep_staged: bool = False
    plan: PlanOptions = msgspec.field(default_factory=PlanOptions)
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    tolerance: Tolerance = msgspec.field(default_factory=Tolerance)
    storage: StorageOptions = msgspec.field(default_factory=StorageOptions)
    delivery: DeliveryOptions = msgspec.field(default_factory=DeliveryOptions)
    # The result formats this installation writes (the AWS package has no pyarrow: JSON Lines).
    output_formats: tuple[OutputFormat, ...] = ("jsonl", "parquet")
    # Whether a batch may run when its completion message can go nowhere but the bucket's outbox
    # (no Kafka brokers for WORKSPACE, no SQS Core queue for CORE): fine on one machine, where the
    # outbox is the default; refused on AWS unless the deployment says so.
    completion_outbox_only: bool = True
    faults: FaultPlan | None = None  # test-only: see scm_batch.faults


def parse_job_input(mapping: Mapping[str, Any]) -> JobInput:
    """Build a ``JobInput`` from the contract's JSON object; errors name the offending field."""
    try:
        return msgspec.convert(dict(mapping), JobInput)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if missing := _MISSING.search(message):
            raise ConfigError(missing["field"], "is required") from None
        if at_field := _AT_FIELD.match(message):
            raise ConfigError(at_field["field"], at_field["problem"].lower()) from None
        raise ConfigError("input", message) from None


def unknown_input_fields(mapping: Mapping[str, Any]) -> list[str]:
    """Fields of an execution input the contract does not know (ignored, but worth a warning)."""
    return sorted(set(mapping) - JOB_INPUT_FIELDS)


def load_input_file(path: Path, field: str = "--input") -> dict[str, Any]:
    """Read a JSON object from a file (an execution input, an event)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = msgspec.json.decode(data.removeprefix(b"\xef\xbb\xbf"))
    except msgspec.DecodeError as exc:
        raise ConfigError(field, f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(field, f"{path} must hold one JSON object")
    return value


class ManifestRef(CamelStruct, frozen=True):
    """Where a manifest object is, and which option named it (for error messages)."""

    bucket: str
    keys: list[str]  # candidate spellings of the key, tried in order
    source: str


def manifest_ref(uri: str) -> ManifestRef:
    """``s3://bucket/key`` as given to ``--manifest``; the key is taken verbatim (``?`` and ``#``
    are legal in S3 keys)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ConfigError("--manifest", f"must be an s3://bucket/key URI (got {uri!r})")
    return ManifestRef(bucket=bucket, keys=[key], source="--manifest")


def manifest_of_event(path: Path) -> ManifestRef:
    """The manifest an S3 "Object Created" event in a file points at (``--event``)."""
    event = load_input_file(path, field="--event")
    return manifest_ref_of_event(event, source="--event", where=str(path))


def is_object_created_event(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` looks like an S3 notification rather than an execution input."""
    return "Records" in event or "detail" in event


def manifest_ref_of_event(event: Mapping[str, Any], *, source: str, where: str) -> ManifestRef:
    """The manifest an S3 "Object Created" event points at: an EventBridge event
    (``detail.bucket.name``, ``detail.object.key``) or an S3 notification (``Records[0].s3``)."""
    try:
        if "Records" in event:
            s3 = event["Records"][0]["s3"]
            name, key = s3["bucket"]["name"], s3["object"]["key"]
        else:
            name, key = event["detail"]["bucket"]["name"], event["detail"]["object"]["key"]
    except (KeyError, IndexError, TypeError):
        raise ConfigError(
            source,
            f"{where} is not an S3 Object Created event (no detail.bucket.name/object.key)",
        ) from None
    if not isinstance(name, str) or not isinstance(key, str):
        raise ConfigError(source, f"{where}: the bucket name and object key must be strings")
    # Keys in events are URL-encoded; S3 notifications also write a space as '+', which a key may
    # contain literally: the percent-decoded key is tried first, then the '+'-as-space one.
    candidates = list(dict.fromkeys([unquote(key), unquote_plus(key)]))
    return ManifestRef(bucket=name, keys=candidates, source=source)


def load_manifest(ref: ManifestRef, storage: StorageOptions) -> dict[str, Any]:
    """The execution input held in a manifest object of the production variant: the contract's
    fields, with ``file`` in the manifest's own bucket."""
    bucket = normalize_bucket(f"s3://{ref.bucket}")
    store = open_storage(bucket, storage)
    data: bytes | None = None
    missing = f"{store.uri_for(ref.keys[0])}: no such object"
    for key in ref.keys:
        try:
            data = store.get_bytes(key)
            break
        except ObjectNotFoundError as exc:
            missing = exc.message
    if data is None:
        raise ConfigError(ref.source, missing)
    where = store.uri_for(key)
    try:
        value = msgspec.json.decode(data.removeprefix(b"\xef\xbb\xbf"))
    except msgspec.DecodeError as exc:
        raise ConfigError(ref.source, f"{where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(ref.source, f"{where} must hold one JSON object")
    named = value.get("bucket")
    if named is not None and normalize_bucket(str(named), "s3") != bucket:
        raise ConfigError(
            "bucket", f"the manifest {where} names bucket {named!r}; its file must be in {bucket}"
        )
    value["bucket"] = bucket
    return value
