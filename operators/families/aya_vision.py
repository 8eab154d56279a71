"""Aya Vision: each image cut into 364-pixel tiles plus a global view (GotOcr2-style tiling),
SigLIP patches pixel-shuffled to 169 tokens per tile, Cohere2 text with sliding-window layers.

The processor stacks an image's tiles along dim 0 of `pixel_values` and its vision tower gives
one feature entry per tile, so the family's `feature_entries` counts tiles: the shared-prefix
engine joins an image's tiles, in order, into the `<|IMG_PATCH|>` tokens of its one span.

Past the 4,096-token window the shared-prefix engine is close but not exact: the left padding
between a prefix and a shorter task suffix takes window slots that a plain forward gives to
real tokens. The load-time check's long probe outgrows the window and measures that drift on
the real weights; over its tolerance the model runs on the plain engine.
"""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Twin, one_entry_per_tile
from operators.families.shrink import TEXT, chat_template, image_settings, small_text, small_vision

# The processor's named image tokens, as `processor_config.json` publishes them.
_PROCESSOR_TOKENS = (
    *("image_token", "start_of_img_token", "end_of_img_token", "img_patch_token"),
    *("img_line_break_token", "tile_token", "tile_global_token"),
)
# Cohere2 facts of the published text config that are not sizes.
_TEXT_FACTS = ("logit_scale", "use_qk_norm", "sliding_window")
# Cohere2 repeats three sliding-window layers and one global one; two twin layers keep one of
# each, so both kinds of attention (and both kinds of cache layer) are exercised.
TWIN_LAYERS = ("sliding_attention", "full_attention")


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Aya Vision processing (GotOcr2 PIL image processor) around `tokenizer`."""
    from transformers import AyaVisionProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
        GotOcr2ImageProcessorPil,
    )

    published = files["processor_config.json"]
    return AyaVisionProcessor(
        image_processor=GotOcr2ImageProcessorPil(**image_settings(files)),
        tokenizer=tokenizer,
        patch_size=published["patch_size"],
        img_size=published["img_size"],
        chat_template=chat_template(files),
        **{name: published[name] for name in _PROCESSOR_TOKENS},
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Aya Vision config, shrunk: its tile geometry, pixel shuffle, logit scale
    and Cohere2's sliding window (the library's default where the file leaves it out)."""
    from transformers import AyaVisionConfig

    real = files["config.json"]
    published = real["text_config"]
    text = small_text(real, tokenizer)
    text.update({key: published[key] for key in _TEXT_FACTS if key in published})
    text.update(num_hidden_layers=len(TWIN_LAYERS), layer_types=list(TWIN_LAYERS))
    config = AyaVisionConfig(
        vision_config={**small_vision(real), "vision_use_head": False},
        text_config=text,
        downsample_factor=real["downsample_factor"],
        adapter_layer_norm_eps=real["adapter_layer_norm_eps"],
        image_token_index=tokenizer.convert_tokens_to_ids(
            files["processor_config.json"]["img_patch_token"]
        ),
        vision_feature_layer=real["vision_feature_layer"],
        vision_feature_select_strategy=real["vision_feature_select_strategy"],
        tie_word_embeddings=True,
    )
    # Not a declared field of the config: the projector reads it when present, and the
    # published value (28,672) would be the twin's largest weight by far.
    config.alignment_intermediate_size = 2 * TEXT["hidden_size"]
    return config


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's tile size and tokens per tile against the processor's."""
    vision = config.vision_config
    tokens = (vision.image_size // vision.patch_size // config.downsample_factor) ** 2
    tile = processor.image_processor.size["height"]
    return (vision.image_size, tokens), (tile, (processor.img_size // processor.patch_size) ** 2)


AYA_VISION = Family(
    ("aya_vision",),
    vision_tower="vision_tower",
    feature_entries=one_entry_per_tile,
    checkpoints=("CohereLabs/aya-vision-8b",),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
