"""The sinks a pipeline's config names, built once per consumer."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from contracts.errors import ConfigInvalid
from sinks.base import Sink
from sinks.settings import (
    ENTRY_POINTS,
    KafkaSinkSettings,
    PluginSinkSettings,
    PostgresSinkSettings,
    WebhookSinkSettings,
)


def writes_topics(sinks: Sequence[Any]) -> bool:
    """Whether verdicts, review tasks and shadows go to their topics (a `kafka` entry)."""
    return any(isinstance(settings, KafkaSinkSettings) for settings in sinks)


def build_sinks(sinks: Sequence[Any]) -> list[Sink]:
    """Every configured sink but Kafka's topics, which the consume loop writes itself."""
    built: list[Sink] = []
    for settings in sinks:
        if isinstance(settings, PostgresSinkSettings):
            from sinks.postgres import PostgresSink

            built.append(PostgresSink(settings.address()))
        elif isinstance(settings, WebhookSinkSettings):
            from sinks.webhook import WebhookSink

            built.append(WebhookSink(settings))
        elif isinstance(settings, PluginSinkSettings):
            built.append(plugin_sink(settings))
    return built


def plugin_sink(settings: PluginSinkSettings) -> Sink:
    """Another sink: its class built with the entry's other keys."""
    cls = _sink_class(settings.kind)
    try:
        sink = cls(**settings.options())
    except TypeError as exc:
        raise ConfigInvalid(f"sink {settings.kind}: {exc}") from exc
    if not isinstance(sink, Sink):
        raise ConfigInvalid(
            f"sink {settings.kind} is not a sink: it needs name, write(outcomes) and close()"
        )
    return sink


def _sink_class(kind: str) -> Any:
    points = {point.name: point for point in entry_points(group=ENTRY_POINTS)}
    try:
        if kind in points:
            return points[kind].load()
        module, _, name = kind.partition(":")
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigInvalid(f"sink {kind} cannot be loaded: {exc}") from exc
