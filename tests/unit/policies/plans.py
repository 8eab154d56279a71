"""Test helpers over SignalPlan: its keys, and the plan of everything a policy set reads."""

from __future__ import annotations

from policies.policy_set import PolicySet, SignalKey, SignalPlan, plan_of


def signal_keys(plan: SignalPlan) -> set[SignalKey]:
    """Every (producer, request) of `plan`."""
    return {(producer, r) for producer, requests in plan.requests.items() for r in requests}


def whole_plan(policies: PolicySet, *, include_shadow: bool = True) -> SignalPlan:
    """The union of everything any rule reads: the plan with nothing known and nothing pruned."""
    plan = SignalPlan()
    for policy in policies.policies if include_shadow else policies.active:
        plan = plan | plan_of(policy, policy.all_needs())
    return plan
