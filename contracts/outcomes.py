"""What moderating one consumed message produced, before any sink writes it.

`Moderator.moderate` returns one `Outcome` per source message, in order: the verdicts of the
active policies (each with the review task its queue gets, if any) and the shadow verdicts of a
moderated post, or the dead letter of a message that could not be moderated. A sink (Kafka
today) writes outcomes durably; `source` names the consumed message to commit once it has.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.records import DeadLetter, Post, ShadowVerdict, Verdict
from contracts.review import ReviewTask


class SourceRef(BaseModel):
    """The consumed message an outcome answers: where it was read, for commit bookkeeping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(..., description="Topic it was read from.")
    partition: int = Field(..., description="Partition it was read from.")
    offset: int = Field(..., description="Its offset.")
    key: bytes | None = Field(None, description="Its key, as read.")


class ReviewRoute(BaseModel):
    """A review task and the topic of the queue it goes to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(..., description="The review queue's topic, as the policy maps it.")
    task: ReviewTask = Field(..., description="The task: the verdict and the post.")


class ActiveVerdict(BaseModel):
    """An active policy's verdict, and its review task when its queue has a topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict = Field(..., description="The verdict.")
    review: ReviewRoute | None = Field(None, description="Its review task; none when unqueued.")


class Outcome(BaseModel):
    """Everything the moderation of one source message produced: verdicts or a dead letter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: SourceRef = Field(..., description="The consumed message.")
    post_id: str | None = Field(None, description="The post id, when it could be read.")
    post: Post | None = Field(
        None, description="The post as judged, for sinks that keep it (the verdict history)."
    )
    verdicts: tuple[ActiveVerdict, ...] = Field(
        (), description="One per active policy, in the policy set's order."
    )
    shadows: tuple[ShadowVerdict, ...] = Field(
        (), description="One per shadow policy, with its diff against the active verdict."
    )
    dead_letter: DeadLetter | None = Field(
        None, description="Why the message could not be moderated; then nothing else is set."
    )
    trace: dict[str, str] = Field(
        default_factory=dict,
        description="W3C trace context (traceparent, tracestate) of the post's consume span.",
    )

    @model_validator(mode="after")
    def _verdicts_or_dead_letter(self) -> Outcome:
        if self.dead_letter is not None and (self.verdicts or self.shadows):
            raise ValueError("an outcome has verdicts or a dead letter, not both")
        return self

    def most_severe(self) -> Verdict | None:
        """The most severe active verdict, the most urgent among equals; None when there is none."""
        verdicts = [active.verdict for active in self.verdicts]
        return max(verdicts, key=lambda v: (v.action.severity, -v.priority), default=None)
