"""Where each result goes: verdict, review-queue, shadow and dead-letter topics.

Every output is keyed by post id, so all messages about one post land on one partition in order.
A review-queue topic carries a `ReviewTask`: the verdict and the post, so a console can show
what there is to judge; the task's own key is the verdict key.
"""

from __future__ import annotations

from contracts.records import DeadLetter, Post, ShadowVerdict, Verdict
from contracts.review import ReviewTask
from pipelines.config import TopicSettings
from pipelines.kafka_io import OutMessage
from pipelines.tracing import Headers
from policies.policy_set import PolicyOutcome


def route_verdict(
    outcome: PolicyOutcome,
    verdict: Verdict,
    topics: TopicSettings,
    headers: Headers,
    post: Post,
) -> list[OutMessage]:
    """An active verdict goes to the verdict topic, and as a review task to its queue's topic."""
    key = verdict.post_id.encode()
    messages = [OutMessage(topics.verdicts, verdict.model_dump_json().encode(), key, headers)]
    if outcome.decision.topic and verdict.queue:
        task = ReviewTask(
            key=verdict.key,
            queue=verdict.queue,
            priority=verdict.priority,
            verdict=verdict,
            post=post,
        )
        messages.append(
            OutMessage(outcome.decision.topic, task.model_dump_json().encode(), key, headers)
        )
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
