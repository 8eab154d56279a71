"""The policy file format as pydantic models; `vlmod schema policy` prints its JSON Schema.

Structure and types live here. What needs the whole file (rule ids unique, `when` compiles and
names only declared signals, queue topics) is checked by `policies.compiler`.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from contracts.producers import ProducerRegistry
from contracts.records import Action

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
SIGNAL_NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"


class Mode(StrEnum):
    """Whether a policy routes posts or only reports what it would have done."""

    ACTIVE = "active"
    SHADOW = "shadow"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RuleSpec(_Strict):
    """One rule: a CEL condition and what happens when it holds."""

    id: str = Field(..., pattern=NAME_PATTERN, description="Rule id, unique in the file.")
    when: str = Field(
        ...,
        min_length=1,
        description="CEL condition. In scope: text, post (meta included; `post.truncated` is "
        "true when the text was cut at posts.max_text_chars) and the variables of the declared "
        "signals (labels, answers, description, ...). Example: "
        "`labels.weapon > 0.5 && answers.minor > 0.5`.",
    )
    action: Action = Field(..., description="allow | review | block | escalate.")
    queue: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="Review queue; its topic comes from `queues`, else `review.<queue>`.",
    )
    priority: int = Field(100, ge=0, description="Lower is more urgent; breaks action ties.")
    reason: str | None = Field(None, description="Why the rule exists, shown to reviewers.")


class Expectation(_Strict):
    """What a test case expects the verdict to be; omitted fields are not checked."""

    action: Action = Field(..., description="Expected verdict action.")
    queue: str | None = Field(None, description="Expected queue (null: no queue).")
    priority: int | None = Field(None, description="Expected priority, if checked.")
    rules: list[str] | None = Field(
        None, description="Expected matching rule ids, in rule order (omit to skip the check)."
    )
    errors: list[str] = Field(
        default_factory=list, description="Rule ids expected to fail at run time (usually none)."
    )


class TestCase(_Strict):
    """A policy unit test: a post, pinned signals, the expected verdict."""

    name: str = Field(..., min_length=1, description="What the case shows.")
    post: dict[str, Any] = Field(
        ...,
        description="The post, as on the input topic (id required); `truncated: true` stands "
        "for a post whose text the decoder cut (on the input topic that field is not read).",
    )
    signals: dict[str, Any] = Field(
        default_factory=dict,
        description="Pinned values by the policy's variable names: `labels: {weapon: 0.9}`, "
        "`answers: {...}`, `description: ...`, or any producer's variable. No model runs.",
    )
    expect: Expectation = Field(..., description="The expected verdict.")


class TestFile(_Strict):
    """A `<policy>.tests.yaml` file beside a policy: more test cases for it."""

    policy: str | None = Field(None, description="Id of the policy under test (checked if set).")
    tests: list[TestCase] = Field(..., description="Test cases.")


class PolicyFile(_Strict):
    """A moderation policy: signals to compute, rules over them, and their tests."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", title="vlm-moderation policy", use_attribute_docstrings=False
    )

    id: str = Field(..., pattern=NAME_PATTERN, description="Policy id, [a-z0-9-]+.")
    version: int | str = Field(..., description="Policy version; written into every verdict.")
    mode: Mode = Field(
        Mode.ACTIVE,
        description="active: routes posts. shadow: evaluated and written to the shadow topic "
        "with its diff against the active policy of the same id; routes nothing.",
    )
    description: str | None = Field(None, description="What the policy is for.")
    signals: dict[str, Any] = Field(
        default_factory=dict,
        description="Signals to compute, one key per producer (labels, questions, describe, "
        "embed, and any registered producer); see `policy_file_model` for their shapes.",
    )
    queues: dict[str, str | None] = Field(
        default_factory=dict,
        description="Queue name → output topic. Queues not listed use `review.<queue>`; a "
        "listed queue must name a topic.",
    )
    rules: list[RuleSpec] = Field(
        default_factory=list, description="Rules in order; every matching rule is reported."
    )
    default: Action = Field(Action.ALLOW, description="Action when no rule matches.")
    tests: list[TestCase] = Field(default_factory=list, description="Policy unit tests.")


def policy_file_model(registry: ProducerRegistry) -> type[PolicyFile]:
    """PolicyFile whose `signals` takes exactly the registry's producers, each its own shape."""
    return _policy_file_model(tuple((p.name, p.config, _doc(p)) for p in registry))


@lru_cache(maxsize=16)
def _policy_file_model(producers: tuple[tuple[str, Any, str], ...]) -> type[PolicyFile]:
    fields: dict[str, Any] = {
        name: (config | None, Field(None, description=doc)) for name, config, doc in producers
    }
    signals = create_model("Signals", __config__=ConfigDict(frozen=True, extra="forbid"), **fields)
    return create_model(
        "PolicyFile",
        __base__=PolicyFile,
        signals=(signals, Field(default_factory=signals, description="Signals to compute.")),
    )


def _doc(producer: Any) -> str:
    return (type(producer).__doc__ or producer.name).strip().splitlines()[0]
