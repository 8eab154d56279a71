"""KafkaSink: one send of every outcome's messages, in order, then the count; close closes; a
broker outage is SinkUnavailable (the batch is read again), a refused message is not; a verdict
with a large record stays under the message limits and `vlmod report` reads it."""

from __future__ import annotations

import pytest
from kafka.errors import (
    CorruptRecordError,
    IllegalStateError,
    InvalidRecordError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
)

from contracts.decoding import PostLimits
from contracts.history import PostRecord, RecordedValue
from contracts.outcomes import ActiveVerdict, Outcome, SourceRef
from contracts.records import ImageRef, Post
from kafka_io.clients import not_acknowledged
from kafka_io.exceptions import ProduceFailed
from kafka_io.settings import TopicSettings
from policies.scope import post_variables
from review.report_io import MAX_RECORD_BYTES, RawRecord, RecordLimits, record_object, verdict_of
from sinks.base import SinkUnavailable
from sinks.kafka_topics import KafkaSink, kafka_batch
from tests.unit.contracts.test_records import sample_dead_letter, sample_shadow, sample_verdict


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


class FailingProducer(RecordingProducer):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def send_all(self, messages, *, timeout_s: float = 30.0) -> None:
        raise self.error


def test_a_broker_outage_is_sink_unavailable_and_a_refused_message_is_not():
    outcome = Outcome(
        source=SourceRef(topic="posts", partition=0, offset=2, key=b"k2"),
        dead_letter=sample_dead_letter(),
    )
    away = KafkaSink(
        FailingProducer(ProduceFailed("v: not acknowledged: timed out")), TopicSettings()
    )  # type: ignore[arg-type]
    with pytest.raises(SinkUnavailable, match="kafka: v: not acknowledged: timed out"):
        away.write([outcome])
    refused = ProduceFailed("v: not acknowledged: MessageSizeTooLarge", outage=False)
    too_large = KafkaSink(FailingProducer(refused), TopicSettings())  # type: ignore[arg-type]
    with pytest.raises(ProduceFailed) as raised:
        too_large.write([outcome])
    assert raised.value is refused, "the consume loop dead-letters the post it belongs to"


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (KafkaTimeoutError("Failed to update metadata after 60.0 secs."), True),
        (KafkaConnectionError("connection refused"), True),
        (NotLeaderForPartitionError(), True),
        (IllegalStateError("unknown"), True),
        (MessageSizeTooLargeError(), False),
        (RecordListTooLargeError(), False),
        (InvalidRecordError(), False),
        (CorruptRecordError(), False),
    ],
)
def test_only_the_brokers_answers_about_the_message_itself_are_not_outages(error, outage):
    failed = not_acknowledged("moderation.verdicts", error)
    assert failed.outage is outage
    assert failed.reason.startswith("moderation.verdicts: not acknowledged: ")


def large_record() -> PostRecord:
    """A post's record as large as a real one gets: the longest text the decoder lets through
    (four UTF-8 bytes a character), every image by a long address, meta as deep as posts may
    nest, 40 labels and a 4,096-float embedding at full precision."""
    meta: dict = {"leaf": 1}
    for level in range(28):
        meta = {f"level{level}": meta}
    post = Post(
        id="big",
        text="\U0001f600" * PostLimits().max_text_chars,
        images=[ImageRef(url=f"https://cdn.example.com/{'x' * 2000}/{n}.jpg") for n in range(8)],
        meta=meta,
    )
    values = [
        RecordedValue(producer="labels", request=f"VlmTask(label {n:02d} {'y' * 80})", value=n / 41)
        for n in range(40)
    ]
    embedding = [((-1) ** n) * (n + 0.123456789012345) / 4096 for n in range(4096)]
    values.append(RecordedValue(producer="embed", request="VlmTask(embed)", value=embedding))
    return PostRecord(post=post_variables(post), values=values, versions={"labels": "replica"})


def test_a_verdict_carrying_a_large_record_stays_under_the_message_limits():
    verdict = sample_verdict().model_copy(update={"record": large_record()})
    outcome = Outcome(
        source=SourceRef(topic="posts", partition=0, offset=1, key=b"k1"),
        post_id="p1",
        verdicts=(ActiveVerdict(verdict=verdict),),
    )
    [message] = kafka_batch([outcome], TopicSettings())
    # kafka-python's max_request_size and a broker's message.max.bytes are 1 MiB by default;
    # `vlmod report` skips records over the same size (review.report_io.MAX_RECORD_BYTES).
    assert len(message.value) < 512 * 1024 < MAX_RECORD_BYTES
    raw = RawRecord("topic:moderation.verdicts[0]@0", message.value, len(message.value))
    read = verdict_of(record_object(raw, RecordLimits()))
    assert read.record == verdict.record, "vlmod report reads it back whole"
