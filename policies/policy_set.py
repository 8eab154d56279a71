"""Several policies at once: which signals the model layer must compute, and all their verdicts.

The model layer computes by *prompt text*, not by name: two policies may call different prompts
`weapon`, or the same prompt by different names. A SignalPlan lists prompt texts; the model
returns a Signals keyed by prompt text; `PolicySet.signals_for` maps it back to each policy's
names.

Shadow policies' needs are in the plans by default: a shadow verdict computed on signals that
were never asked for is useless. Pass `include_shadow=False` to plan for active policies only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.records import Post, Signals, Verdict
from policies.compiled import CompiledPolicy, Deadline, post_variables
from policies.decision import Decision, VerdictDiff, diff_decisions
from policies.exceptions import PolicyInvalid, Problem
from policies.expressions import Needs
from policies.schema import Mode


@dataclass(frozen=True)
class SignalPlan:
    """What the model layer must compute: prompt texts, question texts, a caption, extras."""

    labels: frozenset[str] = frozenset()
    questions: frozenset[str] = frozenset()
    describe: bool = False
    extra: frozenset[str] = frozenset()

    def __or__(self, other: SignalPlan) -> SignalPlan:
        return SignalPlan(
            self.labels | other.labels,
            self.questions | other.questions,
            self.describe or other.describe,
            self.extra | other.extra,
        )

    @property
    def needs_model(self) -> bool:
        """False when nothing is left for the model to compute."""
        return bool(self.labels or self.questions or self.describe or self.extra)


def plan_of(policy: CompiledPolicy, needs: Needs) -> SignalPlan:
    """`needs` (by the policy's names) as a plan (by prompt text)."""
    return SignalPlan(
        frozenset(policy.labels[name] for name in needs.labels),
        frozenset(policy.questions[name] for name in needs.answers),
        needs.describe,
        needs.extra,
    )


@dataclass(frozen=True)
class PolicyOutcome:
    """One policy's decision for a post, the signals it saw, and (shadow) its diff."""

    decision: Decision
    signals: Signals
    diff: VerdictDiff | None = None

    def to_verdict(self, post_id: str, **kwargs: Any) -> Verdict:
        """The verdict record; kwargs go to Decision.to_verdict (model, trace_id, latency_ms)."""
        return self.decision.to_verdict(post_id, signals=self.signals, **kwargs)


@dataclass(frozen=True)
class SetDecision:
    """Every policy's outcome for one post: active ones route, shadow ones only report."""

    active: tuple[PolicyOutcome, ...]
    shadow: tuple[PolicyOutcome, ...]


class PolicySet:
    """The policies of one directory, compiled; immutable, so it can be swapped atomically."""

    def __init__(self, policies: tuple[CompiledPolicy, ...]) -> None:
        self.policies = policies
        self.active = tuple(p for p in policies if p.mode is Mode.ACTIVE)
        self.shadow = tuple(p for p in policies if p.mode is Mode.SHADOW)

    @classmethod
    def build(cls, policies: list[CompiledPolicy]) -> PolicySet:
        """A set, refusing two policies with the same id in the same mode."""
        seen: dict[tuple[str, Mode], CompiledPolicy] = {}
        problems = []
        for policy in policies:
            key = (policy.ref.id, policy.mode)
            if key in seen:
                message = (
                    f"{policy.mode.value} policy {policy.ref.id!r} is already defined in "
                    f"{seen[key].source}; one {policy.mode.value} policy per id"
                )
                problems.append(Problem(policy.source, 1, 1, message))
            seen.setdefault(key, policy)
        if problems:
            raise PolicyInvalid(problems)
        return cls(tuple(policies))

    def __repr__(self) -> str:
        return f"PolicySet({list(self.policies)!r})"

    def _planned(self, include_shadow: bool) -> tuple[CompiledPolicy, ...]:
        return self.policies if include_shadow else self.active

    def signal_plan(self, *, include_shadow: bool = True) -> SignalPlan:
        """Union of everything any rule reads: what to compute when nothing is known yet."""
        plan = SignalPlan()
        for policy in self._planned(include_shadow):
            plan = plan | plan_of(policy, policy.all_needs())
        return plan

    def plan_for_post(
        self, post: Post, *, include_shadow: bool = True, budget_s: float | None = None
    ) -> SignalPlan:
        """Signals that could still change some decision, after testing the free ones.

        Rules left untested when `budget_s` runs out keep every signal they read in the plan.
        """
        variables = post_variables(post)
        deadline = Deadline.after(budget_s)
        plan = SignalPlan()
        for policy in self._planned(include_shadow):
            plan = plan | plan_of(policy, policy.needed_for(variables, deadline))
        return plan

    @staticmethod
    def signals_for(policy: CompiledPolicy, computed: Signals) -> Signals:
        """Model output keyed by prompt text, renamed to `policy`'s label/question names."""
        labels = {n: computed.labels[p] for n, p in policy.labels.items() if p in computed.labels}
        answers = {
            n: computed.answers[q] for n, q in policy.questions.items() if q in computed.answers
        }
        description = computed.description if policy.describe else None
        extras = {k: v for k, v in (computed.model_extra or {}).items() if k in policy.extra}
        return Signals(labels=labels, answers=answers, description=description, **extras)

    def evaluate(
        self, post: Post, computed: Signals, *, budget_s: float | None = None
    ) -> SetDecision:
        """Every policy's decision; each shadow one is diffed against the active one of its id.

        All policies share `budget_s`; rules past it become rule errors, active policies first.
        """
        variables = post_variables(post)
        deadline = Deadline.after(budget_s)
        active, shadow = [], []
        for policy in self.active:
            signals = self.signals_for(policy, computed)
            active.append(PolicyOutcome(policy.evaluate(variables, signals, deadline), signals))
        by_id = {outcome.decision.policy.id: outcome.decision for outcome in active}
        for policy in self.shadow:
            signals = self.signals_for(policy, computed)
            decision = policy.evaluate(variables, signals, deadline)
            diff = diff_decisions(by_id.get(policy.ref.id), decision)
            shadow.append(PolicyOutcome(decision, signals, diff))
        return SetDecision(tuple(active), tuple(shadow))
