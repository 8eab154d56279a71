"""Hostile policies are refused at load time or bounded at run time; the engine survives."""

import time

import pytest

from contracts.records import Action, Post, Signals
from policies.exceptions import PolicyInvalid
from policies.loader import load_policy


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
    assert policy.stats.rule_errors == 1


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
    assert policy.stats.rule_errors == 200 and policy.stats.evaluations == 100
