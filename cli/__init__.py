"""The `vlmod` command line, on top of every other package; one module per command group.
Heavy imports stay inside the commands, so `vlmod --help` is quick.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cli.main import app, main

__all__ = [
    "app",
    "main",
]

# Imported on first use, so importing one module of the package stays cheap.
_HOMES = {name: home for home, names in {"cli.main": ["app", "main"]}.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
