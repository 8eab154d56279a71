"""`vlmod heads ...`: heads trained on labelled post embeddings, versioned in Redis.

    vlmod heads train spam-wave --examples labelled.jsonl --model SmolVLM-256M-Instruct
    vlmod heads train spam-wave --decisions decisions.jsonl --history verdicts.jsonl --model M
    vlmod heads list
    vlmod heads show spam-wave --json
    vlmod heads promote spam-wave 3
    vlmod heads rollback spam-wave

A head's first version is active once trained; later versions wait for `promote`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.exits import or_exit
from cli.options import DEFAULT_REDIS, ConfigOption, RedisUrl, config_or_exit_2

if TYPE_CHECKING:
    from contracts.records import Post
    from heads import Head, HeadStore
    from pipelines.config import PipelineConfig

app = typer.Typer(help="Heads: classifiers on post embeddings, versioned.", no_args_is_help=True)

EXAMPLES_HELP = (
    'JSONL, one labelled example a line: {"post": {...a post...}, "label": 0 or 1}, embedded '
    'by --model, or {"embedding": [numbers], "label": 0 or 1} already embedded by it.'
)
MODEL_HELP = (
    "The model whose post embedding the head reads: tiny:<arch>, a hub id or a local path, as "
    "in the pipeline's `model.name_or_path`."
)
EMBED_BATCH = 16  # posts embedded in one forward


@app.command("train")
def train(
    name: Annotated[str, typer.Argument(help="Head name: lower-case letters, digits, dashes.")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)],
    examples: Annotated[Path | None, typer.Option("--examples", help=EXAMPLES_HELP)] = None,
    decisions: Annotated[
        str | None,
        typer.Option(
            help="Reviewers' decisions (JSONL or topic:NAME): they label the --history's posts "
            "as `vlmod report` reads them."
        ),
    ] = None,
    history: Annotated[
        str | None,
        typer.Option(
            help="Recorded verdicts (JSONL, topic:NAME, or the PostgreSQL sink's address): the "
            "posts the --decisions label, embedded by --model."
        ),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="HOST:PORT of the Kafka brokers, for topic:NAME sources.")
    ] = None,
    model_version: Annotated[
        str | None, typer.Option(help="That model's revision, when known.")
    ] = None,
    precision: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Precision the threshold must reach.")
    ] = 0.9,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    redis_url: RedisUrl = DEFAULT_REDIS,
) -> None:
    """Train a logistic head on labelled embeddings and store it as NAME's next version."""
    from heads import EmbeddingRef, Examples, train_head
    from heads.model import NAME

    if not NAME.match(name):
        typer.echo(
            f"error: head name {name!r}: use lower-case letters, digits and dashes", err=True
        )
        raise typer.Exit(2)
    if (decisions is None) != (history is None):
        typer.echo("error: --decisions and --history go together", err=True)
        raise typer.Exit(2)
    if examples is None and decisions is None:
        typer.echo("error: give --examples FILE, or --decisions with --history", err=True)
        raise typer.Exit(2)
    posts, vectors, labels = or_exit(lambda: read_examples(examples)) if examples else ([], [], [])
    if decisions is not None and history is not None:
        reviewed, reviewed_labels = reviewed_posts(decisions, history, bootstrap)
        posts, labels = [*posts, *reviewed], [*labels, *reviewed_labels]
    if posts:
        typer.echo(f"embedding {len(posts)} posts with {model}", err=True)
        embedded = or_exit(lambda: embed_posts(model, posts))
        if vectors and len(vectors[0]) != len(embedded[0]):
            typer.echo(
                f"error: {examples}: the embeddings given have {len(vectors[0])} dimensions, "
                f"{model}'s have {len(embedded[0])}: give embeddings of that model",
                err=True,
            )
            raise typer.Exit(2)
        vectors += embedded
    read = or_exit(lambda: Examples(vectors, labels))
    embedding = EmbeddingRef(model=model, version=model_version, dim=read.vectors.shape[1])
    head = or_exit(lambda: train_head(name, read, embedding, precision=precision, folds=folds))
    saved = or_exit(lambda: _store(redis_url).save(head), code=1)
    _print_trained(saved, as_json)


@app.command("list")
def list_heads(redis_url: RedisUrl = DEFAULT_REDIS) -> None:
    """Every head with its active version and its versions."""
    infos = or_exit(lambda: _store(redis_url).heads(), code=1)
    if not infos:
        typer.echo("no heads yet; train one with `vlmod heads train NAME --examples FILE`")
        return
    width = max(4, *(len(info.name) for info in infos))
    typer.echo(f"{'head':<{width}}  active  versions")
    for info in infos:
        active = "-" if info.active is None else str(info.active)
        versions = ", ".join(map(str, info.versions))
        typer.echo(f"{info.name:<{width}}  {active:>6}  {versions}")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Head name.")],
    version: Annotated[
        int | None, typer.Option(help="A version (default: the active one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole head as JSON.")] = False,
    redis_url: RedisUrl = DEFAULT_REDIS,
) -> None:
    """A head's version: its embedding, training and metrics."""
    store = _store(redis_url)
    head = or_exit(lambda: store.get(name, version), code=1)
    if as_json:
        typer.echo(head.model_dump_json(indent=2))
        return
    active = or_exit(lambda: store.active_version(name), code=1)
    state = "active" if head.version == active else "not active"
    typer.echo(
        f"head {head.name} v{head.version} ({state}), trained {head.trained_at:%Y-%m-%d %H:%M} UTC"
    )
    typer.echo(f"embedding: {head.embedding.model} ({head.embedding.dim} dims)")
    typer.echo(
        f"examples: {head.examples} ({head.positives} positive), sha256 {head.training_sha256[:12]}"
    )
    typer.echo(_metrics_line(head))


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Head name.")],
    version: Annotated[int, typer.Argument(help="The version to make active.")],
    redis_url: RedisUrl = DEFAULT_REDIS,
    config: ConfigOption = None,
) -> None:
    """Make VERSION the active version of NAME (what policies read from now on).

    With --config, the recent posts the new version flags otherwise are decided again.
    """
    settings = config_or_exit_2(config)
    redis_url = settings.redis_url if settings is not None and settings.redis_url else redis_url
    store = _store(redis_url)
    before = _active_or_none(store, name)
    changed = or_exit(lambda: store.promote(name, version), code=1)
    typer.echo(f"head {name}: v{version} " + ("is now active" if changed else "was already active"))
    if changed:
        _recheck(store, redis_url, settings, name, before, version)


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Head name.")],
    redis_url: RedisUrl = DEFAULT_REDIS,
    config: ConfigOption = None,
) -> None:
    """Make the version that was active before the last promote active again.

    With --config, the recent posts it flags otherwise are decided again.
    """
    settings = config_or_exit_2(config)
    redis_url = settings.redis_url if settings is not None and settings.redis_url else redis_url
    store = _store(redis_url)
    before = _active_or_none(store, name)
    version = or_exit(lambda: store.rollback(name), code=1)
    typer.echo(f"head {name}: v{version} is active again")
    _recheck(store, redis_url, settings, name, before, version)


def _active_or_none(store: HeadStore, name: str) -> Head | None:
    """The active version of `name` before a change, None for a head without one."""
    from heads import HeadNotFound

    def get() -> Head | None:
        try:
            return store.get(name)
        except HeadNotFound:
            return None

    return or_exit(get, code=1)


def _recheck(
    store: HeadStore,
    redis_url: str,
    settings: PipelineConfig | None,
    name: str,
    before: Head | None,
    version: int,
) -> None:
    """Decide again the recent posts `version` flags otherwise than `before` (with a config)."""
    from heads.recent import RecentEmbeddings
    from heads.recheck import posts_flipped
    from pipelines.recheck import recent_heads_window, republish

    if settings is None:
        typer.echo("recent posts not re-checked: give --config (the pipeline's YAML)")
        return
    if not recent_heads_window(settings):
        typer.echo("recent posts not re-checked: the pipeline keeps no recent-embeddings window")
        return
    after = or_exit(lambda: store.get(name, version), code=1)
    if after.embedding.model != settings.model.name_or_path:
        typer.echo(
            f"warning: recent posts not re-checked: {name} v{version} was trained on "
            f"{after.embedding.model}'s embeddings, the pipeline's model is "
            f"{settings.model.name_or_path}: the pipeline leaves the head unavailable",
            err=True,
        )
        return
    window = or_exit(lambda: RecentEmbeddings(redis_url), code=1)
    entries, malformed = or_exit(window.read, code=1)
    window.close()
    flipped = posts_flipped(entries, before, after)
    if malformed:
        typer.echo(f"warning: {malformed} recent-embeddings entries could not be read", err=True)
    if not flipped:
        posts = len({entry.post_id for entry in entries})
        typer.echo(f"none of the {posts} recent post(s) {name} scored is flagged otherwise")
        return
    reason = f"head {name}@{version}"
    published, gone = or_exit(lambda: _republish(republish, settings, flipped, reason), code=1)
    if published:
        typer.echo(f"decided again ({reason}): {len(published)} recent post(s) published again")
    if gone:
        typer.echo(
            f"error: {len(gone)} post(s) flagged otherwise are no longer in their topic (past "
            f"its retention), not decided again: {', '.join(gone[:10])}",
            err=True,
        )
        raise typer.Exit(1)


def _republish(republish: Any, settings: PipelineConfig, posts: Any, reason: str) -> Any:
    from kafka_io.clients import reaching_kafka

    with reaching_kafka(settings.kafka):
        return republish(settings.kafka, posts, reason)


def read_examples(path: Path) -> tuple[list[Post], list[list[float]], list[int]]:
    """The posts to embed, the vectors given, and the labels (the given vectors' first, then the
    posts'), of a JSONL file; a bad line is an error naming FILE:LINE."""
    from heads import TrainingRefused

    posts: list[Post] = []
    vectors: list[list[float]] = []
    post_labels: list[int] = []
    vector_labels: list[int] = []
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            example, label = _example(line, where)
            if isinstance(example, list):
                if vectors and len(example) != len(vectors[0]):
                    raise TrainingRefused(
                        f"{where}: an embedding of {len(example)} where the first had "
                        f"{len(vectors[0])}"
                    )
                vectors.append(example)
                vector_labels.append(label)
            else:
                posts.append(example)
                post_labels.append(label)
    if not posts and not vectors:
        raise TrainingRefused(f"{path}: no examples in it")
    return posts, vectors, vector_labels + post_labels  # given vectors first, then the posts'


def _example(line: bytes, where: str) -> tuple[list[float] | Post, int]:
    from pydantic import ValidationError

    from contracts.records import Post
    from heads import TrainingRefused

    try:
        body = json.loads(line)
    except ValueError as error:
        raise TrainingRefused(f"{where}: not JSON: {error}") from None
    if not isinstance(body, dict):
        raise TrainingRefused(f"{where}: expected a JSON object")
    label = body.get("label")
    if label not in (0, 1) or isinstance(label, float | bool):
        raise TrainingRefused(f"{where}: `label` must be 0 or 1, got {label!r}")
    if "post" in body:
        try:
            return Post.model_validate(body["post"]), int(label)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise TrainingRefused(f"{where}: post.{field}: {first['msg']}") from None
    vector = body.get("embedding")
    if (
        not isinstance(vector, list)
        or not vector
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector)
    ):
        raise TrainingRefused(
            f"{where}: give `post` (a post to embed) or `embedding` (a non-empty list of numbers)"
        )
    return [float(x) for x in vector], int(label)


def reviewed_posts(
    decisions: str, history: str, bootstrap: str | None
) -> tuple[list[Post], list[int]]:
    """The history's posts the decisions label, with their labels; what is left out is said."""
    from kafka_io.settings import KafkaSettings
    from replay.history import read_history
    from replay.labelled import labelled_posts
    from replay.metrics import labels_from
    from review.report_io import read_decisions

    kafka = KafkaSettings(bootstrap_servers=bootstrap) if bootstrap else None
    decided = or_exit(lambda: read_decisions(decisions, kafka))
    recorded = or_exit(lambda: read_history(history, kafka))
    found = labelled_posts(recorded.posts(), labels_from(decided.records))
    skipped = decided.skipped + recorded.read.skipped
    typer.echo(
        f"{len(found.posts)} reviewed post(s) to learn from; {found.unlabelled} in the history "
        f"without a label" + (f"; {skipped} bad record(s) skipped" if skipped else ""),
        err=True,
    )
    for why, ids in found.left_out.items():
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        typer.echo(f"left out {len(ids)} labelled post(s) ({why}): {shown}", err=True)
    return found.posts, found.labels


def embed_posts(model: str, posts: list[Post]) -> list[list[float]]:
    """Each post's embedding by `model` (the shared-prefix engine where its check passes)."""
    from heads import TrainingRefused
    from heads.producer import POST_EMBEDDING
    from operators.images import ImageLoader
    from operators.jobs import PostJob
    from operators.loading import load_vlm
    from operators.selfcheck import checked
    from operators.tasks import VlmOperator
    from pipelines.config import PipelineConfig
    from pipelines.wiring import model_spec

    config = PipelineConfig.model_validate({"model": {"name_or_path": model}})
    vlm, _ = checked(load_vlm(model_spec(config)))
    operator, loader = VlmOperator(vlm), ImageLoader(config.images)
    vectors: list[list[float]] = []
    for start in range(0, len(posts), EMBED_BATCH):
        chunk = posts[start : start + EMBED_BATCH]
        jobs = [
            PostJob(
                tuple(loader.load(ref.payload()) for ref in post.images),
                post.text,
                (POST_EMBEDDING,),
            )
            for post in chunk
        ]
        for post, result in zip(chunk, operator.run_posts(jobs), strict=True):
            if isinstance(result, Exception):
                raise TrainingRefused(f"post {post.id}: {result}")
            vector = result.values[POST_EMBEDDING]
            if not isinstance(vector, list) or not vector:
                raise TrainingRefused(f"post {post.id}: nothing to embed (no text, no image)")
            vectors.append(vector)
    return vectors


def _store(url: str) -> HeadStore:
    from heads import HeadStore

    return or_exit(lambda: HeadStore.from_url(url), code=1)


def _metrics_line(head: Head) -> str:
    m = head.metrics

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return (
        f"held-out ({m.folds} folds): AUROC {fmt(m.auroc)}, precision {fmt(m.precision)} at "
        f"threshold {fmt(m.threshold)} (target {fmt(m.target_precision)}), ECE {fmt(m.ece)}"
    )


def _print_trained(head: Head, as_json: bool) -> None:
    m = head.metrics
    if as_json:
        body = {
            "name": head.name,
            "version": head.version,
            "auroc": m.auroc,
            "precision": m.precision,
            "threshold": m.threshold,
            "ece": m.ece,
            "examples": head.examples,
        }
        typer.echo(json.dumps(body, sort_keys=True))
        return
    typer.echo(
        f"head {head.name} v{head.version}: {head.examples} examples ({head.positives} positive)"
    )
    typer.echo(_metrics_line(head))
    if m.threshold is None:
        typer.echo(
            f"warning: no threshold reaches precision {m.target_precision}; the head flags "
            "nothing until one does (threshold 1.0)",
            err=True,
        )
