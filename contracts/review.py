"""Human review on topics: the task a review queue carries, and the decision that comes back.

A review-queue topic carries a `ReviewTask` per post: the verdict, the post itself (so a console
can show what there is to judge), and when it was queued. Its Kafka key is the verdict key, as
is the task's. A reviewer's `ReviewDecision` goes to the decisions topic; reports join decisions
to verdicts on that key to measure every rule. Only a decision marked `final` is the decision on
its post: a sampled task's first and second blind reviews are not, until they agree or a lead
adjudicates. An `AppealRequest` on the appeals topic asks for a decided post to be judged again;
the appeal's decision is marked `stage: appeal`. A `GoldenTask` is a task with a known answer,
served among real ones; a reviewer's answer to it is a `GoldenResult` on the golden topic, never
a decision. A replay-QA task (`vlmod replay --to-queue`) carries a candidate policy's verdict
and its `origin`; the decision on it carries the origin too, and labels the post for replay.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.records import Action, PolicyRef, Post, Verdict, utc_now


class TaskOrigin(BaseModel):
    """Where a task that no live verdict routed comes from: a replay's sample (`vlmod replay
    --to-queue`), whose verdict is what a candidate policy would decide."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["replay"] = Field(
        "replay",
        description="replay: the verdict is a candidate policy's, decided again by a "
        "replay; a decision on it labels the post for the next replay of that policy id.",
    )
    policy_sha256: str = Field(..., description="The sha256 of the candidate policy's file.")
    recorded: Action = Field(..., description="The action the recorded verdict took.")
    note: str | None = Field(
        None,
        description="What the task lacks that the live post had, e.g. inline images, which a "
        "history does not keep.",
    )


class PostEmbedding(BaseModel):
    """A post's embedding: the model that gave it and the vector."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str = Field(..., min_length=1, description="The model's checkpoint id or path.")
    vector: list[float] = Field(..., min_length=1, description="The vector (not normalised).")


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
    origin: TaskOrigin | None = Field(
        None,
        description="Set on a replay-QA task (`vlmod replay --to-queue`): the candidate policy "
        "whose verdict it is; null on a task a live verdict routed.",
    )
    embedding: PostEmbedding | None = Field(
        None,
        description="The post embedding the pipeline's default model gave the post (with "
        "`review_embeddings: true`): the console finds the task's similar posts by it.",
    )


class DecisionKind(StrEnum):
    """What a reviewer made of the verdict."""

    UPHOLD = "uphold"  # the verdict stands
    OVERTURN = "overturn"  # the action was wrong; `action` is the right one
    ESCALATE = "escalate"  # someone else must decide; `escalated_to` names the queue


class ReviewStage(StrEnum):
    """Where in review a decision was made."""

    REVIEW = "review"  # one reviewer decided the task
    FIRST = "first"  # the first of two blind reviews of a sampled task; never final
    SECOND = "second"  # the second blind review; final when it agrees with the first
    ADJUDICATION = "adjudication"  # a lead's decision where the two reviews disagreed
    APPEAL = "appeal"  # the decision on an appeal; uphold/overturn judge the appealed decision


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
    stage: ReviewStage = Field(
        ReviewStage.REVIEW,
        description="review | first | second | adjudication | appeal: where it was decided. "
        "An appeal's uphold or overturn is of the appealed decision, not of the verdict.",
    )
    final: bool = Field(
        True,
        description="Whether this is the decision on the post. False for a blind first review, "
        "and for a second review that disagreed with it (a lead adjudicates).",
    )
    appeal_of: str | None = Field(
        None, max_length=64, description="The decision_id of the decision an appeal judged."
    )
    origin: TaskOrigin | None = Field(
        None,
        description="The task's origin, on a decision of a replay-QA task: it judges a candidate "
        "policy's verdict, and labels the post for the next replay of that policy id.",
    )
    cluster_of: str | None = Field(
        None,
        max_length=512,
        description="Set when the reviewer decided a cluster of similar tasks at once: the key of "
        "the task they opened (that task's own decision carries it too). Each task of the "
        "cluster has its own decision.",
    )


class AppealRequest(BaseModel):
    """A request to judge a decided post again (appeals topic, JSON, key = the verdict key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(..., min_length=1, max_length=256, description="The decided verdict's key.")
    post_id: str = Field(..., min_length=1, description="The post's id, as the decision names it.")
    reason: str = Field(..., min_length=1, max_length=4000, description="Why it is appealed.")
    submitted_at: datetime = Field(..., description="When the appeal was made.")


class GoldenTask(BaseModel):
    """A review task with a known right action (`vlmod review golden add`, JSONL, one a line)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: ReviewTask = Field(..., description="The task as reviewers will see it.")
    answer: Action = Field(..., description="The right final action for it.")
    note: str | None = Field(None, max_length=4000, description="Why; for whoever keeps the set.")


class GoldenResult(BaseModel):
    """A reviewer's answer to a golden task, scored (golden topic, JSON, key = the reviewer).

    Golden tasks have a known answer and are served among real ones; their decisions are scored
    here and never reach the decisions topic.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    golden_id: str = Field(..., description="The golden task's id (its key in the golden set).")
    queue: str = Field(..., description="The queue it was served in.")
    reviewer: str = Field(..., min_length=1, description="The reviewer who answered.")
    expected: Action = Field(..., description="The known right action.")
    decision: DecisionKind = Field(..., description="What the reviewer decided.")
    given: Action | None = Field(None, description="The reviewer's action; null on escalation.")
    correct: bool = Field(..., description="given == expected.")
    decided_at: datetime = Field(default_factory=utc_now, description="When it was answered.")
    decision_id: str | None = Field(None, max_length=64, description="This answer's own id.")


REVIEW_SCHEMAS: dict[str, type[BaseModel]] = {
    "review-task": ReviewTask,
    "review-decision": ReviewDecision,
    "appeal": AppealRequest,
    "golden-task": GoldenTask,
    "golden-result": GoldenResult,
}
