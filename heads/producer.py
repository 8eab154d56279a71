"""The `heads` producer: `signals.heads: [NAME, ...]` gives `heads["NAME"]`, the active version
of head NAME scored on the post embedding of the pipeline's default model; `NAME@VERSION` reads
that version instead (a shadow policy trying a version before `vlmod heads promote`).

The embedding is asked of the model like any model task (and cached with the model's answers);
the head runs on the consumer once the model has answered. Heads are read from Redis and looked
at again every `refresh_s`, so `vlmod heads promote` or `rollback` reaches the verdicts that
follow within that time, without a restart; each verdict's evidence names the version used.
A head Redis lacks, or one trained on embeddings of another size, makes `heads["NAME"]`
unavailable (rules reading it are rule errors that say why), never a silent 0.
"""

from __future__ import annotations

import hashlib
import re
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
from contracts.vlm import DEFAULT_MODEL
from contracts.vlm_signals import EMBED_PRODUCER, POST_EMBEDDING
from heads.exceptions import HeadNotFound
from heads.model import NAME, Head

# A name `vlmod heads train` would refuse is refused when the policy loads. `NAME@VERSION`
# pins a version: a shadow policy reads a version not promoted yet (and `vlmod replay` scores
# it on the history) while the others read the active one.
PINNED = re.compile(NAME.pattern.removesuffix("$") + r"(@[1-9][0-9]{0,8})?$")
HeadName = Annotated[str, StringConstraints(pattern=PINNED.pattern)]
LEARN = "learn"  # the request of `heads_learn[NAME]` is (LEARN, NAME); the score's is NAME


class LearningSettings(BaseModel):
    """`specialists.heads.learning`: which posts `heads_learn["NAME"]` picks for review."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    band: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="A post is uncertain for a head when its score lies within this much of "
        "the head's threshold.",
    )
    share: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="The share of uncertain posts picked, by a hash of the head, its version "
        "and the post id: the same post is picked again on a replay or a retry.",
    )


class HeadSettings(BaseModel):
    """`specialists.heads`: how often heads are read again from Redis, and active learning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh_s: float = Field(
        1.0, gt=0, description="Seconds a head read from Redis is used before it is read again."
    )
    learning: LearningSettings = Field(
        default_factory=LearningSettings,
        description="Active learning: the uncertain posts `heads_learn` picks.",
    )
    recent_window: int = Field(
        20_000,
        ge=0,
        description="How many recent posts a head scored keep their post embedding in Redis, "
        "so that `vlmod heads promote --config` decides again those the new version flags "
        "otherwise; 0 keeps none.",
    )


def picked(head: str, version: int, post_id: str, share: float) -> bool:
    """Whether the post falls in the `share` a hash of head, version and post id picks."""
    digest = hashlib.blake2b(f"{head}\0{version}\0{post_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


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
        Variable(
            "heads_learn",
            "map(string, bool)",
            keyed=True,
            item="head",
            description="True for a post picked to teach the head: its score is near the "
            "threshold (`specialists.heads.learning`)",
        ),
    )
    inputs = frozenset({Input.SIGNALS})
    after = (EMBED_PRODUCER,)
    placement = Placement.CONSUMER
    cost = Cost.MODEL
    version = "heads-1"
    cacheable = False  # a dot product; the embedding it reads is cached with the model's answers
    settings_model = HeadSettings
    config = list[HeadName]

    def __init__(self) -> None:
        self.settings = HeadSettings()
        self.redis_url: str | None = None
        self.model: str | None = None  # the checkpoint whose post embedding this reads
        self._store: Any = None
        self._held: dict[str, tuple[float, Head | None]] = {}

    def asks(self, value: Any) -> list[Ask]:
        """One score per head named; each brings the post embedding into the plan."""
        names = value if isinstance(value, list) else [value]
        needs = ((EMBED_PRODUCER, POST_EMBEDDING),)
        return [
            Ask(variable, name, request, needs=needs)
            for name in dict.fromkeys(names)
            for variable, request in (("heads", name), ("heads_learn", (LEARN, name)))
        ]

    def empty(self, request: Hashable) -> float:
        """A post with nothing to embed flags nothing (policy tests read this too)."""
        return 0.0

    def bind(self, context: ProducerContext) -> None:
        """The Redis the heads live in, and `specialists.heads`."""
        self.redis_url = context.redis_url
        self.settings = context.settings_for(self.name, HeadSettings)
        self.model = context.models.get(DEFAULT_MODEL)

    def compute(self, jobs: Sequence[ProducerJob]) -> list[ProducerOutput | Exception]:
        """Each post's heads on its embedding."""
        return [self._one(job) for job in jobs]

    def _one(self, job: ProducerJob) -> ProducerOutput:
        vector = job.signals.get(EMBED_PRODUCER, {}).get(POST_EMBEDDING)
        names = sorted({_head_name(request) for request in job.requests})
        if job.recheck:  # decided again after a head changed: read the heads now
            for name in names:
                self._held.pop(name, None)
        values: dict[Hashable, Any] = {}
        used: dict[str, int] = {}
        for name in names:
            head = self._head(name)
            if isinstance(head, Unavailable):
                values[name] = head
            elif not isinstance(vector, list) or not vector:
                values[name] = 0.0
            elif self.model is not None and head.embedding.model != self.model:
                # Another model's embedding of the same size would give a number, a wrong one.
                values[name] = Unavailable(
                    f"head {name} v{head.version} was trained on {head.embedding.model}'s "
                    f"embeddings, the pipeline's model is {self.model}"
                )
            elif len(vector) != head.embedding.dim:
                values[name] = Unavailable(
                    f"head {name} v{head.version} reads embeddings of {head.embedding.dim}, "
                    f"the model gives {len(vector)}"
                )
            else:
                values[name] = round(head.score(vector), 6)
                used[name] = head.version
        learn = {name: self._learn(name, values[name], used, job.post.id) for name in names}
        values.update({(LEARN, name): flag for name, flag in learn.items()})
        values = {request: values[request] for request in job.requests}
        evidence: dict[str, Any] = {"versions": used} if used else {}
        if any(flag is True for flag in learn.values()):
            evidence["learn"] = sorted(name for name, flag in learn.items() if flag is True)
        return ProducerOutput(values, evidence=evidence)

    def _learn(self, name: str, score: Any, used: dict[str, int], post_id: str) -> Any:
        """The post's `heads_learn[name]`: unavailable as its score is, false unscored."""
        if isinstance(score, Unavailable) or name not in used:
            return score if isinstance(score, Unavailable) else False
        head = self._held[name][1]
        assert head is not None
        learning = self.settings.learning
        near = abs(score - head.threshold) <= learning.band
        return near and picked(name, used[name], post_id, learning.share)

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
            what = "no such version of head" if "@" in name else "no head named"
            return Unavailable(f"{what} {name!r} (`vlmod heads list` shows them)")
        return head

    def _read(self, name: str) -> Head:
        """The active version of `name`, or the version `name@VERSION` pins."""
        if self._store is None:
            if self.redis_url is None:
                raise ConnectionError("no redis_url: heads live in Redis")
            from heads.store import HeadStore

            self._store = HeadStore.from_url(self.redis_url)
        base, _, version = name.partition("@")
        return self._store.get(base, int(version) if version else None)


def _head_name(request: Hashable) -> str:
    """The head a request is about: `NAME` (its score) or `(LEARN, NAME)` (its pick)."""
    return str(request[1]) if isinstance(request, tuple) else str(request)
