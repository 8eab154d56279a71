"""Cut text is never allowed unjudged: the rule as a pure function, and as policies apply it."""

from dataclasses import replace

import pytest

from contracts.records import Action, MatchedRule, PolicyRef, Post, Signals
from policies.decision import Decision
from policies.exceptions import PolicyInvalid
from policies.loader import load_policy
from policies.schema import TestCase as PolicyCase  # not a pytest class
from policies.scope import PostScope
from policies.testing import run_case
from policies.truncation import (
    CUT_TEXT_QUEUE,
    CUT_TEXT_RULE,
    reads_truncated,
    review_cut_text,
)

REF = PolicyRef(id="p", version=1, sha256="0" * 64)
ALLOWED = Decision(policy=REF, action=Action.ALLOW)
SILENT = """\
rules:
  - id: words
    when: text.matches("(?i)replica")
    action: block
    queue: counterfeit
"""
SAYS_HOW = (
    SILENT
    + """\
  - id: cut
    when: post.truncated && !text.contains("receipt")
    action: review
    queue: long
    priority: 70
"""
)


def cut(decision: Decision, *, reads: bool = False) -> Decision:
    return review_cut_text(decision, truncated=True, policy_reads_truncated=reads, topic="t")


def test_an_allowed_post_with_cut_text_is_reviewed_saying_why():
    decision = cut(ALLOWED)
    assert (decision.action, decision.queue, decision.topic) == (Action.REVIEW, CUT_TEXT_QUEUE, "t")
    [rule] = decision.matched_rules
    assert rule.id == CUT_TEXT_RULE and rule.action is Action.REVIEW
    assert rule.reason is not None
    assert "posts.max_text_chars" in rule.reason and "post.truncated" in rule.reason
    assert rule.evidence == {"post.truncated": True}
    assert decision.rule_errors == []


def test_an_allow_rule_does_not_allow_cut_text_either():
    allowlisted = MatchedRule(id="trusted-author", action=Action.ALLOW)
    decision = cut(replace(ALLOWED, matched_rules=[allowlisted]))
    assert decision.action is Action.REVIEW
    assert decision.rule_ids == ["trusted-author", CUT_TEXT_RULE]


@pytest.mark.parametrize(
    ("decision", "truncated", "reads"),
    [
        (ALLOWED, False, False),  # nothing was cut
        (ALLOWED, True, True),  # the policy says how to treat cut text
        (Decision(policy=REF, action=Action.BLOCK, queue="q"), True, False),  # already acted on
        (Decision(policy=REF, action=Action.REVIEW, queue="q"), True, False),
    ],
)
def test_other_decisions_stand(decision, truncated, reads):
    after = review_cut_text(decision, truncated=truncated, policy_reads_truncated=reads, topic="t")
    assert after is decision


def test_a_policy_reads_truncated_only_through_post_truncated():
    assert reads_truncated([("text",), ("post", "truncated")])
    assert reads_truncated([("post", "truncated", "x")])
    assert not reads_truncated([("post",), ("post", "meta", "truncated"), ("truncated",)])


def test_a_policy_silent_on_cut_text_reviews_what_it_would_allow(make_policy):
    policy = make_policy(SILENT)
    assert not policy.reads_truncated
    decision = policy.evaluate(PostScope(Post(id="1", text="hello"), truncated=True), Signals())
    assert (decision.action, decision.queue) == (Action.REVIEW, CUT_TEXT_QUEUE)
    assert decision.topic == f"review.{CUT_TEXT_QUEUE}"
    assert decision.rule_ids == [CUT_TEXT_RULE]
    blocked = policy.evaluate(PostScope(Post(id="2", text="replica"), truncated=True), Signals())
    assert (blocked.action, blocked.rule_ids) == (Action.BLOCK, ["words"])


def test_the_built_in_queue_takes_the_topic_the_policy_gives_it(make_policy):
    policy = make_policy(SILENT + f"queues:\n  {CUT_TEXT_QUEUE}: trust.review.cut-text\n")
    decision = policy.evaluate(PostScope(Post(id="1", text="hi"), truncated=True), Signals())
    assert decision.topic == "trust.review.cut-text"


def test_a_policy_that_says_how_to_treat_cut_text_is_obeyed(make_policy):
    policy = make_policy(SAYS_HOW)
    assert policy.reads_truncated
    with_receipt = Post(id="1", text="watch with receipt")
    decision = policy.evaluate(PostScope(with_receipt, truncated=True), Signals())
    assert (decision.action, decision.rule_ids) == (Action.ALLOW, [])
    decision = policy.evaluate(PostScope(Post(id="2", text="watch"), truncated=True), Signals())
    assert (decision.action, decision.queue, decision.rule_ids) == (Action.REVIEW, "long", ["cut"])
    assert decision.matched_rules[0].evidence["post.truncated"] is True


def test_post_truncated_is_the_scopes_word_never_the_messages(make_policy):
    policy = make_policy(SAYS_HOW)
    claims_cut = Post.model_validate({"id": "1", "text": "watch", "truncated": True})
    assert policy.evaluate(claims_cut, Signals()).action is Action.ALLOW
    claims_whole = Post.model_validate({"id": "2", "text": "watch", "truncated": False})
    scope = PostScope(claims_whole, truncated=True)
    assert scope.post["truncated"] is True
    assert policy.evaluate(scope, Signals()).rule_ids == ["cut"]
    assert PostScope({"id": "3", "truncated": True}).post["truncated"] is False


def test_post_truncated_type_checks_as_a_bool(write_policy):
    rule = SILENT + "  - id: cut\n    when: {}\n    action: review\n"
    load_policy(write_policy(rule.format('post["truncated"] || post.truncated == false')))
    bad = write_policy(rule.format("post.truncated > 0.5"))
    with pytest.raises(PolicyInvalid, match="'>' compares a bool with a double"):
        load_policy(bad)


def test_a_case_post_says_whether_its_text_was_cut(make_policy):
    policy = make_policy(SILENT)
    case = PolicyCase.model_validate(
        {
            "name": "cut",
            "post": {"id": "1", "text": "hi", "truncated": True},
            "expect": {"action": "review", "queue": CUT_TEXT_QUEUE, "rules": [CUT_TEXT_RULE]},
        }
    )
    assert run_case(policy, case).passed
    whole = case.model_copy(update={"post": {"id": "1", "text": "hi"}})
    assert run_case(policy, whole).diff[0] == "action: expected review, got allow"
    odd = case.model_copy(update={"post": {"id": "1", "truncated": "yes"}})
    assert run_case(policy, odd).diff == ("post: truncated is true or false, not 'yes'",)
