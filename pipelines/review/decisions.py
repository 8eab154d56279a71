"""A reviewer's decision: built, published with acks=all, and only then the task is let go.

The order is the point: the decision is on the decisions topic (acknowledged by every in-sync
replica) before `TaskStore.decide` removes the task, so a crash in between leaves the task
claimed (it comes back when the lease runs out) instead of a task gone with no decision.
Counters for the dashboard (decisions per hour per reviewer, overturns per rule) live in Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from contracts.errors import ModerationError
from contracts.records import Action
from contracts.review import DecisionKind, ReviewDecision, ReviewTask
from pipelines.kafka_io import OutMessage

if TYPE_CHECKING:
    from pipelines.review.tasks import TaskStore

log = logging.getLogger(__name__)

SKIP = "skip"
ESCALATION_MARK = "~"
MAX_NOTE_CHARS = 4000  # ReviewDecision.note's limit
HOUR_S = 3600.0


class DecisionInvalid(ModerationError):
    """The decision form does not make sense (no action to overturn to, unknown queue...)."""


class MessageSink(Protocol):
    """What publishes decisions: `pipelines.kafka_io.Producer` (acks=all, waits for the acks)."""

    def send_all(self, messages: Sequence[OutMessage], *, timeout_s: float = 30.0) -> None:
        """Produce every message and return once each is acknowledged, or raise."""


@dataclass(frozen=True)
class DecisionChoice:
    """What the reviewer picked on the task page; the reviewer is never part of it."""

    kind: str
    action: Action | None = None
    escalate_to: str | None = None
    note: str | None = None

    @classmethod
    def from_form(cls, kind: str, action: str, escalate_to: str, note: str) -> DecisionChoice:
        """Parse the form's strings; an unknown kind or action is DecisionInvalid."""
        if kind not in {*DecisionKind, SKIP}:
            raise DecisionInvalid(f"unknown decision {kind!r}")
        if action and action not in set(Action):
            raise DecisionInvalid(f"unknown action {action!r}")
        if len(note) > MAX_NOTE_CHARS:
            raise DecisionInvalid(f"the note is over {MAX_NOTE_CHARS} characters")
        return cls(kind, Action(action) if action else None, escalate_to or None, note or None)


def build_decision(
    task: ReviewTask,
    reviewer: str,
    choice: DecisionChoice,
    *,
    review_queues: Sequence[str],
    decided_at: datetime,
) -> ReviewDecision:
    """The ReviewDecision for `choice` on `task`, or DecisionInvalid saying what is missing."""
    kind = DecisionKind(choice.kind)
    action = task.verdict.action  # an escalation leaves the verdict's action in force meanwhile
    if kind is DecisionKind.OVERTURN:
        if choice.action is None or choice.action == task.verdict.action:
            raise DecisionInvalid("an overturn needs an action other than the verdict's")
        action = choice.action
    if kind is DecisionKind.ESCALATE:
        _check_escalation(task, choice.escalate_to, review_queues)
    return ReviewDecision(
        key=task.verdict.key,  # an escalated task has its own key; reports join on the verdict's
        post_id=task.verdict.post_id,
        policy=task.verdict.policy,
        rules=[rule.id for rule in task.verdict.matched_rules],
        queue=task.queue,
        reviewer=reviewer,
        decision=kind,
        action=action,
        escalated_to=choice.escalate_to if kind is DecisionKind.ESCALATE else None,
        note=choice.note,
        decided_at=decided_at,
    )


def _check_escalation(task: ReviewTask, target: str | None, queues: Sequence[str]) -> None:
    if target is None or target not in queues:
        raise DecisionInvalid(f"escalate to which queue? one of: {', '.join(queues)}")
    if target == task.queue:
        raise DecisionInvalid(f"the task is already in queue {target!r}")


def escalated_task(task: ReviewTask, queue: str, enqueued_at: datetime) -> ReviewTask:
    """The same post and verdict, queued anew in `queue` under a key of its own.

    The store keeps decided keys forever and refuses them, so the escalated task cannot reuse
    the decided one's. The key counts the escalations, so A -> B -> A -> B never repeats one,
    and is deterministic, so a decision published twice (a crash before `decide`) queues once.
    """
    depth = task.key.count(ESCALATION_MARK) + 1
    key = f"{task.verdict.key}{ESCALATION_MARK}{depth}:{queue}"
    return task.model_copy(update={"key": key, "queue": queue, "enqueued_at": enqueued_at})


class DecisionStats:
    """Dashboard counters in Redis: recent decisions per reviewer, overturns per rule."""

    def __init__(self, redis_url: str, *, namespace: str, clock: Callable[[], float]) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
        self._prefix = f"{namespace}:stats"
        self._clock = clock

    def record(self, decision: ReviewDecision) -> None:
        """Count one published decision."""
        now = self._clock()
        recent = f"{self._prefix}:recent:{decision.reviewer}"
        pipe = self._redis.pipeline()
        pipe.sadd(f"{self._prefix}:reviewers", decision.reviewer)
        pipe.zadd(recent, {f"{decision.key}@{now}": now})
        pipe.zremrangebyscore(recent, "-inf", now - HOUR_S)
        if decision.decision is not DecisionKind.ESCALATE:  # not a judgement on the rule
            for rule in decision.rules:
                pipe.hincrby(f"{self._prefix}:rules:decided", rule, 1)
                if decision.decision is DecisionKind.OVERTURN:
                    pipe.hincrby(f"{self._prefix}:rules:overturned", rule, 1)
        pipe.execute()

    def last_hour(self) -> dict[str, int]:
        """Decisions each reviewer made in the last 60 minutes."""
        now = self._clock()
        with _reaching(self._redis):
            reviewers = sorted(self._redis.smembers(f"{self._prefix}:reviewers"))
            pipe = self._redis.pipeline()
            for reviewer in reviewers:
                pipe.zcount(f"{self._prefix}:recent:{reviewer}", now - HOUR_S, "+inf")
            counts = pipe.execute()
        return dict(zip(reviewers, (int(n) for n in counts), strict=True))

    def overturns(self) -> dict[str, tuple[int, int]]:
        """Rule id -> (overturned, upheld or overturned) over every decision counted."""
        with _reaching(self._redis):
            decided = self._redis.hgetall(f"{self._prefix}:rules:decided")
            overturned = self._redis.hgetall(f"{self._prefix}:rules:overturned")
        return {rule: (int(overturned.get(rule, 0)), int(n)) for rule, n in sorted(decided.items())}


@contextmanager
def _reaching(client: Any) -> Iterator[None]:
    """Redis failures as ReviewStoreUnavailable, so pages answer 503 with the reason."""
    import redis

    from pipelines.review.tasks import ReviewStoreUnavailable

    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise ReviewStoreUnavailable(f"review statistics unavailable: {exc}") from exc


class DecisionDesk:
    """Turns a reviewer's choice into a published decision and a task let go, in that order."""

    def __init__(
        self,
        store: TaskStore,
        sink: MessageSink,
        stats: DecisionStats,
        *,
        decisions_topic: str,
        review_topics: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sink = sink
        self.stats = stats
        self.decisions_topic = decisions_topic
        self.review_topics = dict(review_topics)
        self._clock = clock

    def submit(self, key: str, reviewer: str, choice: DecisionChoice) -> ReviewDecision | None:
        """Publish the decision, then mark the task decided; a skip only releases it (None)."""
        if choice.kind == SKIP:
            self.store.release(key, reviewer)
            return None
        claim = self.store.renew(key, reviewer)  # LeaseLost unless it is still ours
        now = datetime.fromtimestamp(self._clock(), UTC)
        decision = build_decision(
            claim.task, reviewer, choice, review_queues=list(self.review_topics), decided_at=now
        )
        self.sink.send_all(self._messages(claim.task, decision, now))
        self.store.decide(key, reviewer)
        self._count(decision)
        return decision

    def _messages(
        self, task: ReviewTask, decision: ReviewDecision, now: datetime
    ) -> list[OutMessage]:
        value = decision.model_dump_json().encode()
        messages = [OutMessage(self.decisions_topic, value, decision.key.encode())]
        if decision.escalated_to is not None:
            moved = escalated_task(task, decision.escalated_to, now)
            topic = self.review_topics[decision.escalated_to]
            messages.append(
                OutMessage(topic, moved.model_dump_json().encode(), decision.key.encode())
            )
        return messages

    def _count(self, decision: ReviewDecision) -> None:
        try:
            self.stats.record(decision)
        except Exception as error:  # the decision stands; only the dashboard misses it
            log.warning("could not count decision %s: %s", decision.key, error)
