"""The review console's queue settings: a queue's topic, the QA settings (appeals, second
reviews, golden tasks), and the checks on the queues and topics a config names.

appeals: {topic: moderation.appeals, queue: appeals}   # the default; null turns it off
second_review: {spam: {share: 0.1}}                   # per review queue
adjudication_queue: adjudication                      # leads only
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Names travel in URLs and cookies; plain characters keep them unambiguous there.
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
Problems = list[tuple[tuple[str | int, ...], str]]


class QueueSettings(BaseModel):
    """One review queue: its topic, and the queue name its tasks carry when not the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(..., min_length=1, description="The topic that carries the queue's tasks.")
    queue: str | None = Field(
        None,
        min_length=1,
        description="The queue name the tasks on that topic carry (the policy's); defaults to "
        "this queue's own name. Lets two policies that use one name be two queues here.",
    )


class AppealSettings(BaseModel):
    """Where appeals come from, and the queue they are judged in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(
        "moderation.appeals", min_length=1, description="The topic of AppealRequest records."
    )
    queue: QueueName = Field(
        "appeals",
        description='The console queue appeals wait in; grant it in `queues` (or "*").',
    )


class SecondReviewSettings(BaseModel):
    """How many of a queue's tasks a second reviewer decides too, blind to the first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    share: float = Field(
        ...,
        ge=0.0,
        le=1.0,
        description="The share of the queue's tasks sampled (by a hash of the task key, so the "
        "same tasks at every start).",
    )


class GoldenSettings(BaseModel):
    """How often a claim in a queue serves one of its golden tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(
        ...,
        ge=0.0,
        le=1.0,
        description="The chance that a claim serves a golden task the reviewer has not had yet, "
        "while real tasks wait.",
    )


class SimilarSettings(BaseModel):
    """The task page's similar posts: the tasks whose post embeddings lie nearest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shown: int = Field(8, ge=1, le=50, description="How many similar tasks a task page lists.")
    max_distance: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="Cosine distance past which a task is not listed as similar; none: the "
        "nearest `shown`, however far.",
    )
    window: int = Field(
        100_000,
        ge=1,
        description="Post embeddings kept in Redis per model (the oldest go first).",
    )
    refresh_s: float = Field(
        1.0, gt=0, description="How often a console process reads the embeddings others added."
    )


def qa_queue_problems(
    review_queues: Sequence[str],
    appeals_queue: str | None,
    adjudication_queue: str,
    sampled_queues: Sequence[str],
    golden_queues: Sequence[str] = (),
) -> Problems:
    """Special queues named like another queue; second reviews and golden tasks of unknown ones."""
    problems: Problems = []
    if appeals_queue is not None and appeals_queue in review_queues:
        message = (
            f"appeals.queue: {appeals_queue!r} is a review queue already; "
            "name the appeals queue something else"
        )
        problems.append((("appeals", "queue"), message))
    if adjudication_queue in [*review_queues, appeals_queue]:
        message = (
            f"adjudication_queue: {adjudication_queue!r} is another queue already; "
            "name the adjudication queue something else"
        )
        problems.append((("adjudication_queue",), message))
    known = ", ".join(sorted(review_queues))
    for field, queues in (("second_review", sampled_queues), ("golden", golden_queues)):
        for queue in queues:
            if queue not in review_queues:
                message = f"{field}.{queue}: unknown queue {queue!r}; review queues: {known}"
                problems.append(((field, queue), message))
    return problems


def qa_topic_problems(topics: Mapping[str, str | None]) -> Problems:
    """The appeals and golden topics must be topics of their own: an appeal read as a task, or a
    golden score read as a decision, would be wrong. `topics` maps each setting to its topic."""
    problems: Problems = []
    for setting in ("appeals.topic", "golden_topic"):
        topic = topics.get(setting)
        others = [name for name, other in topics.items() if name != setting and other == topic]
        if topic is not None and others:
            message = f"{setting}: {topic!r} is {others[0]}'s topic too; give it one of its own"
            problems.append((tuple(setting.split(".")), message))
    return problems


def lead_only_problems(granted: Mapping[str, list[str]], adjudication_queue: str) -> Problems:
    """Each reviewer without role lead who is granted the adjudication queue, with its path."""
    return [
        (
            ("reviewers", reviewer, "queues", index),
            f"reviewers.{reviewer}.queues[{index}]: {adjudication_queue!r} is open to leads "
            f"only; give {reviewer} role: lead",
        )
        for reviewer, queues in granted.items()
        for index, queue in enumerate(queues)
        if queue == adjudication_queue
    ]


def unknown_queue_problems(
    granted: Mapping[str, list[str]],
    review_topics: Collection[str],
    hint: Collection[str] | None = None,
) -> Problems:
    """Every granted queue that is neither "*" nor among `review_topics`, with its path.

    `granted` maps "reviewer.field" (queues or escalate_to) to the names listed there; the
    message lists `hint` (default: `review_topics`) as the known names.
    """
    known = ", ".join(sorted(review_topics if hint is None else hint)) or "(none)"
    problems: Problems = []
    for where, queues in granted.items():
        reviewer, _, field_name = where.rpartition(".")
        for index, queue in enumerate(queues):
            if queue != "*" and queue not in review_topics:
                message = (
                    f"reviewers.{where}[{index}]: unknown queue {queue!r}; "
                    f'known queues: {known} (or use "*")'
                )
                problems.append((("reviewers", reviewer, field_name, index), message))
    return problems


def topic_of(entry: str | QueueSettings) -> str:
    return entry.topic if isinstance(entry, QueueSettings) else entry


def shared_topic_problems(
    review_topics: Mapping[str, str | QueueSettings],
) -> Problems:
    """Each queue whose topic an earlier queue has: a task there would have two queues."""
    seen: dict[str, str] = {}
    problems: Problems = []
    for name, entry in review_topics.items():
        topic = topic_of(entry)
        if topic in seen:
            message = (
                f"review_topics.{name}: topic {topic!r} is queue {seen[topic]!r}'s already; "
                "each queue needs a topic of its own"
            )
            problems.append((("review_topics", name), message))
        seen.setdefault(topic, name)
    return problems


def staffing_problems(
    sampled_queues: Sequence[str], workers: Mapping[str, Sequence[str]], leads: Sequence[str]
) -> Problems:
    """Second reviews nobody could ever finish: a sampled task waits for a reviewer other than
    its first, and a disagreement for a lead; with neither configured, tasks would wait forever.

    `workers` maps each queue to the reviewers who may work it; `leads` are those with role lead.
    """
    problems: Problems = []
    for queue in sampled_queues:
        staff = list(workers.get(queue, ()))
        if len(staff) < 2:
            who = f"only {staff[0]} works it" if staff else "nobody works it"
            message = (
                f"second_review.{queue}: a second review needs a reviewer other than the first, "
                f"and {who}; grant {queue!r} to a second reviewer"
            )
            problems.append((("second_review", queue), message))
    if sampled_queues and not leads:
        message = (
            "second_review: two reviews that disagree go to a lead, and no reviewer has "
            "role: lead; give someone role: lead"
        )
        problems.append((("second_review",), message))
    return problems
