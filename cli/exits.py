"""The `vlmod` subcommands, one module per group; heavy imports stay inside the commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from contracts.errors import ModerationError

T = TypeVar("T")


def or_exit(action: Callable[[], T], code: int = 2) -> T:
    """Run `action`; on a known error print its reason (no traceback) and exit with `code`."""
    try:
        return action()
    except (ModerationError, ValueError, OSError, ImportError) as error:  # ImportError: an extra
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
        typer.echo(reason if "\n" in reason else f"error: {reason}", err=True)
        raise typer.Exit(code) from None
