"""`vlmod moderate`, `vlmod run` and `vlmod --help` in-process, on the `noop` signal source."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.records import Verdict

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
SPAM_TEXT = "Buy followers now"  # spam-scams `buy-engagement`: a text-only rule, review at 60
BROKEN_POLICY = """\
id: broken
version: 1
rules:
  - id: r
    when: text.matches(
    action: nuke
default: allow
bogus: 1
"""
BAD_CONFIG = """\
kafka:
  bootstrap_servers: localhost:9092
bogus_key: 1
pool:
  max_in_flight_batches: lots
"""


def vlmod(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output + result.stderr
    return result


def moderate(*args: str):
    return vlmod("moderate", "--policy", str(EXAMPLES), "--model", "noop", *args)


def check_one_line_error(result, starts_with: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(starts_with), line


def test_moderate_prints_the_most_severe_verdict_of_the_example_policies():
    result = moderate("--text", SPAM_TEXT, "--id", "p1")
    assert result.exit_code == 0, result.stderr
    verdict = Verdict.model_validate_json(result.stdout)
    assert (verdict.post_id, verdict.action, verdict.queue) == ("p1", "review", "spam")
    assert verdict.policy.id == "spam-scams"
    assert "buy-engagement" in [rule.id for rule in verdict.matched_rules]
    assert verdict.model is not None and verdict.model.name == "noop", "no model was loaded"
    assert result.stderr == ""


def test_moderate_through_the_console_script():
    vlmod_script = shutil.which("vlmod")
    if vlmod_script is None:
        pytest.skip("the vlmod console script is not installed")
    args = ["moderate", "--policy", str(EXAMPLES), "--model", "noop", "--text", SPAM_TEXT]
    result = subprocess.run(
        [vlmod_script, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert Verdict.model_validate_json(result.stdout).action == "review"


def test_moderate_a_missing_image_is_one_error_line(tmp_path):
    missing = tmp_path / "nope.png"
    check_one_line_error(moderate("--image", str(missing)), f"error: image not found: {missing}")


def test_moderate_meta_without_a_value_is_one_error_line():
    check_one_line_error(moderate("--meta", "novalue"), "error: --meta wants KEY=VALUE")


def test_moderate_with_a_broken_policy_prints_every_problem_at_its_position(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_POLICY)
    result = vlmod("moderate", "--policy", str(tmp_path), "--model", "noop", "--text", "hi")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 3, "every problem is reported, not just the first"
    for line in lines:
        assert re.match(rf"{re.escape(str(broken))}:\d+:\d+: \S", line), line
    positions = [line.removeprefix(f"{broken}:").split(": ")[0] for line in lines]
    assert positions == ["5:23", "6:13", "8:1"]


def test_run_with_a_bad_config_reports_each_problem_and_never_starts_ray(tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text(BAD_CONFIG)
    result = vlmod("run", "--config", str(config))
    # conftest makes ray.init raise: reaching it would exit 1 with a RuntimeError, not exit 2
    assert result.exit_code == 2, f"{result.exception!r}\n{result.output}"
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines() == [
        f"{config}:3:1: unknown key 'bogus_key'; expected one of: kafka, consumer_group, "
        "consumer_overrides, topics, redis_url, cache_ttl_s, model, models, policy_dir, "
        "review_embeddings, pool, retry, images, posts, telemetry, producers, api, sinks, "
        "specialists",
        f"{config}:5:26: pool.max_in_flight_batches: value should be a valid integer, "
        "unable to parse string as an integer",
    ]
    assert "moderating" not in result.stdout


def test_run_with_a_missing_config_is_one_error_line(tmp_path):
    check_one_line_error(vlmod("run", "--config", str(tmp_path / "none.yaml")), "error: ")


def test_help_lists_every_command():
    result = vlmod("--help")
    assert result.exit_code == 0
    listed = re.findall(r"^\W*(\w+)\s{2,}", result.stdout, flags=re.MULTILINE)
    assert {"demo", "run", "moderate", "schema", "policy", "model"} <= set(listed)
