from pathlib import Path

from contracts.producers import NO_EMPTY
from contracts.records import Action, Post
from contracts.registry import default_registry
from policies.loader import load_policy_dir
from policies.testing import run_tests
from tests.unit.policies.plans import signal_keys

EXAMPLES = Path(__file__).parents[3] / "policies" / "examples"


def test_examples_load_as_one_set_with_a_shadow():
    policies = load_policy_dir(EXAMPLES)
    assert {p.ref.id for p in policies.active} == {
        "community-standards",
        "marketplace-listings",
        "spam-scams",
    }
    assert [(p.ref.id, p.ref.version) for p in policies.shadow] == [("spam-scams", 17)]


def test_example_tests_pass():
    report = run_tests([EXAMPLES])
    assert report.ok, [r for r in report.failed] + report.problems
    assert len(report.results) >= 25


def test_example_set_end_to_end():
    policies = load_policy_dir(EXAMPLES)
    post = Post(id="p", text="buy followers cheap, DM on whatsapp +1 555 0100 222")
    plan = policies.plan_for_post(post)
    registry = default_registry()
    empties = {(p, r): registry.traits(p).empty(r) for p, r in signal_keys(plan)}
    computed = {key: 0.0 if empty is NO_EMPTY else empty for key, empty in empties.items()}
    result = policies.evaluate(post, computed)
    by_id = {o.decision.policy.id: o.decision for o in result.active}
    assert by_id["spam-scams"].action is Action.REVIEW
    assert by_id["spam-scams"].rule_ids == ["off-platform-contact", "buy-engagement"]
    assert all(not o.decision.rule_errors for o in (*result.active, *result.shadow))
    (shadow,) = result.shadow
    assert shadow.diff.action == (Action.REVIEW, Action.BLOCK)
