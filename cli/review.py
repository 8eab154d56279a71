"""`vlmod review --config FILE`: the human review console, and what feeds it; and its golden tasks.

vlmod review --config review.yaml --host 127.0.0.1 --port 8089
vlmod review golden add spam --from golden-spam.jsonl --config review.yaml
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.exits import or_exit

if TYPE_CHECKING:
    from review.golden import GoldenSet
    from review.settings import ReviewConfig

app = typer.Typer(
    help="The review console: claim tasks, decide them, publish decisions.",
    invoke_without_command=True,
)
golden_app = typer.Typer(
    help="Golden tasks: known answers served among real tasks, scored.", no_args_is_help=True
)
app.add_typer(golden_app, name="golden")
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Review console YAML file.")]


@app.callback()
def review(
    context: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Review console YAML file.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8089,
) -> None:
    """Serve the review console: claim tasks, decide them, publish decisions."""
    if context.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo("error: give the console's config: vlmod review --config FILE", err=True)
        raise typer.Exit(2)
    _serve(config, host, port)


def _serve(config: Path, host: str, port: int) -> None:
    from review.serve import serve_console
    from review.settings import load_review_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # our errors say it in one line
    settings = or_exit(lambda: load_review_config(config))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    or_exit(
        lambda: serve_console(
            settings,
            host=host,
            port=port,
            stop_event=stop,
            on_ready=lambda url: typer.echo(f"review console on {url}; Ctrl-C stops"),
        )
    )
    typer.echo("stopped cleanly")


@golden_app.command("add")
def golden_add(
    queue: Annotated[str, typer.Argument(help="The review queue to serve them in.")],
    source: Annotated[
        Path, typer.Option("--from", help="JSONL of GoldenTask records (vlmod schema golden-task).")
    ],
    config: ConfigOption,
) -> None:
    """Store golden tasks for QUEUE; a bad line is named as FILE:LINE and nothing is stored."""
    from review.golden import read_golden_file

    settings, golden = _golden_set(config, queue)
    items = or_exit(lambda: read_golden_file(source), code=1)
    added = or_exit(lambda: golden.add(queue, items), code=1)
    total = len(or_exit(lambda: golden.ids(queue), code=1))
    rate = settings.golden.get(queue)
    typer.echo(
        f"{added} golden task(s) added to {queue} ({len(items) - added} known already); "
        f"{total} in all"
    )
    if rate is None or rate.rate == 0:
        typer.echo(f"note: {queue} has no golden rate yet; set golden: {{{queue}: {{rate: ...}}}}")


@golden_app.command("list")
def golden_list(
    queue: Annotated[str, typer.Argument(help="The review queue.")], config: ConfigOption
) -> None:
    """Print the ids of QUEUE's golden tasks, one a line."""
    _, golden = _golden_set(config, queue)
    for golden_id in or_exit(lambda: golden.ids(queue), code=1):
        typer.echo(golden_id)


def _golden_set(config: Path, queue: str) -> tuple[ReviewConfig, GoldenSet]:
    """The config and the golden tasks of its Redis, once `queue` is known to be a review queue."""
    from review.golden import GoldenSet
    from review.settings import load_review_config
    from review.tasks import TaskStore

    settings = or_exit(lambda: load_review_config(config))
    if queue not in settings.review_topics:
        known = ", ".join(settings.review_topics)
        message = f"error: {queue!r} is no review queue of {config}; review queues: {known}"
        typer.echo(message, err=True)
        raise typer.Exit(2)
    store = TaskStore(settings.redis_url, namespace=settings.namespace)
    return settings, GoldenSet(store)
