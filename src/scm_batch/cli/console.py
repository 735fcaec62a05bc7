"""The command line's consoles and its one rule for failures: one line and an exit code."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from scm_batch.errors import ExitCode, ScmBatchError

T = TypeVar("T")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def guarded(ctx: typer.Context, action: Callable[[], T]) -> T:
    """Run a command body, turning failures into one line and an exit code."""
    debug = bool(ctx.obj)
    try:
        return action()
    except (typer.Exit, typer.Abort):
        raise
    except ScmBatchError as exc:
        if debug:
            traceback.print_exc()
        raise fail(exc.message, exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", ExitCode.INTERRUPTED) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        raise fail(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            ExitCode.INTERNAL,
        ) from None
