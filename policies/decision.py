"""A policy's decision for one post, the verdict it becomes, and a shadow policy's diff."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from contracts.history import PostRecord
from contracts.records import (
    Action,
    InputChange,
    MatchedRule,
    ModelRef,
    PolicyRef,
    ProducerRun,
    RuleError,
    Signals,
    Verdict,
    VerdictDiff,
    verdict_key,
)
from policies.schema import Mode

DEFAULT_PRIORITY = 100
T = TypeVar("T")


@dataclass(frozen=True)
class Decision:
    """What one policy decided for one post, before it becomes a Verdict.

    `action` is the most severe matching action, else the default; `queue`, `topic` (the
    queue's output topic) and `priority` are the winning rule's; `matched_rules` held and
    `rule_errors` failed; `skipped_rules` were left undecided because signals they read were
    skipped on purpose: they could not have changed action, queue or priority. A plain
    dataclass: every post makes one per policy, and its parts are validated already.
    """

    policy: PolicyRef
    action: Action
    mode: Mode = Mode.ACTIVE
    queue: str | None = None
    topic: str | None = None
    priority: int = DEFAULT_PRIORITY
    matched_rules: list[MatchedRule] = field(default_factory=list)
    rule_errors: list[RuleError] = field(default_factory=list)
    skipped_rules: list[str] = field(default_factory=list)

    @property
    def rule_ids(self) -> list[str]:
        """Ids of the matching rules, in rule order."""
        return [rule.id for rule in self.matched_rules]

    def to_verdict(
        self,
        post_id: str,
        *,
        signals: Signals | None = None,
        model: ModelRef | None = None,
        models: Mapping[str, ModelRef] | None = None,
        trace_id: str | None = None,
        latency_ms: float = 0.0,
        input_changes: Sequence[InputChange] = (),
        producers: Sequence[ProducerRun] = (),
        record: PostRecord | None = None,
        recheck: str | None = None,
    ) -> Verdict:
        """The Verdict record for this decision; shadow policies give shadow verdicts."""
        return Verdict(
            post_id=post_id,
            key=verdict_key(post_id, self.policy.id, self.policy.version, recheck),
            action=self.action,
            queue=self.queue,
            priority=self.priority,
            policy=self.policy,
            matched_rules=self.matched_rules,
            rule_errors=self.rule_errors,
            signals=signals or Signals(),
            model=model,
            models=dict(models or {}),
            shadow=self.mode is Mode.SHADOW,
            trace_id=trace_id,
            latency_ms=latency_ms,
            input_changes=list(input_changes),
            producers=list(producers),
            record=record,
            recheck=recheck,
        )


def diff_decisions(active: Decision | None, shadow: Decision) -> VerdictDiff:
    """Field-by-field difference of a shadow decision against the active one (None: no active)."""
    before_rules = active.rule_ids if active else []
    return VerdictDiff(
        active=active.policy if active else None,
        shadow=shadow.policy,
        action=_changed(active.action if active else None, shadow.action),
        queue=_changed(active.queue if active else None, shadow.queue),
        priority=_changed(active.priority if active else None, shadow.priority),
        rules_added=[r for r in shadow.rule_ids if r not in before_rules],
        rules_removed=[r for r in before_rules if r not in shadow.rule_ids],
    )


def _changed(before: T | None, after: T) -> tuple[T | None, T] | None:
    return None if before == after else (before, after)
