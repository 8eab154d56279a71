"""The message contracts: every record that crosses a Kafka topic, and the pieces they share.

Every layer imports Post, Verdict and DeadLetter from here. Records are frozen; inputs keep
unknown fields (producers evolve faster than consumers), outputs reject them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.errors import Stage
from contracts.history import PostRecord

DEFAULT_MAX_IMAGES = 8


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Action(StrEnum):
    """What happens to a post. Severity rises in declaration order."""

    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"
    ESCALATE = "escalate"

    @property
    def severity(self) -> int:
        """0 for allow up to 3 for escalate; the verdict takes the most severe match."""
        return _SEVERITY[self]


_SEVERITY = {action: rank for rank, action in enumerate(Action)}


class InputChangeKind(StrEnum):
    """Kinds of change made to a post's input before it is judged."""

    TRUNCATED = "truncated"
    SURROGATES_REPLACED = "surrogates-replaced"
    INVISIBLES_REMOVED = "invisibles-removed"
    WHITESPACE_COLLAPSED = "whitespace-collapsed"


class ImageRef(BaseModel):
    """One image of a post: either a URL or inline base64 bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(None, description="http(s):// or file:// address of the image.")
    data: str | None = Field(None, description="The image bytes, base64-encoded.")
    mime: str | None = Field(None, description="Declared media type of `data`, e.g. image/png.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ImageRef:
        if (self.url is None) == (self.data is None):
            raise ValueError("an image needs exactly one of `url` or `data`")
        return self

    @field_validator("data")
    @classmethod
    def _data_is_base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"`data` is not valid base64: {exc}") from exc
        return value

    def payload(self) -> bytes | str:
        """The raw bytes for inline images, else the URL."""
        return base64.b64decode(self.data) if self.data is not None else str(self.url)


class Post(BaseModel):
    """An upload to moderate (input topic, JSON, Kafka key = post id)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str = Field(..., min_length=1, description="Unique post id; also the Kafka key.")
    text: str | None = Field(None, description="The post's text, if any.")
    images: list[ImageRef] = Field(
        default_factory=list,
        description=f"Images, at most a configured count (default {DEFAULT_MAX_IMAGES}).",
    )
    author: str | None = Field(None, description="Author id.")
    created_at: datetime | None = Field(None, description="When the post was made (ISO 8601).")
    lang: str | None = Field(None, description="Language tag, e.g. en or pt-BR.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Free-form producer metadata.")

    @field_validator("images")
    @classmethod
    def _at_most_max_images(cls, images: list[ImageRef], info: ValidationInfo) -> list[ImageRef]:
        limit = (info.context or {}).get("max_images", DEFAULT_MAX_IMAGES)
        if len(images) > limit:
            raise ValueError(f"{len(images)} images is more than the limit of {limit}")
        return images


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every bad field, e.g. `images.0.url: ...; id: Field required`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(post)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class InputChange(BaseModel):
    """Something changed in a post before policies judged it, so that it could be judged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(..., description="Where, as a dotted path: `text`, `meta.caption`, ...")
    change: InputChangeKind = Field(..., description="What was done.")
    detail: str = Field(..., description="How much, in words.")


class PolicyRef(BaseModel):
    """Which policy, at which version and content hash, decided a verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., description="Policy id.")
    version: int | str = Field(..., description="Policy version as written in the file.")
    sha256: str = Field(..., description="sha256 of the policy file's bytes.")


class MatchedRule(BaseModel):
    """A rule whose condition held, with the values that made it fire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., description="Rule id.")
    action: Action = Field(..., description="The rule's action.")
    queue: str | None = Field(None, description="The rule's review queue, if any.")
    priority: int = Field(100, description="Lower is more urgent.")
    reason: str | None = Field(None, description="The rule's human reason.")
    evidence: dict[str, Any] = Field(
        default_factory=dict, description="Signal values the condition read, by name."
    )


class RuleError(BaseModel):
    """A rule whose condition failed at run time; the other rules still decided."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., description="Rule id.")
    error: str = Field(..., description="What went wrong evaluating the condition.")


class ModelRef(BaseModel):
    """The model that computed the signals."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name: str = Field(..., description="Checkpoint id or local path.")
    revision: str | None = Field(None, description="Checkpoint revision, if known.")
    engine: str | None = Field(
        None,
        description="The engine that computed the answers: eager or static (shared prefix), or "
        "plain (each question its own forward).",
    )
    engine_note: str | None = Field(
        None,
        description="Why the model runs on the plain engine when another was asked for: what "
        "the load-time check found.",
    )


class Signals(BaseModel):
    """What the model and the text checks computed for a post; extra signals are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    labels: dict[str, float] = Field(default_factory=dict, description="P(label) in [0,1].")
    answers: dict[str, float] = Field(default_factory=dict, description="P(yes) in [0,1].")
    description: str | None = Field(None, description="Caption of the image(s).")


class ProducerRun(BaseModel):
    """A producer that computed signals for the post: how long it took and what it saw."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="The producer (its key under `signals:`).")
    ms: float = Field(
        ...,
        description="Milliseconds of its work for this post. A batched call's time is shared "
        "equally among the batch's posts; model producers share one replica call.",
    )
    cached: bool = Field(False, description="True when every value came from the cache.")
    evidence: dict[str, Any] = Field(
        default_factory=dict,
        description="What backs its values: OCR boxes with confidences, a bank match's "
        "Hamming distance, images it could not use.",
    )
    notes: list[str] = Field(default_factory=list, description="What it did to the input.")
    unavailable: str | None = Field(
        None, description="Why some of its values could not be had (e.g. its store is down)."
    )


RECHECK_HEADER = "vlmod-recheck"  # on a post published again: why it is decided again


def verdict_key(
    post_id: str, policy_id: str, policy_version: int | str, recheck: str | None = None
) -> str:
    """Idempotency key: the same post under the same policy version always gets the same key.

    A post decided again because a store changed (`recheck`, say `bank known-bad@12`) gets a
    key of its own for that change, so sinks and review queues keyed by it take the new verdict.
    """
    if recheck is not None:
        policy_version = f"{policy_version}#recheck:{recheck}"
    # json.dumps([post_id, policy_id, str(policy_version)], separators=(",", ":")), spelled
    # out: one key per verdict, and the list encoder costs more than the hash.
    quoted = map(encode_basestring_ascii, (post_id, policy_id, str(policy_version)))
    material = "[" + ",".join(quoted) + "]"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


class Verdict(BaseModel):
    """The decision for one post under one policy (output topics, JSON, Kafka key = post id)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    post_id: str = Field(..., description="The post's id.")
    key: str = Field(..., description="Idempotency key of post id + policy id + policy version.")
    action: Action = Field(..., description="allow | review | block | escalate.")
    queue: str | None = Field(None, description="Review queue name; null when none.")
    priority: int = Field(100, description="Lower is more urgent.")
    policy: PolicyRef = Field(..., description="The deciding policy.")
    matched_rules: list[MatchedRule] = Field(default_factory=list, description="Rules that fired.")
    rule_errors: list[RuleError] = Field(
        default_factory=list, description="Rules that failed to evaluate for this post."
    )
    signals: Signals = Field(default_factory=Signals, description="Inputs to the decision.")
    model: ModelRef | None = Field(
        None,
        description="The pipeline's default model: the one labels and questions naming no "
        "model ask. `models` says which models answered for this post.",
    )
    models: dict[str, ModelRef] = Field(
        default_factory=dict,
        description="The models that answered for this post, by the pipeline's name for each "
        "(`default`, or a key of its `models:`), in the order they were asked: cheapest first. "
        "A large model is absent where the smaller ones' answers decided.",
    )
    shadow: bool = Field(
        False, description="True for a shadow policy's verdict; it routes nothing."
    )
    trace_id: str | None = Field(None, description="W3C trace id, 32 hex digits.")
    processed_at: datetime = Field(default_factory=utc_now, description="When it was decided.")
    latency_ms: float = Field(0.0, description="Time from consume to decision.")
    input_changes: list[InputChange] = Field(
        default_factory=list,
        description="What was changed in the post before it was judged (text cut to the "
        "configured length, lone surrogates replaced with U+FFFD).",
    )
    producers: list[ProducerRun] = Field(
        default_factory=list,
        description="The producers that ran for this post, cheapest first, with their time.",
    )
    record: PostRecord | None = Field(
        None,
        description="Every input the post's policies read (its fields, each producer value, "
        "their versions), kept for replay: on the post's first verdict only, null on the others.",
    )
    recheck: str | None = Field(
        None,
        description="Why the post was decided again after its first verdict: a store its rules "
        "read changed (`bank known-bad@12`: an image was banked at that bank version). Null on "
        "a post's first decision.",
    )


class VerdictDiff(BaseModel):
    """How a shadow policy's decision differs from the active one's (for the shadow topic)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    active: PolicyRef | None = Field(None, description="The active policy compared against.")
    shadow: PolicyRef = Field(..., description="The shadow policy.")
    action: tuple[Action | None, Action] | None = Field(None, description="(active, shadow).")
    queue: tuple[str | None, str | None] | None = Field(None, description="(active, shadow).")
    priority: tuple[int | None, int] | None = Field(None, description="(active, shadow).")
    rules_added: list[str] = Field(default_factory=list, description="Only the shadow matched.")
    rules_removed: list[str] = Field(default_factory=list, description="Only active matched.")


class ShadowVerdict(BaseModel):
    """A shadow policy's verdict and how it differs from the active one (shadow topic)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict = Field(..., description="The shadow policy's verdict; `shadow` is true.")
    diff: VerdictDiff | None = Field(None, description="Difference from the active verdict.")


class DeadLetter(BaseModel):
    """A message that could not be moderated, with the original bytes and the reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    original: str = Field(..., description="The original message value, base64-encoded.")
    original_key: str | None = Field(None, description="The original message key, base64.")
    topic: str = Field(..., description="Topic the message was read from.")
    partition: int = Field(..., description="Partition it was read from.")
    offset: int = Field(..., description="Its offset.")
    post_id: str | None = Field(None, description="The post id, when it could be read.")
    stage: Stage = Field(..., description="Where it failed.")
    error_type: str = Field(..., description="Error class name.")
    error: str = Field(..., description="Human reason.")
    attempts: int = Field(1, ge=1, description="How many times it was tried.")
    first_seen: datetime = Field(default_factory=utc_now, description="First failure time.")

    @staticmethod
    def encode_bytes(raw: bytes | None) -> str | None:
        """base64 text for message bytes, None stays None."""
        return None if raw is None else base64.b64encode(raw).decode("ascii")


SCHEMAS: dict[str, type[BaseModel]] = {
    "post": Post,
    "verdict": Verdict,
    "dead-letter": DeadLetter,
    "shadow": ShadowVerdict,
}
