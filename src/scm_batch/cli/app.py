"""The ``scm-batch`` application: its global options; the commands register themselves on it."""

from __future__ import annotations

from typing import Annotated

import typer

from scm_batch._version import __version__
from scm_batch.cli.console import out

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Split very large JSON Lines files into chunks, process them in parallel, aggregate.",
)


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit(0)


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks.", envvar="SCM_BATCH_DEBUG")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    ctx.obj = debug
