"""Golden tasks without services: the file, the served copy, scoring, and the plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.records import Action
from contracts.review import DecisionKind, GoldenResult, GoldenTask, ReviewStage
from review.decision_build import DecisionChoice
from review.decision_plans import Deciding, DecisionPlanner
from review.golden import GoldenInvalid, golden_copy, read_golden_file, score
from review.task_meta import TaskMeta, TaskStage
from review.tasks import Claim
from tests.unit.review.qa_records import T0, decision, review_config, task

SERVED_AT = datetime(2025, 5, 1, tzinfo=UTC)


def golden(key: str = "g1", answer: Action = Action.ALLOW) -> GoldenTask:
    return GoldenTask(task=task(key), answer=answer, note="a harmless flyer")


def write(tmp_path, *lines: str):
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_golden_file_is_read_whole_or_refused_naming_every_bad_line(tmp_path):
    good = [golden("g1").model_dump_json(), "", golden("g2", Action.BLOCK).model_dump_json()]
    assert read_golden_file(write(tmp_path, *good)) == [golden("g1"), golden("g2", Action.BLOCK)]
    no_answer = json.dumps({"task": json.loads(task("g3").model_dump_json())})
    path = write(
        tmp_path, golden("g1").model_dump_json(), no_answer, "{", golden("g1").model_dump_json()
    )
    with pytest.raises(GoldenInvalid) as caught:
        read_golden_file(path)
    lines = caught.value.reason.splitlines()
    assert lines[0] == f"{path}:2: not a GoldenTask: answer: Field required"
    assert lines[1].startswith(f"{path}:3: not a GoldenTask: ")
    assert lines[2] == f"{path}:4: key 'g1' is on line 1 already"
    with pytest.raises(GoldenInvalid, match="no golden tasks in it"):
        read_golden_file(write(tmp_path, ""))
    with pytest.raises(GoldenInvalid, match="cannot read"):
        read_golden_file(tmp_path / "missing.jsonl")


def test_the_served_copy_is_the_golden_post_and_verdict_under_a_key_of_its_own():
    copy = golden_copy(golden(), "spam", "ab" * 16, SERVED_AT)
    assert copy.key == copy.verdict.key == "ab" * 16
    assert copy.queue == "spam" and copy.enqueued_at == SERVED_AT
    assert copy.post == golden().task.post
    assert copy.verdict.action == golden().task.verdict.action
    assert copy.verdict.matched_rules == golden().task.verdict.matched_rules


META = TaskMeta(stage=TaskStage.GOLDEN, golden_id="g1", answer=Action.ALLOW)


def test_an_answer_is_right_when_its_action_is_the_known_one_and_an_escalation_never_is():
    right = score(decision(kind=DecisionKind.OVERTURN, action=Action.ALLOW, reviewer="ben"), META)
    assert right == GoldenResult(
        golden_id="g1",
        queue="spam",
        reviewer="ben",
        expected=Action.ALLOW,
        decision=DecisionKind.OVERTURN,
        given=Action.ALLOW,
        correct=True,
        decided_at=T0,
        decision_id="d1",
    )
    wrong = score(decision(kind=DecisionKind.UPHOLD, action=Action.BLOCK), META)
    assert not wrong.correct and wrong.given is Action.BLOCK
    allow_meta = META.model_copy(update={"answer": Action.BLOCK})
    escalated = score(decision(kind=DecisionKind.ESCALATE, action=Action.BLOCK), allow_meta)
    assert escalated.given is None and not escalated.correct


def planner(golden_topic: str | None = "golden") -> DecisionPlanner:
    return DecisionPlanner(
        decisions_topic="decisions",
        review_topics={"spam": "review.spam", "senior": "review.senior"},
        second_review={"spam": 1.0},  # a golden task is never sampled
        golden_topic=golden_topic,
    )


def plan_golden(choice: DecisionChoice, golden_topic: str | None = "golden"):
    served = Claim(golden_copy(golden(), "spam", "cd" * 16, SERVED_AT), "ben", 0.0, META)
    return planner(golden_topic).plan(Deciding(served, "ben", choice, ["spam", "senior"], T0, "x"))


def test_a_golden_decision_publishes_only_its_score_and_is_never_final_or_followed():
    plan = plan_golden(DecisionChoice("overturn", action=Action.ALLOW))
    (message,) = plan.messages
    assert message.topic == "golden" and message.key == b"ben"
    assert GoldenResult.model_validate_json(message.value) == plan.scored
    assert plan.scored is not None and plan.scored.correct
    assert plan.final is None and plan.follow is None
    assert plan.decision.stage is ReviewStage.REVIEW, "built as any decision, never sent"
    escalated = plan_golden(DecisionChoice("escalate", escalate_to="senior"))
    assert [m.topic for m in escalated.messages] == ["golden"], "no task goes to senior"
    assert plan_golden(DecisionChoice("uphold"), golden_topic=None).messages == []


def test_golden_rates_name_review_queues():
    assert review_config(golden={"spam": {"rate": 0.05}}).golden["spam"].rate == 0.05
    assert review_config().golden_topic == "moderation.review.golden"
    with pytest.raises(ValidationError, match=r"golden\.appeals: unknown queue 'appeals'"):
        review_config(golden={"appeals": {"rate": 0.05}})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        review_config(golden={"spam": {"rate": -0.1}})


def test_the_golden_and_appeals_topics_are_topics_of_their_own():
    with pytest.raises(ValidationError, match=r"golden_topic: 'moderation\.decisions' is"):
        review_config(golden_topic="moderation.decisions")
    with pytest.raises(ValidationError, match=r"appeals\.topic: 'review\.spam' is review_topics"):
        review_config(appeals={"topic": "review.spam"})
    assert review_config(golden_topic=None).golden_topic is None
