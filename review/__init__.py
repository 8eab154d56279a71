"""Human review: review tasks in Redis, the review console, reviewers' decisions, and the
quality report that measures every rule against them.

- `settings`: `ReviewConfig` (`load_review_config`), the console's file.
- `ingest.ReviewIngest`: review-queue topics into the task store (`tasks.TaskStore`).
- `console.build_console`, `serve.serve_console`: the web console and what feeds it.
- `decisions.DecisionDesk`: a decision decided once in Redis, then published as decided.
- `report`, `report_io`, `report_render`: the quality report from verdicts and decisions.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from review.console import build_console
    from review.decisions import DecisionDesk
    from review.ingest import ReviewIngest
    from review.report import QualityReport, build_report
    from review.report_io import read_decisions, read_verdicts
    from review.report_render import render_html, render_json, render_text
    from review.serve import serve_console
    from review.settings import ReviewConfig, load_review_config
    from review.tasks import TaskStore

__all__ = [
    "DecisionDesk",
    "QualityReport",
    "ReviewConfig",
    "ReviewIngest",
    "TaskStore",
    "build_console",
    "build_report",
    "load_review_config",
    "read_decisions",
    "read_verdicts",
    "render_html",
    "render_json",
    "render_text",
    "serve_console",
]

# Imported on first use, so importing one module of the package stays cheap.
_HOMES = {
    name: home
    for home, names in {
        "review.console": ["build_console"],
        "review.decisions": ["DecisionDesk"],
        "review.ingest": ["ReviewIngest"],
        "review.report": ["QualityReport", "build_report"],
        "review.report_io": ["read_decisions", "read_verdicts"],
        "review.report_render": ["render_html", "render_json", "render_text"],
        "review.serve": ["serve_console"],
        "review.settings": ["ReviewConfig", "load_review_config"],
        "review.tasks": ["TaskStore"],
    }.items()
    for name in names
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
