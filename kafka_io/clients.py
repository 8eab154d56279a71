"""Thin typed wrappers over kafka-python: topics, an acking writer, a topic reader (the
at-least-once group consumer is `kafka_io.consumers`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.structs import TopicPartition
from pydantic import ValidationInfo

from contracts.errors import ServiceUnavailable
from kafka_io.consumers import BatchConsumer, TrackedConsumer
from kafka_io.exceptions import ProduceFailed
from kafka_io.settings import KafkaSettings
from kafka_io.tracing import Headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutMessage:
    """One message to produce."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = field(default_factory=list)


@contextlib.contextmanager
def reaching_kafka(settings: KafkaSettings) -> Iterator[None]:
    """Turn a client's failure to reach the brokers into one sentence naming them."""
    try:
        yield
    except KafkaError as exc:
        raise ServiceUnavailable(
            f"Kafka at {settings.bootstrap_servers} failed: {exc}; check "
            "kafka.bootstrap_servers, the security settings and kafka.extra"
        ) from exc


# Brokers that answer bootstrap in milliseconds when healthy; silent ones fail in seconds, not
# after kafka-python's 30 s default. kafka.extra["bootstrap_timeout_ms"] overrides it.
BOOTSTRAP_TIMEOUT_MS = 5_000


def create_topics(settings: KafkaSettings, names: Iterable[str], *, partitions: int = 1) -> None:
    """Create each missing topic (none given: only reach the brokers); existing ones stay."""
    with reaching_kafka(settings):
        _create_topics(settings, names, partitions)


def _create_topics(settings: KafkaSettings, names: Iterable[str], partitions: int) -> None:
    # Only the first contact is bounded: request_timeout_ms still governs every request after it.
    admin = KafkaAdminClient(
        **{"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS, **settings.client_kwargs()}
    )
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, partitions, 1) for n in dict.fromkeys(names) if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another client raced us
                admin.create_topics(missing)
    finally:
        admin.close()


# The broker's answers about the message itself: sending it again gets the same answer.
MESSAGE_REFUSED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
)


def not_acknowledged(topic: str, error: KafkaError) -> ProduceFailed:
    """The error for an output the broker did not take: an outage (a timeout, a lost
    connection, a moved leader, anything unknown) unless the broker refused the message."""
    outage = not isinstance(error, MESSAGE_REFUSED)
    return ProduceFailed(f"{topic}: not acknowledged: {error}", outage=outage)


class MessageWriter(Protocol):
    """Produces messages and returns once the broker acknowledged them (acks=all)."""

    def send(self, message: OutMessage, *, timeout_s: float = 30.0) -> None:
        """Produce one message and wait for its ack."""

    def send_all(self, messages: Sequence[OutMessage], *, timeout_s: float = 30.0) -> None:
        """Produce all, wait for every ack, or raise `ProduceFailed`."""

    def metrics(self) -> dict[str, float]:
        """The client's own figures."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and close."""


def kafka_writer(settings: KafkaSettings, **overrides: Any) -> MessageWriter:
    """The writer `settings.producer` names: kafka-python's, or librdkafka's
    (`kafka_io.rdkafka`); `overrides` are that client's own settings."""
    if settings.producer == "librdkafka":
        from kafka_io.rdkafka import RdKafkaWriter

        return RdKafkaWriter(settings, **overrides)
    return KafkaWriter(settings, **overrides)


def batch_consumer(
    settings: KafkaSettings, topics: Sequence[str], group_id: str, **overrides: Any
) -> TrackedConsumer:
    """The group consumer `settings.consumer` names: kafka-python's, or librdkafka's
    (`kafka_io.rdkafka_consumer`); `overrides` by kafka-python's names either way."""
    if settings.consumer == "librdkafka":
        from kafka_io.rdkafka_consumer import RdKafkaBatchConsumer

        return RdKafkaBatchConsumer(settings, topics, group_id, **overrides)
    return BatchConsumer(settings, topics, group_id, **overrides)


def consumer_overrides_for(overrides: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """Validates `consumer_overrides` beside a `kafka` field (the pipeline's and the console's
    configurations): as they are when `kafka.consumer` takes every one of them, else a
    `ValueError` naming the first that librdkafka has no counterpart for."""
    settings = info.data.get("kafka")
    if settings is not None and settings.consumer == "librdkafka":
        from kafka_io.rdkafka import consumer_config

        consumer_config(overrides)
    return overrides


class KafkaWriter:
    """Writes to Kafka with acks=all (a kafka-python producer); a send returns only after the
    broker acknowledged it."""

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        config: dict[str, Any] = {
            "acks": "all",
            "linger_ms": 2,
            "retries": 5,
            # A consumer batch's verdicts go out together. At kafka-python's 16 KB, ten verdicts
            # fill a partition's batch, and then every append wakes the sender thread: 2.3-2.6x
            # the CPU per message on this workload. Far below a broker's 1 MB message limit.
            "batch_size": 256 * 1024,
        }
        config.update(overrides)
        self._producer = KafkaProducer(**settings.client_kwargs(), **config)

    def send(self, message: OutMessage, *, timeout_s: float = 30.0) -> None:
        """Produce one message and wait for its ack."""
        self.send_all([message], timeout_s=timeout_s)

    def send_all(self, messages: Sequence[OutMessage], *, timeout_s: float = 30.0) -> None:
        """Produce all messages at once, then wait until every one is acked, or raise
        `ProduceFailed` (its `outage` says whether the broker or the message was at fault)."""
        try:
            futures = [
                self._producer.send(m.topic, value=m.value, key=m.key, headers=list(m.headers))
                for m in messages
            ]
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:  # no metadata, or the buffer never drained: the broker is away
            topics = ", ".join(sorted({m.topic for m in messages}))
            raise not_acknowledged(topics, exc) from exc
        for message, future in zip(messages, futures, strict=True):
            try:
                future.get(timeout=timeout_s)
            except KafkaError as exc:
                raise not_acknowledged(message.topic, exc) from exc

    def metrics(self) -> dict[str, float]:
        """kafka-python's producer metrics: records per request, batch sizes, rates."""
        return dict(self._producer.metrics()["producer-metrics"])

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and close."""
        self._producer.close(timeout=timeout_s)


class TopicReader:
    """Reads whole topics from the beginning without a consumer group (dashboards, tests, demo)."""

    def __init__(self, settings: KafkaSettings, topics: Sequence[str], **overrides: Any) -> None:
        config: dict[str, Any] = {"enable_auto_commit": False, "fetch_max_wait_ms": 5, **overrides}
        self._consumer = KafkaConsumer(**settings.client_kwargs(), **config)
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(self._partitions_of(topic))
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)

    def _partitions_of(self, topic: str) -> set[int]:
        # Guessing partition 0 for a topic not created yet would silently miss the others.
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist yet; create it before reading it")
        return set(partitions)

    def read(self, *, timeout_ms: int = 200, max_records: int = 1000) -> list[ConsumerRecord]:
        """Whatever arrived since the last call, across all topics."""
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [record for batch in polled.values() for record in batch]

    def caught_up(self) -> bool:
        """True when every partition was read up to the high watermark its last fetch gave.

        Read from the fetch responses: some brokers' ListOffsets (`end_offsets`) fall short of
        the records written, so they cannot say "all read"."""
        return all(
            (high := self._consumer.highwater(tp)) is not None
            and self._consumer.position(tp) >= high
            for tp in self._consumer.assignment()
        )

    def read_to_end(self, *, timeout_s: float = 120.0) -> list[ConsumerRecord]:
        """Every record from here to the topics' current ends (two reads in a row caught up:
        the first may carry watermarks from before its own records)."""
        records: list[ConsumerRecord] = []
        deadline, in_a_row = time.monotonic() + timeout_s, 0
        while in_a_row < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not read to the end within {timeout_s:.0f}s")
            records += self.read()
            in_a_row = in_a_row + 1 if self.caught_up() else 0
        return records

    def close(self) -> None:
        """Close the underlying consumer."""
        self._consumer.close(autocommit=False)
