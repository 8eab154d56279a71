"""The default producer registry: the model's own producers, then every installed plug-in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib.metadata import entry_points

from contracts.producers import ProducerRegistry, SignalProducer
from contracts.vlm import DEFAULT_MODEL
from contracts.vlm_signals import vlm_producers

ENTRY_POINT_GROUP = "vlmod.producers"


def default_registry(models: Sequence[str] = (DEFAULT_MODEL,)) -> ProducerRegistry:
    """The model's own producers (asking any of `models`), then every installed plug-in."""
    installed = (make() for make in installed_producers())
    return ProducerRegistry([*vlm_producers(models), *installed])


@lru_cache(maxsize=1)
def installed_producers() -> tuple[Callable[[], SignalProducer], ...]:
    """The producer classes installed packages declare, sorted by entry point name."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    return tuple(point.load() for point in sorted(found, key=lambda point: point.name))
