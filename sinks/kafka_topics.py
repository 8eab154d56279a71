"""Outcomes onto Kafka: verdict, review-queue, shadow and dead-letter topics.

Every output is keyed by post id, so all messages about one post land on one partition in order.
A review-queue topic carries a `ReviewTask` under the post id too; the task's own key is the
verdict key. A dead letter goes out under the original message's key. Each message carries the
post's trace context as headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts.outcomes import Outcome
from kafka_io.clients import MessageWriter, OutMessage
from kafka_io.exceptions import ProduceFailed
from kafka_io.settings import TopicSettings
from kafka_io.tracing import trace_headers
from sinks.base import SinkUnavailable


def kafka_messages(outcome: Outcome, topics: TopicSettings) -> list[OutMessage]:
    """The messages of one outcome, in order: each verdict then its review task, then shadows."""
    headers = trace_headers(outcome.trace)
    if outcome.dead_letter is not None:
        body = outcome.dead_letter.model_dump_json().encode()
        return [OutMessage(topics.dead_letter, body, outcome.source.key, headers)]
    messages = []
    for active in outcome.verdicts:
        verdict = active.verdict
        key = verdict.post_id.encode()
        messages.append(
            OutMessage(topics.verdicts, verdict.model_dump_json().encode(), key, headers)
        )
        if active.review is not None:
            task = active.review.task.model_dump_json().encode()
            messages.append(OutMessage(active.review.topic, task, key, headers))
    for shadow in outcome.shadows:
        body = shadow.model_dump_json().encode()
        messages.append(OutMessage(topics.shadow, body, shadow.verdict.post_id.encode(), headers))
    return messages


def kafka_batch(outcomes: Sequence[Outcome], topics: TopicSettings) -> list[OutMessage]:
    """The messages of a batch of outcomes, in order."""
    return [message for outcome in outcomes for message in kafka_messages(outcome, topics)]


@dataclass
class KafkaSink:
    """Writes outcomes to their topics and returns once the broker acknowledged every message.

    A broker outage raises `SinkUnavailable` (the batch is read again); a message the broker
    refuses (too large) raises `ProduceFailed`, and the consume loop dead-letters its post."""

    writer: MessageWriter
    topics: TopicSettings
    # False where the config's `sinks:` leaves `kafka` out: then only dead letters go out here.
    verdicts: bool = True

    def write(self, outcomes: Sequence[Outcome]) -> int:
        """Produce the outcomes' messages and wait for their acks; how many were produced."""
        if not self.verdicts:
            outcomes = [outcome for outcome in outcomes if outcome.dead_letter is not None]
        messages = kafka_batch(outcomes, self.topics)
        try:
            self.writer.send_all(messages)
        except ProduceFailed as exc:
            if exc.outage:  # not these posts' fault: the batch is read again, nothing dead-lettered
                raise SinkUnavailable(f"kafka: {exc.reason}") from exc
            raise
        return len(messages)

    def close(self) -> None:
        """Flush and close the writer."""
        self.writer.close()
