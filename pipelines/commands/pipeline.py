"""`vlmod demo`, `vlmod run` and `vlmod moderate`: the pipeline's commands."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from policies.exceptions import ModerationError

MODEL_HELP = "tiny:<arch> (random weights, built offline), a hub id, or a local path."


def demo(
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "tiny:smolvlm",
    policies: Annotated[
        Path | None, typer.Option(help="Policy directory (default: the shipped examples).")
    ] = None,
    posts: Annotated[int, typer.Option(min=1, help="Well-formed sample posts to publish.")] = 24,
) -> None:
    """Run the whole pipeline on embedded Kafka, Redis and Ray over bundled sample posts."""
    from pipelines.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    report = _or_exit(lambda: run_demo(model=model, policy_dir=policies, posts=posts))
    if not report.complete:
        raise typer.Exit(1)


def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML file.")],
    stats_every_s: Annotated[float, typer.Option(help="Seconds between progress lines.")] = 10.0,
) -> None:
    """Run the streaming pipeline until SIGTERM or Ctrl-C, then drain, commit and exit 0."""
    import ray

    from pipelines.config import load_config
    from pipelines.runner import PipelineRun
    from pipelines.telemetry import install_exporters
    from policies.loader import load_policy_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = _or_exit(lambda: load_config(config))
    policy_set = _or_exit(lambda: load_policy_dir(settings.policy_dir))
    install_exporters(settings.telemetry)
    ray.init(address=os.environ.get("RAY_ADDRESS"), configure_logging=False)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own
        signal.signal(signum, lambda *_: stop.set())
    pipeline = PipelineRun(settings)
    _or_exit(lambda: pipeline.start(policy_set))
    typer.echo(
        f"moderating {', '.join(settings.topics.inputs)}; SIGTERM or Ctrl-C drains and stops"
    )
    while not stop.wait(stats_every_s):
        totals = _totals(pipeline.stats())
        typer.echo(
            f"consumed {totals['consumed']} · produced {totals['produced']} · "
            f"batches {totals['batches']} · failed batches {totals['failed_batches']}"
        )
    typer.echo("draining in-flight batches...")
    pipeline.stop()
    typer.echo("stopped cleanly")


def moderate(
    policy: Annotated[Path, typer.Option("--policy", help="Policy file directory.")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "tiny:smolvlm",
    text: Annotated[str | None, typer.Option(help="The post's text.")] = None,
    image: Annotated[
        list[str] | None, typer.Option(help="Image file or http(s) URL; repeat for more.")
    ] = None,
    meta: Annotated[list[str] | None, typer.Option(help="KEY=VALUE metadata; repeatable.")] = None,
    post_id: Annotated[str, typer.Option("--id", help="Post id.")] = "cli-post",
) -> None:
    """Moderate one post locally, without Kafka, and print its Verdict JSON."""
    from pipelines.config import ModelSettings, PipelineConfig
    from pipelines.local import LocalModerator
    from policies.loader import load_policy_dir

    logging.basicConfig(level=logging.ERROR)
    body = _or_exit(lambda: _post_body(post_id, text, image or [], meta or []))
    policy_set = _or_exit(lambda: load_policy_dir(policy))
    config = PipelineConfig(model=ModelSettings(name_or_path=model), policy_dir=str(policy))
    if model.startswith("tiny:"):
        typer.echo("note: the tiny model has random weights; pass --model for a real one", err=True)
    moderator = _or_exit(lambda: LocalModerator.with_policies(config, policy_set))
    verdict, dead_letter = moderator.moderate_one(body)
    if dead_letter is not None:
        typer.echo(f"error: {dead_letter.stage}: {dead_letter.error}", err=True)
        raise typer.Exit(1)
    assert verdict is not None
    typer.echo(verdict.model_dump_json(indent=2))


def _post_body(
    post_id: str, text: str | None, images: list[str], meta: list[str]
) -> dict[str, Any]:
    """The JSON post the options describe; local image files are inlined."""
    refs = []
    for source in images:
        if source.startswith(("http://", "https://")):
            refs.append({"url": source})
            continue
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"image not found: {source}")
        refs.append({"data": base64.b64encode(path.read_bytes()).decode("ascii")})
    pairs = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--meta wants KEY=VALUE, got {item!r}")
        pairs[key] = _scalar(value)
    return {"id": post_id, "text": text, "images": refs, "meta": pairs}


def _scalar(value: str) -> Any:
    """Numbers and booleans as JSON reads them; anything else stays text."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _or_exit(action: Any) -> Any:
    """Run `action`; on a known error print its reason (no traceback) and exit 2."""
    try:
        return action()
    except (ModerationError, ValueError, OSError) as error:
        reason = getattr(error, "reason", None) or str(error)
        typer.echo(reason if "\n" in reason else f"error: {reason}", err=True)
        raise typer.Exit(2) from None


def _totals(stats: list[dict[str, int]]) -> dict[str, int]:
    keys = ("consumed", "produced", "batches", "failed_batches")
    return {key: sum(s.get(key, 0) for s in stats) for key in keys}
