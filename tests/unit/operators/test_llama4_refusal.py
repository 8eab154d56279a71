"""Llama 4 (Llama Guard 4's family) is refused by the VLM path in one line, from its config
alone, before any processor or weight loads; the line points to the `llamaguard:` signal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from operators.exceptions import UnsupportedModel
from operators.loading import load_vlm
from operators.spec import ModelSpec


@pytest.fixture(scope="module")
def llama4_dir(tmp_path_factory):
    """A Llama 4 checkpoint directory with a config and nothing else: refusal must need no more."""
    from transformers import Llama4Config

    directory = tmp_path_factory.mktemp("llama4")
    text = {"hidden_size": 64, "num_hidden_layers": 2, "moe_layers": [], "vocab_size": 600}
    Llama4Config(text_config=text).save_pretrained(directory)
    return directory


def test_loading_refuses_llama4_naming_the_reason(llama4_dir):
    with pytest.raises(UnsupportedModel, match=r"^llama4 \(Llama 4, e\.g\. Llama Guard 4\)"):
        load_vlm(ModelSpec(name_or_path=str(llama4_dir), device="cpu"))


def test_vlmod_moderate_refuses_llama4_in_one_line(llama4_dir, tmp_path):
    policy = tmp_path / "policies"
    policy.mkdir()
    (policy / "p.yaml").write_text(
        "id: p\nversion: 1\nsignals:\n  labels: {gun: a gun}\nqueues: {q: t.q}\n"
        "rules:\n  - {id: gun, when: labels.gun > 0.5, action: review, queue: q}\n"
    )
    args = ["moderate", "--policy", str(policy), "--model", str(llama4_dir), "--text", "hi"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    [line] = result.stderr.strip().splitlines()
    assert "llama4" in line and "Llama Guard" in line and "`llamaguard:` signal" in line
