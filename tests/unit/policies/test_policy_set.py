import pytest

from contracts.records import Action, Post
from contracts.vlm import TaskKind, VlmTask
from policies.exceptions import PolicyInvalid
from policies.loader import load_policy_dir
from policies.policy_set import PolicySet, SignalPlan
from tests.unit.policies.plans import signal_keys, whole_plan

COMMUNITY = """\
rules:
  - id: self-harm-words
    when: text.matches("(?i)want to die")
    action: escalate
    queue: self-harm
    priority: 0
  - id: weapon-with-minor
    when: labels.weapon > 0.5 && answers.minor > 0.5
    action: escalate
    queue: child-safety
    priority: 1
  - id: gore
    when: labels.violence > 0.8
    action: block
  - id: spam
    when: text.contains("buy likes") && description.contains("phone")
    action: review
"""


def prompts(plan: SignalPlan, producer: str) -> set[str]:
    return {request.prompt for request in plan.requests.get(producer, ())}


def label(text: str) -> tuple[str, VlmTask]:
    return ("labels", VlmTask(TaskKind.LABEL, text))


class FakeModel:
    """Stands in for the VLM: answers by prompt text and counts every call."""

    def __init__(self, scores):
        self.scores = scores
        self.calls = []

    def compute(self, plan: SignalPlan) -> dict:
        computed = {}
        for producer, request in sorted(signal_keys(plan), key=repr):
            if request.kind is TaskKind.DESCRIBE:
                self.calls.append("<describe>")
                computed[(producer, request)] = "a phone on a table"
            else:
                self.calls.append(request.prompt)
                computed[(producer, request)] = self.scores.get(request.prompt, 0.0)
        return computed


@pytest.fixture
def policy_dir(tmp_path, write_policy):
    write_policy(COMMUNITY, name="community.yaml", id="community")
    other = write_policy(
        """\
        id: other
        version: 2
        signals:
          labels:
            gun: "a weapon such as a gun or a knife"
            nude: "nudity"
        rules:
          - id: guns
            when: labels.gun > 0.5
            action: review
          - id: nude
            when: labels.nude > 0.5
            action: block
        """,
        name="other.yaml",
        header=False,
    )
    assert other.exists()
    return tmp_path


def test_signal_plan_is_the_union_by_prompt_text(policy_dir):
    plan = whole_plan(load_policy_dir(policy_dir))
    assert prompts(plan, "labels") == {
        "a weapon such as a gun or a knife",
        "graphic violence, blood or gore",
        "nudity",
    }
    assert prompts(plan, "questions") == {"Does the image show a child?"}
    assert plan.requests["describe"] == {VlmTask(TaskKind.DESCRIBE)}


def test_shadow_needs_are_planned_unless_excluded(policy_dir):
    (policy_dir / "shadow.yaml").write_text(
        "id: other\nversion: 3\nmode: shadow\nsignals:\n  labels:\n    faces: a human face\n"
        "rules:\n  - id: faces\n    when: labels.faces > 0.5\n    action: review\n"
    )
    policies = load_policy_dir(policy_dir)
    post = Post(id="1", text="x", images=[{"url": "https://example.com/a.png"}])
    assert "a human face" in prompts(policies.plan_for_post(post), "labels")
    assert "a human face" not in prompts(
        policies.plan_for_post(post, include_shadow=False), "labels"
    )


def test_same_prompt_under_different_names_maps_back(policy_dir):
    policies = load_policy_dir(policy_dir)
    computed = {label("a weapon such as a gun or a knife"): 0.9}
    by_id = {p.ref.id: p for p in policies.policies}
    assert policies.signals_for(by_id["community"], computed).labels == {"weapon": 0.9}
    assert policies.signals_for(by_id["other"], computed).labels == {"gun": 0.9}


def run_pipeline(policies: PolicySet, post: Post, model: FakeModel, *, prune: bool):
    plan = policies.plan_for_post(post) if prune else whole_plan(policies)
    computed = model.compute(plan) if plan else {}
    return policies.evaluate(post, computed)


def test_vlm_calls_are_skipped_when_text_already_decides(tmp_path, write_policy):
    write_policy(COMMUNITY, name="community.yaml", id="community")
    policies = load_policy_dir(tmp_path)
    post = Post(id="1", text="I want to die")
    full, pruned = FakeModel({}), FakeModel({})
    expected = run_pipeline(policies, post, full, prune=False)
    decided = run_pipeline(policies, post, pruned, prune=True)
    assert len(full.calls) == 4  # weapon, violence, minor, describe
    assert pruned.calls == []
    outcome = decided.active[0].decision
    assert (outcome.action, outcome.queue) == (Action.ESCALATE, "self-harm")
    assert (outcome.action, outcome.queue) == (
        expected.active[0].decision.action,
        expected.active[0].decision.queue,
    )
    assert outcome.rule_errors == []
    assert set(outcome.skipped_rules) == {"weapon-with-minor", "gore"}


def test_cheap_false_term_drops_the_signals_of_its_rule(tmp_path, write_policy):
    write_policy(COMMUNITY, name="community.yaml", id="community")
    policies = load_policy_dir(tmp_path)
    model = FakeModel({})
    run_pipeline(policies, Post(id="1", text="nice cat"), model, prune=True)
    assert "<describe>" not in model.calls  # spam rule's text term is false
    assert len(model.calls) == 3


def test_pruning_never_changes_action_queue_or_priority(tmp_path, write_policy):
    write_policy(COMMUNITY, name="community.yaml", id="community")
    policies = load_policy_dir(tmp_path)
    scores = {
        "a weapon such as a gun or a knife": 0.9,
        "Does the image show a child?": 0.9,
        "graphic violence, blood or gore": 0.95,
    }
    for text in ["I want to die", "buy likes", "", "hello"]:
        post = Post(id="1", text=text)
        a = run_pipeline(policies, post, FakeModel(scores), prune=False).active[0].decision
        b = run_pipeline(policies, post, FakeModel(scores), prune=True).active[0].decision
        assert (a.action, a.queue, a.priority) == (b.action, b.queue, b.priority)
        assert b.rule_errors == []


def test_shadow_decision_is_diffed_against_the_active_one(tmp_path, write_policy):
    write_policy(COMMUNITY, name="a.yaml", id="community", version=3)
    write_policy(
        COMMUNITY.replace("action: block", "action: escalate"),
        name="b.yaml",
        id="community",
        version=4,
        mode="shadow",
    )
    policies = load_policy_dir(tmp_path)
    computed = {label("graphic violence, blood or gore"): 0.9}
    result = policies.evaluate(Post(id="1", text="x"), computed)
    (active,), (shadow,) = result.active, result.shadow
    assert active.decision.action is Action.BLOCK and shadow.decision.action is Action.ESCALATE
    assert shadow.diff.action == (Action.BLOCK, Action.ESCALATE)
    assert shadow.diff.active.version == 3 and shadow.diff.shadow.version == 4
    assert shadow.to_verdict("1").shadow is True and active.to_verdict("1").shadow is False


def test_two_active_policies_with_one_id_are_refused(tmp_path, write_policy):
    first = write_policy(COMMUNITY, name="a.yaml", id="community")
    second = write_policy(COMMUNITY, name="b.yaml", id="community")
    with pytest.raises(PolicyInvalid, match="already defined") as caught:
        load_policy_dir(tmp_path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.col) == (str(second), 1, 1)
    assert f"already defined at {first}:1:1" in problem.message


def test_building_a_set_by_hand_refuses_one_id_twice_too(make_policy):
    policy = make_policy("rules: []\n", id="community")
    with pytest.raises(PolicyInvalid, match="already defined"):
        PolicySet.build([policy, make_policy("rules: []\n", name="b.yaml", id="community")])


def test_cheap_terms_are_tested_first(make_policy):
    policy = make_policy("""\
        rules:
          - id: r
            when: labels.weapon > 0.5 && answers.minor > 0.2 && text.contains("x")
            action: block
        """)
    terms = policy.rules[0].condition.terms
    assert terms[0].source == 'text.contains("x")'


def test_a_policy_keeps_its_plan_until_one_of_its_signals_is_computed(tmp_path):
    from contracts.registry import default_registry

    (tmp_path / "a.yaml").write_text(
        "id: a\nversion: 1\nsignals: {links: true, labels: {gun: a gun}}\nrules:\n"
        "  - {id: r, when: 'links.count > 2 || labels.gun > 0.5', action: block}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "id: b\nversion: 1\nsignals: {labels: {gun: a gun}}\nrules:\n"
        "  - {id: r, when: 'labels.gun > 0.5', action: review}\n"
    )
    policies = load_policy_dir(tmp_path, registry=default_registry())
    by_id = {policy.ref.id: policy for policy in policies.policies}
    post, memo = Post(id="1", text="hello"), {}
    first = policies.plan_for_post(post, {}, memo=memo)
    # The memo holds, per policy, how many values were computed when it was last planned.
    planned_with = {name: memo[id(policy)][0] for name, policy in by_id.items()}
    assert set(first.requests) == {"links", "labels"} and planned_with == {"a": 0, "b": 0}
    links = next(iter(first.requests["links"]))
    second = policies.plan_for_post(post, {("links", links): {"count": 0}}, memo=memo)
    planned_with = {name: memo[id(policy)][0] for name, policy in by_id.items()}
    assert planned_with == {"a": 1, "b": 0}, "only the policy that reads links is planned again"
    assert set(second.requests) == {"labels"}
