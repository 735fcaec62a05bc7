"""The deployed resources the state machine refers to, and the numbers it takes from the
deployment's configuration: for one account and region (:func:`resources_for_account`), or as
the Terraform template's ``${…}`` references (:func:`terraform_resources`).

A number the template computes is an :class:`Expr`; :func:`plus` and :func:`times` compute with
plain numbers and expressions alike, so the states are written once for both.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from scm_batch.retry import RetryPolicy

MapMode = Literal["inline", "distributed"]

DEFAULT_MAX_INLINE_CHUNKS = 100  # ~800 bytes an item: well inside the 256 KiB state limit
LAMBDA_MAX_TIMEOUT = 900

FUNCTION_NAMES = (
    "scm-batch-processor-read-s3",
    "scm-batch-processor-validate-data",
    "scm-batch-processor-calculate-chunks",
    "scm-batch-processor-update-records",
    "scm-batch-processor-aggregate-results",
    "scm-batch-processor-send-to-kafka",
    "scm-batch-processor-send-to-sqs-core",
)


class Expr(msgspec.Struct, frozen=True):
    """A number the Terraform template computes (``${lambda_timeout + 60}``)."""

    text: str


Number = int | Expr


def plus(value: Number, extra: int) -> Number:
    return value + extra if isinstance(value, int) else Expr(f"{value.text} + {extra}")


def times(value: Number, factor: Number) -> Number:
    if isinstance(value, int) and isinstance(factor, int):
        return value * factor
    left = value.text if isinstance(value, Expr) else str(value)
    right = factor.text if isinstance(factor, Expr) else str(factor)
    return Expr(f"{left} * {right}")


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """The deployed resources the definition refers to, and the numbers it takes from the
    deployment's configuration."""

    lambda_arns: dict[str, str]  # by contract function name
    batch_job_queue: str
    batch_job_definition: str
    status_queue_url: str
    max_concurrent_chunks: Number = 50
    lambda_timeout: Number = LAMBDA_MAX_TIMEOUT
    batch_job_timeout: Number = 14_400
    batch_job_attempts: Number = 3
    map_mode: MapMode = "distributed"
    max_inline_chunks: int = DEFAULT_MAX_INLINE_CHUNKS
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    # The key the state machine's own S3 writes use, as the functions' (SCM_BATCH_SSE_KMS_KEY_ID);
    # None: the bucket's default encryption.
    sse_kms_key: str | None = None


def resources_for_account(
    *,
    region: str,
    account: str,
    partition: str = "aws",
    job_queue: str = "scm-batch-chunks",
    job_definition: str = "scm-batch-chunk",
    status_queue: str = "batch-proc",
    **settings: Any,
) -> Resources:
    """The resources with the contract's function names in one account and region."""
    arns = {
        name: f"arn:{partition}:lambda:{region}:{account}:function:{name}"
        for name in FUNCTION_NAMES
    }
    return Resources(
        lambda_arns=arns,
        batch_job_queue=f"arn:{partition}:batch:{region}:{account}:job-queue/{job_queue}",
        batch_job_definition=f"arn:{partition}:batch:{region}:{account}:job-definition/{job_definition}",
        status_queue_url=f"https://sqs.{region}.amazonaws.com/{account}/{status_queue}",
        **settings,
    )


TEMPLATE_STRINGS = {
    "batch_job_queue": "batch_job_queue_arn",
    "batch_job_definition": "batch_job_definition_arn",
    "status_queue_url": "status_queue_url",
    "sse_kms_key": "kms_key_arn",
}
TEMPLATE_NUMBERS = (
    "max_concurrent_chunks",
    "lambda_timeout",
    "batch_job_timeout",
    "batch_job_attempts",
)


def template_variable_of(function_name: str) -> str:
    """``scm-batch-processor-update-records`` → ``lambda_update_records_arn``."""
    suffix = function_name.removeprefix("scm-batch-processor-").replace("-", "_")
    return f"lambda_{suffix}_arn"


def _reference(variable: str) -> str:
    return "${" + variable + "}"


def terraform_resources() -> Resources:
    """The resources as the Terraform template sees them: every value a ``${…}`` reference."""
    return Resources(
        lambda_arns={name: _reference(template_variable_of(name)) for name in FUNCTION_NAMES},
        batch_job_queue=_reference(TEMPLATE_STRINGS["batch_job_queue"]),
        batch_job_definition=_reference(TEMPLATE_STRINGS["batch_job_definition"]),
        status_queue_url=_reference(TEMPLATE_STRINGS["status_queue_url"]),
        sse_kms_key=_reference(TEMPLATE_STRINGS["sse_kms_key"]),
        max_concurrent_chunks=Expr("max_concurrent_chunks"),
        lambda_timeout=Expr("lambda_timeout"),
        batch_job_timeout=Expr("batch_job_timeout"),
        batch_job_attempts=Expr("batch_job_attempts"),
        map_mode="distributed",
    )


def template_variables() -> list[str]:
    """Every variable the Terraform template takes."""
    return sorted(
        [template_variable_of(n) for n in FUNCTION_NAMES]
        + list(TEMPLATE_STRINGS.values())
        + list(TEMPLATE_NUMBERS)
    )
