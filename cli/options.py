"""Options several `vlmod` commands share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.exits import or_exit

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig

DEFAULT_REDIS = "redis://localhost:6379/0"

RedisUrl = Annotated[
    str,
    typer.Option(
        envvar="VLMOD_REDIS_URL",
        help="Redis holding the banks, heads and recent-images window (the pipeline's redis_url).",
    ),
]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="VLMOD_CONFIG",
        help="The pipeline's YAML: the recent posts the change decides otherwise are published "
        "again to their topic, to be decided again (its Kafka; its redis_url, if set, "
        "overrides --redis-url).",
    ),
]


def config_or_exit_2(path: Path | None) -> PipelineConfig | None:
    """The pipeline config at `path`, or exit 2 with its problems; None when not given."""
    if path is None:
        return None
    from pipelines.config import load_config

    return or_exit(lambda: load_config(path), code=2)
