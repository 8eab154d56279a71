"""Tiny twins of published checkpoints: their real processing, random small weights.

A twin keeps everything that decides what the model is shown - the published image processor
settings (SmolVLM's tiling into 512-pixel tiles plus a global image), the processor's image
sequence length, the chat template and the special tokens, and the vision tower's patch and
tile geometry - and shrinks only widths, depths and the vocabulary (a locally trained tokenizer
that holds the real special tokens). The published small text files live in
`operators/checkpoint_files/<org>__<name>/` (see each `SOURCE.md`); no weights are involved.

>>> from operators.twins import make_twin
>>> make_twin("/tmp/smolvlm-twin", "HuggingFaceTB/SmolVLM-256M-Instruct")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from operators.random_checkpoint import build_random_model, checkpoint_directory, save_checkpoint
from operators.tokenizer import build_tokenizer

# Which architecture builder each known checkpoint goes through. Explicit, not discovered.
TWINS = {
    "HuggingFaceTB/SmolVLM-256M-Instruct": "smolvlm",
    "llava-hf/llava-1.5-7b-hf": "llava",
    "google/gemma-3-4b-it": "gemma3",
}
# Shrunk sizes; the geometry (image_size, patch_size, scale_factor) always stays real.
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
_NOT_KWARGS = ("image_processor_type", "processor_class", "image_seq_length")
_NAMED_TOKENS = ("image_token", "boi_token", "eoi_token")


def published_files_dir() -> Path:
    """Where the published configs live: $VLMOD_TWIN_FILES, else the package's own copies."""
    root = os.environ.get("VLMOD_TWIN_FILES")
    if root:
        return Path(root)
    return Path(__file__).resolve().parent / "checkpoint_files"


def published_files(checkpoint: str) -> dict[str, Any]:
    """The published JSON files of `checkpoint`, by file name."""
    if checkpoint not in TWINS:
        raise ValueError(f"no twin of {checkpoint!r}; known: {', '.join(TWINS)}")
    directory = published_files_dir() / checkpoint.replace("/", "__")
    if not directory.is_dir():
        raise FileNotFoundError(f"the published files of {checkpoint} are missing: {directory}")
    return {path.name: json.loads(path.read_text()) for path in directory.glob("*.json")}


def make_twin(directory: Path | str, checkpoint: str, seed: int = 0) -> Path:
    """Write a seeded random-weight twin of `checkpoint` into `directory`."""
    files = published_files(checkpoint)
    directory = checkpoint_directory(Path(directory))
    processor = build_twin_processor(TWINS[checkpoint], files)
    config = build_twin_config(TWINS[checkpoint], files, processor.tokenizer)
    check_geometry(TWINS[checkpoint], config, processor)
    save_checkpoint(directory, build_random_model(config, processor, seed), processor)
    return directory


def build_twin_processor(arch: str, files: dict[str, Any]) -> Any:
    """The published processor settings around a small tokenizer with the real special tokens."""
    tokenizer = _twin_tokenizer(files)
    settings = {
        key: value
        for key, value in files["preprocessor_config.json"].items()
        if key not in _NOT_KWARGS
    }
    processor_config = files["processor_config.json"]
    template = files["chat_template.json"]["chat_template"]
    if arch == "gemma3":
        from transformers import Gemma3Processor
        from transformers.models.gemma3.image_processing_pil_gemma3 import (
            Gemma3ImageProcessorPil,
        )

        present = {key: value for key, value in settings.items() if value is not None}
        return Gemma3Processor(
            image_processor=Gemma3ImageProcessorPil(**present),
            tokenizer=tokenizer,
            chat_template=template,
            image_seq_length=processor_config["image_seq_length"],
        )
    if arch == "smolvlm":
        from transformers import Idefics3Processor
        from transformers.models.idefics3.image_processing_pil_idefics3 import (
            Idefics3ImageProcessorPil,
        )

        return Idefics3Processor(
            image_processor=Idefics3ImageProcessorPil(**settings),
            tokenizer=tokenizer,
            image_seq_len=processor_config["image_seq_len"],
            chat_template=template,
        )
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return LlavaProcessor(
        image_processor=CLIPImageProcessorPil(**settings),
        tokenizer=tokenizer,
        patch_size=processor_config["patch_size"],
        vision_feature_select_strategy=processor_config["vision_feature_select_strategy"],
        num_additional_image_tokens=processor_config["num_additional_image_tokens"],
        chat_template=template,
    )


def _twin_tokenizer(files: dict[str, Any]) -> Any:
    specials = files["special_tokens_map.json"]
    added = files["tokenizer_config.json"]["added_tokens"]
    return build_tokenizer(
        added,
        bos=specials["bos_token"],
        eos=specials["eos_token"],
        pad=specials["pad_token"],
        unk=specials.get("unk_token"),
        named={key: specials[key] for key in _NAMED_TOKENS if key in specials},
    )


def build_twin_config(arch: str, files: dict[str, Any], tokenizer: Any) -> Any:
    """The published config with widths, depths and vocabulary shrunk; geometry kept."""
    from transformers import Idefics3Config, LlavaConfig

    real = files["config.json"]
    vision = {**_keep(real["vision_config"]), **VISION, "num_attention_heads": VISION_HEADS}
    text = {**_keep(real["text_config"]), **TEXT, **_token_ids(tokenizer)}
    text.update(vocab_size=len(tokenizer), tie_word_embeddings=True, initializer_range=0.2)
    if arch == "gemma3":
        return _gemma3_config(real, vision, text, tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if arch == "smolvlm":
        return Idefics3Config(
            vision_config=vision,
            text_config=text,
            scale_factor=real["scale_factor"],
            image_token_id=image_token_id,
            tie_word_embeddings=True,
        )
    return LlavaConfig(
        vision_config={**vision, "projection_dim": 32},
        text_config=text,
        image_token_index=image_token_id,
        projector_hidden_act=real["projector_hidden_act"],
        vision_feature_select_strategy=real["vision_feature_select_strategy"],
        vision_feature_layer=real["vision_feature_layer"],
        tie_word_embeddings=True,
    )


def _gemma3_config(
    real: dict[str, Any], vision: dict[str, Any], text: dict[str, Any], tokenizer: Any
) -> Any:
    """Gemma 3: its sliding window and layer pattern, local and global rope, image token types."""
    from transformers import Gemma3Config

    text.update(query_pre_attn_scalar=TEXT["head_dim"])  # the published value is the real head dim
    return Gemma3Config(
        vision_config={**vision, "vision_use_head": False},
        text_config=text,
        mm_tokens_per_image=real["mm_tokens_per_image"],
        image_token_index=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        boi_token_index=tokenizer.convert_tokens_to_ids(tokenizer.boi_token),
        eoi_token_index=tokenizer.convert_tokens_to_ids(tokenizer.eoi_token),
        tie_word_embeddings=True,
    )


def _keep(config: dict[str, Any]) -> dict[str, Any]:
    # Fields that are about the architecture, not sizes or bookkeeping of the published file.
    kept = (
        *("model_type", "image_size", "patch_size", "hidden_act"),
        *("rms_norm_eps", "rope_theta", "max_position_embeddings"),
        *("sliding_window", "sliding_window_pattern", "rope_local_base_freq", "rope_scaling"),
    )
    return {key: config[key] for key in kept if key in config}


def _token_ids(tokenizer: Any) -> dict[str, int]:
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def check_geometry(arch: str, config: Any, processor: Any) -> None:
    """Raise ValueError when the processor's tiles and the vision tower's input disagree."""
    vision = config.vision_config
    if arch == "gemma3":
        side = vision.image_size // vision.patch_size
        pooled = side // math.isqrt(config.mm_tokens_per_image)
        tile = processor.image_processor.size["height"]
        tokens = (side // pooled) ** 2
        said = (tile, processor.image_seq_length)
    elif arch == "smolvlm":
        tile = processor.image_processor.max_image_size["longest_edge"]
        tokens = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2
        said = (tile, processor.image_seq_len)
    else:
        tile = processor.image_processor.crop_size["height"]
        tokens = vision.patch_size
        said = (tile, processor.patch_size)
    if (vision.image_size, tokens) != said:
        raise ValueError(
            f"the vision tower ({vision.image_size}px, {tokens}) disagrees with the processor "
            f"({said[0]}px, {said[1]}): (tile size, image tokens or patch size)"
        )
