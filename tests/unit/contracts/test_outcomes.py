"""Outcome: verdicts or a dead letter per source message, and its most severe verdict."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.outcomes import ActiveVerdict, Outcome, SourceRef
from contracts.records import Action
from tests.unit.contracts.test_records import sample_dead_letter, sample_shadow, sample_verdict

SOURCE = SourceRef(topic="posts", partition=2, offset=41, key=b"p1")


def test_an_outcome_holds_verdicts_or_a_dead_letter_not_both():
    verdict = ActiveVerdict(verdict=sample_verdict())
    with pytest.raises(ValidationError, match="verdicts or a dead letter, not both"):
        Outcome(source=SOURCE, verdicts=(verdict,), dead_letter=sample_dead_letter())
    with pytest.raises(ValidationError, match="verdicts or a dead letter, not both"):
        Outcome(source=SOURCE, shadows=(sample_shadow(),), dead_letter=sample_dead_letter())


def test_most_severe_takes_the_highest_action_then_the_lowest_priority():
    review = sample_verdict()  # review at priority 5
    urgent = review.model_copy(update={"priority": 1})
    block = review.model_copy(update={"action": Action.BLOCK, "priority": 90})
    allow = review.model_copy(update={"action": Action.ALLOW, "priority": 0})
    verdicts = tuple(ActiveVerdict(verdict=v) for v in (review, allow, urgent))
    assert Outcome(source=SOURCE, verdicts=verdicts).most_severe() == urgent
    with_block = (*verdicts, ActiveVerdict(verdict=block))
    assert Outcome(source=SOURCE, verdicts=with_block).most_severe() == block
    assert Outcome(source=SOURCE, dead_letter=sample_dead_letter()).most_severe() is None


def test_outcomes_are_frozen():
    outcome = Outcome(source=SOURCE)
    with pytest.raises(ValidationError):
        outcome.post_id = "other"  # type: ignore[misc]
