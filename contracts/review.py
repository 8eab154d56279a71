"""Human review on topics: the task a review queue carries, and the decision that comes back.

A review-queue topic carries a `ReviewTask` per post: the verdict, the post itself (so a console
can show what there is to judge), and when it was queued. Its Kafka key is the verdict key, as
is the task's. A reviewer's `ReviewDecision` goes to the decisions topic; reports join decisions
to verdicts on that key to measure every rule.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from contracts.records import Action, PolicyRef, Post, Verdict, utc_now


class ReviewTask(BaseModel):
    """One post to judge in one review queue (review-queue topics, JSON, key = verdict key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(..., description="The verdict's idempotency key; the task's identity.")
    queue: str = Field(..., description="The review queue, as the winning rule names it.")
    priority: int = Field(100, description="Lower is more urgent (the winning rule's).")
    enqueued_at: datetime = Field(default_factory=utc_now, description="When it was queued.")
    verdict: Verdict = Field(
        ...,
        description="The verdict: action, matched rules with reasons and evidence, signals, "
        "caption, the policy and the producers that ran.",
    )
    post: Post = Field(
        ..., description="The post as it was judged: text, images (URLs or inline), author, meta."
    )


class DecisionKind(StrEnum):
    """What a reviewer made of the verdict."""

    UPHOLD = "uphold"  # the verdict stands
    OVERTURN = "overturn"  # the action was wrong; `action` is the right one
    ESCALATE = "escalate"  # someone else must decide; `escalated_to` names the queue


class ReviewDecision(BaseModel):
    """A reviewer's decision on one task (decisions topic, JSON, key = the verdict key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(
        ...,
        description="The verdict key of the task (an escalated task's decision carries it too).",
    )
    post_id: str = Field(..., description="The post's id.")
    policy: PolicyRef = Field(..., description="The policy whose verdict was reviewed.")
    rules: list[str] = Field(default_factory=list, description="Ids of the matched rules.")
    queue: str = Field(..., description="The queue the task was in.")
    reviewer: str = Field(..., min_length=1, description="The authenticated reviewer.")
    decision: DecisionKind = Field(..., description="uphold | overturn | escalate.")
    action: Action = Field(..., description="The final action.")
    escalated_to: str | None = Field(None, description="The queue an escalation went to.")
    note: str | None = Field(None, max_length=4000, description="The reviewer's note.")
    decided_at: datetime = Field(default_factory=utc_now, description="When it was decided.")
    decision_id: str | None = Field(
        None,
        max_length=64,
        description="This decision's own id: a decision published again carries the same one, "
        "so readers keep one record per id.",
    )


REVIEW_SCHEMAS: dict[str, type[BaseModel]] = {
    "review-task": ReviewTask,
    "review-decision": ReviewDecision,
}
