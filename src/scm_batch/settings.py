"""One loader of settings for every place a batch runs: the command line and the AWS functions.

Each setting is declared once, in :data:`SETTINGS`: where its value goes, its command-line flag,
its environment variable, how its text is read, and its help. The command line builds its options
from this table (``scm_batch.cli.flags``); the Lambda functions and the Batch job read the same
variables (``deploy/terraform`` sets them). So a variable means the same on a laptop and on AWS,
and a bad value is a ``ConfigError`` naming the flag or variable it came from, before any work.

A value comes from, in order: the flag, when given; the environment variable, when set and not
empty; the defaults of the place that runs (:data:`AWS_DEFAULTS` for the functions); the default
of the option itself (:class:`scm_batch.config.RunOptions` and the structs inside it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from scm_batch.config import RunOptions
from scm_batch.errors import ConfigError
from scm_batch.faults import FAULTS_ENV, parse_faults
from scm_batch.model import CamelStruct, Destination

DEFAULT_NAMESPACE = "ScmBatch"

Path = tuple[str, ...]  # where a value goes in :class:`Settings`, by encoded (JSON) field names


class JobDefaults(CamelStruct, frozen=True):
    """Execution input fields the configuration fills in when an input leaves them out."""

    max_concurrent_chunks: int | None = None
    max_chunk_size: int | None = None
    destination: Destination | None = None

    def fill(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` (an execution input, by contract name) with the defaults it lacks."""
        defaults = msgspec.to_builtins(self)
        return {**{k: v for k, v in defaults.items() if v is not None}, **fields}


class Settings(CamelStruct, frozen=True):
    """Everything a place that runs batches is configured with."""

    run: RunOptions = msgspec.field(default_factory=RunOptions)
    job_defaults: JobDefaults = msgspec.field(default_factory=JobDefaults)
    metrics_namespace: str = DEFAULT_NAMESPACE  # CloudWatch, on AWS


# ---- reading a variable's text ------------------------------------------------------------------
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


def _percentage(raw: str) -> float:
    value = _number(raw)
    if value > 100:
        raise ValueError(raw)
    return value


# The spellings the command line has always taken (click's): 1/0, true/false, t/f, yes/no, y/n,
# on/off.
_SWITCH = dict.fromkeys(("1", "true", "t", "yes", "y", "on"), True)
_SWITCH.update(dict.fromkeys(("0", "false", "f", "no", "n", "off"), False))


def _switch(raw: str) -> bool:
    return _SWITCH[raw.lower()]


def _text(raw: str) -> str:
    return raw


@dataclass(frozen=True, slots=True)
class Kind:
    """How a setting's text is read, what a good value looks like, and its Python type.

    Text is taken as it is (a password may begin or end with a space); other values are read
    without the white space around them."""

    parse: Callable[[str], Any]
    rule: str
    type: type
    choices: tuple[str, ...] = ()
    verbatim: bool = False


WHOLE = Kind(_whole, "a whole number", int)
NUMBER = Kind(_number, "a number", float)
PERCENTAGE = Kind(_percentage, "0 to 100", float)
SWITCH = Kind(_switch, "true or false", bool)
TEXT = Kind(_text, "text", str, verbatim=True)


def choice(*values: str) -> Kind:
    rule = ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]
    return Kind(_text, rule, str, values)


Group = Literal[
    "planning", "output", "execution", "rerun", "storage", "encryption", "delivery", "job",
    "deployment",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: where its value goes, and the flag and variable it is given by. Settings
    come in groups; a command reads the groups it has a use for."""

    paths: tuple[Path, ...]
    kind: Kind
    help: str
    flag: str | None = None  # e.g. "--workers", or "--count-records/--estimate-records"
    env: str | None = None
    group: Group = "deployment"

    @property
    def name(self) -> str:
        """The setting's name: its command-line parameter's (``--kafka-brokers`` →
        ``kafka_brokers``), or its variable's in lower case when it has no flag."""
        if self.flag is None:
            return str(self.env).lower()
        return self.flag.split("/")[0].removeprefix("--").replace("-", "_")


def _s(
    path: str | tuple[str, ...],
    kind: Kind,
    text: str,
    flag: str | None = None,
    env: str | None = None,
) -> Setting:
    paths = tuple(tuple(p.split(".")) for p in ((path,) if isinstance(path, str) else path))
    return Setting(paths, kind, text, flag, env)


def _in(group: Group, settings: tuple[Setting, ...]) -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(setting, group=group) for setting in settings)


_KAFKA = "run.delivery.kafka."
_SQS = "run.delivery.sqs."
_S3 = "run.storage.s3."
_ROUTING = "run.plan.routing."

SETTINGS: tuple[Setting, ...] = (
    # ---- how a batch is cut and routed
    *_in("planning", (
        _s("run.plan.minChunkSize", WHOLE, "Records per chunk at least, so small files are not "
           "over-split.", "--min-chunk-size", "SCM_BATCH_MIN_CHUNK_SIZE"),
        _s("run.plan.countRecords", SWITCH, "Count lines exactly before splitting (exact "
           "indices; the default for local files), or estimate them from a sample (the default "
           "for S3, where counting means reading twice).", "--count-records/--estimate-records",
           "SCM_BATCH_COUNT_RECORDS"),
        _s(_ROUTING + "lambdaTimeoutSeconds", NUMBER, "Lambda timeout in seconds, for routing "
           "chunks.", "--lambda-timeout", "SCM_BATCH_LAMBDA_TIMEOUT"),
        _s(_ROUTING + "estimatedProcessingTimePerRecord", NUMBER, "Estimated seconds per record, "
           "for routing chunks.", "--estimated-time-per-record",
           "SCM_BATCH_ESTIMATED_PROCESSING_TIME_PER_RECORD"),
        _s(_ROUTING + "batchProcessingThreshold", WHOLE, "Chunks above this many records go to AWS "
           "Batch.", "--batch-processing-threshold", "SCM_BATCH_BATCH_PROCESSING_THRESHOLD"),
        _s("run.plan.maxLineBytes", WHOLE, "A longer line is an error entry (too_long: its "
           "offset and length; its bytes stay in the input), so a worker's memory is bounded "
           "whatever the file holds. Fixed when the batch is planned.", "--max-line-bytes",
           "SCM_BATCH_MAX_LINE_BYTES"),
        _s("run.plan.lambdaPlanMaxBytes", WHOLE, "On AWS: an input that is read whole to be "
           "planned (compressed: its decompressed size; a JSON array) above this many bytes is "
           "planned by an AWS Batch job rather than the CalculateChunks function.",
           "--lambda-plan-max-bytes", "SCM_BATCH_LAMBDA_PLAN_MAX_BYTES"),
    )),
    # ---- how result parts are written
    *_in("output", (
        _s("run.plan.outputFormat", choice("jsonl", "parquet"), "Result parts as jsonl (the "
           "default for a new batch) or parquet (zstd; needs scm-batch[parquet]). A resumed batch "
           "keeps the format it was planned with.", "--output-format", "SCM_BATCH_OUTPUT_FORMAT"),
        _s("run.keepStaged", SWITCH, "Keep the staged chunks of a compressed input (under "
           "staged/{batchId}/) after the batch completes; by default they are deleted then.",
           "--keep-staged", "SCM_BATCH_KEEP_STAGED"),
    )),
    # ---- how chunks run
    *_in("execution", (
        _s("run.workers", WHOLE, "Worker processes (default: one per core).", "--workers",
           "SCM_BATCH_WORKERS"),
        _s("run.executor", choice("local", "dask"), "Where chunks run: local (worker processes "
           "on this machine) or dask (a Dask cluster: --dask-scheduler's, or a local one of "
           "--workers processes; needs scm-batch[dask]).", "--executor", "SCM_BATCH_EXECUTOR"),
        _s("run.daskScheduler", TEXT, "The Dask scheduler for --executor dask, e.g. "
           "tcp://10.0.0.5:8786 (default: a local cluster).", "--dask-scheduler",
           "DASK_SCHEDULER_ADDRESS"),
        _s("run.retry.attempts", WHOLE, "Attempts per chunk, the first included.",
           "--retry-attempts", "SCM_BATCH_RETRY_ATTEMPTS"),
        _s("run.retry.baseDelaySeconds", NUMBER, "Backoff before the first retry, seconds (full "
           "jitter).", "--retry-base-delay", "SCM_BATCH_RETRY_BASE_DELAY"),
        _s("run.retry.backoffRate", NUMBER, "Backoff growth per retry.", "--retry-backoff-rate",
           "SCM_BATCH_RETRY_BACKOFF_RATE"),
        _s("run.retry.maxDelaySeconds", NUMBER, "Longest backoff, seconds.", "--retry-max-delay",
           "SCM_BATCH_RETRY_MAX_DELAY"),
        _s("run.tolerance.percentage", PERCENTAGE, "Failed chunks tolerated, as a percentage of "
           "all chunks.", "--tolerated-failure-percentage",
           "SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE"),
        _s("run.chunkTimeoutSeconds", NUMBER, "Seconds a chunk may go without progress before "
           "its worker is stopped and the chunk retried (default: ten times what it should take "
           "at the pace of the chunks done so far, at least 60).", "--chunk-timeout",
           "SCM_BATCH_CHUNK_TIMEOUT"),
        _s("run.tolerance.count", WHOLE, "Failed chunks tolerated, as a number.",
           "--tolerated-failure-count", "SCM_BATCH_TOLERATED_FAILURE_COUNT"),
    )),
    # ---- a batch started afresh
    *_in("rerun", (
        _s("run.overwrite", SWITCH, "Replace the outputs of an earlier run of this batch id.",
           "--overwrite"),
    )),
    # ---- the bucket
    *_in("storage", (
        _s("run.storage.kind", choice("auto", "local", "s3"), "auto: s3:// buckets are S3, others "
           "local directories; s3: bare names are S3 buckets.", "--storage", "SCM_BATCH_STORAGE"),
        _s(_S3 + "endpoint_url", TEXT, "S3 endpoint URL, for S3-compatible services.",
           "--endpoint-url", "AWS_ENDPOINT_URL_S3"),
        _s((_S3 + "region", _SQS + "region"), TEXT, "AWS region of the bucket and the queues.",
           "--region", "AWS_REGION"),
    )),
    # ---- what is written to it
    *_in("encryption", (
        _s(_S3 + "sse", choice("AES256", "aws:kms"), "Encrypt written objects: AES256 or aws:kms.",
           "--sse", "SCM_BATCH_SSE"),
        _s(_S3 + "sse_kms_key_id", TEXT, "KMS key id for --sse aws:kms.", "--sse-kms-key-id",
           "SCM_BATCH_SSE_KMS_KEY_ID"),
    )),
    # ---- where records and notifications go
    *_in("delivery", (
        _s("run.delivery.message_format", choice("envelope", "bare"), "envelope: the contract's "
           "{record, metadata}; bare: the record, with headers.", "--message-format",
           "SCM_BATCH_MESSAGE_FORMAT"),
        _s(_KAFKA + "brokers", TEXT, "Kafka bootstrap servers, host:port,…", "--kafka-brokers",
           "KAFKA_BROKERS"),
        _s(_KAFKA + "topic", TEXT, "Topic for the records.", "--kafka-topic", "KAFKA_TOPIC"),
        _s(_KAFKA + "notification_topic", TEXT, "Topic for completion messages.",
           "--kafka-notification-topic", "KAFKA_NOTIFICATION_TOPIC"),
        _s(_KAFKA + "topic_policy", choice("require", "create"), "require: a missing topic is an "
           "error; create: create it.", "--kafka-topic-policy", "KAFKA_TOPIC_POLICY"),
        _s(_KAFKA + "security_protocol", choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
           "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", "--kafka-security-protocol",
           "KAFKA_SECURITY_PROTOCOL"),
        _s(_KAFKA + "sasl_mechanism", choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512",
           "OAUTHBEARER"), "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (user and password from "
           "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD), or OAUTHBEARER with "
           "--kafka-msk-iam-region.", "--kafka-sasl-mechanism", "KAFKA_SASL_MECHANISM"),
        _s(_KAFKA + "sasl_username", TEXT, "SASL user name.", env="KAFKA_SASL_USERNAME"),
        _s(_KAFKA + "sasl_password", TEXT, "SASL password.", env="KAFKA_SASL_PASSWORD"),
        _s(_KAFKA + "ssl_ca_location", TEXT, "CA certificate file for TLS.", "--kafka-ssl-ca",
           "KAFKA_SSL_CA_LOCATION"),
        _s(_KAFKA + "msk_iam_region", TEXT, "Authenticate to MSK with IAM in this region (SASL "
           "OAUTHBEARER).", "--kafka-msk-iam-region", "KAFKA_MSK_IAM_REGION"),
        _s(_SQS + "core_queue_url", TEXT, "SQS Core queue URL.", "--sqs-core-queue",
           "SQS_CORE_QUEUE"),
        _s(_SQS + "status_queue_url", TEXT, "Status queue (batch-proc) URL.", "--status-queue",
           "SQS_STATUS_QUEUE"),
        _s(_SQS + "endpoint_url", TEXT, "SQS endpoint URL.", "--sqs-endpoint-url",
           "AWS_ENDPOINT_URL_SQS"),
    )),
    # ---- what an execution input leaves out (as the Terraform variables users know set them)
    *_in("job", (
        _s("jobDefaults.maxConcurrentChunks", WHOLE, "maxConcurrentChunks of an input without one.",
           env="SCM_BATCH_MAX_CONCURRENT_CHUNKS"),
        _s("jobDefaults.maxChunkSize", WHOLE, "maxChunkSize of an input without one.",
           env="SCM_BATCH_MAX_RECORDS_PER_CHUNK"),
        _s("jobDefaults.destination", choice("kafka", "sqs_core", "none"), "destination of an "
           "input without one.", env="SCM_BATCH_DESTINATION"),
    )),
    # ---- the deployment
    *_in("deployment", (
        _s("run.completionOutboxOnly", SWITCH, "true: a batch whose completion channel (Kafka for "
           "WORKSPACE, SQS Core for CORE) is not configured keeps its completion message in the "
           "bucket's outbox only.", env="SCM_BATCH_COMPLETION_OUTBOX_ONLY"),
        _s("metricsNamespace", TEXT, "CloudWatch namespace of the metrics.",
           env="SCM_BATCH_METRICS_NAMESPACE"),
    )),
)  # fmt: skip

# What the Lambda functions and the Batch job start from: one chunk per process, a bare bucket
# name is an S3 bucket, no pyarrow in the package (JSON Lines parts only), and a batch whose
# completion message has nowhere to go but the bucket is refused unless the deployment says so.
AWS_DEFAULTS: dict[Path, object] = {
    ("run", "workers"): 1,
    ("run", "storage", "kind"): "s3",
    ("run", "outputFormats"): ["jsonl"],
    ("run", "completionOutboxOnly"): False,
}


# ---- loading -------------------------------------------------------------------------------------
def _put(tree: dict[str, Any], path: Path, value: object) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _from_flag(setting: Setting, value: object) -> object:
    choices = setting.kind.choices
    if choices and value not in choices:
        raise ConfigError(str(setting.flag), f"must be {setting.kind.rule} (got {value!r})")
    return value


def _from_env(setting: Setting, raw: str) -> object:
    kind = setting.kind
    text = raw if kind.verbatim else raw.strip()
    try:
        value = kind.parse(text)
    except (ValueError, KeyError):
        raise ConfigError(str(setting.env), f"must be {kind.rule} (got {raw!r})") from None
    if kind.choices and value not in kind.choices:
        raise ConfigError(str(setting.env), f"must be {kind.rule} (got {raw!r})")
    return value


def load_settings(
    env: Mapping[str, str],
    given: Mapping[str, object] | None = None,
    defaults: Mapping[Path, object] | None = None,
    *,
    groups: Collection[Group] | None = None,
) -> Settings:
    """The settings from flags ``given`` (by parameter name; ``None`` means not given), the
    environment ``env`` and the place's ``defaults``; a bad value names its flag or variable.

    ``groups``: the groups of settings to read (a command reads those it has a use for, so a
    variable it never uses cannot break it); all of them by default."""
    flags = given or {}
    tree: dict[str, Any] = {}
    for path, value in (defaults or {}).items():
        _put(tree, path, value)
    for setting in SETTINGS:
        if groups is not None and setting.group not in groups:
            continue
        flagged = flags.get(setting.name) if setting.flag is not None else None
        raw = env.get(setting.env, "") if setting.env is not None else ""
        if flagged is not None:
            value = _from_flag(setting, flagged)
        elif raw.strip():  # an empty variable is an unset one
            value = _from_env(setting, raw)
        else:
            continue
        for path in setting.paths:
            _put(tree, path, value)
    settings = msgspec.convert(tree, Settings)
    faults = parse_faults(env.get(FAULTS_ENV))
    return msgspec.structs.replace(
        settings, run=msgspec.structs.replace(settings.run, faults=faults)
    )


def aws_settings(env: Mapping[str, str]) -> Settings:
    """The settings of a Lambda function or the Batch job: their environment, as Terraform sets
    it (``deploy/terraform/main.tf``), on top of :data:`AWS_DEFAULTS`."""
    return load_settings(env, defaults=AWS_DEFAULTS)
