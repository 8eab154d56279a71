"""load_vlm: the Auto-class seam, device/dtype resolution, and the one-sentence failure."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from operators.exceptions import ModelLoadError
from operators.loading import load_vlm, resolve_device, resolve_dtype
from operators.spec import ModelSpec
from tests.unit.operators.one_image import ask


def test_loaded_vlm_exposes_what_tasks_need(vlm):
    assert vlm.tokenizer.padding_side == "left"
    assert vlm.yes_ids and vlm.no_ids and not set(vlm.yes_ids) & set(vlm.no_ids)
    assert "<image>" in vlm.layout.prefix
    assert vlm.layout.suffix.rstrip().endswith(":")
    assert vlm.vision_tower is not None
    assert vlm.eos_ids


def test_missing_local_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        load_vlm(ModelSpec(name_or_path=str(tmp_path / "nope")))
    reason = caught.value.reason
    assert "vlmod model make-tiny" in reason
    assert reason.count(". ") == 0  # one sentence


def test_hub_id_absent_offline_says_what_to_do():
    spec = ModelSpec(name_or_path="HuggingFaceTB/SmolVLM-256M-Instruct", local_files_only=True)
    with pytest.raises(ModelLoadError) as caught:
        load_vlm(spec)
    assert "hf download HuggingFaceTB/SmolVLM-256M-Instruct" in caught.value.reason
    assert caught.value.stage == "infer"


def test_hub_unreachable_fails_fast_without_retries(monkeypatch):
    from operators import loading

    monkeypatch.setattr(loading, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(ModelLoadError, match="hub is unreachable"):
        load_vlm(ModelSpec(name_or_path="HuggingFaceTB/SmolVLM-256M-Instruct", revision="main"))


def test_spec_options_reach_from_pretrained(tiny_dirs):
    spec = ModelSpec(
        name_or_path=str(tiny_dirs["llava"]), dtype="bfloat16", attn_implementation="eager"
    )
    vlm = load_vlm(spec)
    assert vlm.model.dtype == torch.bfloat16
    assert vlm.model.config._attn_implementation == "eager"
    assert vlm.name == str(tiny_dirs["llava"])


def test_bfloat16_tasks_still_give_probabilities(tiny_dirs, images):
    from operators.tasks import VlmOperator

    vlm = load_vlm(ModelSpec(name_or_path=str(tiny_dirs["smolvlm"]), dtype="bfloat16"))
    [answers] = ask(VlmOperator(vlm), images[:1], {"q": "Is it red?"})
    assert 0.0 <= answers["q"] <= 1.0


def test_mrope_families_refused_rather_than_wrong():
    from operators.exceptions import UnsupportedModel
    from operators.loading import refuse_unsupported_family

    with pytest.raises(UnsupportedModel, match="multimodal rotary"):
        refuse_unsupported_family("qwen2_vl")
    refuse_unsupported_family("idefics3")


def test_device_and_dtype_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_dtype("float7", "cpu")


def test_spec_validates():
    with pytest.raises(ValueError, match="max_new_tokens"):
        ModelSpec(name_or_path="x", max_new_tokens=0)
    with pytest.raises(ValueError, match=r"\{label\}"):
        ModelSpec(name_or_path="x", label_question="Is it?")
    with pytest.raises(ValueError, match=r"post_label_question .*\{label\}"):
        ModelSpec(name_or_path="x", post_label_question="Is it?")
    with pytest.raises(ValueError, match="max_text_tokens"):
        ModelSpec(name_or_path="x", max_text_tokens=0)


def test_operators_import_without_service_packages():
    code = (
        "import sys\n"
        "for name in ('ray', 'kafka', 'redis'): sys.modules[name] = None\n"
        "import operators.tasks, operators.cache, operators.images, operators.tiny\n"
        "import operators.loading, operators.forward, operators.fetch, operators.jobs\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_a_missing_optional_package_is_named_in_one_line(tiny_dirs, monkeypatch):
    import transformers

    message = (
        "\nQwen2VLVideoProcessor requires the Torchvision library but it was not found in your "
        "environment. You can install it with pip:\n`pip install torchvision`. Please note that "
        "you may need to restart your runtime after installation.\n"
    )

    def needs_torchvision(*args, **kwargs):
        raise ImportError(message)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", needs_torchvision)
    with pytest.raises(ModelLoadError) as caught:
        load_vlm(ModelSpec(name_or_path=str(tiny_dirs["llava"])))
    reason = caught.value.reason
    assert "\n" not in reason
    assert "needs Torchvision, which is not installed" in reason
    assert "`pip install 'vlm-moderation[families]'`" in reason


def test_a_chat_template_that_fails_to_render_is_one_line(tiny_dirs, tmp_path):
    import shutil

    from operators.exceptions import UnsupportedModel

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dirs["llava"], broken)
    for name in ("chat_template.jinja", "chat_template.json"):
        path = broken / name
        if path.exists():
            text = path.read_text().replace("{%", "{% if %}{%", 1)  # a Jinja syntax error
            path.write_text(text)
    with pytest.raises(UnsupportedModel) as caught:
        load_vlm(ModelSpec(name_or_path=str(broken)))
    reason = caught.value.reason
    assert "\n" not in reason and "chat template fails to render" in reason
    assert "TemplateSyntaxError" in reason


def test_a_checkpoint_that_is_not_image_text_to_text_is_one_line(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from operators.exceptions import UnsupportedModel
    from operators.tokenizer import build_tokenizer

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    build_tokenizer([], bos="<s>", eos="</s>", pad="<pad>", unk="<unk>").save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModel) as caught:
        load_vlm(ModelSpec(name_or_path=str(tmp_path), device="cpu"))
    reason = caught.value.reason
    assert "\n" not in reason and "is not an image-text-to-text checkpoint" in reason
