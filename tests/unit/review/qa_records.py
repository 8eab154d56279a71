"""Records the QA unit tests share: a task, a decision on it, a review config, a claim."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from contracts.records import Action, MatchedRule, PolicyRef, Post, Verdict
from contracts.review import DecisionKind, ReviewDecision, ReviewStage, ReviewTask
from review.settings import ReviewConfig

POLICY = PolicyRef(id="p", version=1, sha256="0" * 64)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
# A well-formed argon2id hash that matches no password: the settings tests never log in.
NO_PASSWORD = "$argon2id$v=19$m=65536,t=3,p=4$UmVwbGFjZU1lU2FsdA$UmVwbGFjZU1lV2l0aFlvdXJPd25IYXNo"


def task(key: str = "k1", queue: str = "spam", action: Action = Action.BLOCK) -> ReviewTask:
    """A task whose verdict `action`s post `post-<key>` by rule `r1`."""
    rule = MatchedRule(id="r1", action=action, queue=queue, reason="looks bad")
    verdict = Verdict(
        post_id=f"post-{key}",
        key=key,
        action=action,
        queue=queue,
        policy=POLICY,
        matched_rules=[rule],
        processed_at=T0,
    )
    post = Post(id=f"post-{key}", text=f"text of {key}")
    return ReviewTask(key=key, queue=queue, enqueued_at=T0, verdict=verdict, post=post)


def decision(
    key: str = "k1",
    *,
    reviewer: str = "ana",
    kind: DecisionKind = DecisionKind.UPHOLD,
    action: Action = Action.BLOCK,
    stage: ReviewStage = ReviewStage.REVIEW,
    final: bool = True,
    queue: str = "spam",
    decision_id: str = "d1",
) -> ReviewDecision:
    """A decision on task `key`'s verdict."""
    return ReviewDecision(
        key=key,
        post_id=f"post-{key}",
        policy=POLICY,
        rules=["r1"],
        queue=queue,
        reviewer=reviewer,
        decision=kind,
        action=action,
        decided_at=T0,
        decision_id=decision_id,
        stage=stage,
        final=final,
    )


def review_config(**overrides: object) -> ReviewConfig:
    """A console config with queues spam and weapons; ana may work everything, ben spam."""
    base: dict[str, object] = {
        "kafka": {"bootstrap_servers": "localhost:9092"},
        "redis_url": "redis://localhost:6379/0",
        "review_topics": {"spam": "review.spam", "weapons": "review.weapons"},
        "session_secret": secrets.token_urlsafe(48),
        "reviewers": {
            "ana": {"password_argon2": NO_PASSWORD, "queues": ["*"]},
            "ben": {"password_argon2": NO_PASSWORD, "queues": ["spam"]},
        },
    }
    return ReviewConfig.model_validate({**base, **overrides})
