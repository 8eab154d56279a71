"""A cluster decision's choices: one final action for every task, uphold where a task's verdict
has it already, overturn elsewhere; each decision names the task the reviewer held."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.records import Action, PolicyRef, Post, Verdict
from contracts.review import DecisionKind, ReviewTask
from review.clusters import cluster_action, member_choice
from review.decision_build import DecisionChoice, DecisionInvalid, build_decision

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def task(key: str, action: Action) -> ReviewTask:
    policy = PolicyRef(id="p", version=1, sha256="0" * 64)
    verdict = Verdict(post_id=f"post-{key}", key=key, action=action, queue="spam", policy=policy)
    return ReviewTask(key=key, queue="spam", verdict=verdict, post=Post(id=f"post-{key}"))


def test_uphold_gives_the_held_tasks_action_and_overturn_the_chosen_one():
    held = task("a", Action.REVIEW)
    assert cluster_action(held, DecisionChoice(DecisionKind.UPHOLD)) is Action.REVIEW
    overturn = DecisionChoice(DecisionKind.OVERTURN, Action.BLOCK)
    assert cluster_action(held, overturn) is Action.BLOCK


@pytest.mark.parametrize(
    "choice",
    [
        DecisionChoice(DecisionKind.ESCALATE, escalate_to="senior"),
        DecisionChoice(DecisionKind.OVERTURN),  # no action chosen
    ],
)
def test_a_cluster_is_not_escalated_nor_overturned_to_nothing(choice):
    with pytest.raises(DecisionInvalid):
        cluster_action(task("a", Action.REVIEW), choice)


def test_each_member_gets_the_same_final_action_whatever_its_verdict():
    blocked, reviewed = task("b", Action.BLOCK), task("c", Action.REVIEW)
    for member, kind in ((blocked, DecisionKind.UPHOLD), (reviewed, DecisionKind.OVERTURN)):
        choice = member_choice(member, Action.BLOCK, "wave", first="a")
        decision = build_decision(member, "ana", choice, review_queues=["spam"], decided_at=NOW)
        assert (decision.decision, decision.action) == (kind, Action.BLOCK)
        assert (decision.cluster_of, decision.note) == ("a", "wave")


def test_a_decision_outside_a_cluster_names_no_cluster():
    decision = build_decision(
        task("a", Action.BLOCK),
        "ana",
        DecisionChoice(DecisionKind.UPHOLD),
        review_queues=["spam"],
        decided_at=NOW,
    )
    assert decision.cluster_of is None
