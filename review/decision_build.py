"""A reviewer's choice on the task page, and the ReviewDecision it makes (pure).

`build_decision` judges a verdict: uphold keeps its action, overturn names another, escalate
sends the task to another queue. `build_appeal_decision` judges an appealed decision instead:
uphold keeps that decision's action, overturn names another; an appeal is never escalated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts.errors import ModerationError
from contracts.records import Action
from contracts.review import DecisionKind, ReviewDecision, ReviewStage, ReviewTask

SKIP = "skip"
ESCALATION_MARK = "~"
MAX_NOTE_CHARS = 4000  # ReviewDecision.note's limit


class DecisionInvalid(ModerationError):
    """The decision form does not make sense (no action to overturn to, unknown queue...)."""


@dataclass(frozen=True)
class DecisionChoice:
    """What the reviewer picked on the task page; the reviewer is never part of it."""

    kind: str
    action: Action | None = None
    escalate_to: str | None = None
    note: str | None = None
    cluster_of: str | None = None  # the held task's key, when decided with similar tasks

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
        origin=task.origin,
        cluster_of=choice.cluster_of,
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


def build_appeal_decision(
    task: ReviewTask,
    original: ReviewDecision,
    reviewer: str,
    choice: DecisionChoice,
    *,
    decided_at: datetime,
    decision_id: str | None = None,
) -> ReviewDecision:
    """The decision on an appeal of `original`: uphold keeps its action, overturn changes it."""
    kind = DecisionKind(choice.kind)
    action = original.action
    if kind is DecisionKind.ESCALATE:
        raise DecisionInvalid("an appeal is upheld or overturned, not escalated")
    if kind is DecisionKind.OVERTURN:
        if choice.action is None or choice.action == original.action:
            raise DecisionInvalid("overturning an appeal needs an action other than the decision's")
        action = choice.action
    return ReviewDecision(
        key=original.key,
        post_id=original.post_id,
        policy=original.policy,
        rules=original.rules,
        queue=task.queue,
        reviewer=reviewer,
        decision=kind,
        action=action,
        note=choice.note,
        decided_at=decided_at,
        decision_id=decision_id,
        stage=ReviewStage.APPEAL,
        appeal_of=original.decision_id,
        origin=original.origin,
    )
