"""`vlmod report`: how good rules and signals are, measured by reviewers' decisions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contracts.errors import ModerationError

if TYPE_CHECKING:
    from kafka_io.settings import KafkaSettings
    from review.report import QualityReport
    from review.report_io import RecordLimits

SOURCE_HELP = "A JSONL file, or topic:NAME to read a topic from the beginning (needs --bootstrap)."
RECORD_HELP = (
    "Skip any line or topic record longer than this many bytes (default 1 MiB). Like every bad "
    "record (nested too deep, not JSON, not the right record) it is named on stderr as "
    "FILE:LINE or topic:NAME[PARTITION]@OFFSET, and the report covers the rest."
)


def report(
    decisions: Annotated[
        str, typer.Option("--decisions", help=f"ReviewDecision records. {SOURCE_HELP}")
    ],
    verdicts: Annotated[
        str,
        typer.Option("--verdicts", help=f"Verdict and ShadowVerdict records. {SOURCE_HELP}"),
    ],
    golden: Annotated[
        str | None,
        typer.Option(
            "--golden",
            help="GoldenResult records (the console's golden topic), for each reviewer's "
            f"accuracy on golden tasks. {SOURCE_HELP}",
        ),
    ] = None,
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
    # None, not the number: the default lives in report_io, which loads only when the command runs.
    max_record_bytes: Annotated[int | None, typer.Option(min=1, help=RECORD_HELP)] = None,
) -> None:
    """Per rule precision and overturns, signal calibration and shadow policies, from reviews;
    reviewer agreement (Cohen's kappa per queue) and golden accuracy per reviewer."""
    from kafka_io.settings import KafkaSettings
    from review.report_io import RecordLimits, ReportSourceError
    from review.report_render import render_html, render_json, render_text

    # Every Kafka failure ends as one line of ours; kafka-python's retry logs are noise.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    kafka = KafkaSettings(bootstrap_servers=bootstrap) if bootstrap else None
    limits = RecordLimits() if max_record_bytes is None else RecordLimits(max_record_bytes)
    try:
        quality = _build(decisions, verdicts, golden, kafka, limits, target_precision)
        if html is not None:
            write_page(html, render_html(quality))
    except ReportSourceError as error:
        print_problems(error.problems)
        raise typer.Exit(1) from None
    except ModerationError as error:
        print_problems([f"error: {error.reason}"])
        raise typer.Exit(1) from None
    typer.echo(render_json(quality) if as_json else render_text(quality))


def _build(
    decisions: str,
    verdicts: str,
    golden: str | None,
    kafka: KafkaSettings | None,
    limits: RecordLimits,
    target_precision: float,
) -> QualityReport:
    """Read both sources, naming their bad records on stderr, and measure what is left."""
    from review.report import build_report
    from review.report_io import read_decisions, read_golden, read_verdicts

    decided = read_decisions(decisions, kafka, limits)
    print_problems(decided.problem_lines())
    verdicted = read_verdicts(verdicts, kafka, limits)
    print_problems(verdicted.problem_lines())
    skipped = {"decisions": decided.skipped, "verdicts": verdicted.skipped}
    results = []
    if golden is not None:
        scored = read_golden(golden, kafka, limits)
        print_problems(scored.problem_lines())
        results, skipped["golden"] = scored.records, scored.skipped
    return build_report(
        decided.records,
        verdicted.records,
        target_precision=target_precision,
        skipped_records=skipped,
        golden=results,
    )


def print_problems(lines: list[str]) -> None:
    """Each line on stderr, printable: a reason may quote a record, or a file's odd name."""
    from review.report_render import printable

    for line in lines:
        typer.echo(printable(line), err=True)


def write_page(path: Path, page: str) -> None:
    """Write the HTML page; a path that cannot be written is one line, exit 1."""
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        print_problems([f"error: cannot write {path}: {error.strerror or error}"])
        raise typer.Exit(1) from None
    print_problems([f"wrote {path}"])
