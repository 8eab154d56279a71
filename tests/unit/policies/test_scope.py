import cel

from contracts.records import Action, Post
from contracts.vlm import TaskKind, VlmTask
from policies.policy_set import PolicySet
from policies.scope import PostScope, same_value

WEAPON = """\
rules:
  - id: weapon
    when: labels.weapon > 0.5
    action: block
  - id: words
    when: text.matches("(?i)buy (followers|likes)")
    action: review
  - id: meta-error
    when: post.meta.missing == 1
    action: review
"""

# Another policy calling a different prompt `weapon`: the same name, another value.
OTHER = """\
id: other
version: 1
signals:
  labels:
    weapon: "a toy gun"
rules:
  - id: weapon
    when: labels.weapon > 0.5
    action: review
"""


def label(text: str) -> tuple[str, VlmTask]:
    return ("labels", VlmTask(TaskKind.LABEL, text))


REAL = label("a weapon such as a gun or a knife")
TOY = label("a toy gun")
POST = Post(id="1", text="buy likes here")


def both(make_policy) -> PolicySet:
    return PolicySet((make_policy(WEAPON), make_policy(OTHER, header=False, name="o.yaml")))


def outcome(decided):
    decisions = [o.decision for o in decided.active]
    return [(d.action, d.rule_ids, d.rule_errors) for d in decisions]


def test_policies_sharing_a_scope_each_read_their_own_signals(make_policy):
    policy_set = both(make_policy)
    scope = PostScope(POST)
    first = policy_set.evaluate(POST, {REAL: 0.9, TOY: 0.1}, scope=scope)
    second = policy_set.evaluate(POST, {REAL: 0.1, TOY: 0.9}, scope=scope)
    assert [(action, rules) for action, rules, _ in outcome(first)] == [
        (Action.BLOCK, ["weapon", "words"]),
        (Action.ALLOW, []),
    ]
    assert [(action, rules) for action, rules, _ in outcome(second)] == [
        (Action.REVIEW, ["words"]),
        (Action.REVIEW, ["weapon"]),
    ]


def test_plans_and_decisions_on_one_scope_are_those_of_fresh_ones(make_policy):
    policy_set = both(make_policy)
    computed = {REAL: 0.7, TOY: 0.2}
    scope = PostScope(POST)
    shared_plans = [policy_set.plan_for_post(POST, c, scope=scope) for c in ({}, computed)]
    shared = policy_set.evaluate(POST, computed, scope=scope)
    assert shared_plans == [policy_set.plan_for_post(POST, c) for c in ({}, computed)]
    assert outcome(shared) == outcome(policy_set.evaluate(POST, computed))
    errors = outcome(shared)[0][2]
    assert [error.id for error in errors] == ["meta-error"]
    assert errors[0].error.startswith("no such key")


def test_a_term_reading_no_signal_runs_once_per_post(make_policy):
    policy = make_policy(WEAPON)
    calls = []

    def counted(function):
        def call(text):
            calls.append(text)
            return function(text)

        call.pattern = function.pattern  # the term's Python answer finds its matcher by it
        return call

    policy.functions = {name: counted(f) for name, f in policy.functions.items()}
    policy.python_terms = tuple(policy._python_terms(rule) for rule in policy.rules)
    policy_set = PolicySet((policy,))
    scope = PostScope(POST)
    policy_set.plan_for_post(POST, {}, scope=scope)
    policy_set.evaluate(POST, {REAL: 0.9}, scope=scope)
    assert calls == ["buy likes here"]
    policy_set.evaluate(POST, {REAL: 0.9})  # no scope: a fresh one, so the term runs again
    assert len(calls) == 2


def test_a_value_is_set_again_when_only_its_type_differs():
    scope = PostScope(Post(id="1"))
    is_int = cel.compile("type(x) == int && type(m.a) == int")
    is_other = cel.compile("type(x) == double && type(m.a) == bool")
    assert is_int.execute(scope.context_for({}, {"x": 1, "m": {"a": 1}})) is True
    assert is_other.execute(scope.context_for({}, {"x": 1.0, "m": {"a": True}})) is True


def test_text_and_post_always_stay_the_posts_own():
    scope = PostScope(Post(id="1", text="hello", meta={"k": "v"}))
    context = scope.context_for({}, {"text": "other", "post": {}})
    assert cel.compile('text == "hello" && post.meta.k == "v"').execute(context) is True


def test_same_value_is_identity_item_by_item():
    score = 0.5
    held = {"a": score}
    assert same_value(held, {"a": score})
    assert same_value({}, {})
    assert not same_value({"a": 1}, {"a": True})
    assert not same_value({"a": 1}, {"a": 1, "b": 2})
    assert not same_value(1, 1.0)
    assert not same_value({"a": [1]}, {"a": [1]})  # equal, but not the same object


def decided_ids(scope: PostScope) -> set[str]:
    """Ids of the rules a growing scope holds as decided (matched or not): never tested again."""
    assert scope.decided is not None
    return {rule.id for rule, _ in scope.decided.values()}


def test_a_growing_scope_tests_a_decided_rule_once_and_decides_as_a_fresh_one(make_policy):
    policy_set = PolicySet((make_policy(WEAPON),))
    scope = PostScope(POST, growing=True)
    computed: dict = {}
    first_plan = policy_set.plan_for_post(POST, computed, scope=scope)
    # `words` matched while planning; `weapon` waits for its signal; `meta-error` erred (an
    # error is not kept: it is reported from the run that decides).
    assert decided_ids(scope) == {"words"}
    computed[REAL] = 0.9  # the planned signal arrives; values are only ever added
    second_plan = policy_set.plan_for_post(POST, computed, scope=scope)
    decided = policy_set.evaluate(POST, computed, scope=scope)
    assert decided_ids(scope) == {"words", "weapon"}
    assert first_plan == policy_set.plan_for_post(POST, {})
    assert second_plan == policy_set.plan_for_post(POST, computed)
    assert outcome(decided) == outcome(policy_set.evaluate(POST, computed))
    assert outcome(decided)[0][:2] == (Action.BLOCK, ["weapon", "words"])


def test_a_scope_that_is_not_growing_tests_every_rule_each_time(make_policy):
    policy_set = PolicySet((make_policy(WEAPON),))
    scope = PostScope(POST)
    assert scope.decided is None  # nothing is kept: the next run may see other values
    first = policy_set.evaluate(POST, {REAL: 0.9}, scope=scope)
    second = policy_set.evaluate(POST, {REAL: 0.1}, scope=scope)
    assert outcome(first)[0][:2] == (Action.BLOCK, ["weapon", "words"])
    assert outcome(second)[0][:2] == (Action.REVIEW, ["words"])
    assert outcome(second) == outcome(policy_set.evaluate(POST, {REAL: 0.1}))
