"""Second reviews and adjudication without services: sampling, the plans, and the settings."""

from __future__ import annotations

import hashlib
import math

import pytest
from pydantic import ValidationError

from contracts.records import Action
from contracts.review import DecisionKind, ReviewDecision, ReviewStage
from review.decision_build import DecisionChoice, DecisionInvalid
from review.decision_plans import Deciding, DecisionPlanner, derived_key, sampled
from review.task_meta import FinalDecision, TaskMeta, TaskStage
from review.tasks import Claim
from tests.unit.review.qa_records import NO_PASSWORD, T0, decision, review_config, task

UPHOLD = DecisionChoice("uphold")
TO_ALLOW = DecisionChoice("overturn", action=Action.ALLOW)


def planner(share: float = 1.0) -> DecisionPlanner:
    return DecisionPlanner(
        decisions_topic="decisions",
        review_topics={"spam": "review.spam", "senior": "review.senior"},
        second_review={"spam": share},
        adjudication_queue="adjudication",
    )


def deciding(claim: Claim, reviewer: str, choice: DecisionChoice) -> Deciding:
    return Deciding(claim, reviewer, choice, ["spam", "senior"], T0, f"id-{reviewer}")


def published(plan) -> list[ReviewDecision]:
    return [ReviewDecision.model_validate_json(m.value) for m in plan.messages]


def test_sampling_is_a_hash_of_the_key_and_takes_about_its_share():
    keys = [f"key-{n}" for n in range(20_000)]
    reference = [  # the same draw, computed independently: the first 16 hex digits of sha256
        int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) / 16**16 < 0.1 for k in keys
    ]
    drawn = [sampled(k, 0.1) for k in keys]
    assert drawn == reference
    spread = 4 * math.sqrt(len(keys) * 0.1 * 0.9)
    assert abs(sum(drawn) - 0.1 * len(keys)) < spread
    assert not any(sampled(k, 0.0) for k in keys[:1000])
    assert all(sampled(k, 1.0) for k in keys[:1000])


def test_a_sampled_decision_is_a_blind_first_review_that_queues_a_second():
    plan = planner().plan(deciding(Claim(task(), "ana", 0.0), "ana", UPHOLD))
    (first,) = published(plan)
    assert first.stage is ReviewStage.FIRST and not first.final and first.reviewer == "ana"
    assert plan.final is None, "not the decision yet"
    assert plan.follow is not None and plan.follow.exclude == ("ana",)
    again = plan.follow.task
    assert again.key == derived_key("k1", "second") != "k1" and again.queue == "spam"
    assert again.post == task().post and again.verdict == task().verdict
    assert plan.follow.meta == TaskMeta(stage=TaskStage.SECOND, first=first)


def test_an_unsampled_decision_and_an_escalation_are_decided_as_before():
    plan = planner(share=0.0).plan(deciding(Claim(task(), "ana", 0.0), "ana", UPHOLD))
    (made,) = published(plan)
    assert made.stage is ReviewStage.REVIEW and made.final and plan.follow is None
    assert plan.final == FinalDecision(decision=made, task="k1")
    escalate = DecisionChoice("escalate", escalate_to="senior")
    plan = planner().plan(deciding(Claim(task(), "ana", 0.0), "ana", escalate))
    assert [m.topic for m in plan.messages] == ["decisions", "review.senior"]
    assert plan.follow is None and plan.final is None


def second_claim(first: ReviewDecision) -> Claim:
    again = task().model_copy(update={"key": derived_key("k1", "second")})
    return Claim(again, "ben", 0.0, TaskMeta(stage=TaskStage.SECOND, first=first))


def test_a_second_review_that_agrees_is_the_final_decision():
    first = decision(stage=ReviewStage.FIRST, final=False)
    plan = planner().plan(deciding(second_claim(first), "ben", UPHOLD))
    (second,) = published(plan)
    assert second.stage is ReviewStage.SECOND and second.final and second.key == "k1"
    assert plan.final is not None and plan.final.decision == second
    assert plan.follow is None


def test_a_second_review_that_disagrees_goes_to_a_lead_whom_neither_reviewer_is():
    first = decision(stage=ReviewStage.FIRST, final=False)
    plan = planner().plan(deciding(second_claim(first), "ben", TO_ALLOW))
    (second,) = published(plan)
    assert second.stage is ReviewStage.SECOND and not second.final
    assert second.action is Action.ALLOW and plan.final is None
    assert plan.follow is not None and set(plan.follow.exclude) == {"ana", "ben"}
    disputed = plan.follow.task
    assert disputed.queue == "adjudication" and disputed.verdict == task().verdict
    assert plan.follow.meta == TaskMeta(stage=TaskStage.ADJUDICATION, first=first, second=second)


def test_two_overturns_to_different_actions_and_an_escalation_disagree():
    first = decision(
        kind=DecisionKind.OVERTURN, action=Action.ALLOW, stage=ReviewStage.FIRST, final=False
    )
    to_review = DecisionChoice("overturn", action=Action.REVIEW)
    assert planner().plan(deciding(second_claim(first), "ben", to_review)).follow is not None
    escalate = DecisionChoice("escalate", escalate_to="senior")
    plan = planner().plan(deciding(second_claim(first), "ben", escalate))
    (second,) = published(plan)
    assert second.decision is DecisionKind.ESCALATE and second.escalated_to == "adjudication"
    assert [m.topic for m in plan.messages] == ["decisions"], "nothing goes to senior"
    assert plan.follow is not None and plan.follow.task.queue == "adjudication"


def test_an_adjudication_is_final_and_never_escalated():
    first = decision(stage=ReviewStage.FIRST, final=False)
    second = decision(reviewer="ben", kind=DecisionKind.OVERTURN, action=Action.ALLOW)
    meta = TaskMeta(stage=TaskStage.ADJUDICATION, first=first, second=second)
    disputed = task().model_copy(update={"key": "adj", "queue": "adjudication"})
    plan = planner().plan(deciding(Claim(disputed, "lea", 0.0, meta), "lea", TO_ALLOW))
    (made,) = published(plan)
    assert made.stage is ReviewStage.ADJUDICATION and made.final and made.key == "k1"
    assert made.decision is DecisionKind.OVERTURN and made.queue == "adjudication"
    assert plan.final == FinalDecision(decision=made, task="adj") and plan.follow is None
    escalate = DecisionChoice("escalate", escalate_to="senior")
    with pytest.raises(DecisionInvalid, match="not escalated"):
        planner().plan(deciding(Claim(disputed, "lea", 0.0, meta), "lea", escalate))


def lead(**fields: object) -> dict[str, object]:
    return {"password_argon2": NO_PASSWORD, "queues": ["spam"], "role": "lead", **fields}


def test_only_leads_work_the_adjudication_queue():
    config = review_config(
        reviewers={"lea": lead(), "ana": {"password_argon2": NO_PASSWORD, "queues": ["*"]}}
    )
    assert config.queues_of("lea") == ["spam", "adjudication"]
    assert "adjudication" not in config.queues_of("ana"), '"*" is not a lead'
    assert config.is_lead("lea") and not config.is_lead("ana") and not config.is_lead("zed")
    with pytest.raises(ValidationError, match=r"ana\.queues\[1\]: 'adjudication' is open to leads"):
        review_config(
            reviewers={"ana": {"password_argon2": NO_PASSWORD, "queues": ["spam", "adjudication"]}}
        )
    assert review_config(reviewers={"lea": lead(queues=["adjudication"])}).queues_of("lea") == [
        "adjudication"
    ]


STAFF = {
    "ana": {"password_argon2": NO_PASSWORD, "queues": ["*"]},
    "ben": {"password_argon2": NO_PASSWORD, "queues": ["spam"]},
    "lea": {"password_argon2": NO_PASSWORD, "queues": ["adjudication"], "role": "lead"},
}


def test_second_review_names_known_queues_with_a_share_between_0_and_1():
    config = review_config(second_review={"spam": {"share": 0.25}}, reviewers=STAFF)
    assert config.second_review_share("spam") == 0.25
    assert config.second_review_share("weapons") == 0.0
    with pytest.raises(ValidationError, match=r"second_review\.nope: unknown queue 'nope'"):
        review_config(second_review={"nope": {"share": 0.1}})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        review_config(second_review={"spam": {"share": 1.5}})
    with pytest.raises(ValidationError, match="adjudication_queue: 'spam' is another queue"):
        review_config(adjudication_queue="spam")


def test_a_lead_may_list_the_adjudication_queue_and_the_hint_leaves_it_out():
    with pytest.raises(ValidationError) as caught:
        review_config(reviewers={"lea": lead(queues=["adjudication", "nope"])})
    assert (
        "reviewers.lea.queues[1]: unknown queue 'nope'; "
        'known queues: appeals, spam, weapons (or use "*")'
    ) in str(caught.value)


def test_second_review_is_refused_where_no_second_reviewer_or_no_lead_could_finish_it():
    """A sampled task waits for a reviewer other than its first, a disagreement for a lead."""
    only_ana = {**STAFF, "ben": {"password_argon2": NO_PASSWORD, "queues": ["spam"]}}
    with pytest.raises(ValidationError) as caught:
        review_config(second_review={"weapons": {"share": 0.1}}, reviewers=only_ana)
    assert (
        "second_review.weapons: a second review needs a reviewer other than the first, "
        "and only ana works it; grant 'weapons' to a second reviewer"
    ) in str(caught.value)
    no_lead = {name: r for name, r in STAFF.items() if name != "lea"}
    with pytest.raises(ValidationError, match="no reviewer has role: lead; give someone role"):
        review_config(second_review={"spam": {"share": 0.1}}, reviewers=no_lead)
    config = review_config(second_review={"spam": {"share": 0.1}}, reviewers=STAFF)
    assert config.workers_of("spam") == ["ana", "ben"]
    assert config.workers_of("weapons") == ["ana"]
    assert review_config(reviewers=no_lead).second_review == {}  # no sampling, no lead needed
