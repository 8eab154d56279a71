import pytest

from contracts.records import Post, Signals
from policies.celscan import tokenize
from policies.patterns import PatternMatcher, PatternRegistry


def literal(text: str):
    (token,) = tokenize(text)
    return token


class TimesOut:
    def search(self, text, timeout, **flags):
        raise TimeoutError


def test_fast_path_and_linear_fallback_agree():
    matcher = PatternMatcher(literal(r'"(?i)\\bbuy\\s+likes\\b"'))
    assert matcher.fast is not None and matcher("please BUY likes") is True
    matcher.fast = TimesOut()
    assert matcher("please BUY likes") is True and matcher("nothing") is False
    assert matcher.fallbacks == 2


def test_rust_only_syntax_uses_the_linear_engine():
    matcher = PatternMatcher(literal('"^[[:digit:]]+$"'))
    assert matcher.fast is None and matcher("123") is True and matcher("12a") is False


def test_non_string_is_an_error():
    with pytest.raises(TypeError):
        PatternMatcher(literal('"a"'))(3)


def test_rewrite_replaces_only_literal_matches_calls():
    registry = PatternRegistry()
    source = 'text.matches("a") && post.meta.t.matches("a") && text.matches("b") && "matches" == x'
    rewritten = registry.rewrite(source)
    assert rewritten == (
        "text.vlmod_matches_0() && post.meta.t.vlmod_matches_0() && "
        'text.vlmod_matches_1() && "matches" == x'
    )
    assert len(registry.functions) == 2


def test_policy_regex_rules_use_precompiled_patterns(make_policy):
    policy = make_policy("""\
        rules:
          - id: r
            when: text.matches("(?i)free\\\\s+money") && post.meta.kind.matches("^ad$")
            action: review
        """)
    assert len(policy.functions) == 2
    decision = policy.evaluate(Post(id="1", text="FREE  money", meta={"kind": "ad"}), Signals())
    assert decision.rule_ids == ["r"]
