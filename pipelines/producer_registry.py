"""The producers a pipeline knows: the installed ones, and those its config names.

Registration is explicit: packages declare producers as `vlmod.producers` entry points (this
one ships `links`), and `producers:` in the pipeline config names more as
`package.module:ClassName`; each process imports them itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from contracts.errors import ConfigInvalid
from contracts.producers import ProducerRegistry, SignalProducer
from contracts.registry import default_registry
from contracts.vlm import DEFAULT_MODEL


class PipelineNames(Protocol):
    """What of a pipeline config names its producers and models (`PipelineConfig`)."""

    @property
    def producers(self) -> Sequence[str]:
        """More producers, as package.module:ClassName."""
        ...

    def model_names(self) -> tuple[str, ...]:
        """Every model's name."""
        ...


def producer_registry(
    extra: Sequence[str] = (), models: Sequence[str] = (DEFAULT_MODEL,)
) -> ProducerRegistry:
    """The installed producers, then each of `extra` (import paths); prompts may ask `models`."""
    registry = default_registry(models)
    for path in extra:
        registry.register(load_producer(path))
    return registry


def pipeline_registry(config: PipelineNames) -> ProducerRegistry:
    """The producers `config` runs: the installed ones, its `producers:`, asking its models."""
    return producer_registry(config.producers, config.model_names())


def load_producer(path: str) -> SignalProducer:
    """The producer `package.module:Name` names (a class is instantiated without arguments)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigInvalid(f"producers: {path!r} is not of the form package.module:ClassName")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigInvalid(f"producers: cannot import {path!r}: {exc}") from exc
    producer: SignalProducer = found() if isinstance(found, type) else found
    return producer
