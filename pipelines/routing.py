"""Where each result goes: verdict, review-queue, shadow and dead-letter topics.

Every output is keyed by post id, so all messages about one post land on one partition in order.
"""

from __future__ import annotations

from contracts.records import DeadLetter, ShadowVerdict, Verdict
from pipelines.config import TopicSettings
from pipelines.kafka_io import OutMessage
from pipelines.tracing import Headers
from policies.policy_set import PolicyOutcome


def route_verdict(
    outcome: PolicyOutcome, verdict: Verdict, topics: TopicSettings, headers: Headers
) -> list[OutMessage]:
    """An active verdict goes to the verdict topic, and to its review queue's topic if any."""
    key = verdict.post_id.encode()
    value = verdict.model_dump_json().encode()
    messages = [OutMessage(topics.verdicts, value, key, headers)]
    if outcome.decision.topic:
        messages.append(OutMessage(outcome.decision.topic, value, key, headers))
    return messages


def route_shadow(
    outcome: PolicyOutcome, verdict: Verdict, topics: TopicSettings, headers: Headers
) -> OutMessage:
    """A shadow verdict, with its diff against the active one, goes to the shadow topic only."""
    body = ShadowVerdict(verdict=verdict, diff=outcome.diff).model_dump_json().encode()
    return OutMessage(topics.shadow, body, verdict.post_id.encode(), headers)


def route_dead_letter(
    dead_letter: DeadLetter, key: bytes | None, topics: TopicSettings, headers: Headers
) -> OutMessage:
    """A dead letter goes to the dead-letter topic under the original message's key."""
    return OutMessage(topics.dead_letter, dead_letter.model_dump_json().encode(), key, headers)
