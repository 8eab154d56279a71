"""Kafka I/O: typed clients over kafka-python, the at-least-once batch consumer, offsets,
trace context in message headers, and the settings that say how to reach the brokers.

- `clients`: `KafkaWriter` (acks=all), `BatchConsumer` (commits only what is done), `TopicReader`,
  `create_topics`, `OutMessage`.
- `offsets.OffsetTracker`: the highest offset below which every record is done, per partition.
- `tracing`: W3C trace context carried in `traceparent`/`tracestate` headers.
- `settings`: `KafkaSettings` (`kafka:`) and `TopicSettings` (`topics:`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

if TYPE_CHECKING:
    from kafka_io.clients import (
        Batch,
        BatchConsumer,
        KafkaWriter,
        OutMessage,
        TopicReader,
        create_topics,
        reaching_kafka,
    )
    from kafka_io.exceptions import ProduceFailed
    from kafka_io.lag import GroupLag, GroupLagReader
    from kafka_io.offsets import OffsetTracker
    from kafka_io.settings import KafkaSettings, TopicSettings
    from kafka_io.tracing import context_from_headers, headers_with_trace, trace_id_of

__all__ = [
    "Batch",
    "BatchConsumer",
    "GroupLag",
    "GroupLagReader",
    "KafkaSettings",
    "KafkaWriter",
    "OffsetTracker",
    "OutMessage",
    "ProduceFailed",
    "TopicReader",
    "TopicSettings",
    "context_from_headers",
    "create_topics",
    "headers_with_trace",
    "reaching_kafka",
    "trace_id_of",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "kafka_io.clients": [
            "Batch",
            "BatchConsumer",
            "KafkaWriter",
            "OutMessage",
            "TopicReader",
            "create_topics",
            "reaching_kafka",
        ],
        "kafka_io.exceptions": ["ProduceFailed"],
        "kafka_io.lag": ["GroupLag", "GroupLagReader"],
        "kafka_io.offsets": ["OffsetTracker"],
        "kafka_io.settings": ["KafkaSettings", "TopicSettings"],
        "kafka_io.tracing": ["context_from_headers", "headers_with_trace", "trace_id_of"],
    },
)
