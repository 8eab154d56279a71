"""The policy engine's Python answers for terms (`policies.terms`) held against CEL itself.

Each random post is planned and decided by every policy twice, on fresh scopes: as the pipeline
runs it (Python answers first, the CEL environment built only for a term that needs it) and
with `cel_only` (every term in CEL, the reference). Values are missing, unavailable, and now
and then of the wrong type or NaN, where CEL errs or compares across types.
"""

from __future__ import annotations

import random

import pytest

from pipelines.producer_registry import producer_registry
from policies.compiled import CompiledPolicy
from policies.loader import load_policy_dir
from policies.scope import PostScope
from tests.unit.replay.builders import compile_text
from tests.unit.replay.test_replay_fast import EXAMPLES, METAS, SHAPES, TEXTS, value_for

# Each with the fields the shapes read: CEL errs on a missing key, and so must the rule.
PLAIN_METAS = (
    {"channel": "ads", "price": 50},
    {"channel": "kitchen", "price": 150},
    {"channel": "news", "price": 20.0},
)


def plain_value(producer: str, rng: random.Random) -> object:
    """A value of the type the producer gives."""
    if producer == "banks":
        return rng.random() < 0.2
    if producer in ("describe", "ocr"):
        return rng.choice(["a cat on a mat", "a dog", "a swastika flag", ""])
    if producer == "links":
        return {"count": rng.randint(0, 3), "shortened": rng.randint(0, 1)}
    return rng.random()


def random_cases(
    policies: tuple[CompiledPolicy, ...], count: int, seed: int, plain: bool = False
) -> list[tuple]:
    """(post, truncated, computed, unavailable) keyed as the pipeline keys producer values;
    `plain`: every value and text of its usual type."""
    rng = random.Random(seed)
    value = plain_value if plain else value_for
    texts = [text for text in TEXTS if type(text) is str] if plain else TEXTS
    metas = PLAIN_METAS if plain else METAS
    asked = sorted({(r.producer, r.request) for p in policies for r in p.asks.values()}, key=repr)
    cases = []
    for n in range(count):
        computed, unavailable = {}, {}
        for producer, request in asked:
            roll = rng.random()
            if roll < 0.1:
                continue  # not computed (yet)
            if roll < 0.15:
                unavailable[(producer, request)] = "its store is down"
            else:
                computed[(producer, request)] = value(producer, rng)
        post = {"id": f"p{n}", "text": rng.choice(texts), "images": [], "meta": rng.choice(metas)}
        cases.append((post, rng.random() < 0.2, computed, unavailable))
    return cases


def judged(policy: CompiledPolicy, case: tuple, cel_only: bool) -> tuple:
    post, truncated, computed, unavailable = case
    scope = PostScope(post, truncated=truncated)
    plan = policy.needed_for(scope, policy.view(computed), cel_only=cel_only)
    view = policy.view(computed, unavailable)
    return plan, policy.evaluate(scope, view, cel_only=cel_only)


def shapes(tmp_path, text: str = SHAPES) -> tuple[CompiledPolicy, ...]:
    compile_text(tmp_path / "shapes", "shapes.yaml", text)
    return load_policy_dir(tmp_path / "shapes", registry=producer_registry()).policies


@pytest.mark.parametrize("which", ["examples", "shapes"])
def test_python_answers_plan_and_decide_as_cel_does(which, tmp_path):
    if which == "examples":
        policies = load_policy_dir(EXAMPLES, registry=producer_registry()).policies
    else:
        policies = shapes(tmp_path)
    cases = random_cases(policies, 1500, seed=7)
    outcomes = set()
    for case in cases:
        for policy in policies:
            fast, cel = judged(policy, case, False), judged(policy, case, True)
            assert fast == cel, (policy.ref.id, case)
            outcomes.add((policy.ref.id, fast[1].action, bool(fast[1].rule_errors)))
    # The sample reaches allow and stronger actions, with and without rule errors.
    assert {action for _, action, _ in outcomes} >= {"allow", "review"}
    assert {errors for *_, errors in outcomes} == {True, False}


def cel_environments(policy: CompiledPolicy, cases: list[tuple], cel_only: bool) -> int:
    """How many of the cases built a CEL environment while planned and decided."""
    built = 0
    for post, truncated, computed, unavailable in cases:
        scope = PostScope(post, truncated=truncated)
        policy.needed_for(scope, policy.view(computed), cel_only=cel_only)
        policy.evaluate(scope, policy.view(computed, unavailable), cel_only=cel_only)
        built += scope.context_built
    return built


def test_a_post_whose_terms_all_have_answers_builds_no_cel_environment(tmp_path):
    # Every shape but arithmetic, which only CEL answers.
    without_arithmetic, _ = SHAPES.split("  - id: arithmetic")
    [policy] = shapes(tmp_path, without_arithmetic)
    cases = random_cases((policy,), 400, seed=11, plain=True)
    # The answers need none for values of their usual types
    # (test_python_answers_plan_and_decide_as_cel_does has the others); CEL-only builds one.
    assert cel_environments(policy, cases, cel_only=False) == 0
    assert cel_environments(policy, cases, cel_only=True) == len(cases)
