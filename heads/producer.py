"""The `heads` producer: `signals.heads: [NAME, ...]` gives `heads["NAME"]`, the active version
of head NAME scored on the post embedding of the pipeline's default model.

The embedding is asked of the model like any model task (and cached with the model's answers);
the head runs on the consumer once the model has answered. Heads are read from Redis and looked
at again every `refresh_s`, so `vlmod heads promote` or `rollback` reaches the verdicts that
follow within that time, without a restart; each verdict's evidence names the version used.
A head Redis lacks, or one trained on embeddings of another size, makes `heads["NAME"]`
unavailable (rules reading it are rule errors that say why), never a silent 0.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.producers import (
    Ask,
    Cost,
    Input,
    Placement,
    ProducerContext,
    ProducerDefaults,
    ProducerJob,
    ProducerOutput,
    Unavailable,
    Variable,
)
from contracts.vlm import About, TaskKind, VlmTask
from heads.exceptions import HeadNotFound
from heads.model import NAME, Head

POST_EMBEDDING = VlmTask(TaskKind.EMBED, "", About.POST)
# A name `vlmod heads train` would refuse is refused when the policy loads.
HeadName = Annotated[str, StringConstraints(pattern=NAME.pattern)]
EMBEDDINGS = "embed"  # the model producer whose requests the replica computes


class HeadSettings(BaseModel):
    """`specialists.heads`: how often heads are read again from Redis."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh_s: float = Field(
        1.0, gt=0, description="Seconds a head read from Redis is used before it is read again."
    )


class HeadSignals(ProducerDefaults):
    """`signals.heads: [NAME, ...]`: `heads["NAME"]`, P from that head on the post embedding."""

    name = "heads"
    variables = (
        Variable(
            "heads",
            "map(string, double)",
            keyed=True,
            item="head",
            description="P from each named head (`vlmod heads`) on the post embedding",
        ),
    )
    inputs = frozenset({Input.SIGNALS})
    after = (EMBEDDINGS,)
    placement = Placement.CONSUMER
    cost = Cost.MODEL
    version = "heads-1"
    cacheable = False  # a dot product; the embedding it reads is cached with the model's answers
    settings_model = HeadSettings
    config = list[HeadName]

    def __init__(self) -> None:
        self.settings = HeadSettings()
        self.redis_url: str | None = None
        self._store: Any = None
        self._held: dict[str, tuple[float, Head | None]] = {}

    def asks(self, value: Any) -> list[Ask]:
        """One score per head named; each brings the post embedding into the plan."""
        names = value if isinstance(value, list) else [value]
        needs = ((EMBEDDINGS, POST_EMBEDDING),)
        return [Ask("heads", name, name, needs=needs) for name in dict.fromkeys(names)]

    def empty(self, request: Hashable) -> float:
        """A post with nothing to embed flags nothing (policy tests read this too)."""
        return 0.0

    def bind(self, context: ProducerContext) -> None:
        """The Redis the heads live in, and `specialists.heads`."""
        self.redis_url = context.redis_url
        self.settings = context.settings_for(self.name, HeadSettings)

    def compute(self, jobs: Sequence[ProducerJob]) -> list[ProducerOutput | Exception]:
        """Each post's heads on its embedding."""
        return [self._one(job) for job in jobs]

    def _one(self, job: ProducerJob) -> ProducerOutput:
        vector = job.signals.get(EMBEDDINGS, {}).get(POST_EMBEDDING)
        values: dict[Hashable, Any] = {}
        used: dict[str, int] = {}
        for name in sorted(str(request) for request in job.requests):
            head = self._head(name)
            if isinstance(head, Unavailable):
                values[name] = head
            elif not isinstance(vector, list) or not vector:
                values[name] = 0.0
            elif len(vector) != head.embedding.dim:
                values[name] = Unavailable(
                    f"head {name} v{head.version} reads embeddings of {head.embedding.dim}, "
                    f"the model gives {len(vector)}"
                )
            else:
                values[name] = round(head.score(vector), 6)
                used[name] = head.version
        return ProducerOutput(values, evidence={"versions": used} if used else {})

    def _head(self, name: str) -> Head | Unavailable:
        """The active version of `name`, read again once `refresh_s` has passed."""
        now = time.monotonic()
        held = self._held.get(name)
        if held is None or now - held[0] >= self.settings.refresh_s:
            try:
                held = (now, self._read(name))
            except HeadNotFound:
                held = (now, None)
            except Exception as error:  # Redis down: this post's heads are unavailable
                return Unavailable(f"heads store unavailable: {error}")
            self._held[name] = held
        head = held[1]
        if head is None:
            return Unavailable(f"no head named {name!r} (`vlmod heads list` shows them)")
        return head

    def _read(self, name: str) -> Head:
        if self._store is None:
            if self.redis_url is None:
                raise ConnectionError("no redis_url: heads live in Redis")
            from heads.store import HeadStore

            self._store = HeadStore.from_url(self.redis_url)
        return self._store.get(name)
