"""`vlmod report`: how good rules and signals are, measured by reviewers' decisions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from contracts.errors import ModerationError

SOURCE_HELP = "A JSONL file, or topic:NAME to read a topic from the beginning (needs --bootstrap)."


def report(
    decisions: Annotated[
        str, typer.Option("--decisions", help=f"ReviewDecision records. {SOURCE_HELP}")
    ],
    verdicts: Annotated[
        str,
        typer.Option("--verdicts", help=f"Verdict and ShadowVerdict records. {SOURCE_HELP}"),
    ],
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", help="HOST:PORT of the Kafka brokers.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML page with plots here.")
    ] = None,
    target_precision: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Precision a signal threshold must reach."),
    ] = 0.9,
) -> None:
    """Per rule precision and overturns, signal calibration and shadow policies, from reviews."""
    from pipelines.config import KafkaSettings
    from pipelines.review.report import build_report
    from pipelines.review.report_io import ReportSourceError, read_decisions, read_verdicts
    from pipelines.review.report_render import render_html, render_json, render_text

    # Every Kafka failure ends as one line of ours; kafka-python's retry logs are noise.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    kafka = KafkaSettings(bootstrap_servers=bootstrap) if bootstrap else None
    try:
        quality = build_report(
            read_decisions(decisions, kafka),
            read_verdicts(verdicts, kafka),
            target_precision=target_precision,
        )
        if html is not None:
            _write(html, render_html(quality))
    except ReportSourceError as error:
        for problem in error.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    except ModerationError as error:
        typer.echo(f"error: {error.reason}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render_json(quality) if as_json else render_text(quality))


def _write(path: Path, page: str) -> None:
    """Write the HTML page; a path that cannot be written is one line, exit 1."""
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        typer.echo(f"error: cannot write {path}: {error.strerror or error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path}", err=True)
