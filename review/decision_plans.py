"""What a reviewer's choice on a task leads to, by the task's stage (pure: no Redis, no broker).

A `Plan` is everything `TaskStore.decide` records in one step and what is published after:

- a task from a review topic: the decision, and for an escalation the task in the target queue;
  a decision other than an escalation becomes the final one on its verdict key;
- an appeal: the decision on the appealed decision, marked `stage: appeal`, final.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts.review import DecisionKind, ReviewDecision, ReviewTask
from kafka_io.clients import OutMessage
from review.decision_build import (
    DecisionChoice,
    DecisionInvalid,
    build_appeal_decision,
    build_decision,
    escalated_task,
)
from review.task_meta import FinalDecision, TaskStage
from review.tasks import Claim, FollowUp

DECISION_ID_HEADER = "vlmod-decision-id"


@dataclass(frozen=True)
class Plan:
    """A decision, what it publishes, what becomes final, and the task it adds, if any."""

    decision: ReviewDecision
    messages: list[OutMessage]
    final: FinalDecision | None = None
    follow: FollowUp | None = None


@dataclass(frozen=True)
class Deciding:
    """Who decides what, when, under which id; `escalate_into` are the queues they may use."""

    claim: Claim
    reviewer: str
    choice: DecisionChoice
    escalate_into: Sequence[str]
    now: datetime
    decision_id: str


class DecisionPlanner:
    """Plans decisions for the console's topics and queues."""

    def __init__(
        self,
        *,
        decisions_topic: str,
        review_topics: Mapping[str, str],
        task_queues: Mapping[str, str] | None = None,
    ) -> None:
        self.decisions_topic = decisions_topic
        self.review_topics = dict(review_topics)
        self.task_queues = dict(task_queues or {})

    def plan(self, deciding: Deciding) -> Plan:
        """The plan for `deciding`, by its task's stage; DecisionInvalid when it makes no sense."""
        meta = deciding.claim.meta
        if meta is None:
            return self.review(deciding)
        if meta.stage is TaskStage.APPEAL and meta.original is not None:
            return self.appeal(deciding, meta.original)
        raise DecisionInvalid(f"task {deciding.claim.task.key} has an unknown stage {meta.stage}")

    def review(self, deciding: Deciding) -> Plan:
        """A task from a review topic: the decision, or the escalation and its new task."""
        task = deciding.claim.task
        decision = self._decision(deciding)
        messages = [self.decision_message(decision)]
        if decision.escalated_to is not None:
            messages.append(self._escalation(task, decision, deciding.now))
            return Plan(decision, messages)
        return Plan(decision, messages, FinalDecision(decision=decision, task=task.key))

    def appeal(self, deciding: Deciding, original: ReviewDecision) -> Plan:
        """An appeal: uphold or overturn the appealed decision; the result is final."""
        task = deciding.claim.task
        decision = build_appeal_decision(
            task,
            original,
            deciding.reviewer,
            deciding.choice,
            decided_at=deciding.now,
            decision_id=deciding.decision_id,
        )
        final = FinalDecision(decision=decision, task=task.key)
        return Plan(decision, [self.decision_message(decision)], final)

    def decision_message(self, decision: ReviewDecision) -> OutMessage:
        """The decisions-topic record of `decision`, keyed by its verdict key, with its id."""
        headers = [(DECISION_ID_HEADER, (decision.decision_id or "").encode())]
        value = decision.model_dump_json().encode()
        return OutMessage(self.decisions_topic, value, decision.key.encode(), headers)

    def _decision(self, deciding: Deciding) -> ReviewDecision:
        return build_decision(
            deciding.claim.task,
            deciding.reviewer,
            deciding.choice,
            review_queues=deciding.escalate_into,
            decided_at=deciding.now,
            decision_id=deciding.decision_id,
        )

    def _escalation(self, task: ReviewTask, decision: ReviewDecision, now: datetime) -> OutMessage:
        assert decision.escalated_to is not None and decision.decision is DecisionKind.ESCALATE
        target = decision.escalated_to
        moved = escalated_task(task, target, now, self.task_queues.get(target))
        headers = [(DECISION_ID_HEADER, (decision.decision_id or "").encode())]
        body = moved.model_dump_json().encode()
        return OutMessage(self.review_topics[target], body, decision.key.encode(), headers)
