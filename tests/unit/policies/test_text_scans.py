"""The text-scan budget: every `matches`/`contains` of a policy may read the whole post text."""

import time

import pytest
from typer.testing import CliRunner

from cli.main import app
from policies.exceptions import PolicyInvalid
from policies.expressions import ExpressionLimits
from policies.loader import load_policy

THREE_SCANS = """\
rules:
  - id: words
    when: text.contains("a") || text.matches("b+")
    action: review
  - id: more
    when: labels.weapon > 0.5 && description.contains("gun")
    action: block
"""


def test_a_policy_over_the_budget_is_refused_at_the_scan_that_passes_it(write_policy):
    path = write_policy(THREE_SCANS)
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(path, expression_limits=ExpressionLimits(max_text_scans=2))
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:16:46: policy scans the post text 3 times per post, over the budget of 2"
        " (max_text_scans); split it or merge patterns"
    ]


def test_a_policy_within_the_budget_loads(write_policy):
    policy = load_policy(
        write_policy(THREE_SCANS), expression_limits=ExpressionLimits(max_text_scans=3)
    )
    assert [rule.id for rule in policy.rules] == ["words", "more"]


def test_a_2800_rule_regex_policy_is_refused_quickly(tmp_path):
    rules = "".join(
        f"  - {{id: r{i}, when: 'text.matches(\"(?i)\\\\bword{i}\\\\b\")', action: review}}\n"
        for i in range(2800)
    )
    path = tmp_path / "big.yaml"
    path.write_text("id: big\nversion: 1\nrules:\n" + rules)
    started = time.monotonic()
    with pytest.raises(PolicyInvalid, match="scans the post text 2800 times per post") as caught:
        load_policy(path)
    assert time.monotonic() - started < 30
    [problem] = caught.value.problems
    assert (problem.line, problem.col) == (3 + 257, 28)


def test_check_takes_the_budget_as_an_option(write_policy):
    path = str(write_policy(THREE_SCANS))
    refused = CliRunner().invoke(app, ["policy", "check", "--max-text-scans", "2", path])
    assert refused.exit_code == 1 and "over the budget of 2 (max_text_scans)" in refused.stdout
    assert CliRunner().invoke(app, ["policy", "check", path]).exit_code == 0
