"""What the console knows about a task beyond the ReviewTask itself, kept beside it in Redis.

A task from a review topic has no meta. The tasks the console makes itself carry their stage:
a blind second review (with the first decision, which its page never shows), an adjudication
(both decisions, shown to the lead), an appeal (the appeal and the decision appealed, shown),
and a golden task (its known answer, never shown).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from contracts.records import Action
from contracts.review import AppealRequest, ReviewDecision


class TaskStage(StrEnum):
    """The kind of task the console made."""

    SECOND = "second"
    ADJUDICATION = "adjudication"
    APPEAL = "appeal"
    GOLDEN = "golden"


class TaskMeta(BaseModel):
    """A console-made task's stage and what its decision is built or scored from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: TaskStage = Field(..., description="second | adjudication | appeal | golden.")
    first: ReviewDecision | None = Field(None, description="The first blind review.")
    second: ReviewDecision | None = Field(None, description="The second blind review.")
    original: ReviewDecision | None = Field(None, description="The decision an appeal judges.")
    appeal: AppealRequest | None = Field(None, description="The appeal itself.")
    golden_id: str | None = Field(None, description="The golden task this one serves.")
    answer: Action | None = Field(None, description="A golden task's known right action.")


class FinalDecision(BaseModel):
    """The decision on a verdict key that stands now, and the task it was made on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: ReviewDecision
    task: str = Field(..., description="The key of the task the decision was made on.")
