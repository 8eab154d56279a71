"""A consumer whose group membership is lost goes on consuming: a memory-backed Tansu restarted
forgets the group, its coordinator answers the member as unknown, and the consumer must drop
its partitions without a commit (which would fail and end the loop), rejoin and read again."""

from __future__ import annotations

import time

import pytest

from demo.harness import KafkaBroker
from kafka_io.clients import KafkaWriter, OutMessage, batch_consumer, create_topics
from kafka_io.consumers import TrackedConsumer
from kafka_io.settings import KafkaSettings

GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def send(settings: KafkaSettings, value: bytes) -> None:
    writer = KafkaWriter(settings)
    try:
        writer.send_all([OutMessage("posts", value, b"k")])
    finally:
        writer.close()


def first_values(consumer: TrackedConsumer, timeout_s: float) -> list[bytes]:
    """Poll until a batch arrives; its values (every poll may raise: the test is that none do)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200)
        if batch is not None:
            with batch.processing() as records:
                return [record.value for record in records]
    return []


@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
def test_a_consumer_whose_group_was_lost_rejoins_and_reads_on(tmp_path, client):
    broker = KafkaBroker(tmp_path)
    settings = KafkaSettings(bootstrap_servers=broker.start(), consumer=client)
    consumer = None
    try:
        create_topics(settings, ["posts"])
        send(settings, b"before")
        consumer = batch_consumer(settings, ["posts"], "lost-group", **GROUP_TIMEOUTS)
        batch = None
        deadline = time.monotonic() + 60
        while batch is None and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
        assert batch is not None and [r.value for r in batch.records] == [b"before"]
        consumer.complete(batch, commit=False)  # done, its commit still to come

        broker.restart(down_s=1)  # memory storage: topics, offsets and the group are gone
        create_topics(settings, ["posts"])
        send(settings, b"after")

        assert first_values(consumer, timeout_s=60) == [b"after"]
    finally:
        if consumer is not None:
            consumer.close(commit=False)
        broker.stop()
