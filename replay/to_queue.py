"""Replay QA: a sample of the posts a replay changed, as review tasks (`vlmod replay --to-queue`).

Each drawn post becomes a `ReviewTask` in the named queue, on the topic the candidate policy
routes that queue to (its `queues:` entry, else `review.<queue>`, as the pipeline does). Its
verdict is the candidate's, decided again through the policy engine (rules with their reasons
and evidence, the signals under the candidate's names), carrying the recorded verdict's model
and producers; its key is `replay_key` (post, policy id, candidate sha256), never a recorded
verdict's, so the decision on it joins no recorded verdict in `vlmod report`, and running the
command again queues nothing twice: the review store keeps one task per key. The post is the
record's: its fields, and its images by URL. An inline image is not in a history (a record keeps
images by address and type only), so the task leaves it out and `origin.note` says how many the
post had; the console shows that note on the task page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from contracts.producers import request_key
from contracts.records import Post, Signals, Verdict, utc_now
from contracts.review import ReviewTask, TaskOrigin
from policies.scope import PostScope
from replay.sample import Drawn

if TYPE_CHECKING:
    from kafka_io.settings import KafkaSettings


@dataclass(frozen=True)
class Queued:
    """A replay-QA task and the topic it goes to."""

    topic: str
    task: ReviewTask


def replay_task(drawn: Drawn, queue: str, now: datetime | None = None) -> Queued:
    """The review task of a drawn post in `queue`, and its topic."""
    candidate = drawn.candidate
    policy = candidate.policy
    record = drawn.post.record
    assert record is not None  # only replayed posts are drawn
    computed, unavailable = {}, {}
    values, missing = record.computed(), record.unavailable()
    for producer, request in candidate.direct:
        text = (producer, request_key(request))
        if text in values:
            computed[producer, request] = values[text]
        elif text in missing:
            unavailable[producer, request] = missing[text]
    view = policy.view(computed, unavailable)
    decision = policy.evaluate(PostScope(record.post, truncated=record.truncated), view)
    before = drawn.post.full(drawn.before)  # a lean verdict validated whole: its models
    verdict = decision.to_verdict(
        drawn.post.post_id,
        signals=Signals(**view.values),
        model=before.model,
        models=before.models,
        input_changes=before.input_changes,
        producers=before.producers,
    )
    verdict = verdict.model_copy(update={"key": drawn.key})
    post, dropped = post_of(record.post)
    origin = TaskOrigin(policy_sha256=candidate.sha256, recorded=before.action, note=_note(dropped))
    task = ReviewTask(
        key=drawn.key,
        queue=queue,
        priority=verdict.priority,
        enqueued_at=now or utc_now(),
        verdict=verdict,
        post=post,
        origin=origin,
    )
    return Queued(policy.queue_topic(queue), task)


def post_of(fields: dict[str, Any]) -> tuple[Post, int]:
    """The post of a record's fields, its inline images (not recorded) left out; how many."""
    images = [image for image in fields.get("images") or () if isinstance(image, dict)]
    kept = [{"url": i["url"], "mime": i.get("mime")} for i in images if i.get("url")]
    post = Post.model_validate({**fields, "images": kept})
    return post, len(images) - len(kept)


def _note(dropped: int) -> str | None:
    if not dropped:
        return None
    images = "an inline image" if dropped == 1 else f"{dropped} inline images"
    return f"The post had {images}, not shown: a replay's history keeps images by URL only."


def publish(queued: Sequence[Queued], kafka: KafkaSettings) -> None:
    """Write the tasks to their topics, keyed by task key; refuses topics that do not exist."""
    from kafka_io.clients import OutMessage, kafka_writer
    from review.ingest import check_topics_exist

    if not queued:
        return
    check_topics_exist(kafka, sorted({q.topic for q in queued}))
    writer = kafka_writer(kafka)
    try:
        writer.send_all(
            [
                OutMessage(q.topic, q.task.model_dump_json().encode(), q.task.key.encode())
                for q in queued
            ]
        )
    finally:
        writer.close()


def queued_summary(queued: Sequence[Queued]) -> dict[str, Any]:
    """The JSON form: tasks written per topic, and per candidate and transition."""
    topics: dict[str, int] = {}
    strata: dict[str, dict[str, int]] = {}
    for item in queued:
        verdict: Verdict = item.task.verdict
        topics[item.topic] = topics.get(item.topic, 0) + 1
        name = verdict.policy.id + ("@shadow" if verdict.shadow else "")
        origin = item.task.origin
        assert origin is not None
        transition = f"{origin.recorded.value}->{verdict.action.value}"
        counts = strata.setdefault(name, {})
        counts[transition] = counts.get(transition, 0) + 1
    return {
        "tasks": len(queued),
        "topics": dict(sorted(topics.items())),
        "strata": {name: dict(sorted(strata[name].items())) for name in sorted(strata)},
    }
