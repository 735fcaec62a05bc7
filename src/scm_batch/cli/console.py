"""The command line's consoles and its one rule for failures: one line and an exit code."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from scm_batch.errors import ExitCode, ScmBatchError

T = TypeVar("T")


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader of standard output is gone (``… | head -1``): end quietly, as other
        command-line tools do, with the code a shell gives SIGPIPE (rich itself exits 1)."""
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(ExitCode.BROKEN_PIPE)


err = _Console(stderr=True, highlight=False)
out = _Console(highlight=False, soft_wrap=True)


def write_out(text: str) -> None:
    """Text to standard output as it is (a JSON document for programs); a reader gone ends the
    command as :meth:`_Console.on_broken_pipe` does (click would make it exit 1)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        out.on_broken_pipe()


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it stops as it does on Ctrl-C: workers
    stopped, temporary files removed, one line."""


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def guarded(ctx: typer.Context, action: Callable[[], T]) -> T:
    """Run a command body, turning failures into one line and an exit code. A closed standard
    output is the caller's to handle (it ends the command quietly)."""
    debug = bool(ctx.obj)
    try:
        return action()
    except (typer.Exit, typer.Abort, BrokenPipeError):
        raise
    except ScmBatchError as exc:
        if debug:
            traceback.print_exc()
        raise fail(exc.message, exc.exit_code) from None
    except Terminated:
        raise fail("terminated", ExitCode.TERMINATED) from None
    except KeyboardInterrupt:
        raise fail("interrupted", ExitCode.INTERRUPTED) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        raise fail(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            ExitCode.INTERNAL,
        ) from None
