"""A reviewer's decision: decided once in Redis, then published exactly as decided.

The order is the point (the outbox pattern): `TaskStore.decide` is one atomic step that marks
the task decided and keeps what the decision publishes in the store's outbox. Of two requests
deciding one task, only the first gets there; the other is refused (409) and publishes nothing.
The winner then publishes with acks=all and clears the outbox entry. A crash or a broker outage
in between leaves the entry, which `publish_pending` sends at the next start and every
`OUTBOX_RETRY_S` after; the decision id it carries makes a second copy of it recognisable.
Counters for the dashboard (decisions per hour per reviewer, overturns per rule) live in Redis.
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

from contracts.errors import ModerationError
from contracts.records import Action
from contracts.review import DecisionKind, ReviewDecision, ReviewTask
from kafka_io.clients import OutMessage
from review.tasks import reaching_redis

if TYPE_CHECKING:
    from review.tasks import TaskStore

log = logging.getLogger(__name__)

SKIP = "skip"
ESCALATION_MARK = "~"
MAX_NOTE_CHARS = 4000  # ReviewDecision.note's limit
HOUR_S = 3600.0
OUTBOX_RETRY_S = 30.0  # also how old an entry must be before a retry sends it again
DECISION_ID_HEADER = "vlmod-decision-id"


class DecisionInvalid(ModerationError):
    """The decision form does not make sense (no action to overturn to, unknown queue...)."""


class MessageSink(Protocol):
    """What publishes decisions: `kafka_io.KafkaWriter` (acks=all, waits for the acks)."""

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
    decision_id: str | None = None,
) -> ReviewDecision:
    """The ReviewDecision for `choice` on `task`, or DecisionInvalid saying what is missing.

    `review_queues` are the queues the reviewer may escalate into.
    """
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
        decision_id=decision_id,
    )


def _check_escalation(task: ReviewTask, target: str | None, queues: Sequence[str]) -> None:
    if target is None or target not in queues:
        allowed = ", ".join(q for q in queues if q != task.queue) or "none"
        raise DecisionInvalid(f"you may escalate only into: {allowed}")
    if target == task.queue:
        raise DecisionInvalid(f"the task is already in queue {target!r}")


def escalated_task(
    task: ReviewTask, queue: str, enqueued_at: datetime, task_queue: str | None = None
) -> ReviewTask:
    """The same post and verdict, queued anew in `queue` under a key of its own.

    `task_queue` is the queue name the tasks on `queue`'s topic carry, when not `queue`.

    The store keeps decided keys forever and refuses them, so the escalated task cannot reuse
    the decided one's. The key counts the escalations, so A -> B -> A -> B never repeats one,
    and is deterministic, so a decision published twice (a crash before `decide`) queues once.
    """
    depth = task.key.count(ESCALATION_MARK) + 1
    key = f"{task.verdict.key}{ESCALATION_MARK}{depth}:{queue}"
    named = task_queue or queue
    return task.model_copy(update={"key": key, "queue": named, "enqueued_at": enqueued_at})


class DecisionStats:
    """Dashboard counters in Redis: recent decisions per reviewer, overturns per rule."""

    def __init__(self, redis_url: str, *, namespace: str, clock: Callable[[], float]) -> None:
        import redis

        self._url = redis_url
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
        with reaching_redis("review statistics", self._url):
            reviewers = sorted(self._redis.smembers(f"{self._prefix}:reviewers"))
            pipe = self._redis.pipeline()
            for reviewer in reviewers:
                pipe.zcount(f"{self._prefix}:recent:{reviewer}", now - HOUR_S, "+inf")
            counts = pipe.execute()
        return dict(zip(reviewers, (int(n) for n in counts), strict=True))

    def overturns(self) -> dict[str, tuple[int, int]]:
        """Rule id -> (overturned, upheld or overturned) over every decision counted."""
        with reaching_redis("review statistics", self._url):
            decided = self._redis.hgetall(f"{self._prefix}:rules:decided")
            overturned = self._redis.hgetall(f"{self._prefix}:rules:overturned")
        return {rule: (int(overturned.get(rule, 0)), int(n)) for rule, n in sorted(decided.items())}


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sink = sink
        self.stats = stats
        self.decisions_topic = decisions_topic
        self.review_topics = dict(review_topics)
        self.task_queues = dict(task_queues or {})
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
        decision = build_decision(
            claim.task,
            reviewer,
            choice,
            review_queues=queues,
            decided_at=now,
            decision_id=uuid.uuid4().hex,
        )
        messages = self._messages(claim.task, decision, now)
        self.store.decide(key, reviewer, encode_outbox(messages, self._clock()))
        self._count(decision)
        return Submitted(decision, published=self._publish(key, messages))

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

    def _messages(
        self, task: ReviewTask, decision: ReviewDecision, now: datetime
    ) -> list[OutMessage]:
        value = decision.model_dump_json().encode()
        headers = [(DECISION_ID_HEADER, (decision.decision_id or "").encode())]
        messages = [OutMessage(self.decisions_topic, value, decision.key.encode(), headers)]
        if decision.escalated_to is not None:
            target = decision.escalated_to
            moved = escalated_task(task, target, now, self.task_queues.get(target))
            topic = self.review_topics[target]
            body = moved.model_dump_json().encode()
            messages.append(OutMessage(topic, body, decision.key.encode(), headers))
        return messages

    def _count(self, decision: ReviewDecision) -> None:
        try:
            self.stats.record(decision)
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
