"""Appeals without services: the record, its task key, the decision on it and the config."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.records import Action
from contracts.review import AppealRequest, DecisionKind, ReviewDecision, ReviewStage
from review.appeals import AppealInvalid, appeal_key, appeal_task, parse_appeal
from review.decision_build import DecisionChoice, DecisionInvalid, build_appeal_decision
from review.decision_plans import DECISION_ID_HEADER, Deciding, DecisionPlanner
from review.task_meta import FinalDecision, TaskMeta, TaskStage
from review.tasks import Claim
from tests.unit.review.qa_records import T0, decision, review_config, task

APPEALED_AT = datetime(2025, 1, 2, tzinfo=UTC)


def appeal(reason: str = "it was a joke", key: str = "k1") -> AppealRequest:
    return AppealRequest(key=key, post_id=f"post-{key}", reason=reason, submitted_at=APPEALED_AT)


def test_an_appeal_record_parses_and_a_bad_one_is_refused_with_what_is_wrong():
    good = appeal()
    assert parse_appeal(good.model_dump_json().encode()) == good
    with pytest.raises(AppealInvalid, match="tombstone"):
        parse_appeal(None)
    with pytest.raises(AppealInvalid, match=r"not an AppealRequest: .*reason: Field required"):
        parse_appeal(json.dumps({"key": "k1", "post_id": "p", "submitted_at": "2025-01-01"}))
    with pytest.raises(AppealInvalid, match="not an AppealRequest"):
        parse_appeal(b"not json")
    with pytest.raises(AppealInvalid, match="extra"):
        parse_appeal(json.dumps({**json.loads(good.model_dump_json()), "extra": 1}).encode())


def test_the_same_appeal_gets_the_same_task_key_and_another_appeal_another_one():
    assert appeal_key(appeal()) == appeal_key(parse_appeal(appeal().model_dump_json().encode()))
    assert appeal_key(appeal()) != appeal_key(appeal("a different reason"))
    assert len(appeal_key(appeal())) == 32 and int(appeal_key(appeal()), 16) >= 0


def test_an_appeal_task_carries_the_original_post_and_verdict_and_the_decision_appealed():
    original, upheld = task(), decision()
    final = FinalDecision(decision=upheld, task="k1")
    made, meta = appeal_task(appeal(), final, original, "appeals")
    assert made.key == appeal_key(appeal()) and made.queue == "appeals"
    assert made.post == original.post and made.verdict == original.verdict
    assert made.enqueued_at == APPEALED_AT
    assert meta == TaskMeta(stage=TaskStage.APPEAL, appeal=appeal(), original=upheld)


def test_upholding_an_appeal_keeps_the_decisions_action_and_marks_it_an_appeal():
    original = decision(kind=DecisionKind.OVERTURN, action=Action.REVIEW, decision_id="orig")
    made = build_appeal_decision(
        task(action=Action.BLOCK),
        original,
        "cam",
        DecisionChoice("uphold"),
        decided_at=APPEALED_AT,
        decision_id="d2",
    )
    assert made.decision is DecisionKind.UPHOLD and made.action is Action.REVIEW
    assert made.stage is ReviewStage.APPEAL and made.final and made.appeal_of == "orig"
    assert made.key == "k1" and made.post_id == "post-k1" and made.reviewer == "cam"


def test_overturning_an_appeal_needs_another_action_and_an_appeal_is_never_escalated():
    original = decision(action=Action.BLOCK)
    at = {"decided_at": APPEALED_AT}
    overturned = build_appeal_decision(
        task(), original, "cam", DecisionChoice("overturn", action=Action.ALLOW), **at
    )
    assert overturned.decision is DecisionKind.OVERTURN and overturned.action is Action.ALLOW
    for choice in (DecisionChoice("overturn", action=Action.BLOCK), DecisionChoice("overturn")):
        with pytest.raises(DecisionInvalid, match="other than the decision's"):
            build_appeal_decision(task(), original, "cam", choice, **at)
    with pytest.raises(DecisionInvalid, match="not escalated"):
        build_appeal_decision(
            task(), original, "cam", DecisionChoice("escalate", escalate_to="weapons"), **at
        )


def test_a_decision_without_the_new_fields_reads_as_a_final_single_review():
    old = json.loads(decision().model_dump_json())
    for name in ("stage", "final", "appeal_of"):
        old.pop(name)
    read = ReviewDecision.model_validate(old)
    assert read.stage is ReviewStage.REVIEW and read.final and read.appeal_of is None


def test_the_planned_appeal_goes_to_the_decisions_topic_on_its_verdict_key_and_stands():
    planner = DecisionPlanner(decisions_topic="decisions", review_topics={"spam": "review.spam"})
    original = decision(decision_id="orig")
    final = FinalDecision(decision=original, task="k1")
    made, meta = appeal_task(appeal(), final, task(), "appeals")
    claim = Claim(made, "cam", 0.0, meta)
    choice = DecisionChoice("overturn", action=Action.ALLOW)
    plan = planner.plan(Deciding(claim, "cam", choice, ["spam"], T0, "d9"))
    (message,) = plan.messages
    assert message.topic == "decisions" and message.key == b"k1"
    assert (DECISION_ID_HEADER, b"d9") in (message.headers or [])
    published = ReviewDecision.model_validate_json(message.value)
    assert published.stage is ReviewStage.APPEAL and published.appeal_of == "orig"
    assert plan.final == FinalDecision(decision=published, task=made.key)
    assert plan.follow is None


def test_appeals_have_a_default_topic_and_queue_that_star_grants():
    config = review_config()
    assert config.appeals is not None
    assert (config.appeals.topic, config.appeals.queue) == ("moderation.appeals", "appeals")
    assert config.queues_of("ana") == ["spam", "weapons", "appeals"]
    assert config.queues_of("ben") == ["spam"]
    assert config.escalations_of("ana") == ["spam", "weapons"], "no escalating into appeals"
    assert review_config(appeals=None).queues_of("ana") == ["spam", "weapons"]


def test_an_appeals_queue_named_like_a_review_queue_or_escalated_into_is_refused():
    with pytest.raises(ValidationError, match=r"appeals\.queue: 'spam' is a review queue already"):
        review_config(appeals={"queue": "spam"})
    reviewers = {"ben": {"password_argon2": review_config().reviewers["ben"].password_argon2}}
    granted = {"ben": {**reviewers["ben"], "queues": ["spam", "appeals"]}}
    assert review_config(reviewers=granted).queues_of("ben") == ["spam", "appeals"]
    escalating = {"ben": {**granted["ben"], "escalate_to": ["appeals"]}}
    with pytest.raises(ValidationError, match=r"escalate_to\[0\]: unknown queue 'appeals'"):
        review_config(reviewers=escalating)
