"""Where outcomes go: a `Sink` writes a batch's outcomes and returns only when they are durable;
the consume loop commits offsets after every sink returned.

- `base`: the `Sink` protocol, `Refusal` (one record a sink will never take: dead-lettered with
  stage `sink`) and `SinkUnavailable` (the batch is read again).
- `kafka_topics.KafkaSink`: verdict, review-queue, shadow and dead-letter topics.
- `postgres.PostgresSink`: the `verdicts` and `posts` tables; `webhook.WebhookSink`: signed POSTs.
- `settings`: the `sinks:` list; `build.build_sinks` makes the configured sinks, third-party ones
  through the `vlmod.sinks` entry point or `kind: package.module:Class`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

if TYPE_CHECKING:
    from sinks.base import Refusal, Sink, SinkUnavailable
    from sinks.build import build_sinks
    from sinks.kafka_topics import KafkaSink, kafka_messages
    from sinks.postgres import PostgresSink, PostgresStore
    from sinks.settings import (
        KafkaSinkSettings,
        PluginSinkSettings,
        PostgresSinkSettings,
        SinkSettings,
        WebhookSinkSettings,
        default_sinks,
    )
    from sinks.webhook import WebhookSink

__all__ = [
    "KafkaSink",
    "KafkaSinkSettings",
    "PluginSinkSettings",
    "PostgresSink",
    "PostgresSinkSettings",
    "PostgresStore",
    "Refusal",
    "Sink",
    "SinkSettings",
    "SinkUnavailable",
    "WebhookSink",
    "WebhookSinkSettings",
    "build_sinks",
    "default_sinks",
    "kafka_messages",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "sinks.base": ["Refusal", "Sink", "SinkUnavailable"],
        "sinks.build": ["build_sinks"],
        "sinks.kafka_topics": ["KafkaSink", "kafka_messages"],
        "sinks.postgres": ["PostgresSink", "PostgresStore"],
        "sinks.settings": [
            "KafkaSinkSettings",
            "PluginSinkSettings",
            "PostgresSinkSettings",
            "SinkSettings",
            "WebhookSinkSettings",
            "default_sinks",
        ],
        "sinks.webhook": ["WebhookSink"],
    },
)
