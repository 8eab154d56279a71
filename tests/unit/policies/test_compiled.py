import time

from contracts.records import Action, Post, Signals

RULES = """\
queues:
  child-safety: review.child-safety
rules:
  - id: weapon-with-minor
    when: labels.weapon > 0.5 && answers.minor > 0.5
    action: escalate
    queue: child-safety
    priority: 0
  - id: gore
    when: labels.violence > 0.8
    action: block
    queue: violence
    priority: 20
  - id: gore-words
    when: text.matches("(?i)\\\\bgore\\\\b")
    action: block
    queue: words
    priority: 20
  - id: weapon-urgent
    when: labels.weapon > 0.9
    action: block
    queue: weapons
    priority: 5
  - id: spam
    when: text.matches("(?i)buy (followers|likes)")
    action: review
    queue: spam
default: allow
"""

QUIET = Signals(labels={"weapon": 0.0, "violence": 0.0}, answers={"minor": 0.0}, description="")


def signals(**labels):
    return Signals(
        labels={"weapon": 0.0, "violence": 0.0, **labels}, answers={"minor": 0.0}, description=""
    )


def test_no_match_takes_default(make_policy):
    decision = make_policy(RULES).evaluate(Post(id="1", text="hello"), QUIET)
    assert (decision.action, decision.queue, decision.matched_rules) == (Action.ALLOW, None, [])
    assert decision.rule_errors == []


def test_most_severe_wins_and_every_match_is_reported(make_policy):
    s = Signals(labels={"weapon": 0.7, "violence": 0.9}, answers={"minor": 0.9}, description="")
    decision = make_policy(RULES).evaluate(Post(id="1", text="buy likes"), s)
    assert decision.action is Action.ESCALATE
    assert (decision.queue, decision.topic, decision.priority) == (
        "child-safety",
        "review.child-safety",
        0,
    )
    assert decision.rule_ids == ["weapon-with-minor", "gore", "spam"]


def test_tie_goes_to_lower_priority_number_then_earlier_rule(make_policy):
    policy = make_policy(RULES)
    decision = policy.evaluate(Post(id="1", text="gore"), signals(violence=0.9, weapon=0.95))
    assert (decision.action, decision.queue, decision.priority) == (Action.BLOCK, "weapons", 5)
    decision = policy.evaluate(Post(id="1", text="gore"), signals(violence=0.9))
    assert decision.queue == "violence"  # same action and priority: the earlier rule


def test_unlisted_queue_gets_default_topic(make_policy):
    policy = make_policy(RULES)
    assert policy.queue_topic("spam") == "review.spam"
    assert policy.queue_topic("child-safety") == "review.child-safety"


def test_evidence_holds_the_values_the_condition_read(make_policy):
    s = Signals(labels={"weapon": 0.7, "violence": 0.1}, answers={"minor": 0.9}, description="")
    decision = make_policy(RULES).evaluate(Post(id="1", text="buy likes"), s)
    evidence = {rule.id: rule.evidence for rule in decision.matched_rules}
    assert evidence["weapon-with-minor"] == {"labels.weapon": 0.7, "answers.minor": 0.9}
    assert evidence["spam"] == {"text": "buy likes"}


def test_runtime_error_is_reported_counted_and_other_rules_apply(make_policy):
    policy = make_policy("""\
        rules:
          - id: ratio
            when: post.meta.likes / post.meta.views > 2
            action: review
          - id: missing-key
            when: post.meta.nope == 1
            action: block
          - id: not-bool
            when: post.meta.likes
            action: block
          - id: spam
            when: text.contains("buy")
            action: review
            queue: spam
        """)
    decision = policy.evaluate(Post(id="1", text="buy", meta={"likes": 3, "views": 0}), QUIET)
    assert decision.action is Action.REVIEW and decision.rule_ids == ["spam"]
    errors = {error.id: error.error for error in decision.rule_errors}
    assert set(errors) == {"ratio", "missing-key", "not-bool"}
    assert "division by zero" in errors["ratio"]
    assert "nope" in errors["missing-key"]
    assert "not true/false" in errors["not-bool"]


def test_a_false_cheap_term_decides_even_when_signals_are_missing(make_policy):
    policy = make_policy("""\
        rules:
          - id: r
            when: labels.weapon > 0.5 && text.contains("sale")
            action: block
        """)
    decision = policy.evaluate(Post(id="1", text="hello"), Signals())
    assert decision.rule_errors == [] and decision.action is Action.ALLOW


def test_missing_signal_that_could_change_the_verdict_is_an_error(make_policy):
    decision = make_policy(RULES).evaluate(Post(id="1", text="buy likes"), Signals())
    assert decision.action is Action.REVIEW
    assert {e.id for e in decision.rule_errors} == {"weapon-with-minor", "gore", "weapon-urgent"}
    assert all("signal not computed" in e.error for e in decision.rule_errors)


def test_missing_signal_under_a_better_match_is_skipped_not_an_error(make_policy):
    policy = make_policy("""\
        rules:
          - id: self-harm-words
            when: text.contains("want to die")
            action: escalate
            queue: self-harm
            priority: 0
          - id: weapon-with-minor
            when: labels.weapon > 0.5 && answers.minor > 0.5
            action: escalate
            priority: 0
          - id: gore
            when: labels.violence > 0.8
            action: block
        """)
    decision = policy.evaluate(Post(id="1", text="I want to die"), Signals())
    assert decision.action is Action.ESCALATE and decision.queue == "self-harm"
    assert decision.rule_errors == []
    assert decision.skipped_rules == ["weapon-with-minor", "gore"]


def test_catastrophic_regex_runs_in_linear_time(make_policy):
    policy = make_policy("""\
        rules:
          - id: evil
            when: text.matches("^(a+)+$") || text.matches("(x+x+)+y")
            action: block
        """)
    post = Post(id="1", text="a" * 100_000 + "!" + "x" * 50_000)
    started = time.perf_counter()
    decision = policy.evaluate(post, QUIET)
    assert time.perf_counter() - started < 1.0
    assert decision.action is Action.ALLOW and decision.rule_errors == []


def test_verdict_carries_policy_ref_and_idempotency_key(make_policy):
    policy = make_policy(RULES, version=7)
    decision = policy.evaluate(Post(id="p1", text="buy likes"), QUIET)
    verdict = decision.to_verdict("p1", signals=QUIET, latency_ms=3.0)
    assert verdict.policy == policy.ref and verdict.policy.version == 7
    assert len(verdict.policy.sha256) == 64 and verdict.shadow is False
    assert verdict.key == decision.to_verdict("p1").key
    assert verdict.rule_errors == [] and verdict.matched_rules[0].id == "spam"


def test_post_variable_includes_meta_but_not_image_bytes(make_policy):
    policy = make_policy("""\
        rules:
          - id: r
            when: post.meta.country == "BR" && size(post.images) == 1 && post.author == "a"
            action: review
        """)
    post = Post(
        id="1", author="a", meta={"country": "BR"}, images=[{"data": "aGk=", "mime": "image/png"}]
    )
    assert policy.evaluate(post, QUIET).rule_ids == ["r"]
    assert "data" not in policy.run_rules(post, QUIET).variables["post"]["images"][0]
