"""``scm-batch aws …``: the state machine definition, and the Batch job's entrypoint."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from scm_batch.aws.definition import (
    DEFAULT_MAX_INLINE_CHUNKS,
    build_definition,
    choose_map_mode,
    render,
    resources_for_account,
    terraform_resources,
)
from scm_batch.cli.console import err, fail, guarded, out
from scm_batch.errors import ConfigError, ExitCode, ScmBatchError
from scm_batch.retry import is_transient

aws_app = typer.Typer(
    no_args_is_help=True,
    help="The AWS deployment: the state machine's definition and the Batch job's entrypoint.",
)


@aws_app.command()
def definition(
    ctx: typer.Context,
    terraform: Annotated[
        bool,
        typer.Option(
            "--terraform",
            help="Print the template deploy/terraform uses: ARNs and numbers as ${…} references "
            "(the other options do not apply).",
        ),
    ] = False,
    account: Annotated[
        str | None, typer.Option(help="AWS account id the functions and queues live in.")
    ] = None,
    region: Annotated[str, typer.Option(help="AWS region.")] = "us-east-1",
    partition: Annotated[str, typer.Option(help="AWS partition.")] = "aws",
    map_mode: Annotated[
        str,
        typer.Option(
            "--map",
            help="distributed: the Map reads the chunk items from S3, any number of them; "
            "inline: they pass through the state, for plans of at most --max-inline-chunks "
            "chunks (larger ones are refused) run at most 40 at a time; auto: inline when "
            "--max-concurrent-chunks is 40 or less.",
        ),
    ] = "distributed",
    max_concurrent_chunks: Annotated[
        int, typer.Option(help="Chunks processed at the same time (the Map's MaxConcurrency).")
    ] = 50,
    max_inline_chunks: Annotated[
        int, typer.Option(help="Largest plan an inline Map takes, in chunks.")
    ] = DEFAULT_MAX_INLINE_CHUNKS,
    lambda_timeout: Annotated[
        int, typer.Option(help="Timeout of the update-records function, seconds.")
    ] = 900,
    batch_job_timeout: Annotated[
        int, typer.Option(help="Timeout of one Batch job attempt, seconds.")
    ] = 14_400,
    batch_job_attempts: Annotated[
        int, typer.Option(help="Attempts of the Batch job definition's retry strategy.")
    ] = 3,
    job_queue: Annotated[str, typer.Option(help="Batch job queue name.")] = "scm-batch-chunks",
    job_definition: Annotated[
        str, typer.Option(help="Batch job definition name.")
    ] = "scm-batch-chunk",
    status_queue: Annotated[
        str, typer.Option(help="Status queue name (the contract's batch-proc).")
    ] = "batch-proc",
    sse_kms_key: Annotated[
        str | None,
        typer.Option(
            help="KMS key (ARN) of the objects the state machine writes itself (failure records, "
            "the notified marker), as the functions write theirs; none: the bucket's default."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Print the Amazon States Language definition of the workflow."""

    def action() -> None:
        if terraform:
            text = render(build_definition(terraform_resources()), template=True)
        else:
            settings = {
                "max_concurrent_chunks": max_concurrent_chunks,
                "max_inline_chunks": max_inline_chunks,
                "lambda_timeout": lambda_timeout,
                "batch_job_timeout": batch_job_timeout,
                "batch_job_attempts": batch_job_attempts,
            }
            resources = resources_for_account(
                region=region,
                account=_checked_account(account, map_mode, settings),
                partition=partition,
                job_queue=job_queue,
                job_definition=job_definition,
                status_queue=status_queue,
                map_mode=choose_map_mode(max_concurrent_chunks, map_mode),  # type: ignore[arg-type]
                sse_kms_key=sse_kms_key,
                **settings,
            )
            text = render(build_definition(resources))
        _write(text, output)

    guarded(ctx, action)


# Each setting's option and its range: the ConfigError of the first one outside it is raised.
_SETTING_RANGES = {
    "max_concurrent_chunks": ("--max-concurrent-chunks", 1, 10_000),
    "max_inline_chunks": ("--max-inline-chunks", 1, 250),
    "lambda_timeout": ("--lambda-timeout", 1, 900),
    "batch_job_timeout": ("--batch-job-timeout", 60, 1_209_600),
    "batch_job_attempts": ("--batch-job-attempts", 1, 10),
}


def _checked_account(account: str | None, map_mode: str, settings: dict[str, int]) -> str:
    """The account id, once it, the map mode and every setting are checked (in that order)."""
    if account is None or not account.isdigit() or len(account) != 12:
        raise ConfigError("--account", "give the 12-digit account id (or --terraform)")
    if map_mode not in ("auto", "inline", "distributed"):
        raise ConfigError("--map", f"must be auto, inline or distributed, not {map_mode!r}")
    for setting, (name, low, high) in _SETTING_RANGES.items():
        value = settings[setting]
        if not low <= value <= high:
            raise ConfigError(name, f"must be between {low} and {high} (got {value})")
    return account


def _write(text: str, output: Path | None) -> None:
    """``text`` to stdout, or to the ``--output`` file."""
    if output is None:
        out.file.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--output", f"cannot write {output}: {exc.strerror}") from None


@aws_app.command("process-chunk")
def process_chunk_command(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Option(help="The batch's bucket (name or s3://name).")],
    batch_id: Annotated[str, typer.Option(help="The batch id.")],
    chunk_id: Annotated[str, typer.Option(help="The chunk id, e.g. chunk_000003.")],
    attempt: Annotated[
        int,
        typer.Option(help="This attempt's number (Batch sets it).", envvar="AWS_BATCH_JOB_ATTEMPT"),
    ] = 1,
) -> None:
    """Process one planned chunk: the AWS Batch job's command.

    Exits 0 when the chunk is done (now or before), 75 when it failed for a reason that may pass
    (the job definition retries exactly those), and another code when it failed for good."""
    from scm_batch.aws.batch_job import (  # noqa: PLC0415 - loads the stages only when run
        process_planned_chunk,
    )

    result, earlier = _as_batch_job(
        ctx,
        lambda: process_planned_chunk(bucket, batch_id, chunk_id, attempt=attempt, env=os.environ),
    )
    if earlier:
        err.print(f"{escape(chunk_id)} was done before; nothing to do", soft_wrap=True)
    out.print(
        f"{escape(chunk_id)}: {result.records:,} records, {result.valid_records:,} valid, "
        f"{result.delivered:,} delivered, {result.duration_seconds:.1f} s"
    )


T = TypeVar("T")


def _as_batch_job(ctx: typer.Context, work: Callable[[], T]) -> T:
    """Run an AWS Batch job's work: exit 75 when it failed for a reason that may pass (the job
    definition retries exactly those), another non-zero code when it failed for good."""
    from scm_batch.aws.batch_job import TRANSIENT_EXIT_CODE  # noqa: PLC0415

    try:
        return work()
    except ScmBatchError as exc:
        if ctx.obj:
            traceback.print_exc()
        code = TRANSIENT_EXIT_CODE if is_transient(exc) else exc.exit_code
        raise fail(f"{type(exc).__name__}: {exc.message}", code) from None
    except Exception as exc:
        if ctx.obj:
            traceback.print_exc()
        code = TRANSIENT_EXIT_CODE if is_transient(exc) else ExitCode.INTERNAL
        raise fail(f"internal error: {type(exc).__name__}: {exc}", code) from None


@aws_app.command("plan-input")
def plan_input_command(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Option(help="The batch's bucket (name or s3://name).")],
    batch_id: Annotated[str, typer.Option(help="The batch id.")],
) -> None:
    """Plan a batch too big to plan in the CalculateChunks function (staging compressed input,
    scanning a JSON array): the AWS Batch job the state machine runs for it.

    Exits as process-chunk does: 0 when planned (or when it failed for good, recorded for
    CalculateChunks to report), 75 when it failed for a reason that may pass."""
    from scm_batch.aws.batch_planning import plan_input  # noqa: PLC0415

    def work() -> int:
        try:
            return plan_input(bucket, batch_id, env=os.environ)
        except ScmBatchError as exc:
            if is_transient(exc):
                raise
            err.print(f"{type(exc).__name__}: {escape(exc.message)}", soft_wrap=True)
            return -1

    chunks = _as_batch_job(ctx, work)
    if chunks >= 0:
        out.print(f"batch {escape(batch_id)} planned: {chunks:,} chunks")
