"""`kafka.producer: librdkafka` (the default) against the real Tansu broker: the same contract as
kafka-python's writer (acked, keyed to the same partitions, refusals and outages told apart)."""

from __future__ import annotations

import threading
import time

import pytest

from demo.harness import free_port
from kafka_io.clients import KafkaWriter, OutMessage, kafka_writer
from kafka_io.exceptions import ProduceFailed
from kafka_io.rdkafka import RdKafkaWriter
from kafka_io.settings import KafkaSettings
from tests.integration.topics import read_until

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def rdkafka_settings(kafka_settings):
    return kafka_settings.model_copy(update={"producer": "librdkafka"})


def test_send_all_returns_with_every_message_on_the_broker(rdkafka_settings, topic_factory):
    topic = topic_factory("rd", partitions=4)
    writer = kafka_writer(rdkafka_settings)
    assert type(writer).__name__ == "RdKafkaWriter"
    messages = [
        OutMessage(topic, f"v{n}".encode(), f"post-{n}".encode(), [("traceparent", TRACEPARENT)])
        for n in range(300)
    ]
    try:
        writer.send_all(messages)
    finally:
        writer.close()
    records = read_until(rdkafka_settings, topic, 300)
    assert sorted(r.value for r in records) == sorted(m.value for m in messages)
    assert all(dict(r.headers)["traceparent"] == TRACEPARENT for r in records)


def test_keys_land_on_the_partitions_kafka_python_chooses(
    kafka_settings, rdkafka_settings, topic_factory
):
    """Every message about one post must share a partition, whichever client wrote it."""
    ours, theirs = topic_factory("rd-keys", partitions=4), topic_factory("kp-keys", partitions=4)
    keys = [f"post-{n}".encode() for n in range(64)]
    for settings, topic in ((rdkafka_settings, ours), (kafka_settings, theirs)):
        writer = kafka_writer(settings)
        try:
            writer.send_all([OutMessage(topic, key, key) for key in keys])
        finally:
            writer.close()
    placed = {
        topic: {r.key: r.partition for r in read_until(kafka_settings, topic, len(keys))}
        for topic in (ours, theirs)
    }
    assert len(set(placed[ours].values())) > 1, "keys spread over the partitions"
    assert placed[ours] == placed[theirs]


def test_threads_each_wait_for_their_own_messages(rdkafka_settings, topic_factory):
    topic = topic_factory("rd-threads", partitions=2)
    writer = kafka_writer(rdkafka_settings)
    failures: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            for batch in range(10):
                writer.send_all(
                    [OutMessage(topic, f"{worker}-{batch}-{n}".encode()) for n in range(50)]
                )
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        writer.close()
    assert not failures and not any(thread.is_alive() for thread in threads)
    assert len(read_until(rdkafka_settings, topic, 2000)) == 2000


def test_a_message_too_large_is_refused_not_an_outage(rdkafka_settings, topic_factory):
    topic = topic_factory("rd-large")
    writer = kafka_writer(rdkafka_settings)
    try:
        with pytest.raises(ProduceFailed) as failed:
            writer.send_all([OutMessage(topic, b"x" * 2_000_000)])
    finally:
        writer.close()
    assert failed.value.outage is False
    assert "MSG_SIZE_TOO_LARGE" in failed.value.reason


def test_no_broker_is_an_outage():
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", producer="librdkafka")
    writer = kafka_writer(settings)
    try:
        started = time.monotonic()
        with pytest.raises(ProduceFailed) as failed:
            writer.send_all([OutMessage("nowhere", b"x")], timeout_s=2.0)
        assert time.monotonic() - started < 10
    finally:
        writer.close(timeout_s=0.5)
    assert failed.value.outage is True


def test_librdkafka_is_the_default_producer_and_kafka_python_the_other(kafka_settings):
    default = kafka_writer(KafkaSettings(bootstrap_servers=kafka_settings.bootstrap_servers))
    other = kafka_writer(kafka_settings.model_copy(update={"producer": "kafka-python"}))
    try:
        assert isinstance(default, RdKafkaWriter)
        assert isinstance(other, KafkaWriter)
    finally:
        default.close()
        other.close()
