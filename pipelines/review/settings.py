"""Typed configuration of the review console (`vlmod review --config FILE`); unknown keys refused.

    kafka: {bootstrap_servers: "localhost:9092"}
    redis_url: redis://localhost:6379/0
    review_topics: {spam: moderation.review.spam, weapons: moderation.review.weapons}
    session_secret: "a long random string"
    reviewers:
      ana: {password_argon2: "$argon2id$v=19$...", queues: ["*"]}
      ben: {password_argon2: "$argon2id$v=19$...", queues: [spam]}

Password hashes come from `python -m pipelines.review.auth` (it prompts for the password).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

from pipelines.config import KafkaSettings, read_config_yaml, validate_config
from pipelines.exceptions import ConfigInvalid

ALL_QUEUES = "*"
# Names travel in URLs and cookies; plain characters keep them unambiguous there.
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
ReviewerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
# Deferring the cross-check lets the loader report it at the offending YAML position.
_DEFER_CROSS_CHECK = "defer_cross_check"


class ReviewerSettings(BaseModel):
    """One reviewer: how they log in and which queues they may work."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    password_argon2: str = Field(
        ...,
        pattern=r"^\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$",
        description="argon2id hash of the password, from `python -m pipelines.review.auth`.",
    )
    queues: list[str] = Field(
        ...,
        min_length=1,
        description='Queue names (keys of review_topics) they may work, or "*" for every queue.',
    )


class TokenSettings(BaseModel):
    """A bearer token for read-only machine access to `GET /api/stats` (monitoring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(
        ...,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 hex of the token; `python -m pipelines.review.auth --token` makes one.",
    )


class ReviewConfig(BaseModel):
    """Everything `vlmod review` needs; unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka: KafkaSettings = Field(..., description="Broker connection.")
    redis_url: str = Field(..., min_length=1, description="Redis holding the open review tasks.")
    review_topics: dict[QueueName, str] = Field(
        ..., min_length=1, description="Review queue name -> the topic that carries its tasks."
    )
    decisions_topic: str = Field(
        "moderation.decisions", min_length=1, description="Where reviewer decisions go."
    )
    consumer_group: str = Field(
        "vlmod-review", min_length=1, description="Kafka consumer group of the review topics."
    )
    consumer_overrides: dict[str, Any] = Field(
        default_factory=dict, description="kafka-python consumer settings, e.g. session_timeout_ms."
    )
    namespace: str = Field(
        "vlmod:review", min_length=1, description="Prefix of every Redis key the console writes."
    )
    lease_s: float = Field(300.0, gt=0, description="How long a claim lasts without a decision.")
    order: Literal["priority", "age"] = Field(
        "priority", description="Hand out the most urgent task first, or the oldest."
    )
    session_secret: SecretStr = Field(
        ..., min_length=16, description="Key that signs session cookies; long and random."
    )
    session_max_age_s: int = Field(12 * 3600, gt=0, description="A login lasts this long.")
    secure_cookies: bool = Field(
        False, description="Mark cookies Secure; turn on when the console is served over HTTPS."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user name and address before 429."
    )
    login_window_s: float = Field(60.0, gt=0, description="Window of login_max_failures.")
    reviewers: dict[ReviewerName, ReviewerSettings] = Field(
        ..., min_length=1, description="Reviewer name -> password hash and allowed queues."
    )
    tokens: dict[str, TokenSettings] = Field(
        default_factory=dict, description="Name -> read-only bearer token for GET /api/stats."
    )

    @model_validator(mode="after")
    def _queues_are_known(self, info: ValidationInfo) -> ReviewConfig:
        if not (info.context or {}).get(_DEFER_CROSS_CHECK):
            problems = [message for _, message in self.cross_problems()]
            if problems:
                raise ValueError("; ".join(problems))
        return self

    def cross_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(YAML path, message) for each reviewer queue that review_topics does not name."""
        granted = {name: reviewer.queues for name, reviewer in self.reviewers.items()}
        return unknown_queue_problems(granted, self.review_topics)

    def queues_of(self, reviewer: str) -> list[str]:
        """The queues `reviewer` may work, in review_topics order; none for a stranger."""
        settings = self.reviewers.get(reviewer)
        if settings is None:
            return []
        if ALL_QUEUES in settings.queues:
            return list(self.review_topics)
        return [queue for queue in self.review_topics if queue in settings.queues]


def unknown_queue_problems(
    granted: Mapping[str, list[str]], review_topics: Mapping[str, str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every granted queue that is neither "*" nor a key of review_topics, with its path."""
    known = ", ".join(sorted(review_topics)) or "(none)"
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for reviewer, queues in granted.items():
        for index, queue in enumerate(queues):
            if queue != ALL_QUEUES and queue not in review_topics:
                message = (
                    f"reviewers.{reviewer}.queues[{index}]: unknown queue {queue!r}; "
                    f'review_topics names: {known} (or use "*")'
                )
                problems.append((("reviewers", reviewer, "queues", index), message))
    return problems


def load_review_config(path: str | Path) -> ReviewConfig:
    """Read a review console YAML file; every problem is reported as FILE:LINE:COL: message."""
    doc = read_config_yaml(path, needs="kafka, redis_url, review_topics and reviewers")
    if not isinstance(doc.data, dict):
        raise ConfigInvalid(f"{path}:1:1: expected a mapping with kafka, redis_url, reviewers...")
    config = validate_config(doc, ReviewConfig, context={_DEFER_CROSS_CHECK: True})
    placed = [doc.problem(doc.where(where), message) for where, message in config.cross_problems()]
    if placed:
        raise ConfigInvalid("\n".join(str(problem) for problem in sorted(placed)))
    return config
