"""The review console's QA settings: appeals, second reviews, and the checks on their queues.

appeals: {topic: moderation.appeals, queue: appeals}   # the default; null turns it off
second_review: {spam: {share: 0.1}}                   # per review queue
adjudication_queue: adjudication                      # leads only
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Names travel in URLs and cookies; plain characters keep them unambiguous there.
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
Problems = list[tuple[tuple[str | int, ...], str]]


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


def qa_queue_problems(
    review_queues: Sequence[str],
    appeals_queue: str | None,
    adjudication_queue: str,
    sampled_queues: Sequence[str],
) -> Problems:
    """Special queues named like another queue, and second reviews of unknown queues."""
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
    for queue in sampled_queues:
        if queue not in review_queues:
            message = f"second_review.{queue}: unknown queue {queue!r}; review queues: {known}"
            problems.append((("second_review", queue), message))
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
