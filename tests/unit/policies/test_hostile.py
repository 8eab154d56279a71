"""Hostile policies are refused at load time or bounded at run time; the engine survives.

Hostile posts padded to push their words past the text cap are still judged.
"""

import json
import time
from pathlib import Path
from typing import Any

import pytest

from contracts.decoding import decode_post
from contracts.producers import NO_EMPTY, ProducerJob, as_output
from contracts.records import Action, Post, Signals
from contracts.registry import default_registry
from contracts.vlm import VlmTask, empty_value
from policies.decision import Decision
from policies.exceptions import PolicyInvalid
from policies.loader import load_policy, load_policy_dir
from policies.scope import PostScope
from policies.truncation import CUT_TEXT_RULE
from tests.unit.policies.plans import signal_keys

EXAMPLES = Path(__file__).parents[3] / "policies" / "examples"


def test_division_by_zero_is_a_rule_error_not_a_crash(make_policy):
    policy = make_policy("""\
        rules:
          - id: div
            when: 1 / (size(text) - size(text)) > 0
            action: block
          - id: ok
            when: text == "x"
            action: review
        """)
    decision = policy.evaluate(Post(id="1", text="x"), Signals())
    assert decision.action is Action.REVIEW
    assert [e.id for e in decision.rule_errors] == ["div"]


def test_catastrophic_backtracking_pattern_is_bounded(make_policy):
    policy = make_policy("""\
        rules:
          - id: evil
            when: text.matches("^(([a-z])+.)+[A-Z]([a-z])+$")
            action: block
        """)
    started = time.perf_counter()
    for _ in range(10):
        policy.evaluate(
            Post(id="1", text="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" * 1000), Signals()
        )
    assert time.perf_counter() - started < 2.0


def test_oversized_regex_is_refused(write_policy):
    path = write_policy(
        f'rules:\n  - id: big\n    when: text.matches("{"a|" * 400}b")\n    action: block\n'
    )
    with pytest.raises(PolicyInvalid, match="over the 500 limit"):
        load_policy(path)


def test_oversized_condition_is_refused(write_policy):
    when = " || ".join(['text == "x"'] * 300)
    path = write_policy(f"rules:\n  - id: big\n    when: '{when}'\n    action: block\n")
    with pytest.raises(PolicyInvalid, match="over the 2000 limit"):
        load_policy(path)


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    path = tmp_path / "lol.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(PolicyInvalid, match="YAML bomb") as info:
        load_policy(path)
    assert time.perf_counter() - started < 1.0
    assert info.value.problems[0].line == 5  # the alias that crosses the node budget


def test_ten_megabyte_file_is_refused_without_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"id: huge\nversion: 1\n" + b"# padding\n" * 1_000_000)
    started = time.perf_counter()
    with pytest.raises(PolicyInvalid, match="over the 1000000 limit") as info:
        load_policy(path)
    assert time.perf_counter() - started < 0.5
    assert (info.value.problems[0].line, info.value.problems[0].col) == (1, 1)


def test_unsafe_tag_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "tag.yaml"
    path.write_text(f'id: x\nversion: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(PolicyInvalid, match="not allowed"):
        load_policy(path)
    assert not marker.exists()


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("id: x\nversion: 1\nmeta: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(PolicyInvalid, match="deeper than"):
        load_policy(path)


def test_engine_keeps_working_after_hostile_rules(make_policy):
    policy = make_policy("""\
        rules:
          - id: div
            when: post.meta.n / 0 == 1
            action: escalate
          - id: type
            when: post.meta.n + "a" == "x"
            action: escalate
          - id: fine
            when: text.startsWith("ok")
            action: review
        """)
    for _ in range(100):
        decision = policy.evaluate(Post(id="1", text="ok", meta={"n": 1}), Signals())
        assert decision.action is Action.REVIEW
        assert sorted(error.id for error in decision.rule_errors) == ["div", "type"]


SCAM = "Selling replica Rolex, 1:1 copy"


def judge_message(raw: bytes) -> dict[str, Decision]:
    """The example policies' decisions on a message, as the pipeline decodes and scopes it."""
    decoded = decode_post(raw)
    scope = PostScope(decoded.post, truncated=decoded.truncated)
    policies = load_policy_dir(EXAMPLES)
    plan = policies.plan_for_post(decoded.post, scope=scope)
    computed = {key: seen(decoded.post, *key) for key in signal_keys(plan)}
    decided = policies.evaluate(decoded.post, computed, scope=scope)
    return {outcome.decision.policy.id: outcome.decision for outcome in decided.active}


def seen(post: Post, name: str, request: Any) -> Any:
    """The model and the specialists see nothing (0.0, ""); `links` reads the text for real."""
    if isinstance(request, VlmTask):
        return empty_value(request)
    registry = default_registry()
    empty = registry.traits(name).empty(request)
    if empty is not NO_EMPTY:
        return empty
    producer = registry.get(name)
    [output] = producer.compute([ProducerJob(post, frozenset({request}))])
    return as_output(output).values[request]


def listing(text: str, **fields: object) -> bytes:
    return json.dumps({"id": "pad", "text": text, **fields}).encode()


@pytest.mark.parametrize("pad", [" " * 20_000, "\u200b" * 20_000], ids=["spaces", "zwsp"])
def test_blank_padding_before_a_counterfeit_listing_still_blocks(pad):
    decision = judge_message(listing(pad + SCAM))["marketplace-listings"]
    assert (decision.action, decision.rule_ids) == (Action.BLOCK, ["counterfeit-words"])


def test_visible_padding_that_pushes_words_past_the_cap_is_reviewed_saying_why():
    decisions = judge_message(listing("ab " * 7000 + SCAM))
    decision = decisions["marketplace-listings"]
    assert (decision.action, decision.queue, decision.rule_ids) == (
        Action.REVIEW,
        "prohibited",
        ["text-cut"],
    )
    assert "posts.max_text_chars" in (decision.matched_rules[0].reason or "")
    assert all(d.action is not Action.ALLOW for d in decisions.values())


def test_a_message_claiming_its_text_was_not_cut_is_still_judged_as_cut():
    decisions = judge_message(listing("ab " * 7000 + SCAM, truncated=False))
    assert {d.action for d in decisions.values()} == {Action.REVIEW}
    assert all("text-cut" in d.rule_ids for d in decisions.values())


def test_a_policy_silent_on_cut_text_reviews_padded_posts(make_policy):
    policy = make_policy(
        'rules:\n  - id: w\n    when: text.contains("replica")\n    action: block\n'
    )
    decoded = decode_post(listing("ab " * 7000 + SCAM))
    decision = policy.evaluate(PostScope(decoded.post, truncated=decoded.truncated), Signals())
    assert (decision.action, decision.rule_ids) == (Action.REVIEW, [CUT_TEXT_RULE])
