"""Several policies at once: which signals producers must compute, and all their verdicts.

Producers compute by *request*, not by name: two policies may call different prompts `weapon`,
or the same prompt by different names. A SignalPlan lists requests per producer; computed
values are keyed by `(producer, request)`; `PolicySet.signals_for` maps them back to each
policy's own names.

Planning is staged by cost: `plan_for_post` tests every rule on what is known so far (the
post's text and fields, then the cheap producers' values) and keeps only the signals that could
still change some decision.

Shadow policies' needs are in the plans by default: a shadow verdict computed on signals that
were never asked for is useless. Pass `include_shadow=False` to plan for active policies only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from contracts.records import Post, Signals, Verdict
from policies.compiled import CompiledPolicy, Deadline
from policies.decision import Decision, VerdictDiff, diff_decisions
from policies.exceptions import PolicyInvalid, Problem
from policies.expressions import Needs
from policies.schema import Mode
from policies.scope import PostScope

SignalKey = tuple[str, Hashable]  # (producer, request)
Computed = Mapping[SignalKey, Any]


@dataclass(frozen=True)
class SignalPlan:
    """What producers must compute: requests by producer name."""

    requests: Mapping[str, frozenset[Hashable]] = field(default_factory=dict)

    def __or__(self, other: SignalPlan) -> SignalPlan:
        merged = dict(self.requests)
        for producer, requests in other.requests.items():
            merged[producer] = merged.get(producer, frozenset()) | requests
        return SignalPlan(merged)

    def __bool__(self) -> bool:
        return any(self.requests.values())

    def without(self, computed: Computed) -> SignalPlan:
        """The plan less what is already computed."""
        if not computed:
            return self
        left = {p: {r for r in rs if (p, r) not in computed} for p, rs in self.requests.items()}
        return SignalPlan({p: frozenset(rs) for p, rs in left.items() if rs})


def merged(plans: list[SignalPlan], computed: Computed) -> SignalPlan:
    """One plan asking everything `plans` ask, less what is already `computed`."""
    requests: dict[str, set[Hashable]] = {}
    for plan in plans:
        for producer, asked in plan.requests.items():
            held = requests.get(producer)
            if held is None:
                requests[producer] = set(asked)
            else:
                held |= asked
    if computed:
        for producer, held in requests.items():
            held.difference_update([r for r in held if (producer, r) in computed])
    return SignalPlan({p: frozenset(r) for p, r in requests.items() if r})


def policy_slot(policy: CompiledPolicy) -> tuple[str, Mode]:
    """What a set holds at most one policy of: an id in a mode (a shadow one shadows its twin)."""
    return policy.ref.id, policy.mode


PlanMemo = dict[int, tuple[int, "SignalPlan"]]  # policy -> (values computed then, its plan)


def plan_of(policy: CompiledPolicy, needs: Needs) -> SignalPlan:
    """`needs` (by the policy's names) as a plan (by producer request); one per needs."""
    cache = policy.plans
    if (plan := cache.get(needs.refs)) is not None:
        return plan
    requests: dict[str, set[Hashable]] = {}
    for ref in needs.refs:
        asked = policy.asks[ref]
        requests.setdefault(asked.producer, set()).add(asked.request)
        for producer, request in asked.needs:
            requests.setdefault(producer, set()).add(request)
    plan = SignalPlan({producer: frozenset(r) for producer, r in requests.items()})
    if len(cache) < PLANS_KEPT:
        cache[needs.refs] = plan
    return plan


PLANS_KEPT = 1024  # plans kept per policy, by the signals it needs; a policy has few


def _computed_since(policy: CompiledPolicy, computed: Computed, since: int) -> bool:
    """True when a value `policy` asks for was added to `computed` after its first `since`.

    `computed` only grows while one post is planned (the memo's contract), so what was added
    is what comes after the first `since` keys; a smaller `computed` is another post's.
    """
    if len(computed) < since:
        return True
    asked = policy.asked
    return any(key in asked for key in islice(computed, since, None))


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
            key = policy_slot(policy)
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

    def plan_for_post(
        self,
        post: Post,
        computed: Computed | None = None,
        *,
        include_shadow: bool = True,
        budget_s: float | None = None,
        memo: PlanMemo | None = None,
        scope: PostScope | None = None,
    ) -> SignalPlan:
        """Signals that could still change some decision, given the post and `computed`.

        Rules left untested when `budget_s` runs out keep every signal they read in the plan.
        With `memo` (one per post, while `computed` only grows), a policy none of whose
        signals were computed since its last plan keeps that plan instead of testing its rules
        again. `scope` (one per post, made from this post) shares the post's CEL values with
        later plans and the decision.
        """
        computed = computed or {}
        shared = scope or PostScope(post)
        deadline = Deadline.after(budget_s)
        plans = []
        for policy in self._planned(include_shadow):
            held = memo.get(id(policy)) if memo is not None else None
            if held is not None and not _computed_since(policy, computed, held[0]):
                plans.append(held[1])
                continue
            planned = plan_of(policy, policy.needed_for(shared, policy.view(computed), deadline))
            if memo is not None:
                memo[id(policy)] = (len(computed), planned)
            plans.append(planned)
        return merged(plans, computed)

    @staticmethod
    def signals_for(policy: CompiledPolicy, computed: Computed) -> Signals:
        """Computed values keyed by (producer, request), under `policy`'s own names."""
        return Signals(**policy.view(computed).values)

    def evaluate(
        self,
        post: Post,
        computed: Computed,
        *,
        budget_s: float | None = None,
        unavailable: Mapping[SignalKey, str] | None = None,
        scope: PostScope | None = None,
    ) -> SetDecision:
        """Every policy's decision; each shadow one is diffed against the active one of its id.

        All policies share `budget_s`; rules past it become rule errors, active policies first.
        `unavailable` says why values could not be had; rules reading them say so. `scope` is
        the post's PostScope, as for `plan_for_post`.
        """
        shared = scope or PostScope(post)
        deadline = Deadline.after(budget_s)
        active, shadow = [], []
        for policy in self.active:
            view = policy.view(computed, unavailable)
            decision = policy.evaluate(shared, view, deadline)
            active.append(PolicyOutcome(decision, Signals(**view.values)))
        by_id = {outcome.decision.policy.id: outcome.decision for outcome in active}
        for policy in self.shadow:
            view = policy.view(computed, unavailable)
            signals = Signals(**view.values)
            decision = policy.evaluate(shared, view, deadline)
            diff = diff_decisions(by_id.get(policy.ref.id), decision)
            shadow.append(PolicyOutcome(decision, signals, diff))
        return SetDecision(tuple(active), tuple(shadow))
