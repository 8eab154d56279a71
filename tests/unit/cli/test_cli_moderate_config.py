"""`vlmod moderate --config FILE`: one post through the pipeline's own models (a cascade
included), specialists and limits, with the command line's options taking precedence."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from contracts.records import Verdict

POLICY = """\
id: cascade
version: 1
signals:
  questions:
    weapon: "Is there a weapon in this image?"
    weapon_large: {ask: "Is there a weapon in this image?", model: large}
queues: {weapons: t.weapons}
rules:
  - id: asks-the-large-model
    when: answers.weapon >= 0.0 && answers.weapon_large >= 0.0
    action: review
    queue: weapons
default: allow
"""
CONFIG = """\
policy_dir: {policies}
model: {{name_or_path: "tiny:smolvlm", device: cpu, cost: small}}
models:
  large: {{name_or_path: "tiny:llava", device: cpu, cost: large}}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("moderate-config")
    policies = root / "policies"
    policies.mkdir()
    (policies / "cascade.yaml").write_text(POLICY)
    config = root / "pipeline.yaml"
    config.write_text(CONFIG.format(policies=policies))
    image = root / "photo.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)
    return config, policies, image


def vlmod(*args: str):
    result = CliRunner().invoke(app, ["moderate", *args])
    assert "Traceback" not in result.output + result.stderr
    return result


def test_the_configs_second_model_answers_the_questions_that_name_it(files):
    config, _, image = files
    result = vlmod("--config", str(config), "--text", "a knife", "--image", str(image))
    assert result.exit_code == 0, result.stderr
    verdict = Verdict.model_validate(json.loads(result.stdout))
    assert verdict.action.value == "review"
    assert [rule.id for rule in verdict.matched_rules] == ["asks-the-large-model"]
    names = {name: ref.name.rsplit("/", 1)[-1] for name, ref in verdict.models.items()}
    assert names == {"default": "tiny-smolvlm", "large": "tiny-llava"}


def test_without_the_config_a_policy_naming_its_model_is_refused_at_its_position(files):
    _, policies, _ = files
    result = vlmod("--policy", str(policies), "--model", "noop", "--text", "hi")
    assert result.exit_code == 2
    assert "cascade.yaml:6:68: signals.questions.weapon_large.model: unknown model 'large'" in (
        result.stderr
    )


def test_the_command_lines_model_and_engine_take_the_place_of_the_configs(files):
    config, _, image = files
    args = ["--config", str(config), "--model", "tiny:llava", "--engine", "plain"]
    args += ["--image", str(image)]
    result = vlmod(*args)
    assert result.exit_code == 0, result.stderr
    verdict = Verdict.model_validate(json.loads(result.stdout))
    assert verdict.models["default"].name.endswith("tiny-llava")
    assert verdict.models["default"].engine == "plain"
    assert verdict.models["large"].engine != "plain"  # --engine is the default model's


def test_neither_policies_nor_a_config_is_one_error_line():
    result = vlmod("--text", "hi")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: name the policies: --policy DIR, or --config FILE with a policy_dir"
    ]
