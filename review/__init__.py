"""Human review: review tasks in Redis, the review console, reviewers' decisions, and the
quality report that measures every rule against them.

- `settings`: `ReviewConfig` (`load_review_config`), the console's file.
- `ingest.ReviewIngest`: review-queue topics into the task store (`tasks.TaskStore`).
- `console.build_console`, `serve.serve_console`: the web console and what feeds it.
- `decisions.DecisionDesk`: a decision decided once in Redis, then published as decided.
- `report`, `report_io`, `report_render`: the quality report from verdicts and decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "review.console": ["build_console"],
        "review.decisions": ["DecisionDesk"],
        "review.ingest": ["ReviewIngest"],
        "review.report": ["QualityReport", "build_report"],
        "review.report_io": ["read_decisions", "read_verdicts"],
        "review.report_render": ["render_html", "render_json", "render_text"],
        "review.serve": ["serve_console"],
        "review.settings": ["ReviewConfig", "load_review_config"],
        "review.tasks": ["TaskStore"],
    },
)
