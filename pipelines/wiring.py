"""From a PipelineConfig to the operators' own settings and a signal source per model."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from contracts.vlm import DEFAULT_MODEL
from pipelines.signal_source import NoopSignals, SignalSource

if TYPE_CHECKING:
    from operators.cache import SignalCache
    from operators.loading import Vlm
    from operators.spec import ModelSpec
    from pipelines.config import PipelineConfig

log = logging.getLogger(__name__)


def build_model_sources(config: PipelineConfig) -> dict[str, SignalSource]:
    """Every model of `config` in-process, by name: each loaded and checked on its own."""
    return {name: build_signal_source(config, name) for name in config.model_names()}


def build_signal_source(config: PipelineConfig, name: str = DEFAULT_MODEL) -> SignalSource:
    """The in-process source of model `name`: `noop`, else its VLM (cached when Redis is set).

    The cache is shared: its keys hold each model's own fingerprint (checkpoint, revision,
    prompt layout), so two models never read each other's answers.
    """
    settings = config.model_settings(name)
    if settings.name_or_path == "noop":
        return NoopSignals()
    from operators.loading import load_vlm
    from operators.tasks import VlmOperator
    from pipelines.replica_core import SignalComputer

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    vlm, note = checked_vlm(load_vlm(model_spec(config, name)), settings.self_check)
    operator = VlmOperator(vlm, signal_cache(config))
    return SignalComputer(operator, config.images, engine_note=note)


def checked_vlm(vlm: Vlm, on_mismatch: str) -> tuple[Vlm, str | None]:
    """The model on the engine the load-time check allows, and why when that is not the asked
    one (said once in the log; verdicts carry it in `model`)."""
    from operators.selfcheck import checked

    served, check = checked(vlm, on_mismatch)
    if check.fell_back:
        log.warning("%s: %s", vlm.name, check.reason)
        return served, check.reason
    log.info("%s: %s", vlm.name, check.reason)
    return served, None


def signal_cache(config: PipelineConfig) -> SignalCache | None:
    """The Redis answer cache when `redis_url` is set, else none."""
    from operators.cache import SignalCache

    if not config.redis_url:
        return None
    return SignalCache(config.redis_url, ttl_s=config.cache_ttl_s)


def model_spec(config: PipelineConfig, name: str = DEFAULT_MODEL) -> ModelSpec:
    """The operators' ModelSpec for model `name`; `tiny:<arch>` is built offline once."""
    from operators.tiny import ensure_tiny

    settings = config.model_settings(name)
    checkpoint = settings.name_or_path
    if checkpoint.startswith("tiny:"):
        checkpoint = str(ensure_tiny(checkpoint.removeprefix("tiny:")))
    return settings.spec(name_or_path=checkpoint)
