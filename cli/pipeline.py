"""`vlmod demo`, `vlmod run` and `vlmod moderate`: the pipeline's commands."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.exits import or_exit

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig

MODEL_HELP = "tiny:<arch> (random weights, built offline), a hub id, or a local path."


class Engine(StrEnum):
    """The engines `vlmod moderate --engine` offers."""

    EAGER = "eager"
    PLAIN = "plain"


def demo(
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "tiny:smolvlm",
    policies: Annotated[
        Path | None, typer.Option(help="Policy directory (default: the shipped examples).")
    ] = None,
    posts: Annotated[int, typer.Option(min=1, help="Well-formed sample posts to publish.")] = 24,
    review: Annotated[
        bool, typer.Option(help="Then serve the review console on the review topics until Ctrl-C.")
    ] = False,
    review_port: Annotated[int, typer.Option(help="Port of the review console.")] = 8089,
) -> None:
    """Run the whole pipeline on embedded Kafka, Redis and Ray over bundled sample posts."""
    from demo.run import run_demo

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its slow-poll notes are not the demo's
    _exit_on_signals()  # so every `with` unwinds and stops the servers it started
    port = review_port if review else None
    try:
        report = or_exit(
            lambda: run_demo(model=model, policy_dir=policies, posts=posts, review_port=port)
        )
    except SystemExit as stop:
        if not review or stop.code != 128 + signal.SIGINT:
            raise
        typer.echo("stopped")  # Ctrl-C is how the console ends; the services are stopped
        return
    if not report.complete:
        raise typer.Exit(1)


def _exit_on_signals() -> None:
    """SIGTERM and SIGINT raise SystemExit(128 + signal) in the main thread."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, leave)


def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML file.")],
    stats_every_s: Annotated[float, typer.Option(help="Seconds between progress lines.")] = 10.0,
    verbose: Annotated[bool, typer.Option(help="Show kafka-python's own log lines too.")] = False,
) -> None:
    """Run the streaming pipeline until SIGTERM or Ctrl-C, then drain, commit and exit 0."""
    import ray

    from kafka_io.clients import create_topics
    from pipelines.config import load_config
    from pipelines.producer_registry import pipeline_registry
    from pipelines.runner import PipelineRun
    from pipelines.telemetry import install_exporters
    from policies.loader import load_policy_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Every Kafka failure here ends as one line of ours; kafka-python's retry logs are noise.
    logging.getLogger("kafka").setLevel(logging.NOTSET if verbose else logging.CRITICAL)
    settings = or_exit(lambda: load_config(config))
    registry = or_exit(lambda: pipeline_registry(settings))
    policy_set = or_exit(lambda: load_policy_dir(settings.policy_dir, registry=registry))
    # Before Ray: an unreachable broker fails in seconds, not minutes (topics come at start).
    or_exit(lambda: create_topics(settings.kafka, []))
    install_exporters(settings.telemetry)
    ray.init(address=os.environ.get("RAY_ADDRESS"), configure_logging=False)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own
        signal.signal(signum, lambda *_: stop.set())
    pipeline = PipelineRun(settings)
    or_exit(lambda: pipeline.start(policy_set))
    typer.echo(
        f"moderating {', '.join(settings.topics.inputs)}; SIGTERM or Ctrl-C drains and stops"
    )
    while not stop.wait(stats_every_s):
        totals = _totals(pipeline.stats())
        typer.echo(
            f"consumed {totals['consumed']} · written {totals['written']} · "
            f"batches {totals['batches']} · failed batches {totals['failed_batches']}"
        )
    typer.echo("draining in-flight batches...")
    pipeline.stop()
    typer.echo("stopped cleanly")


def moderate(
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Policy file directory (default: the config's policy_dir)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"{MODEL_HELP} Default: the config's model, else tiny:smolvlm."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="A pipeline YAML: its models (`models:`, so a cascade runs as in the pipeline), "
            "specialists, image limits, Redis and policy_dir; its Kafka settings are not used.",
        ),
    ] = None,
    text: Annotated[str | None, typer.Option(help="The post's text.")] = None,
    image: Annotated[
        list[str] | None, typer.Option(help="Image file or http(s) URL; repeat for more.")
    ] = None,
    meta: Annotated[list[str] | None, typer.Option(help="KEY=VALUE metadata; repeatable.")] = None,
    post_id: Annotated[str, typer.Option("--id", help="Post id.")] = "cli-post",
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="VLMOD_REDIS_URL", help="Redis of the hash banks and answer cache."),
    ] = None,
    engine: Annotated[
        Engine | None,
        typer.Option(
            help="eager (default): questions share their prompt's prefix (checked at load against "
            "plain). plain: each question one plain forward of its whole prompt, the reference. "
            "Applies to the default model."
        ),
    ] = None,
) -> None:
    """Moderate one post locally, without Kafka, and print its Verdict JSON."""
    from pipelines.local import LocalModerator
    from pipelines.producer_registry import pipeline_registry
    from policies.loader import load_policy_dir

    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # stderr: one line or none
    settings = or_exit(lambda: moderate_config(config, policy, model, engine, redis_url))
    max_bytes = settings.images.max_bytes
    body = or_exit(lambda: _post_body(post_id, text, image or [], meta or [], max_bytes))
    registry = or_exit(lambda: pipeline_registry(settings))
    policy_set = or_exit(lambda: load_policy_dir(settings.policy_dir, registry=registry))
    if settings.model.name_or_path.startswith("tiny:"):
        typer.echo("note: the tiny model has random weights; pass --model for a real one", err=True)
    moderator = or_exit(lambda: LocalModerator.with_policies(settings, policy_set, registry))
    verdict, dead_letter = moderator.moderate_one(body)
    if dead_letter is not None:
        typer.echo(f"error: {dead_letter.stage}: {dead_letter.error}", err=True)
        raise typer.Exit(1)
    assert verdict is not None
    typer.echo(verdict.model_dump_json(indent=2))


def moderate_config(
    file: Path | None,
    policy: Path | None,
    model: str | None,
    engine: Engine | None,
    redis_url: str | None,
) -> PipelineConfig:
    """The config `vlmod moderate` runs: the file's (or the defaults), with the options given
    on the command line taking the place of its values."""
    from contracts.errors import ConfigInvalid
    from pipelines.config import PipelineConfig, load_config

    if file is None and policy is None:
        raise ConfigInvalid("name the policies: --policy DIR, or --config FILE with a policy_dir")
    base = load_config(file) if file is not None else PipelineConfig()
    chosen: dict[str, Any] = {"name_or_path": model or (None if file else "tiny:smolvlm")}
    chosen["engine"] = engine.value if engine is not None else None
    model_settings = base.model.model_copy(
        update={key: value for key, value in chosen.items() if value is not None}
    )
    updates: dict[str, Any] = {"model": model_settings}
    if policy is not None:
        updates["policy_dir"] = str(policy)
    if redis_url is not None:
        updates["redis_url"] = redis_url
    return base.model_copy(update=updates)


def _post_body(
    post_id: str, text: str | None, images: list[str], meta: list[str], max_image_bytes: int
) -> dict[str, Any]:
    """The JSON post the options describe; local image files are inlined."""
    require_utf8(post_id, "--id")
    if text is not None:
        require_utf8(text, "--text")
    refs = [_image_ref(source, max_image_bytes) for source in images]
    return {"id": post_id, "text": text, "images": refs, "meta": _meta_pairs(meta)}


def _image_ref(source: str, max_bytes: int) -> dict[str, str]:
    """A URL as it is, a local file inlined as base64 once its size is known to fit."""
    if source.startswith(("http://", "https://")):
        return {"url": source}
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"image not found: {source}")
    size = path.stat().st_size
    if size > max_bytes:  # before reading: a huge file must not be loaded, nor base64-encoded
        raise ValueError(
            f"{source} is {size} bytes, over the image limit of {max_bytes} (images.max_bytes)"
        )
    return {"data": base64.b64encode(path.read_bytes()).decode("ascii")}


def _meta_pairs(meta: list[str]) -> dict[str, Any]:
    """KEY=VALUE options as a dict, values read as JSON scalars where they parse."""
    pairs = {}
    for item in meta:
        require_utf8(item, "--meta")
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--meta wants KEY=VALUE, got {item!r}")
        pairs[key] = _scalar(value)
    return pairs


def require_utf8(value: str, option: str) -> None:
    """Refuse an argument that held bytes that are not UTF-8 (argv decodes them as surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise ValueError(f"{option} is not valid UTF-8 ({what} at character {exc.start})") from None


def _scalar(value: str) -> Any:
    """Numbers and booleans as JSON reads them; anything else stays text."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _totals(stats: list[dict[str, int]]) -> dict[str, int]:
    keys = ("consumed", "written", "batches", "failed_batches")
    return {key: sum(s.get(key, 0) for s in stats) for key in keys}
