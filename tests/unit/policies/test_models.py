"""Labels and questions that name a model: compiled to that model's tasks, checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.records import Action, Post
from contracts.registry import default_registry
from contracts.vlm import DEFAULT_MODEL, About, TaskKind, VlmTask
from policies.exceptions import PolicyInvalid
from policies.loader import load_policy, load_policy_dir
from policies.testing import run_tests
from tests.unit.policies.plans import signal_keys

CASCADE = """\
id: cascade
version: 1
signals:
  questions:
    weapon: "Is there a weapon?"
    weapon_large: {ask: "Is there a weapon?", model: large}
rules:
  - id: weapon-clear
    when: answers.weapon > 0.8
    action: block
  - id: weapon-unsure
    when: answers.weapon > 0.2 && answers.weapon_large > 0.5
    action: block
"""
SMALL = VlmTask(TaskKind.QUESTION, "Is there a weapon?")
LARGE = VlmTask(TaskKind.QUESTION, "Is there a weapon?", About.IMAGE, "large")
TWO_MODELS = (DEFAULT_MODEL, "large")


@pytest.fixture
def cascade(tmp_path):
    (tmp_path / "cascade.yaml").write_text(CASCADE)
    return load_policy_dir(tmp_path, registry=default_registry(TWO_MODELS))


def test_the_same_question_to_two_models_is_two_tasks(cascade):
    [policy] = cascade.policies
    assert policy.asks[("answers", "weapon")].request == SMALL
    assert policy.asks[("answers", "weapon_large")].request == LARGE
    assert SMALL != LARGE and SMALL.model == DEFAULT_MODEL


def test_a_prompt_naming_no_model_or_the_default_asks_the_same_task(tmp_path):
    named = CASCADE.replace('weapon: "Is there a weapon?"', 'weapon: {ask: "Is there a weapon?"}')
    named = named.replace("model: large", "model: default")
    (tmp_path / "p.yaml").write_text(named)
    policy = load_policy(tmp_path / "p.yaml", registry=default_registry(TWO_MODELS))
    requests = {policy.asks[("answers", n)].request for n in ("weapon", "weapon_large")}
    assert requests == {SMALL}


def test_a_model_the_pipeline_lacks_is_refused_where_it_is_named(tmp_path):
    (tmp_path / "p.yaml").write_text(CASCADE)
    with pytest.raises(PolicyInvalid) as refused:
        load_policy(tmp_path / "p.yaml", registry=default_registry())
    [problem] = refused.value.problems
    assert (problem.line, problem.col) == (6, 54)
    assert problem.message == (
        "signals.questions.weapon_large.model: unknown model 'large'; the pipeline has default"
    )


@pytest.mark.parametrize(
    ("small", "asks_large", "action"),
    [(0.1, False, Action.ALLOW), (0.9, False, Action.BLOCK), (0.5, True, None)],
)
def test_the_large_model_is_planned_only_where_the_small_one_left_a_rule_open(
    cascade, small, asks_large, action
):
    post = Post(id="p", text="hello")
    first = cascade.plan_for_post(post)
    assert signal_keys(first) == {("questions", SMALL), ("questions", LARGE)}, "nothing known"
    known = {("questions", SMALL): small}
    second = cascade.plan_for_post(post, known)
    assert signal_keys(second) == ({("questions", LARGE)} if asks_large else set())
    if action is not None:
        [outcome] = cascade.evaluate(post, known).active
        assert outcome.decision.action is action and not outcome.decision.rule_errors


def test_the_cascade_example_loads_against_two_models_and_its_tests_pass():
    example = Path(__file__).parents[3] / "policies" / "cascade"
    report = run_tests([example], default_registry(TWO_MODELS))
    assert report.ok and len(report.results) == 4, [*report.failed, *report.problems]
