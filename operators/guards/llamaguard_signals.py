"""`llamaguard:`, Llama Guard 4 as a signal producer: `llamaguard.unsafe` and
`llamaguard.S1`..`llamaguard.S14`, read off its answer for the post as a user turn (its text,
then its images).

    signals:
      llamaguard:
        model: meta-llama/Llama-Guard-4-12B      # hub id or directory
        categories: [S1, S9, S10]                 # optional: the prompt's categories (all 14)
    rules:
      - {id: weapons, when: 'llamaguard.S9 > 0.5', action: remove}
      - {id: unsafe, when: 'llamaguard.unsafe > 0.8', action: review, queue: safety}

`llamaguard.unsafe` is P(unsafe) against P(safe) at the answer's first token; `llamaguard.Sk`
is P(unsafe) times the probability that the first category listed is Sk (see
`operators.guards.llamaguard`). Only the configured categories are in the prompt (the others
are the template's `excluded_category_keys`) and only they are signals. Like `shieldgemma:` it
runs where the consumer runs, its model loaded once per process and model, at model cost. A
post with neither text nor images has no value.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.producers import (
    Ask,
    Input,
    ProducerJob,
    ProducerOutput,
    Unavailable,
    Variable,
)
from operators.guards.producers import GuardSignals

Category = Literal[
    "S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13", "S14"
]
ALL: tuple[str, ...] = get_args(Category)
NOTHING = "the post has neither text nor images for Llama Guard to judge"


class LlamaGuardSettings(BaseModel):
    """A policy's `signals.llamaguard`: the checkpoint and the categories of its prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str = Field(..., min_length=1, description="Llama Guard 4 hub id or directory.")
    categories: list[Category] | None = Field(
        None,
        min_length=1,
        description="The hazard categories (S1-S14) the prompt lists, each giving "
        "`llamaguard.<Sk>`; all 14 when absent.",
    )

    @field_validator("categories")
    @classmethod
    def _once_each(cls, categories: list[str] | None) -> list[str] | None:
        doubled = sorted({c for c in categories or () if (categories or []).count(c) > 1})
        if doubled:
            raise ValueError(f"category {', '.join(doubled)} is named twice")
        return categories


@dataclass(frozen=True)
class LlamaGuardRequest:
    """One value (`unsafe` or a category) of one checkpoint under one prompt's categories."""

    model: str
    item: str
    categories: tuple[str, ...] = ALL


class LlamaGuardSignals(GuardSignals):
    """`signals.llamaguard`: `llamaguard.unsafe` and `llamaguard.<Sk>` of the post."""

    name = "llamaguard"
    variables = (
        Variable(
            "llamaguard",
            "map(string, double)",
            keyed=True,
            item="category",
            description="Llama Guard 4: P(unsafe), and P(unsafe, first category listed is Sk)",
        ),
    )
    inputs = frozenset({Input.TEXT, Input.IMAGES})
    version = "llamaguard4-1"
    config = LlamaGuardSettings

    def asks(self, value: LlamaGuardSettings) -> list[Ask]:
        """`unsafe`, then one ask per category."""
        categories = tuple(value.categories or ALL)
        items = ("unsafe", *categories)
        return [
            Ask("llamaguard", item, LlamaGuardRequest(value.model, item, categories))
            for item in items
        ]

    def load(self, model: str, device: str, dtype: str) -> Any:
        """Llama Guard 4 of checkpoint `model`."""
        from operators.guards.llamaguard import load_llamaguard

        return load_llamaguard(model, device, dtype)

    def judge(self, job: ProducerJob) -> ProducerOutput:
        """The post judged once per checkpoint and prompt (its categories)."""
        requests = [r for r in job.requests if isinstance(r, LlamaGuardRequest)]
        text = (job.post.text or "").strip()
        if not text and not job.images:
            return ProducerOutput({request: Unavailable(NOTHING) for request in requests})
        images = self.decode(job.images)
        values: dict[Hashable, Any] = {}
        for (model, categories), asked in _by_prompt(requests).items():
            got = self.guard(model).post_values(text, images, categories)
            values.update({request: got[request.item] for request in asked})
        return ProducerOutput(values)


def _by_prompt(
    requests: Sequence[LlamaGuardRequest],
) -> Mapping[tuple[str, tuple[str, ...]], list[LlamaGuardRequest]]:
    grouped: dict[tuple[str, tuple[str, ...]], list[LlamaGuardRequest]] = {}
    for request in sorted(requests, key=lambda r: (r.model, r.categories, r.item)):
        grouped.setdefault((request.model, request.categories), []).append(request)
    return grouped
