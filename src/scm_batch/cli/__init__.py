"""The ``scm-batch`` command line: options in, the library called, the outcome printed.

Errors the project raises on purpose end the command with one line on standard error and the
documented exit code; a traceback appears only with ``--debug``.

* :mod:`~scm_batch.cli.app`: the application and its global options;
* :mod:`~scm_batch.cli.flags`: option groups shared by the commands, made from the settings table;
* :mod:`~scm_batch.cli.batch`: ``run``, ``resume``, ``plan``, ``status``;
* :mod:`~scm_batch.cli.generate`: ``generate``; :mod:`~scm_batch.cli.show`: what they print;
* :mod:`~scm_batch.cli.report`: ``report``, the run report (:mod:`scm_batch.report`);
* ``scm-batch aws …``: the state machine's definition and the Batch job's entrypoint.
"""

from __future__ import annotations

import signal
import sys

import typer
from rich.markup import escape

from scm_batch.cli import batch, generate, report  # noqa: F401 - the commands register themselves
from scm_batch.cli.app import app
from scm_batch.cli.aws import aws_app
from scm_batch.cli.console import err, raise_terminated
from scm_batch.errors import ExitCode

app.add_typer(aws_app, name="aws")

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: usage errors, like every other error, are one line on stderr; SIGTERM
    stops a run as Ctrl-C does (a standard output closed early ends the command quietly: see
    :mod:`~scm_batch.cli.console`)."""
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        code = app(standalone_mode=False, prog_name="scm-batch")
    except typer.Abort:
        err.print("[bold red]error:[/] interrupted", soft_wrap=True)
        sys.exit(ExitCode.INTERRUPTED)
    except typer.TyperException as exc:  # usage errors: unknown option, value of the wrong type
        message = exc.format_message()
        if message:  # empty when the help was shown for a bare command
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err.print(f"[bold red]error:[/] {escape(message + hint)}", soft_wrap=True)
        sys.exit(ExitCode.BAD_INPUT)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
