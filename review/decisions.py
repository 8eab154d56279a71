"""A reviewer's decision: decided once in Redis, then published exactly as decided.

The order is the point (the outbox pattern): `TaskStore.decide` is one atomic step that marks
the task decided and keeps what the decision publishes in the store's outbox. Of two requests
deciding one task, only the first gets there; the other is refused (409) and publishes nothing.
The winner then publishes with acks=all and clears the outbox entry. A crash or a broker outage
in between leaves the entry, which `publish_pending` sends at the next start and every
`OUTBOX_RETRY_S` after; the decision id it carries makes a second copy of it recognisable.
Counters for the dashboard (decisions per hour per reviewer, overturns per rule, second-review
agreement per queue, golden accuracy per reviewer) live in Redis. A golden task's decision is
decided the same way but never published: only its score goes out (`review.golden`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from contracts.review import DecisionKind, GoldenResult, ReviewDecision, ReviewStage
from kafka_io.clients import OutMessage
from review.decision_build import (
    ESCALATION_MARK,
    MAX_NOTE_CHARS,
    SKIP,
    DecisionChoice,
    DecisionInvalid,
    build_decision,
    escalated_task,
)
from review.decision_plans import DECISION_ID_HEADER, Deciding, DecisionPlanner
from review.tasks import reaching_redis

if TYPE_CHECKING:
    from review.tasks import TaskStore

log = logging.getLogger(__name__)

HOUR_S = 3600.0
OUTBOX_RETRY_S = 30.0  # also how old an entry must be before a retry sends it again
__all__ = [  # the choice and its building live in decision_build; the console imports them here
    "DECISION_ID_HEADER",
    "ESCALATION_MARK",
    "MAX_NOTE_CHARS",
    "SKIP",
    "DecisionChoice",
    "DecisionDesk",
    "DecisionInvalid",
    "DecisionStats",
    "MessageSink",
    "Submitted",
    "build_decision",
    "decode_outbox",
    "encode_outbox",
    "escalated_task",
]


class MessageSink(Protocol):
    """What publishes decisions: `kafka_io.KafkaWriter` (acks=all, waits for the acks)."""

    def send_all(self, messages: Sequence[OutMessage], *, timeout_s: float = 30.0) -> None:
        """Produce every message and return once each is acknowledged, or raise."""


class DecisionStats:
    """Dashboard counters in Redis: recent decisions per reviewer, overturns per rule."""

    def __init__(self, redis_url: str, *, namespace: str, clock: Callable[[], float]) -> None:
        import redis

        self._url = redis_url
        self._redis: Any = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
        self._prefix = f"{namespace}:stats"
        self._clock = clock

    def record(self, decision: ReviewDecision, scored: GoldenResult | None = None) -> None:
        """Count one decision; a golden task's (`scored`) counts as a decision made and towards
        its reviewer's accuracy, and says nothing of rules or agreement."""
        now = self._clock()
        recent = f"{self._prefix}:recent:{decision.reviewer}"
        pipe = self._redis.pipeline()
        pipe.sadd(f"{self._prefix}:reviewers", decision.reviewer)
        pipe.zadd(recent, {f"{decision.key}@{now}": now})
        pipe.zremrangebyscore(recent, "-inf", now - HOUR_S)
        if scored is not None:
            pipe.hincrby(f"{self._prefix}:golden:answered", scored.reviewer, 1)
            pipe.hincrby(f"{self._prefix}:golden:correct", scored.reviewer, int(scored.correct))
            pipe.execute()
            return
        if decision.stage is ReviewStage.SECOND:
            outcome = "agreed" if decision.final else "disagreed"
            pipe.hincrby(f"{self._prefix}:second:{outcome}", decision.queue, 1)
        if judges_rules(decision):
            for rule in decision.rules:
                pipe.hincrby(f"{self._prefix}:rules:decided", rule, 1)
                if decision.decision is DecisionKind.OVERTURN:
                    pipe.hincrby(f"{self._prefix}:rules:overturned", rule, 1)
        pipe.execute()

    def last_hour(self) -> dict[str, int]:
        """Decisions each reviewer made in the last 60 minutes."""
        now = self._clock()
        with reaching_redis("review statistics", self._url):
            reviewers = sorted(self._redis.smembers(f"{self._prefix}:reviewers"))
            pipe = self._redis.pipeline()
            for reviewer in reviewers:
                pipe.zcount(f"{self._prefix}:recent:{reviewer}", now - HOUR_S, "+inf")
            counts = pipe.execute()
        return dict(zip(reviewers, (int(n) for n in counts), strict=True))

    def golden_accuracy(self) -> dict[str, tuple[int, int]]:
        """Reviewer -> (golden tasks answered, answered right)."""
        with reaching_redis("review statistics", self._url):
            answered = self._redis.hgetall(f"{self._prefix}:golden:answered")
            correct = self._redis.hgetall(f"{self._prefix}:golden:correct")
        return {r: (int(n), int(correct.get(r, 0))) for r, n in sorted(answered.items())}

    def second_reviews(self) -> dict[str, tuple[int, int]]:
        """Queue -> (second reviews that agreed with the first, that disagreed)."""
        with reaching_redis("review statistics", self._url):
            agreed = self._redis.hgetall(f"{self._prefix}:second:agreed")
            disagreed = self._redis.hgetall(f"{self._prefix}:second:disagreed")
        queues = sorted({*agreed, *disagreed})
        return {q: (int(agreed.get(q, 0)), int(disagreed.get(q, 0))) for q in queues}

    def overturns(self) -> dict[str, tuple[int, int]]:
        """Rule id -> (overturned, upheld or overturned) over every decision counted."""
        with reaching_redis("review statistics", self._url):
            decided = self._redis.hgetall(f"{self._prefix}:rules:decided")
            overturned = self._redis.hgetall(f"{self._prefix}:rules:overturned")
        return {rule: (int(overturned.get(rule, 0)), int(n)) for rule, n in sorted(decided.items())}


def judges_rules(decision: ReviewDecision) -> bool:
    """Whether `decision` says if its verdict's rules were right: a final uphold or overturn of
    the verdict (an escalation judges nothing yet; an appeal judges the appealed decision)."""
    return (
        decision.final
        and decision.stage is not ReviewStage.APPEAL
        and decision.decision is not DecisionKind.ESCALATE
    )


class DecisionDesk:
    """Turns a reviewer's choice into a decided task, then a published decision, in that order."""

    def __init__(
        self,
        store: TaskStore,
        sink: MessageSink,
        stats: DecisionStats,
        *,
        decisions_topic: str,
        review_topics: Mapping[str, str],
        task_queues: Mapping[str, str] | None = None,
        second_review: Mapping[str, float] | None = None,
        adjudication_queue: str = "adjudication",
        golden_topic: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sink = sink
        self.stats = stats
        self.review_topics = dict(review_topics)
        self.planner = DecisionPlanner(
            decisions_topic=decisions_topic,
            review_topics=review_topics,
            task_queues=task_queues,
            second_review=second_review,
            adjudication_queue=adjudication_queue,
            golden_topic=golden_topic,
        )
        self._clock = clock

    def submit(
        self,
        key: str,
        reviewer: str,
        choice: DecisionChoice,
        escalate_into: Sequence[str] | None = None,
    ) -> Submitted | None:
        """Decide the task, then publish the decision; a skip only releases it (None).

        `escalate_into` are the queues this reviewer may escalate into (default: any).
        """
        if choice.kind == SKIP:
            self.store.release(key, reviewer)
            return None
        claim = self.store.renew(key, reviewer)  # LeaseLost unless it is still ours
        now = datetime.fromtimestamp(self._clock(), UTC)
        queues = list(self.review_topics) if escalate_into is None else list(escalate_into)
        plan = self.planner.plan(Deciding(claim, reviewer, choice, queues, now, uuid.uuid4().hex))
        outbox = encode_outbox(plan.messages, self._clock()) if plan.messages else ""
        self.store.decide(key, reviewer, outbox, final=plan.final, follow=plan.follow)
        self._count(plan.decision, plan.scored)
        published = self._publish(key, plan.messages) if plan.messages else True
        return Submitted(plan.decision, published=published)

    def publish_pending(self, min_age_s: float = OUTBOX_RETRY_S) -> int:
        """Publish decided tasks' decisions still in the outbox; how many went out.

        Only entries at least `min_age_s` old, so a decision its own request is publishing
        right now is left to it; at start, 0 sends everything a crash left behind.
        """
        sent = 0
        for key, entry in self.store.unpublished().items():
            at, messages = decode_outbox(entry)
            if self._clock() - at >= min_age_s and self._publish(key, messages):
                sent += 1
        return sent

    def _publish(self, key: str, messages: list[OutMessage]) -> bool:
        try:
            self.sink.send_all(messages)
        except Exception as error:  # decided and kept in the outbox: a later try publishes it
            log.warning("decision of task %s not published yet: %s", key, error)
            return False
        self.store.published(key)
        return True

    def _count(self, decision: ReviewDecision, scored: GoldenResult | None) -> None:
        try:
            self.stats.record(decision, scored)
        except Exception as error:  # the decision stands; only the dashboard misses it
            log.warning("could not count decision %s: %s", decision.key, error)


@dataclass(frozen=True)
class Submitted:
    """A decision made, and whether the broker has it yet (else the outbox retries it)."""

    decision: ReviewDecision
    published: bool


def encode_outbox(messages: Sequence[OutMessage], at: float) -> str:
    """The outbox entry for a decision's messages: when it was decided and what to send."""
    rows = [
        {
            "topic": m.topic,
            "value": m.value.decode(),
            "key": m.key.decode() if m.key is not None else None,
            "headers": [[name, value.decode()] for name, value in m.headers or []],
        }
        for m in messages
    ]
    return json.dumps({"at": at, "messages": rows})


def decode_outbox(entry: str) -> tuple[float, list[OutMessage]]:
    """When an outbox entry was decided, and its messages."""
    data = json.loads(entry)
    messages = [
        OutMessage(
            row["topic"],
            row["value"].encode(),
            row["key"].encode() if row["key"] is not None else None,
            [(name, value.encode()) for name, value in row["headers"]],
        )
        for row in data["messages"]
    ]
    return float(data["at"]), messages
