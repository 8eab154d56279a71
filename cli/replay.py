"""`vlmod replay`: decide recorded posts again with candidate policies, and count the change."""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.exits import or_exit
from cli.pipeline import MODEL_HELP
from cli.policy import CONFIG_HELP, PRODUCER_HELP, policy_registry
from cli.report import RECORD_HELP, SOURCE_HELP, print_problems, write_page
from contracts.errors import ModerationError

if TYPE_CHECKING:
    from kafka_io.settings import KafkaSettings
    from policies.policy_set import PolicySet
    from replay.compute import MissingValues
    from replay.metrics import Labels, ReplayReport
    from review.report_io import RecordLimits

HISTORY_HELP = (
    "Recorded verdicts (the first of each post carries its record): a JSONL file, topic:NAME "
    "(needs --bootstrap), or the PostgreSQL sink's postgresql://... address."
)
TIME_HELP = "ISO 8601 time (UTC when no offset is given); by when a post was first decided."
UNCHANGED_HELP = (
    "Decide again even with a policy whose file is the one that decided the post (the same "
    "sha256); by default its recorded verdict stands. Checks that the records are complete."
)
COMPUTE_HELP = (
    "Compute the values a candidate lacks through the producers and the model (--model, or "
    "the --config's models), the answer cache first, instead of counting the post as not "
    "replayable."
)
TO_QUEUE_HELP = (
    "Write a stratified sample of the changed posts (--sample N) as replay-QA review tasks in "
    "this review queue, on the topic each candidate policy routes it to (its queues: entry, "
    "else review.<queue>); needs --bootstrap. Their decisions label the posts in the next "
    "replay; running again writes no task twice (the console keeps one per key)."
)
SAMPLE_HELP = (
    "With --to-queue: how many changed posts to write, in all; stratified by each candidate's "
    "before->after transition, at least one per stratum where N allows."
)
WORKERS_HELP = (
    "Processes replaying a JSONL history, each the posts whose id hashes to it; the report is "
    "the one a single process gives. Default: one per core up to 4 for a file of 16 MiB or "
    "more, else 1. A topic, a database, --limit, --compute-missing and --to-queue use one."
)
PROGRESS_EVERY_S = 1.0
AUTO_WORKERS_MIN_BYTES = 16 * 1024 * 1024
MAX_AUTO_WORKERS = 4


def replay(
    policy: Annotated[Path, typer.Option("--policy", help="Directory of candidate policies.")],
    history: Annotated[str, typer.Option("--history", help=HISTORY_HELP)],
    decisions: Annotated[
        str | None,
        typer.Option("--decisions", help=f"Reviewers' ReviewDecision records. {SOURCE_HELP}"),
    ] = None,
    since: Annotated[str | None, typer.Option(help=f"Posts from. {TIME_HELP}")] = None,
    until: Annotated[str | None, typer.Option(help=f"Posts before. {TIME_HELP}")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Replay at most N posts.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (keys sorted).")] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also write an HTML page: transition matrix, plots, changed posts."
        ),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", help="HOST:PORT of the Kafka brokers.")
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(help="A progress line on stderr (default: when stderr is a terminal)."),
    ] = None,
    producer: Annotated[list[str] | None, typer.Option(help=PRODUCER_HELP)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=CONFIG_HELP)] = None,
    max_record_bytes: Annotated[int | None, typer.Option(min=1, help=RECORD_HELP)] = None,
    decide_unchanged: Annotated[bool, typer.Option(help=UNCHANGED_HELP)] = False,
    compute_missing: Annotated[bool, typer.Option(help=COMPUTE_HELP)] = False,
    model: Annotated[
        str | None,
        typer.Option(help=f"With --compute-missing: {MODEL_HELP} Default: the config's model."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="VLMOD_REDIS_URL",
            help="With --compute-missing: the answer cache (and hash banks), read first.",
        ),
    ] = None,
    to_queue: Annotated[
        str | None, typer.Option("--to-queue", metavar="QUEUE", help=TO_QUEUE_HELP)
    ] = None,
    sample: Annotated[int | None, typer.Option(min=1, help=SAMPLE_HELP)] = None,
    workers: Annotated[int | None, typer.Option(min=1, help=WORKERS_HELP)] = None,
) -> None:
    """Decide recorded posts again with the policies in --policy and report what would change.

    Each post is decided from its record (its fields and every producer value recorded), by
    every candidate policy, and compared with its recorded verdict of the same policy id.
    """
    from kafka_io.settings import KafkaSettings
    from review.report_io import RecordLimits, ReportSourceError

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # A recorded value of the wrong type is a rule error in the report, as it was live; the CEL
    # runtime's own warning line for each one is noise on the author's terminal.
    logging.getLogger("cel").setLevel(logging.ERROR)
    window = (_moment(since, "--since"), _moment(until, "--until"))
    _check_queue_options(to_queue, sample, bootstrap)
    policies = _candidates(policy, producer, config)
    compute = _computer(policy, config, model, redis_url, producer) if compute_missing else None
    kafka = KafkaSettings(bootstrap_servers=bootstrap) if bootstrap else None
    limits = RecordLimits() if max_record_bytes is None else RecordLimits(max_record_bytes)
    show = sys.stderr.isatty() if progress is None else progress
    single = limit is not None or compute is not None or to_queue is not None
    processes = 1 if single else _workers(history, workers)
    try:
        report = _run(
            policies,
            history,
            decisions,
            kafka,
            limits,
            window,
            limit,
            show,
            decide_unchanged,
            compute,
            sample if to_queue else None,
            processes,
        )
        if to_queue is not None:
            assert kafka is not None  # _check_queue_options
            report.to_queue = _write_tasks(report, to_queue, kafka)
        if html is not None:
            from replay.html import render_html

            write_page(html, render_html(report))
    except ReportSourceError as error:
        print_problems(error.problems)
        raise typer.Exit(1) from None
    except ModerationError as error:
        print_problems([f"error: {error.reason}"])
        raise typer.Exit(1) from None
    from replay.render import render_json, render_text

    typer.echo(render_json(report) if as_json else render_text(report))


def _check_queue_options(queue: str | None, sample: int | None, bootstrap: str | None) -> None:
    """--to-queue needs --sample and --bootstrap, and --sample needs --to-queue; else exit 2."""
    wrong = None
    if queue is not None and sample is None:
        wrong = "--to-queue needs --sample N"
    elif queue is not None and bootstrap is None:
        wrong = "--to-queue needs --bootstrap HOST:PORT"
    elif queue is None and sample is not None:
        wrong = "--sample is for --to-queue"
    if wrong is not None:
        typer.echo(f"error: {wrong}", err=True)
        raise typer.Exit(2)


def _write_tasks(report: ReplayReport, queue: str, kafka: KafkaSettings) -> dict[str, object]:
    """The sample's replay-QA tasks, written to their topics; what was written."""
    from pydantic import ValidationError

    from contracts.records import describe_validation_error
    from replay.to_queue import publish, queued_summary, replay_task
    from review.report_io import BadRecord

    assert report.sample is not None
    queued = []
    for drawn in report.sample.drawn():
        try:
            queued.append(replay_task(drawn, queue))
        except (ValidationError, BadRecord) as error:  # no valid Post, or no whole Verdict
            why = error.reason if isinstance(error, BadRecord) else describe_validation_error(error)
            print_problems([f"post {drawn.post.post_id}: not queued: {why}"])
    publish(queued, kafka)
    return queued_summary(queued)


def _moment(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time, UTC when naive; a bad one is one line, exit 2."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(f"error: {option} {text!r} is not an ISO 8601 time", err=True)
        raise typer.Exit(2) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _candidates(directory: Path, producer: list[str] | None, config: Path | None) -> PolicySet:
    """The candidate policies, validated as `vlmod policy check` does; refused: FILE:LINE:COL."""
    from policies.exceptions import PolicyInvalid
    from policies.loader import load_policy_dir

    try:
        return load_policy_dir(
            directory, require_active=False, registry=policy_registry(producer, config)
        )
    except PolicyInvalid as error:
        for problem in error.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None


def _computer(
    policy: Path, config: Path | None, model: str | None, redis: str | None, extra: list[str] | None
) -> MissingValues:
    """The producers and models of `vlmod moderate` with the same options; a bad one exits 2."""
    from cli.pipeline import moderate_config
    from pipelines.producer_registry import producer_registry
    from replay.compute import MissingValues

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    settings = or_exit(lambda: moderate_config(config, policy, model, None, redis))
    if settings.model.name_or_path.startswith("tiny:"):
        typer.echo("note: the tiny model has random weights; pass --model for a real one", err=True)
    names = [*settings.producers, *(extra or ())]
    registry = or_exit(lambda: producer_registry(names, settings.model_names()))
    return or_exit(lambda: MissingValues(settings, registry))


def _run(
    policies: PolicySet,
    history: str,
    decisions: str | None,
    kafka: KafkaSettings | None,
    limits: RecordLimits,
    window: tuple[datetime | None, datetime | None],
    limit: int | None,
    show: bool,
    decide_unchanged: bool,
    compute: MissingValues | None,
    sample: int | None = None,
    workers: int = 1,
) -> ReplayReport:
    """Read the sources (bad records named on stderr), replay and count; with `sample`, the
    report keeps a stratified sample of that many changed posts no reviewer labelled; with
    `workers` over 1 (a JSONL file), that many processes share the posts."""
    from replay.history import read_history, within
    from replay.metrics import Labels
    from replay.run import replay_posts
    from replay.sample import StratifiedSample

    labels = Labels()
    skipped = {}
    if decisions is not None:
        from replay.metrics import labels_from
        from review.report_io import read_decisions

        decided = read_decisions(decisions, kafka, limits)
        print_problems(decided.problem_lines())
        labels, skipped["decisions"] = labels_from(decided.records), decided.skipped
    if workers > 1:
        return _run_parallel(
            policies, history, labels, limits, window, show, decide_unchanged, workers, skipped
        )
    # With a sample, the drawn posts' verdicts are validated whole from their lines.
    recorded = read_history(history, kafka, limits, keep_lines=sample is not None)
    print_problems(recorded.read.problem_lines())
    skipped["history"] = recorded.read.skipped
    posts = within(recorded.posts(), *window, limit=limit)
    line = ProgressLine() if show else None
    drawn = StratifiedSample(sample) if sample is not None else None
    report = replay_posts(
        posts,
        policies,
        labels,
        progress=line,
        decide_unchanged=decide_unchanged,
        compute=compute,
        sample=drawn,
    )
    if line is not None:
        line.end()
    report.skipped_records = skipped
    return report


def _workers(history: str, asked: int | None) -> int:
    """How many processes replay `history`: as asked, or by the file's size; 1 but for a file."""
    from replay.history import is_dsn
    from review.report_io import topic_of

    if is_dsn(history) or topic_of(history) is not None:
        return 1
    if asked is not None:
        return asked
    try:
        size = os.path.getsize(history)
    except OSError:
        return 1  # the reader names the problem
    if size < AUTO_WORKERS_MIN_BYTES:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS))


def _run_parallel(
    policies: PolicySet,
    history: str,
    labels: Labels,
    limits: RecordLimits,
    window: tuple[datetime | None, datetime | None],
    show: bool,
    decide_unchanged: bool,
    workers: int,
    skipped: dict[str, int],
) -> ReplayReport:
    """`_run` over `workers` processes (`replay.parallel`)."""
    from replay.parallel import Job, replay_file

    job = Job(history, policies, labels, limits, window, workers, decide_unchanged)
    line = ProgressLine() if show else None
    report, read = replay_file(job, line)
    print_problems(read.problem_lines())
    if line is not None:
        line.end()
    skipped["history"] = read.skipped
    report.skipped_records = skipped
    return report


class ProgressLine:
    """`replayed N posts (R/s)` on stderr, rewritten in place at most once a second."""

    def __init__(self) -> None:
        self.started = self.shown = time.monotonic()
        self.done = 0

    def __call__(self, done: int) -> None:
        self.done = done
        if time.monotonic() - self.shown >= PROGRESS_EVERY_S:
            self._write()

    def end(self) -> None:
        """The last count, and the end of the line."""
        self._write()
        sys.stderr.write("\n")

    def _write(self) -> None:
        self.shown = time.monotonic()
        rate = self.done / max(self.shown - self.started, 1e-9)
        sys.stderr.write(f"\rreplayed {self.done:,} posts ({rate:,.0f}/s)")
        sys.stderr.flush()
