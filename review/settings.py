"""Typed configuration of the review console (`vlmod review --config FILE`); unknown keys refused.

    kafka: {bootstrap_servers: "localhost:9092"}
    redis_url: redis://localhost:6379/0
    review_topics: {spam: moderation.review.spam, weapons: moderation.review.weapons}
    session_secret: "..."          # python -m review.auth --secret
    appeals: {topic: moderation.appeals, queue: appeals}   # the default
    second_review: {spam: {share: 0.1}}                   # review.queue_settings, docs/review-qa.md
    golden: {spam: {rate: 0.05}}
    reviewers:
      ana: {password_argon2: "$argon2id$v=19$...", queues: ["*"], role: lead}
      ben: {password_argon2: "$argon2id$v=19$...", queues: [spam, appeals]}

Password hashes come from `python -m review.auth` (it prompts for the password).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.errors import ConfigInvalid
from kafka_io.clients import consumer_overrides_for
from kafka_io.settings import KafkaSettings
from operators.limits import ImageLimits
from policies.settings_files import read_config_yaml, validate_config
from review.queue_settings import (
    AppealSettings,
    GoldenSettings,
    QueueName,
    QueueSettings,
    SecondReviewSettings,
    SimilarSettings,
    lead_only_problems,
    qa_queue_problems,
    qa_topic_problems,
    shared_topic_problems,
    staffing_problems,
    topic_of,
    unknown_queue_problems,
)

ALL_QUEUES = "*"
# Names travel in URLs and cookies; plain characters keep them unambiguous there.
ReviewerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
# Deferring the cross-check lets the loader report it at the offending YAML position.
_DEFER_CROSS_CHECK = "defer_cross_check"
# Secrets this project has shipped as examples; anyone who reads the repository knows them.
PLACEHOLDER_SECRETS = frozenset(
    {"replace-with-64-random-characters-from-a-secret-store", "a long random string"}
)
MIN_SECRET_CHARS = 43  # 32 random bytes in URL-safe base64, as `secrets.token_urlsafe(32)` prints
MIN_SECRET_SYMBOLS = 10  # hex has 16; a run of one or two characters is no secret
MAKE_SECRET = "python -m review.auth --secret"


def secret_problem(secret: str) -> str | None:
    """Why `secret` cannot sign sessions, or None when it looks like 32 random bytes or more."""
    if secret in PLACEHOLDER_SECRETS or "replace-with" in secret:
        return "is the shipped placeholder, which anyone can read"
    if len(secret) < MIN_SECRET_CHARS:
        return f"has {len(secret)} characters; at least {MIN_SECRET_CHARS} (32 random bytes)"
    if len(set(secret)) < MIN_SECRET_SYMBOLS or _period(secret) <= len(secret) // 2:
        return "repeats a short pattern; it must be random"
    return None


def _check_secret(secret: str, what: str) -> None:
    """Raise naming `what` when `secret` cannot sign sessions (see `secret_problem`)."""
    problem = secret_problem(secret)
    if problem:
        raise ValueError(f"{what} {problem}; make one with `{MAKE_SECRET}`")


def _period(text: str) -> int:
    """The length of the shortest piece that `text` repeats (its own length when none)."""
    return next(
        (n for n in range(1, len(text) // 2 + 1) if text == (text[:n] * len(text))[: len(text)]),
        len(text),
    )


class ReviewerSettings(BaseModel):
    """One reviewer: how they log in and which queues they may work."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    password_argon2: str = Field(
        ...,
        pattern=r"^\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$",
        description="argon2id hash of the password, from `python -m review.auth`.",
    )
    queues: list[str] = Field(
        ...,
        min_length=1,
        description="Queue names (keys of review_topics, the appeals queue) they may work, or "
        '"*" for every queue.',
    )
    escalate_to: list[str] | None = Field(
        None,
        description="Queues they may escalate into; absent: the queues they may work. "
        '"*" for every queue.',
    )
    role: Literal["reviewer", "lead"] = Field(
        "reviewer", description="A lead also works the adjudication queue, and sees QA numbers."
    )


class TokenSettings(BaseModel):
    """A bearer token for read-only machine access to `GET /api/stats` (monitoring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(
        ...,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 hex of the token; `python -m review.auth --token` makes one.",
    )


class ReviewConfig(BaseModel):
    """Everything `vlmod review` needs; unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka: KafkaSettings = Field(..., description="Broker connection.")
    redis_url: str = Field(..., min_length=1, description="Redis holding the open review tasks.")
    review_topics: dict[QueueName, str | QueueSettings] = Field(
        ...,
        min_length=1,
        description="Review queue name -> the topic that carries its tasks, or {topic, queue}.",
    )
    decisions_topic: str = Field(
        "moderation.decisions", min_length=1, description="Where reviewer decisions go."
    )
    appeals: AppealSettings | None = Field(
        default_factory=AppealSettings,
        description="The appeals topic and queue; null turns appeals off.",
    )
    second_review: dict[QueueName, SecondReviewSettings] = Field(
        default_factory=dict,
        description="Review queue -> the share of its tasks a second reviewer decides, blind.",
    )
    adjudication_queue: QueueName = Field(
        "adjudication",
        description="Where two reviews that disagree go; only reviewers with role lead work it.",
    )
    similar: SimilarSettings = Field(
        default_factory=SimilarSettings,
        description="Similar posts on the task page, from the post embeddings tasks carry "
        "(the pipeline's `review_embeddings: true`).",
    )
    golden: dict[QueueName, GoldenSettings] = Field(
        default_factory=dict,
        description="Review queue -> how often a claim serves a golden task "
        "(`vlmod review golden add`).",
    )
    golden_topic: str | None = Field(
        "moderation.review.golden",
        min_length=1,
        description="Where answers to golden tasks go, scored (GoldenResult); null: kept only "
        "in the dashboard's counts.",
    )
    dead_letter_topic: str = Field(
        "moderation.dead-letter",
        min_length=1,
        description="Where review-topic records that are not tasks of their queue go, with why.",
    )
    consumer_group: str = Field(
        "vlmod-review", min_length=1, description="Kafka consumer group of the review topics."
    )
    consumer_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Consumer settings by kafka-python's names, e.g. session_timeout_ms "
        "(translated for kafka.consumer: librdkafka).",
    )
    namespace: str = Field(
        "vlmod:review", min_length=1, description="Prefix of every Redis key the console writes."
    )
    lease_s: float = Field(300.0, gt=0, description="How long a claim lasts without a decision.")
    order: Literal["priority", "age"] = Field(
        "priority", description="Hand out the most urgent task first, or the oldest."
    )
    session_secret: SecretStr | None = Field(
        None,
        description=f"Key that signs session cookies: 32 random bytes or more (`{MAKE_SECRET}`). "
        "Or name an environment variable that holds it in session_secret_env.",
    )
    session_secret_env: str | None = Field(
        None,
        min_length=1,
        description="Environment variable holding the session secret (kept out of the file).",
    )
    session_max_age_s: int = Field(12 * 3600, gt=0, description="A login lasts at most this long.")
    session_idle_timeout_s: int = Field(
        1800, gt=0, description="A login unused for this long ends (seconds)."
    )
    secure_cookies: bool = Field(
        False, description="Mark cookies Secure; turn on when the console is served over HTTPS."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user name and address before 429."
    )
    login_window_s: float = Field(60.0, gt=0, description="Window of login_max_failures.")
    login_max_failures_per_address: int = Field(
        30, ge=1, description="Failed logins from one address, over all names, before 429."
    )
    login_limiter_entries: int = Field(
        10_000,
        ge=100,
        description="Most (name, address) pairs the login limiter remembers; the oldest go first.",
    )
    login_hash_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Password checks run at once; each argon2 check takes its memory cost (64 MiB "
        "by default), so this bounds the console's memory under a login storm.",
    )
    login_queue_timeout_s: float = Field(
        10.0, gt=0, description="How long a login waits for a free check before 503."
    )
    login_queue_max: int = Field(
        16, ge=1, description="Logins waiting for a check at most; more get 503 at once."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For is "
        "believed; from anyone else the header is ignored.",
    )
    max_request_bytes: int = Field(
        65_536, ge=4096, description="Largest request body the console reads; bigger get 413."
    )
    images: ImageLimits = Field(
        default_factory=ImageLimits,
        description="Limits and address rules for the post images the console fetches for a "
        "reviewer, as the pipeline fetches them.",
    )
    reviewers: dict[ReviewerName, ReviewerSettings] = Field(
        ..., min_length=1, description="Reviewer name -> password hash and allowed queues."
    )
    tokens: dict[str, TokenSettings] = Field(
        default_factory=dict, description="Name -> read-only bearer token for GET /api/stats."
    )

    _overrides_the_consumer_takes = field_validator("consumer_overrides")(consumer_overrides_for)

    @field_validator("session_secret")
    @classmethod
    def _secret_is_random(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None:
            _check_secret(secret.get_secret_value(), "the session secret")
        return secret

    @field_validator("session_secret_env")
    @classmethod
    def _secret_env_is_set(cls, name: str | None) -> str | None:
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            raise ValueError(f"environment variable {name} is not set; put the secret there")
        _check_secret(value, f"the secret in {name}")
        return name

    @model_validator(mode="after")
    def _one_secret(self) -> ReviewConfig:
        if (self.session_secret is None) == (self.session_secret_env is None):
            raise ValueError(
                f"give session_secret or session_secret_env, one of them (`{MAKE_SECRET}`)"
            )
        return self

    def secret_value(self) -> str:
        """The session secret, from the file or its environment variable."""
        if self.session_secret is not None:
            return self.session_secret.get_secret_value()
        return os.environ[str(self.session_secret_env)]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an address or a CIDR network") from None
        return proxies

    @model_validator(mode="after")
    def _queues_are_known(self, info: ValidationInfo) -> ReviewConfig:
        if not (info.context or {}).get(_DEFER_CROSS_CHECK):
            problems = [message for _, message in self.cross_problems()]
            if problems:
                raise ValueError("; ".join(problems))
        return self

    def cross_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(YAML path, message) for each unknown queue a reviewer names, shared topics, and
        QA settings that do not fit the queues or the reviewers (`review.queue_settings`)."""
        problems = shared_topic_problems(self.review_topics)
        appeals = self.appeals.queue if self.appeals is not None else None
        problems += qa_queue_problems(
            list(self.review_topics),
            appeals,
            self.adjudication_queue,
            list(self.second_review),
            list(self.golden),
        )
        problems += qa_topic_problems(
            {
                **{f"review_topics.{queue}": topic for queue, topic in self.topics.items()},
                "decisions_topic": self.decisions_topic,
                "dead_letter_topic": self.dead_letter_topic,
                "appeals.topic": self.appeals.topic if self.appeals is not None else None,
                "golden_topic": self.golden_topic,
            }
        )
        problems += staffing_problems(
            list(self.second_review),
            {queue: self.workers_of(queue) for queue in self.second_review},
            [name for name, reviewer in self.reviewers.items() if reviewer.role == "lead"],
        )
        problems += lead_only_problems(
            {name: r.queues for name, r in self.reviewers.items() if r.role != "lead"},
            self.adjudication_queue,
        )
        # Leads may list the adjudication queue (anyone else was refused above); the hint leaves
        # it out, as it is granted by the role.
        grantable = [*self.queue_names, self.adjudication_queue]
        for field_name, known in (("queues", grantable), ("escalate_to", list(self.topics))):
            granted = {
                f"{name}.{field_name}": getattr(reviewer, field_name) or []
                for name, reviewer in self.reviewers.items()
            }
            hint = [q for q in known if q != self.adjudication_queue]
            problems += unknown_queue_problems(granted, known, hint)
        return problems

    @property
    def queue_names(self) -> list[str]:
        """The queues anyone may be granted: the review queues, then the appeals queue."""
        special = [self.appeals.queue] if self.appeals is not None else []
        return [*self.review_topics, *special]

    def workers_of(self, queue: str) -> list[str]:
        """The reviewers who may work `queue`, in config order."""
        return [name for name, r in self.reviewers.items() if self._in_order(r.queues, [queue])]

    def is_lead(self, reviewer: str) -> bool:
        """Whether `reviewer` has role lead."""
        settings = self.reviewers.get(reviewer)
        return settings is not None and settings.role == "lead"

    def second_review_share(self, queue: str) -> float:
        """The share of `queue`'s tasks that get a second review (0 when none is configured)."""
        settings = self.second_review.get(queue)
        return settings.share if settings is not None else 0.0

    @property
    def topics(self) -> dict[str, str]:
        """Queue name -> its topic."""
        return {name: topic_of(entry) for name, entry in self.review_topics.items()}

    def task_queue(self, queue: str) -> str:
        """The queue name the tasks of console queue `queue` carry (the policy's name)."""
        entry = self.review_topics[queue]
        return entry.queue or queue if isinstance(entry, QueueSettings) else queue

    def escalations_of(self, reviewer: str) -> list[str]:
        """The queues `reviewer` may escalate into, in review_topics order."""
        settings = self.reviewers.get(reviewer)
        if settings is None:
            return []
        allowed = settings.escalate_to if settings.escalate_to is not None else settings.queues
        return self._in_order(allowed, list(self.review_topics))

    def queues_of(self, reviewer: str) -> list[str]:
        """The queues `reviewer` may work, in review_topics order; none for a stranger."""
        settings = self.reviewers.get(reviewer)
        if settings is None:
            return []
        granted = self._in_order(settings.queues, self.queue_names)
        return [*granted, self.adjudication_queue] if settings.role == "lead" else granted

    @staticmethod
    def _in_order(allowed: list[str], names: list[str]) -> list[str]:
        """The names of `names` that `allowed` grants ("*": every one), in their order."""
        if ALL_QUEUES in allowed:
            return list(names)
        return [name for name in names if name in allowed]


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
