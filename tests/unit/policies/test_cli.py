import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

EXAMPLES = Path(__file__).parents[3] / "policies" / "examples"
runner = CliRunner()


def test_check_valid_files_exits_zero():
    result = runner.invoke(app, ["policy", "check", *map(str, EXAMPLES.glob("*.yaml"))])
    assert result.exit_code == 0, result.output


def test_check_reports_every_file_and_exits_one(tmp_path, write_policy):
    good = write_policy("rules: []\n", name="good.yaml")
    bad = write_policy(
        "rules:\n  - id: r\n    when: labels.nope > 1\n    action: block\n", name="bad.yaml"
    )
    result = runner.invoke(app, ["policy", "check", str(good), str(bad)])
    assert result.exit_code == 1
    assert result.stdout == f"{bad}:13:18: label 'nope' is not declared in signals.labels\n"


def test_examples_pass():
    result = runner.invoke(app, ["policy", "test", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output and "FAIL" not in result.output


def test_broken_expectation_fails_with_a_readable_diff(tmp_path):
    for path in EXAMPLES.glob("spam-scams.*"):
        shutil.copy(path, tmp_path)
    policy = tmp_path / "spam-scams.yaml"
    text = policy.read_text()
    broken = text.replace(
        "expect: {action: review, queue: spam, rules: [buy-engagement]}",
        "expect: {action: block, queue: scam, rules: [crypto-doubling]}",
    )
    assert broken != text
    policy.write_text(broken)
    result = runner.invoke(app, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAIL spam-scams: spam text goes to review" in result.output
    assert "action: expected block, got review" in result.output
    assert "queue: expected scam, got spam" in result.output
    assert (
        "rules: expected [crypto-doubling], got [buy-engagement] "
        "(missing crypto-doubling; unexpected buy-engagement)"
    ) in result.output
    assert "1 failed" in result.output


def test_companion_tests_file_runs(tmp_path, write_policy):
    write_policy("rules:\n  - id: r\n    when: text == 'x'\n    action: block\n", name="p.yaml")
    (tmp_path / "p.tests.yaml").write_text(
        "policy: p\ntests:\n  - name: x is blocked\n    post: {id: '1', text: x}\n"
        "    expect: {action: review}\n"
    )
    result = runner.invoke(app, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAIL p: x is blocked" in result.output and "action: expected review, got block" in (
        result.output
    )


def test_invalid_policy_makes_test_fail(tmp_path):
    (tmp_path / "p.yaml").write_text("id: p\nversion: 1\nrules: 3\n")
    result = runner.invoke(app, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 1 and "p.yaml:3:8: rules: value should be a valid list" in (
        result.output
    )


def test_schema_command_prints_the_policy_schema():
    result = runner.invoke(app, ["schema", "policy"])
    assert result.exit_code == 0
    assert '"additionalProperties": false' in result.stdout and '"when"' in result.stdout


@pytest.mark.parametrize("command", ["check", "test"])
def test_a_directory_without_policy_files_is_one_line_and_exit_one(tmp_path, command):
    (tmp_path / "notes.txt").write_text("no policies here\n")
    (tmp_path / "p.tests.yaml").write_text("tests: []\n")
    result = runner.invoke(app, ["policy", command, str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == f"{tmp_path}: no policy files (*.yaml, *.yml) found\n"


@pytest.mark.parametrize("command", ["check", "test"])
def test_a_path_that_does_not_exist_is_one_line_and_exit_one(tmp_path, command):
    missing = tmp_path / "nope"
    result = runner.invoke(app, ["policy", command, str(missing)])
    assert result.exit_code == 1
    assert result.output == f"{missing}: no such file or directory\n"


def test_an_empty_directory_among_good_ones_still_fails_check(tmp_path, write_policy):
    good = write_policy("rules: []\n", name="good.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["policy", "check", str(good), str(empty)])
    assert result.exit_code == 1
    assert result.stdout == f"{empty}: no policy files (*.yaml, *.yml) found\n"


def test_check_types_post_truncated_as_a_bool(write_policy):
    rule = "rules:\n  - id: cut\n    when: {}\n    action: review\n"
    good = write_policy(rule.format("post.truncated && !post.meta.trusted"), name="good.yaml")
    bad = write_policy(rule.format("post.truncated == 1"), name="bad.yaml")
    assert runner.invoke(app, ["policy", "check", str(good)]).exit_code == 0
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == f"{bad}:13:26: type error: '==' compares a bool with an int\n"


def test_check_refuses_one_id_in_two_files_naming_both_id_positions(tmp_path, write_policy):
    first = write_policy("rules: []\n", name="a.yaml", id="community")
    second = write_policy("rules: []\n", name="b.yaml", id="community")
    expected = (
        f"{second}:1:1: active policy 'community' is already defined at {first}:1:1; "
        "one active policy per id\n"
    )
    for args in ([str(tmp_path)], [str(first), str(second)]):
        result = runner.invoke(app, ["policy", "check", *args])
        assert result.exit_code == 1
        assert result.stdout == expected
        assert f"{first}: ok" in result.stderr and f"{second}: ok" not in result.stderr


def test_check_takes_one_id_in_two_directories_and_a_shadow_of_it(tmp_path, write_policy):
    for name in ("prod", "staging"):
        (tmp_path / name).mkdir()
        write_policy("rules: []\n", id="community", directory=tmp_path / name)
    write_policy(
        "rules: []\n", name="next.yaml", id="community", mode="shadow", directory=tmp_path / "prod"
    )
    result = runner.invoke(app, ["policy", "check", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_check_refuses_bank_names_that_bank_add_refuses(tmp_path, write_policy):
    path = write_policy(
        'id: p\nversion: 1\nsignals:\n  banks: ["Known Bad!", ../x, known-bad]\nrules: []\n',
        header=False,
    )
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    rule = "is not allowed: use lower-case letters, digits and dashes"
    assert result.stdout.splitlines() == [
        f"{path}:4:11: signals.banks[0]: bank name 'Known Bad!' {rule}, starting with a letter "
        "or digit (e.g. 'known-scams')",
        f"{path}:4:25: signals.banks[1]: bank name '../x' {rule}, starting with a letter "
        "or digit (e.g. 'known-scams')",
    ]
