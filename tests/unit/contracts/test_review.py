"""The review records: what a review topic carries and what a reviewer sends back."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.records import Action, PolicyRef, Post, Verdict
from contracts.review import DecisionKind, ReviewDecision, ReviewTask

POLICY = PolicyRef(id="p", version=1, sha256="0" * 64)


def test_a_task_round_trips_with_the_post_and_its_inline_image():
    verdict = Verdict(post_id="p1", key="k1", action=Action.REVIEW, queue="scam", policy=POLICY)
    post = Post(id="p1", text="<script>alert(1)</script>", images=[{"data": "aGk="}])
    task = ReviewTask(key="k1", queue="scam", verdict=verdict, post=post)
    again = ReviewTask.model_validate_json(task.model_dump_json())
    assert again == task and again.post.images[0].data == "aGk="


def test_a_decision_refuses_unknown_fields_and_kinds():
    base = {
        "key": "k1",
        "post_id": "p1",
        "policy": POLICY.model_dump(),
        "queue": "scam",
        "reviewer": "ana",
        "decision": "overturn",
        "action": "allow",
    }
    assert ReviewDecision.model_validate(base).decision is DecisionKind.OVERTURN
    with pytest.raises(ValidationError, match="decision"):
        ReviewDecision.model_validate(base | {"decision": "maybe"})
    with pytest.raises(ValidationError, match="extra"):
        ReviewDecision.model_validate(base | {"reviewer_id": "x"})
    with pytest.raises(ValidationError, match="reviewer"):
        ReviewDecision.model_validate(base | {"reviewer": ""})
