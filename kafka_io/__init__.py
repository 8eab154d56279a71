"""Kafka I/O: typed clients over kafka-python, the at-least-once batch consumer, offsets,
trace context in message headers, and the settings that say how to reach the brokers.

- `clients`: `kafka_writer` (acks=all) and `batch_consumer` (a `TrackedConsumer`, which
  commits only what is done), each on librdkafka or kafka-python; `TopicReader`,
  `create_topics`, `OutMessage`.
- `consumers`: `TrackedConsumer`, `Batch`, and `BatchConsumer` on kafka-python.
- `offsets.OffsetTracker`: the highest offset below which every record is done, per partition.
- `tracing`: W3C trace context carried in `traceparent`/`tracestate` headers.
- `settings`: `KafkaSettings` (`kafka:`) and `TopicSettings` (`topics:`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

if TYPE_CHECKING:
    from kafka_io.clients import (
        KafkaWriter,
        OutMessage,
        TopicReader,
        batch_consumer,
        create_topics,
        kafka_writer,
        reaching_kafka,
    )
    from kafka_io.consumers import Batch, BatchConsumer, TrackedConsumer
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
    "TrackedConsumer",
    "batch_consumer",
    "context_from_headers",
    "create_topics",
    "headers_with_trace",
    "kafka_writer",
    "reaching_kafka",
    "trace_id_of",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "kafka_io.clients": [
            "KafkaWriter",
            "batch_consumer",
            "OutMessage",
            "TopicReader",
            "create_topics",
            "kafka_writer",
            "reaching_kafka",
        ],
        "kafka_io.consumers": ["Batch", "BatchConsumer", "TrackedConsumer"],
        "kafka_io.exceptions": ["ProduceFailed"],
        "kafka_io.lag": ["GroupLag", "GroupLagReader"],
        "kafka_io.offsets": ["OffsetTracker"],
        "kafka_io.settings": ["KafkaSettings", "TopicSettings"],
        "kafka_io.tracing": ["context_from_headers", "headers_with_trace", "trace_id_of"],
    },
)
