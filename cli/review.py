"""`vlmod review --config FILE`: the human review console, and what feeds it.

vlmod review --config review.yaml --host 127.0.0.1 --port 8089
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from cli.exits import or_exit


def review(
    config: Annotated[Path, typer.Option("--config", "-c", help="Review console YAML file.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8089,
) -> None:
    """Serve the review console: claim tasks, decide them, publish decisions."""
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
