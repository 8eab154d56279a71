"""The runtime: the moderation steps, the consume loop, Ray actors and Serve deployments.

- `steps.Moderator`: where a post goes next, step by step (decode, signals, policies, outcome).
- `gathering`, `stages`, `model_tasks`: computing the signals a post's policies need, cheap
  producers first, the models by cost.
- `consumer.ModerationLoop`: batches from Kafka through the moderator into the sinks, offsets
  committed only after every sink returned.
- `local`: the same steps in-process (`vlmod moderate`, tests); `serving`, `actors`, `runner`:
  the model replica pool on Ray Serve, consumer actors and the HTTP API.
- `specialist_work` (pure), `pooled` (the consumer's side), `specialist_pool` (Serve): the CPU
  specialists on a pool of their own with `specialists.placement: pool`.
- `config.PipelineConfig` (`load_config`): the pipeline's settings, composed from each package's
  own; `producer_registry`: the signal producers a pipeline registers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "pipelines.config": ["PipelineConfig", "load_config"],
        "pipelines.consumer": ["LoopStats", "ModerationLoop"],
        "pipelines.local": ["LocalModerator", "build_moderator"],
        "pipelines.producer_registry": ["load_producer", "pipeline_registry", "producer_registry"],
        "pipelines.runner": ["PipelineRun"],
        "pipelines.steps": ["Moderator"],
    },
)
