"""`vlmod demo`, `vlmod run` and `vlmod moderate`: the pipeline's commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer


def demo(
    model: Annotated[
        str, typer.Option(help="tiny:<arch> (random weights, built offline), hub id or local path.")
    ] = "tiny:smolvlm",
    policies: Annotated[
        Path | None, typer.Option(help="Policy directory (default: the shipped examples).")
    ] = None,
    posts: Annotated[int, typer.Option(min=1, help="Well-formed sample posts to publish.")] = 24,
) -> None:
    """Run the whole pipeline on embedded Kafka, Redis and Ray over bundled sample posts."""
    from pipelines.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    report = run_demo(model=model, policy_dir=policies, posts=posts)
    from pipelines.samples import sample_posts

    expected = sample_posts(posts)
    if report.resolved(1) < len(expected):
        raise typer.Exit(1)
