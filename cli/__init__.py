"""The `vlmod` command line, on top of every other package; one module per command group.
Heavy imports stay inside the commands, so `vlmod --help` is quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

if TYPE_CHECKING:
    from cli.main import app, main

__all__ = [
    "app",
    "main",
]
__getattr__, __dir__ = lazy_exports(__name__, {"cli.main": ["app", "main"]})
