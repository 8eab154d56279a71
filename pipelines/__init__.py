"""The runtime: the moderation steps, the consume loop, Ray actors and Serve deployments.

- `steps.Moderator`: where a post goes next, step by step (decode, signals, policies, outcome).
- `gathering`, `stages`, `model_tasks`: computing the signals a post's policies need, cheap
  producers first, the models by cost.
- `consumer.ModerationLoop`: batches from Kafka through the moderator into the sinks, offsets
  committed only after every sink returned.
- `local`: the same steps in-process (`vlmod moderate`, tests); `serving`, `actors`, `runner`:
  the model replica pool on Ray Serve, consumer actors and the HTTP API.
- `config.PipelineConfig` (`load_config`): the pipeline's settings, composed from each package's
  own; `producer_registry`: the signal producers a pipeline registers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig, load_config
    from pipelines.consumer import LoopStats, ModerationLoop
    from pipelines.local import LocalModerator, build_moderator
    from pipelines.producer_registry import load_producer, pipeline_registry, producer_registry
    from pipelines.runner import PipelineRun
    from pipelines.steps import Moderator

__all__ = [
    "LocalModerator",
    "LoopStats",
    "ModerationLoop",
    "Moderator",
    "PipelineConfig",
    "PipelineRun",
    "build_moderator",
    "load_config",
    "load_producer",
    "pipeline_registry",
    "producer_registry",
]

# Imported on first use, so importing one module of the package stays cheap.
_HOMES = {
    name: home
    for home, names in {
        "pipelines.config": ["PipelineConfig", "load_config"],
        "pipelines.consumer": ["LoopStats", "ModerationLoop"],
        "pipelines.local": ["LocalModerator", "build_moderator"],
        "pipelines.producer_registry": ["load_producer", "pipeline_registry", "producer_registry"],
        "pipelines.runner": ["PipelineRun"],
        "pipelines.steps": ["Moderator"],
    }.items()
    for name in names
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
