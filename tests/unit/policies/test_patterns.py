import cel
import pytest

from contracts.records import Post, Signals
from policies.celscan import tokenize
from policies.patterns import PatternMatcher, PatternRegistry, RustRegex

needs_rust = pytest.mark.skipif(RustRegex is None, reason="regex-rs is not installed here")


def literal(text: str):
    (token,) = tokenize(text)
    return token


class TimesOut:
    def search(self, text, timeout, **flags):
        raise TimeoutError


def test_fast_path_and_linear_fallback_agree():
    matcher = PatternMatcher(literal(r'"(?i)\\bbuy\\s+likes\\b"'), rust=False)
    assert matcher.engine == "regex" and matcher("please BUY likes") is True
    matcher.fast = TimesOut()
    assert matcher("please BUY likes") is True and matcher("nothing") is False
    assert matcher.fallbacks == 2


def test_rust_only_syntax_uses_the_linear_engine():
    matcher = PatternMatcher(literal('"^[[:digit:]]+$"'), rust=False)
    assert matcher.engine == "cel" and matcher("123") is True and matcher("12a") is False


# Where engines read a pattern differently: Unicode word boundaries and classes, case folding
# (the Kelvin sign, the long s, ß), POSIX classes, text anchors, newlines, astral characters.
CORPUS_PATTERNS = [
    r"(?i)\\bstraße\\b",
    r"\\bé",
    r"^\\w+$",
    r"(?i)^k$",
    r"(?i)^s$",
    r"^\\d+$",
    r"^\\s$",
    r"^[[:digit:]]+$",
    r"\\Aab\\z",
    r"^a$",
    r"(?m)^b$",
    r"^.$",
    r"(?s)^a.b$",
    r"^[^a]$",
    r"(?i)\\b(whats ?app|telegram|signal)\\b\\W{0,3}\\+?[0-9][0-9 ]{6,}",
    r"(a|ab)(c|bcd)(d*)",
    r"(?i)\\bbuy\\s+(followers|likes)\\b",
]
CORPUS_TEXTS = [
    "",
    "a",
    "ab",
    "a\nb",
    "a\n",
    "aé",
    "a é",
    "héllo",
    "hello_1",
    "K",
    "\u212a",
    "\u017f",
    "S",
    "STRASSE",
    "Straße",
    "STRAẞE",
    "123",
    "١٢٣",
    "\u00a0",
    "\u000b",
    "\u001c",
    "\t",
    "😀",
    "abcd",
    "Telegram: +44 7700 900123",
    "WHATSAPP +1 555 0100 222",
    "please BUY likes",
]


@pytest.mark.parametrize("rust", [pytest.param(True, marks=needs_rust), False])
@pytest.mark.parametrize("pattern", CORPUS_PATTERNS)
def test_matchers_answer_as_cel_itself(pattern, rust):
    """The reference is CEL's own `matches`, compiled by CEL, on every text of the corpus,
    with the Rust crate and without it."""
    matcher = PatternMatcher(literal(f'"{pattern}"'), rust=rust)
    assert (matcher.engine == "rust") is rust
    reference = cel.compile(f's.matches("{pattern}")')
    for text in CORPUS_TEXTS:
        assert matcher(text) is reference.execute({"s": text}), (pattern, text)


@needs_rust
def test_a_lone_surrogate_gets_cels_own_answer():
    matcher = PatternMatcher(literal('"a"'))
    with pytest.raises(ValueError):
        cel.compile('s.matches("a")').execute({"s": "a\ud800"})
    with pytest.raises(ValueError):
        matcher("a\ud800")


@needs_rust
def test_a_pattern_the_rust_crate_refuses_is_left_to_cel():
    matcher = PatternMatcher(literal('"a{1000}{1000}"'))
    assert matcher.engine == "cel"  # too big for the crate, a syntax error to `regex`
    with pytest.raises(RuntimeError, match="size limit"):
        matcher("a")  # CEL's own refusal, which the rule reports as its error


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
