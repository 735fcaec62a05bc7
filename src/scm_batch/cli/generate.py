"""``scm-batch generate``: deterministic synthetic records for tests, the demo and benchmarks."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from scm_batch.cli.app import app
from scm_batch.cli.console import err as _err
from scm_batch.cli.console import fail as _fail
from scm_batch.cli.console import guarded as _guarded
from scm_batch.cli.console import out as _out
from scm_batch.errors import ConfigError, ExitCode
from scm_batch.records.generate import generate_file


class FormatChoice(StrEnum):
    jsonl = "jsonl"
    json_array = "json-array"


class CompressChoice(StrEnum):
    none = "none"
    gzip = "gzip"
    zstd = "zstd"
    bz2 = "bz2"


@app.command()
def generate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the JSON Lines file.")],
    records: Annotated[int, typer.Option(min=0, help="Number of lines to write.")],
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same file.")] = 1,
    invalid_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of records that break one validation rule."),
    ] = 0.0,
    malformed_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of lines that are not JSON.")
    ] = 0.0,
    file_format: Annotated[
        FormatChoice,
        typer.Option(
            "--format",
            help="jsonl: one record per line; json-array: one JSON array, a record per line.",
        ),
    ] = FormatChoice.jsonl,
    compress: Annotated[
        CompressChoice, typer.Option(help="Compress what is written: none, gzip, zstd or bz2.")
    ] = CompressChoice.none,
) -> None:
    """Write deterministic synthetic supply-chain records (JSON Lines or a JSON array, optionally
    compressed)."""

    def action() -> None:
        if invalid_rate + malformed_rate > 1.0:
            raise ConfigError("--invalid-rate", "plus --malformed-rate must be at most 1")
        if file.exists() and not file.is_file():  # a device, a directory: never replaced
            raise ConfigError("FILE", f"{file} exists and is not a regular file")
        started = time.perf_counter()
        done = 0
        last_report = started

        def on_progress(count: int) -> None:
            nonlocal done, last_report
            done += count
            now = time.perf_counter()
            if now - last_report >= 10:
                last_report = now
                _err.print(f"generate: {done:,}/{records:,} lines")

        try:
            stats = generate_file(
                file,
                records,
                seed=seed,
                invalid_rate=invalid_rate,
                malformed_rate=malformed_rate,
                on_progress=on_progress,
                file_format=file_format.value,
                compress=compress.value,
            )
        except (FileExistsError, NotADirectoryError):
            raise _fail(
                f"cannot write {file}: a parent of it is not a directory", ExitCode.BAD_INPUT
            ) from None
        except OSError as exc:
            raise _fail(f"cannot write {file}: {exc.strerror or exc}", ExitCode.BAD_INPUT) from None
        seconds = time.perf_counter() - started
        packed = (
            ""
            if compress.value == "none"
            else f" ({file.stat().st_size / 1e6:,.1f} MB {compress.value})"
        )
        _out.print(
            f"wrote {stats.lines:,} lines ({stats.valid:,} valid, {stats.invalid:,} invalid, "
            f"{stats.malformed:,} malformed), {stats.bytes / 1e6:,.1f} MB{packed} to {file} "
            f"in {seconds:.1f}s"
        )

    _guarded(ctx, action)
