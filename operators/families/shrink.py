"""How twins shrink a published config: small widths and depths, the real geometry kept."""

from __future__ import annotations

from typing import Any

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
VISION_HEADS = 2
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
# Fields that are about the architecture, not sizes or bookkeeping of the published file.
KEPT = (
    *("model_type", "image_size", "patch_size", "hidden_act"),
    *("rms_norm_eps", "rope_theta", "max_position_embeddings"),
    *("sliding_window", "sliding_window_pattern", "rope_local_base_freq", "rope_scaling"),
)


def keep(config: dict[str, Any]) -> dict[str, Any]:
    """The architecture fields of a published sub-config."""
    return {key: config[key] for key in KEPT if key in config}


def token_ids(tokenizer: Any) -> dict[str, int]:
    """The pad, bos and eos ids of the twin's tokenizer, for the text config."""
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def small_vision(real: dict[str, Any]) -> dict[str, Any]:
    """The published vision config, shrunk."""
    return {**keep(real["vision_config"]), **VISION, "num_attention_heads": VISION_HEADS}


def small_text(real: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """The published text config, shrunk, over the twin's vocabulary."""
    text = {**keep(real["text_config"]), **TEXT, **token_ids(tokenizer)}
    text.update(vocab_size=len(tokenizer), tie_word_embeddings=True, initializer_range=0.2)
    return text


_NOT_KWARGS = ("image_processor_type", "processor_class", "image_seq_length")


def image_settings(files: dict[str, Any]) -> dict[str, Any]:
    """The published image processor settings that are constructor arguments."""
    return {
        key: value
        for key, value in files["preprocessor_config.json"].items()
        if key not in _NOT_KWARGS
    }


def chat_template(files: dict[str, Any]) -> str:
    """The published chat template."""
    return str(files["chat_template.json"]["chat_template"])
