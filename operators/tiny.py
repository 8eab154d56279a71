"""Random-weight checkpoints of real VLM architectures, built offline and seeded.

`make_tiny` writes a directory that `AutoProcessor` and `AutoModelForImageTextToText` load back
exactly as they load a hub checkpoint: config from transformers' own classes, a byte-level BPE
tokenizer trained locally with `tokenizers` (with the family's special image tokens), a locally
configured image processor and the family's chat template.

>>> from operators.tiny import ensure_tiny
>>> path = ensure_tiny("smolvlm")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operators.random_checkpoint import build_random_model, checkpoint_directory, save_checkpoint
from operators.tokenizer import build_tokenizer

ARCHES = ("smolvlm", "llava")
SHAPES = ("tiny", "smolvlm-256m")

SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
SMOLVLM_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)
LLAVA_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")


@dataclass(frozen=True)
class _Size:
    """Widths and depths of one random model."""

    vision_hidden: int
    vision_layers: int
    vision_heads: int
    image_size: int
    patch_size: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    vocab_size: int | None  # None: the tokenizer's size


_SIZES = {
    "tiny": _Size(32, 1, 2, 64, 8, 64, 128, 2, 4, 2, None),
    # HuggingFaceTB/SmolVLM-256M-Instruct: SigLIP B/16 at 512 px, 135M-parameter Llama text tower.
    "smolvlm-256m": _Size(768, 12, 12, 512, 16, 576, 1536, 30, 9, 3, 49280),
}


def default_cache_dir() -> Path:
    """Where `ensure_tiny` keeps its checkpoints: $VLMOD_CACHE_DIR or ~/.cache/vlmod."""
    root = os.environ.get("VLMOD_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "vlmod"


def ensure_tiny(arch: str = "smolvlm", cache_dir: Path | str | None = None) -> Path:
    """Return the tiny checkpoint for `arch`, building it on first use."""
    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    directory = directory / f"tiny-{arch}"
    if (directory / "config.json").is_file() and (directory / "model.safetensors").is_file():
        return directory
    return make_tiny(directory, arch=arch)


def make_tiny(
    directory: Path | str,
    arch: str = "smolvlm",
    seed: int = 0,
    shape: str = "tiny",
    like: str | None = None,
) -> Path:
    """Write a seeded random-weight checkpoint of `arch` (at `shape` size) into `directory`.

    With `like` (a published checkpoint id, see `operators.twins.TWINS`) it writes that
    checkpoint's tiny twin instead: its real processor, template and tokens, small widths.
    """
    if like is not None:
        from operators.twins import make_twin

        return make_twin(directory, like, seed=seed)
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    directory = checkpoint_directory(Path(directory))
    size = _SIZES[shape]
    processor = _build_processor(arch, size)
    model = build_random_model(_build_config(arch, size, processor.tokenizer), processor, seed)
    save_checkpoint(directory, model, processor)
    return directory


def _build_processor(arch: str, size: _Size) -> Any:
    if arch == "smolvlm":
        return _smolvlm_processor(size)
    return _llava_processor(size)


def _smolvlm_processor(size: _Size) -> Any:
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil,
    )

    tokenizer = build_tokenizer(
        SMOLVLM_SPECIALS, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>"
    )
    edge = {"longest_edge": size.image_size}
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False, size=edge, max_image_size=edge
    )
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=_smolvlm_image_seq_len(size),
        chat_template=SMOLVLM_TEMPLATE,
    )


def _smolvlm_image_seq_len(size: _Size) -> int:
    scale_factor = 4 if size.image_size >= 512 else 2
    return (size.image_size // size.patch_size) ** 2 // scale_factor**2


def _llava_processor(size: _Size) -> Any:
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = build_tokenizer(LLAVA_SPECIALS, bos="<s>", eos="</s>", pad="<pad>", unk="<unk>")
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size.image_size},
        crop_size={"height": size.image_size, "width": size.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=size.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )


def _text_config(size: _Size, tokenizer: Any) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "hidden_size": size.text_hidden,
        "intermediate_size": size.text_intermediate,
        "num_hidden_layers": size.text_layers,
        "num_attention_heads": size.text_heads,
        "num_key_value_heads": size.text_kv_heads,
        "vocab_size": size.vocab_size or len(tokenizer),
        "max_position_embeddings": 2048 if size.vocab_size is None else 8192,
        "rms_norm_eps": 1e-5,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
        # Wider than the default 0.02 so random logits differ visibly between inputs.
        "initializer_range": 0.2 if size.vocab_size is None else 0.02,
    }


def _vision_config(size: _Size, model_type: str) -> dict[str, Any]:
    return {
        "model_type": model_type,
        "hidden_size": size.vision_hidden,
        "intermediate_size": size.vision_hidden * 4,
        "num_hidden_layers": size.vision_layers,
        "num_attention_heads": size.vision_heads,
        "image_size": size.image_size,
        "patch_size": size.patch_size,
    }


def _build_config(arch: str, size: _Size, tokenizer: Any) -> Any:
    from transformers import Idefics3Config, LlavaConfig

    text = _text_config(size, tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if arch == "smolvlm":
        return Idefics3Config(
            vision_config=_vision_config(size, "idefics3_vision"),
            text_config=text,
            scale_factor=4 if size.image_size >= 512 else 2,
            image_token_id=image_token_id,
            tie_word_embeddings=True,
        )
    return LlavaConfig(
        vision_config={**_vision_config(size, "clip_vision_model"), "projection_dim": 32},
        text_config=text,
        image_token_index=image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
