"""KafkaSink: one send of every outcome's messages, in order, then the count; close closes."""

from __future__ import annotations

from contracts.outcomes import Outcome, SourceRef
from kafka_io.settings import TopicSettings
from sinks.kafka_topics import KafkaSink
from tests.unit.contracts.test_records import sample_dead_letter, sample_shadow


class RecordingProducer:
    def __init__(self) -> None:
        self.sends: list[list] = []
        self.closed = False

    def send_all(self, messages, *, timeout_s: float = 30.0) -> None:
        self.sends.append(list(messages))

    def close(self) -> None:
        self.closed = True


def test_write_sends_the_batch_at_once_and_counts_its_messages():
    producer = RecordingProducer()
    sink = KafkaSink(producer, TopicSettings())  # type: ignore[arg-type]
    shadowed = Outcome(
        source=SourceRef(topic="posts", partition=0, offset=1, key=b"k1"),
        post_id="p1",
        shadows=(sample_shadow(), sample_shadow()),
        trace={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    )
    dead = Outcome(
        source=SourceRef(topic="posts", partition=0, offset=2, key=b"k2"),
        dead_letter=sample_dead_letter(),
    )
    assert sink.write([shadowed, dead]) == 3
    [sent] = producer.sends
    topics = TopicSettings()
    assert [(m.topic, m.key) for m in sent] == [
        (topics.shadow, sample_shadow().verdict.post_id.encode()),
        (topics.shadow, sample_shadow().verdict.post_id.encode()),
        (topics.dead_letter, b"k2"),
    ]
    assert sent[0].headers == [("traceparent", shadowed.trace["traceparent"].encode())]
    assert sent[2].headers == []
    sink.close()
    assert producer.closed
