"""InternVL: each image cut into 448-pixel tiles plus a thumbnail (GotOcr2-style tiling), every
tile pixel-shuffled to 256 tokens, Qwen2 text.

The processor stacks an image's tiles along dim 0 of `pixel_values` and its vision tower gives
one feature entry per tile, so the family's `feature_entries` counts tiles: the shared-prefix
engine joins an image's tiles, in order, into the features of its one `<img>...</img>` span.
"""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Twin, one_entry_per_tile
from operators.families.shrink import chat_template, image_settings, small_text, small_vision

_VIDEO_SETTINGS = ("size", "image_mean", "image_std", "resample", "rescale_factor")


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published InternVL processing (GotOcr2 PIL image processor) around `tokenizer`."""
    from transformers import InternVLProcessor, InternVLVideoProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
        GotOcr2ImageProcessorPil,
    )

    settings = image_settings(files)
    # The processor requires a video processor; posts carry no video, so its settings only
    # need to be the image ones.
    video = {key: settings[key] for key in _VIDEO_SETTINGS if key in settings}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessorPil(**settings),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(**video),
        image_seq_length=files["processor_config.json"]["image_seq_length"],
        chat_template=chat_template(files),
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published InternVL config, shrunk: its tile size, patch size and pixel shuffle."""
    from transformers import InternVLConfig

    real = files["config.json"]
    vision = real["vision_config"]
    return InternVLConfig(
        vision_config={
            **small_vision(real),
            "use_absolute_position_embeddings": vision["use_absolute_position_embeddings"],
        },
        text_config=small_text(real, tokenizer),
        downsample_ratio=real["downsample_ratio"],
        image_token_id=tokenizer.convert_tokens_to_ids(tokenizer.context_image_token),
        projector_hidden_act=real["projector_hidden_act"],
        vision_feature_layer=real["vision_feature_layer"],
        vision_feature_select_strategy=real["vision_feature_select_strategy"],
        tie_word_embeddings=True,
    )


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's tile size and tokens per tile against the processor's."""
    vision = config.vision_config
    side, patch = _square(vision.image_size), _square(vision.patch_size)
    tokens = int((side // patch) ** 2 * config.downsample_ratio**2)
    tile = processor.image_processor.size["height"]
    return (side, tokens), (tile, processor.image_seq_length)


def _square(size: int | list[int] | tuple[int, ...]) -> int:
    """One side of a square size given as an int or a (height, width) pair."""
    if isinstance(size, int):
        return size
    height, width = size
    if height != width:
        raise ValueError(f"a non-square vision size {size} is not a twin this builder makes")
    return int(height)


INTERNVL = Family(
    ("internvl",),
    vision_tower="vision_tower",
    feature_entries=one_entry_per_tile,
    checkpoints=("OpenGVLab/InternVL3-1B-hf",),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
