"""The consume loop with sinks beside the topics: a record a sink refuses is dead-lettered with
stage `sink` and the sink's name, a sink that fails holds the batch back uncommitted, and a
third-party sink comes from one line of config."""

from __future__ import annotations

import pytest

from pipelines.config import PipelineConfig
from sinks.build import build_sinks, writes_topics
from tests.sinks import WRITTEN, ListSink
from tests.unit.pipelines.test_consumer_loop import (
    FakeConsumer,
    FakeSink,
    GatedModerator,
    Running,
    wait_until,
)


@pytest.fixture
def start_loop():
    """Loops with sinks; each one stopped at teardown."""
    started: list[Running] = []

    def start(consumer, topics, moderator, sinks) -> Running:
        started.append(Running(consumer, topics, moderator, sinks=sinks))
        return started[-1]

    yield start
    for running in started:
        running.loop.stop()
        running.moderator.gate.set()
        running.thread.join()


def test_a_record_a_sink_refuses_is_dead_lettered_and_the_batch_committed(start_loop):
    consumer = FakeConsumer([[0, 1, 2]])
    topics = FakeSink(consumer)
    audit = ListSink("audit", refuse=["p1"])
    running = start_loop(consumer, topics, GatedModerator(), sinks=[audit])
    wait_until(lambda: consumer.completed == [0, 1, 2], "the batch is committed")
    stats = running.stop()
    assert WRITTEN["audit"] == ["p0", "p2", "closed"]
    assert topics.sent == [
        b'{"id": "p0"}',
        b'{"id": "p1"}',
        b'{"id": "p2"}',
        b"sink: audit: p1 is not wanted here",
    ]
    assert stats.sink_refusals == 1 and stats.failed_batches == 0


def test_a_sink_that_fails_holds_the_batch_back_and_nothing_reaches_the_topics(start_loop):
    consumer = FakeConsumer([[0, 1]])
    topics = FakeSink(consumer)
    down = ListSink("store", down=True)
    running = start_loop(consumer, topics, GatedModerator(), sinks=[down])
    wait_until(lambda: running.loop.stats.failed_batches >= 2, "the batch failed twice")
    running.stop()
    assert consumer.completed == [] and topics.sent == []
    assert consumer.rewound[:2] == [0, 1]  # read again, not lost


def test_a_third_party_sink_is_one_line_of_config():
    config = PipelineConfig.model_validate(
        {"sinks": [{"kind": "kafka"}, {"kind": "tests.sinks:ListSink", "name": "extra"}]}
    )
    [sink] = build_sinks(config.sinks)
    assert isinstance(sink, ListSink) and sink.name == "extra"
    assert writes_topics(config.sinks)


def test_without_a_kafka_entry_the_topics_get_dead_letters_only():
    config = PipelineConfig.model_validate({"sinks": [{"kind": "tests.sinks:ListSink"}]})
    assert not writes_topics(config.sinks)
    assert writes_topics(PipelineConfig().sinks)  # absent: the topics, as before


def test_a_sink_outage_past_the_batch_attempts_blames_no_post(start_loop):
    """Past max_batch_attempts (3) the batch runs one post at a time; a sink that is down for
    the first of those posts and back for the next write must not dead-letter that post."""
    consumer = FakeConsumer([[0, 1]])
    topics = FakeSink(consumer)
    flaky = ListSink("flaky", failures=4)
    running = start_loop(consumer, topics, GatedModerator(), sinks=[flaky])
    wait_until(lambda: consumer.completed == [0, 1], "the batch is committed")
    stats = running.stop()
    assert topics.sent == [b'{"id": "p0"}', b'{"id": "p1"}']
    assert stats.failed_batches == 4 and stats.isolated_dead_letters == 0
