"""make_tiny / ensure_tiny: offline, seeded, loadable through the Auto classes; the CLI wrapper."""

from __future__ import annotations

import hashlib

import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor
from typer.testing import CliRunner

from cli.main import app
from operators.tiny import ensure_tiny, make_tiny

SPECIAL_TOKENS = {
    "smolvlm": ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"],
    "llava": ["<image>"],
}
MODEL_CLASSES = {
    "smolvlm": "Idefics3ForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
}


@pytest.mark.parametrize("arch", ["smolvlm", "llava"])
def test_auto_classes_load_it_back(tiny_dirs, arch):
    processor = AutoProcessor.from_pretrained(tiny_dirs[arch])
    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs[arch])
    assert type(model).__name__ == MODEL_CLASSES[arch]
    assert processor.chat_template
    vocab = processor.tokenizer.get_vocab()
    for token in SPECIAL_TOKENS[arch]:
        assert token in vocab
        assert len(processor.tokenizer.encode(token, add_special_tokens=False)) == 1
    assert model.config.image_token_id == vocab["<image>"]
    assert sum(p.numel() for p in model.parameters()) < 500_000


def _weights_digest(directory):
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


def test_seeded_and_deterministic(tmp_path, tiny_dirs):
    again = make_tiny(tmp_path / "again", arch="smolvlm", seed=0)
    other = make_tiny(tmp_path / "other", arch="smolvlm", seed=1)
    assert _weights_digest(again) == _weights_digest(tiny_dirs["smolvlm"])
    assert _weights_digest(other) != _weights_digest(again)
    assert (again / "tokenizer.json").read_bytes() == (
        tiny_dirs["smolvlm"] / "tokenizer.json"
    ).read_bytes()


def test_ensure_tiny_builds_once_under_env_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMOD_CACHE_DIR", str(tmp_path))
    first = ensure_tiny("llava")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert first.parent == tmp_path
    assert ensure_tiny("llava") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def test_unknown_arch_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        make_tiny(tmp_path, arch="gpt2")


def test_cli_make_tiny(tmp_path):
    result = CliRunner().invoke(app, ["model", "make-tiny", str(tmp_path / "m"), "--arch", "llava"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "config.json").is_file()


def test_cli_rejects_unknown_arch(tmp_path):
    result = CliRunner().invoke(app, ["model", "make-tiny", str(tmp_path), "--arch", "qwen9"])
    assert result.exit_code == 2
