"""`shieldgemma:`, ShieldGemma 2 as a signal producer: `shieldgemma.<policy>` = P(yes), the max
over the post's images.

    signals:
      shieldgemma:
        model: google/shieldgemma-2-4b-it          # hub id or directory
        policies: [dangerous, sexual, violence]     # built-in names, or {name: "policy text"}
    rules:
      - {id: weapons, when: 'shieldgemma.dangerous > 0.5', action: review, queue: safety}

It runs where the consumer runs, with its own model loaded once per process and model (not on
the VLM replica pool: its prompts, weights and classifier head are its own, and it shares no
prefix with the VLM's tasks), at model cost, so the planner runs it after the CPU specialists
and skips it when they settled the verdict. A post without images has no value: rules reading
it become rule errors that say so.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

BuiltinPolicy = Literal["dangerous", "sexual", "violence"]
NO_IMAGES = "the post has no images, and ShieldGemma 2 judges images only"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # conditions read it as `shieldgemma.<name>`


class GuardLoading(BaseModel):
    """The deployment's `specialists.shieldgemma` (or `.llamaguard`): where a guard model loads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    dtype: str = Field("auto", description="auto, float32, bfloat16 or float16.")


class ShieldGemmaSettings(BaseModel):
    """A policy's `signals.shieldgemma`: the checkpoint and the policies to judge images by."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str = Field(..., min_length=1, description="ShieldGemma 2 hub id or directory.")
    policies: list[BuiltinPolicy | dict[str, str]] = Field(
        ...,
        min_length=1,
        description="Built-in policy names (dangerous, sexual, violence), or {name: policy "
        "text} for a custom one; each gives `shieldgemma.<name>`, P(yes) that it is violated.",
    )

    @field_validator("policies")
    @classmethod
    def _one_name_each(cls, policies: list[str | dict[str, str]]) -> list[str | dict[str, str]]:
        names = [name for policy in policies for name in _names(policy)]
        for policy in policies:
            if isinstance(policy, dict) and len(policy) != 1:
                raise ValueError("a custom policy is one {name: text} pair")
        for name in names:
            if not _NAME.match(name):
                raise ValueError(f"policy name {name!r} is not an identifier (letters, _, digits)")
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"policy {', '.join(doubled)} is named twice")
        texts = [
            text for policy in policies if isinstance(policy, dict) for text in policy.values()
        ]
        if any(not text.strip() for text in texts):
            raise ValueError("a custom policy's text is empty")
        return policies


def _names(policy: str | dict[str, str]) -> list[str]:
    return [policy] if isinstance(policy, str) else list(policy)


@dataclass(frozen=True)
class GuardRequest:
    """One policy judged by one checkpoint; `text` None is the checkpoint's built-in one."""

    model: str
    policy: str
    text: str | None = None


class GuardSignals(ProducerDefaults):
    """What the guard producers share: their checkpoint loaded once per process and checkpoint
    (where `specialists.<name>` says), the deployment's image limits, and each post judged on
    its own, so one post's failure stays its own."""

    name: str
    placement = Placement.CONSUMER
    cost = Cost.MODEL
    settings_model = GuardLoading
    after: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.context = ProducerContext()
        self._guards: dict[str, Any] = {}
        self._lock = threading.Lock()

    def bind(self, context: ProducerContext) -> None:
        """Take the deployment's settings (`images.max_pixels`, `specialists.<name>`)."""
        self.context = context

    def empty(self, request: Hashable) -> float:
        """Nothing violated (policy tests read this for values not pinned)."""
        return 0.0

    def guard(self, model: str) -> Any:
        """The loaded guard of `model`, loaded on first use, once per process."""
        with self._lock:
            if model not in self._guards:
                where = self.context.settings_for(self.name, GuardLoading)
                self._guards[model] = self.load(model, where.device, where.dtype)
            return self._guards[model]

    def load(self, model: str, device: str, dtype: str) -> Any:
        """The guard of checkpoint `model`, ready to judge posts."""
        raise NotImplementedError

    def compute(self, jobs: Sequence[ProducerJob]) -> list[ProducerOutput | Exception]:
        """Each post judged on its own; a post's failure is its own."""
        results: list[ProducerOutput | Exception] = []
        for job in jobs:
            try:
                results.append(self.judge(job))
            except Exception as error:  # an undecodable image or a model failure: this post's
                results.append(error)
        return results

    def judge(self, job: ProducerJob) -> ProducerOutput:
        """The values of one post."""
        raise NotImplementedError

    def decode(self, datas: Sequence[bytes]) -> list[Any]:
        """The post's images at full size (the guard's processor resizes or tiles them)."""
        from operators.images import decode_image
        from operators.limits import limits_of

        limits = limits_of(self.context.images)
        return [decode_image(data, limits).image for data in datas]


class ShieldGemmaSignals(GuardSignals):
    """`signals.shieldgemma`: `shieldgemma.<policy>`, P(yes) of the post's images (max)."""

    name = "shieldgemma"
    variables = (
        Variable(
            "shieldgemma",
            "map(string, double)",
            keyed=True,
            item="policy",
            description="ShieldGemma 2 P(policy violated), max over the images",
        ),
    )
    inputs = frozenset({Input.IMAGES})
    version = "shieldgemma2-1"
    config = ShieldGemmaSettings

    def asks(self, value: ShieldGemmaSettings) -> list[Ask]:
        """One ask per policy."""
        asks = []
        for policy in value.policies:
            if isinstance(policy, str):
                asks.append(Ask("shieldgemma", policy, GuardRequest(value.model, policy)))
                continue
            [(name, text)] = policy.items()
            asks.append(Ask("shieldgemma", name, GuardRequest(value.model, name, text.strip())))
        return asks

    def load(self, model: str, device: str, dtype: str) -> Any:
        """ShieldGemma 2 of checkpoint `model`."""
        from operators.guards.shieldgemma import load_shieldgemma

        return load_shieldgemma(model, device, dtype)

    def judge(self, job: ProducerJob) -> ProducerOutput:
        """Each of the post's images under each asked policy; the max over the images."""
        requests = [r for r in job.requests if isinstance(r, GuardRequest)]
        if not job.images:
            return ProducerOutput({request: Unavailable(NO_IMAGES) for request in requests})
        images = self.decode(job.images)
        values: dict[Hashable, Any] = {}
        evidence: dict[str, Any] = {}
        for model, asked in _by_model(requests).items():
            rows = self.guard(model).probabilities(images, [_policy(r) for r in asked])
            for column, request in enumerate(asked):
                scores = [row[column] for row in rows]
                values[request] = max(scores)
                evidence[request.policy] = [round(score, 4) for score in scores]
        return ProducerOutput(values, {"images": evidence})


def _by_model(requests: Sequence[GuardRequest]) -> Mapping[str, list[GuardRequest]]:
    grouped: dict[str, list[GuardRequest]] = {}
    for request in sorted(requests, key=lambda r: (r.model, r.policy)):
        grouped.setdefault(request.model, []).append(request)
    return grouped


def _policy(request: GuardRequest) -> Any:
    from operators.guards.shieldgemma import GuardPolicy

    return GuardPolicy(request.policy, request.text)
