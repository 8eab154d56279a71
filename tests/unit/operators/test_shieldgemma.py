"""ShieldGemma 2 as the `shieldgemma:` signal, on its twin (google/shieldgemma-2-4b-it's
processing, small random weights): every classifier weight loads, `shieldgemma.<policy>` is
what the processor and `ShieldGemma2ForImageClassification` give (the max over the images), a
text-only post has no value and says why, and the VLM path refuses the checkpoint in one line."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.producers import ProducerContext, ProducerJob, ProducerOutput, Unavailable
from contracts.records import Post
from operators.guards.producers import NO_IMAGES, GuardLoading, GuardRequest, ShieldGemmaSignals
from operators.guards.shieldgemma import GuardLoadError, load_shieldgemma
from operators.specialists.render import smooth_photo
from operators.twins import TWINS, VLM_TWINS

SHIELDGEMMA = "google/shieldgemma-2-4b-it"
WEAPONS = "No weapons: the image shall not show a gun, a knife or any other weapon."
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def twin_dir(twins) -> Path:
    return twins.directory(SHIELDGEMMA)


@pytest.fixture(scope="module")
def reference(twin_dir):
    """The checkpoint as transformers documents it: its processor and classifier, none of ours."""
    from transformers import AutoProcessor, ShieldGemma2ForImageClassification

    processor = AutoProcessor.from_pretrained(twin_dir, use_fast=False)
    model = ShieldGemma2ForImageClassification.from_pretrained(twin_dir).eval()
    return processor, model


def p_yes(reference, image_bytes: bytes, **policy) -> float:
    """P(Yes) of one image under one policy, straight from the processor and the forward."""
    import torch
    from PIL import Image

    processor, model = reference
    inputs = processor(images=[Image.open(io.BytesIO(image_bytes))], return_tensors="pt", **policy)
    with torch.inference_mode():
        return float(model(**inputs).probabilities[0, 0])


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    smooth_photo(*size, seed).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def producer() -> ShieldGemmaSignals:
    """One producer for the module: it loads the twin once, as a consumer process would."""
    signals = ShieldGemmaSignals()
    signals.bind(ProducerContext(settings={"shieldgemma": GuardLoading(device="cpu")}))
    return signals


def values(producer: ShieldGemmaSignals, images: tuple[bytes, ...], requests) -> ProducerOutput:
    [output] = producer.compute([ProducerJob(Post(id="p"), frozenset(requests), images)])
    assert isinstance(output, ProducerOutput), output
    return output


def test_the_twin_is_a_guard_kept_out_of_the_vlm_twins():
    assert SHIELDGEMMA in TWINS and SHIELDGEMMA not in VLM_TWINS


def test_every_weight_of_the_twin_loads(twin_dir):
    from transformers import ShieldGemma2ForImageClassification

    model, info = ShieldGemma2ForImageClassification.from_pretrained(
        twin_dir, output_loading_info=True
    )
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert info["mismatched_keys"] == set() and info["error_msgs"] == []
    tokenizer_ids = json.loads((twin_dir / "config.json").read_text())
    assert (model.yes_token_index, model.no_token_index) == (
        tokenizer_ids["yes_token_index"],
        tokenizer_ids["no_token_index"],
    )


def test_shieldgemma_dangerous_is_the_classifiers_p_yes(twin_dir, reference, producer):
    image = photo(1)
    request = GuardRequest(str(twin_dir), "dangerous")
    got = values(producer, (image,), [request]).values[request]
    assert got == pytest.approx(p_yes(reference, image, policies=["dangerous"]), abs=1e-6)


def test_a_post_gets_the_max_over_its_images(twin_dir, reference, producer):
    images = (photo(2), photo(3, (200, 400)))
    request = GuardRequest(str(twin_dir), "violence")
    output = values(producer, images, [request])
    each = [p_yes(reference, image, policies=["violence"]) for image in images]
    assert each[0] != pytest.approx(each[1], abs=1e-6)  # else the max would show nothing
    assert output.values[request] == pytest.approx(max(each), abs=1e-6)
    assert output.evidence["images"]["violence"] == [round(p, 4) for p in each]


def test_a_custom_policy_text_is_the_processors_custom_policy(twin_dir, reference, producer):
    image = photo(4)
    builtin, custom = (
        GuardRequest(str(twin_dir), "sexual"),
        GuardRequest(str(twin_dir), "weapons", WEAPONS),
    )
    output = values(producer, (image,), [builtin, custom])
    want = p_yes(reference, image, policies=["weapons"], custom_policies={"weapons": WEAPONS})
    assert output.values[custom] == pytest.approx(want, abs=1e-6)
    assert output.values[builtin] == pytest.approx(
        p_yes(reference, image, policies=["sexual"]), abs=1e-6
    )


def test_a_text_only_post_has_no_value_and_says_why(twin_dir, producer):
    request = GuardRequest(str(twin_dir), "dangerous")
    assert values(producer, (), [request]).values[request] == Unavailable(NO_IMAGES)


def test_a_checkpoint_that_is_not_shieldgemma_is_refused_in_one_line(tmp_path):
    from transformers import Gemma3TextConfig

    Gemma3TextConfig().save_pretrained(tmp_path)
    with pytest.raises(GuardLoadError, match="is a gemma3_text checkpoint, not ShieldGemma 2"):
        load_shieldgemma(str(tmp_path))


def test_the_package_declares_the_producer():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["vlmod.producers"]["shieldgemma"] == (
        "operators.guards.producers:ShieldGemmaSignals"
    )


@pytest.fixture
def installed(monkeypatch):
    """The registry as an install of this tree has it (the venv may predate the entry point)."""
    import contracts.registry

    found = contracts.registry.installed_producers()
    if all(make.__name__ != "ShieldGemmaSignals" for make in found):
        found = (*found, ShieldGemmaSignals)
    monkeypatch.setattr(contracts.registry, "installed_producers", lambda: found)


def policy_dir(tmp_path: Path, model: str, policies: str) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "guard.yaml").write_text(
        f"""id: image-guard
version: 1
signals:
  shieldgemma:
    model: {model}
    policies: {policies}
queues:
  safety: trust.review.safety
rules:
  - id: dangerous-image
    when: shieldgemma.dangerous > 0.0
    action: review
    queue: safety
"""
    )
    return directory


def test_vlmod_moderate_reads_shieldgemma_dangerous(twin_dir, tmp_path, installed):
    image = tmp_path / "photo.png"
    image.write_bytes(photo(1))
    policies = policy_dir(tmp_path, str(twin_dir), "[dangerous]")
    runner = CliRunner()
    args = ["moderate", "--policy", str(policies), "--model", "noop"]
    judged = runner.invoke(app, [*args, "--image", str(image)])
    assert judged.exit_code == 0, judged.output
    verdict = json.loads(judged.stdout)
    [rule] = verdict["matched_rules"]
    assert (verdict["action"], rule["id"]) == ("review", "dangerous-image")
    assert rule["evidence"]["shieldgemma.dangerous"] > 0.0
    [run] = verdict["producers"]
    assert run["name"] == "shieldgemma" and run["evidence"]["images"]["dangerous"]
    text_only = json.loads(runner.invoke(app, [*args, "--text", "hello"]).stdout)
    assert text_only["action"] == "allow"
    [error] = text_only["rule_errors"]
    assert NO_IMAGES in error["error"]


def test_a_policy_naming_no_builtin_is_refused_at_load(twin_dir, tmp_path, installed):
    policies = policy_dir(tmp_path, str(twin_dir), "[dangerous, drugs]")
    result = CliRunner().invoke(app, ["policy", "check", str(policies)])
    assert result.exit_code != 0
    [line] = result.output.strip().splitlines()  # the bad name only, no knock-on errors
    assert "guard.yaml:6:27: signals.shieldgemma.policies[1]" in line
    assert "'dangerous', 'sexual' or 'violence'" in line


def test_the_vlm_path_refuses_shieldgemma_in_one_line(twin_dir, tmp_path, installed):
    policies = policy_dir(tmp_path, str(twin_dir), "[dangerous]")
    args = ["moderate", "--policy", str(policies), "--model", str(twin_dir), "--text", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "shieldgemma2 is a ShieldGemma 2 image classifier" in line
    assert "`shieldgemma:` signal" in line
