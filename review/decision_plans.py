"""What a reviewer's choice on a task leads to, by the task's stage (pure: no Redis, no broker).

A `Plan` is everything `TaskStore.decide` records in one step and what is published after:

- a task from a review topic: the decision, and for an escalation the task in the target queue;
  a decision other than an escalation becomes the final one on its verdict key. In a queue with
  a second-review share, a sampled task's decision is instead a blind `first` review, not final,
  and adds a second-review task that its reviewer may not claim;
- a second review: final when it agrees with the first (the same action; an escalation never
  agrees), else not final, and it adds an adjudication task that neither reviewer may claim;
- an adjudication: a lead's decision on the verdict, final;
- an appeal: the decision on the appealed decision, marked `stage: appeal`, final;
- a golden task: the decision is built as any other (the page must behave the same), scored
  against the answer, and only the score is published, to the golden topic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from contracts.review import DecisionKind, GoldenResult, ReviewDecision, ReviewStage, ReviewTask
from kafka_io.clients import OutMessage
from review.decision_build import (
    DecisionChoice,
    DecisionInvalid,
    build_appeal_decision,
    build_decision,
    escalated_task,
)
from review.golden import score
from review.report_qa import review_label
from review.task_meta import FinalDecision, TaskMeta, TaskStage
from review.tasks import Claim, FollowUp

DECISION_ID_HEADER = "vlmod-decision-id"
KEY_HEX = 32  # console-made task keys are as long as verdict keys, and look like them


def sampled(key: str, share: float) -> bool:
    """Whether task `key` is in a `share` sample: a hash of the key, the same at every start."""
    draw = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return draw < share


def derived_key(key: str, purpose: str) -> str:
    """The key of the task made from task `key` for `purpose`; the same every time."""
    return hashlib.sha256(f"{key}|{purpose}".encode()).hexdigest()[:KEY_HEX]


@dataclass(frozen=True)
class Plan:
    """A decision, what it publishes, what becomes final, and the task it adds, if any."""

    decision: ReviewDecision
    messages: list[OutMessage]
    final: FinalDecision | None = None
    follow: FollowUp | None = None
    scored: GoldenResult | None = None  # a golden task's: the decision is never published


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
        second_review: Mapping[str, float] | None = None,
        adjudication_queue: str = "adjudication",
        golden_topic: str | None = None,
    ) -> None:
        self.decisions_topic = decisions_topic
        self.review_topics = dict(review_topics)
        self.task_queues = dict(task_queues or {})
        self.second_review = dict(second_review or {})
        self.adjudication_queue = adjudication_queue
        self.golden_topic = golden_topic

    def plan(self, deciding: Deciding) -> Plan:
        """The plan for `deciding`, by its task's stage; DecisionInvalid when it makes no sense."""
        meta = deciding.claim.meta
        if meta is None:
            return self.review(deciding)
        if meta.stage is TaskStage.SECOND and meta.first is not None:
            return self.second(deciding, meta.first)
        if meta.stage is TaskStage.ADJUDICATION:
            return self.adjudication(deciding)
        if meta.stage is TaskStage.APPEAL and meta.original is not None:
            return self.appeal(deciding, meta.original)
        if meta.stage is TaskStage.GOLDEN:
            return self.golden(deciding, meta)
        raise DecisionInvalid(f"task {deciding.claim.task.key} has an unknown stage {meta.stage}")

    def review(self, deciding: Deciding) -> Plan:
        """A task from a review topic: the decision, or the escalation and its new task; in a
        sample, a blind first review and the second-review task."""
        task = deciding.claim.task
        decision = self._decision(deciding)
        if decision.escalated_to is not None:
            messages = [self.decision_message(decision), self._escalation(task, decision)]
            return Plan(decision, messages)
        if sampled(task.key, self.second_review.get(task.queue, 0.0)):
            first = decision.model_copy(update={"stage": ReviewStage.FIRST, "final": False})
            again = task.model_copy(update={"key": derived_key(task.key, "second")})
            meta = TaskMeta(stage=TaskStage.SECOND, first=first)
            follow = FollowUp(again, meta, exclude=(deciding.reviewer,))
            return Plan(first, [self.decision_message(first)], follow=follow)
        return Plan(decision, [self.decision_message(decision)], self._final(decision, task))

    def second(self, deciding: Deciding, first: ReviewDecision) -> Plan:
        """A second review: final when it agrees with the first, else on to adjudication."""
        task = deciding.claim.task
        choice = deciding.choice
        if choice.kind == DecisionKind.ESCALATE:  # no agreement: a lead decides, not the target
            choice = replace(choice, escalate_to=self.adjudication_queue)
        deciding = replace(deciding, choice=choice, escalate_into=[self.adjudication_queue])
        decision = self._decision(deciding).model_copy(update={"stage": ReviewStage.SECOND})
        if review_label(decision) == review_label(first):
            return Plan(decision, [self.decision_message(decision)], self._final(decision, task))
        second = decision.model_copy(update={"final": False})
        disputed = task.model_copy(
            update={
                "key": derived_key(task.key, "adjudication"),
                "queue": self.adjudication_queue,
                "enqueued_at": deciding.now,
            }
        )
        meta = TaskMeta(stage=TaskStage.ADJUDICATION, first=first, second=second)
        follow = FollowUp(disputed, meta, exclude=(first.reviewer, deciding.reviewer))
        return Plan(second, [self.decision_message(second)], follow=follow)

    def adjudication(self, deciding: Deciding) -> Plan:
        """A lead's decision where two reviews disagreed: final, never an escalation."""
        if deciding.choice.kind == DecisionKind.ESCALATE:
            raise DecisionInvalid("an adjudication is upheld or overturned, not escalated")
        decision = self._decision(deciding).model_copy(update={"stage": ReviewStage.ADJUDICATION})
        return Plan(
            decision,
            [self.decision_message(decision)],
            self._final(decision, deciding.claim.task),
        )

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
        return Plan(decision, [self.decision_message(decision)], self._final(decision, task))

    def golden(self, deciding: Deciding, meta: TaskMeta) -> Plan:
        """A golden task: scored, and only the score goes out (to the golden topic, if any)."""
        decision = self._decision(deciding)
        result = score(decision, meta)
        messages = []
        if self.golden_topic is not None:
            value = result.model_dump_json().encode()
            messages.append(OutMessage(self.golden_topic, value, result.reviewer.encode()))
        return Plan(decision, messages, scored=result)

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

    @staticmethod
    def _final(decision: ReviewDecision, task: ReviewTask) -> FinalDecision:
        return FinalDecision(decision=decision, task=task.key)

    def _escalation(self, task: ReviewTask, decision: ReviewDecision) -> OutMessage:
        assert decision.escalated_to is not None and decision.decision is DecisionKind.ESCALATE
        target = decision.escalated_to
        at = decision.decided_at
        moved = escalated_task(task, target, at, self.task_queues.get(target))
        headers = [(DECISION_ID_HEADER, (decision.decision_id or "").encode())]
        body = moved.model_dump_json().encode()
        return OutMessage(self.review_topics[target], body, decision.key.encode(), headers)
