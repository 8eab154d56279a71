"""Mistral 3 (Mistral Small 3.1): Pixtral images at their own size, Mistral text.

The processor resizes an image to fit `longest_edge` (1,540 px), each side rounded up to 28 px
(patch 14 times spatial merge 2), so an image's token count follows its shape: one `[IMG]` per
28-px cell, an `[IMG_BREAK]` ending each row and `[IMG_END]` the last one. The vision tower
takes the batch's images zero-padded to one size with their `image_sizes`, encodes them as one
sequence of patches with attention kept within each image and 2-D RoPE over each image's own
patch grid, and the projector merges 2x2 patches; `get_image_features` splits the result back
per image by `image_sizes`, so each image gets as many features as it has `[IMG]` tokens.
Nothing of that reaches the text model, a plain causal Mistral (no sliding window, 1-D RoPE):
the shared-prefix engine places those features and caches prefixes as for LLaVA, and the
load-time check keeps it there.
"""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Twin
from operators.families.shrink import (
    VISION,
    chat_template,
    image_settings,
    small_text,
    small_vision,
)

IMAGE_TOKENS = ("image_token", "image_break_token", "image_end_token")


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Pixtral processing (PIL image processor) around `tokenizer`."""
    from transformers import PixtralProcessor
    from transformers.models.pixtral.image_processing_pil_pixtral import (
        PixtralImageProcessorPil,
    )

    published = files["processor_config.json"]
    return PixtralProcessor(
        image_processor=PixtralImageProcessorPil(**image_settings(files)),
        tokenizer=tokenizer,
        patch_size=published["patch_size"],
        spatial_merge_size=published["spatial_merge_size"],
        chat_template=chat_template(files),
        **{name: published[name] for name in IMAGE_TOKENS},
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Mistral 3 config, shrunk: Pixtral's patch and image size, the merge."""
    from transformers import Mistral3Config

    real = files["config.json"]
    vision = small_vision(real)
    vision.update(head_dim=VISION["hidden_size"] // vision["num_attention_heads"])
    return Mistral3Config(
        vision_config=vision,
        text_config=small_text(real, tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=real["spatial_merge_size"],
        projector_hidden_act=real["projector_hidden_act"],
        vision_feature_layer=real["vision_feature_layer"],
        multimodal_projector_bias=real["multimodal_projector_bias"],
        tie_word_embeddings=True,
    )


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's largest image, patch and merge against the processor's."""
    vision = config.vision_config
    edge = processor.image_processor.size["longest_edge"]
    tower = (vision.image_size, vision.patch_size, config.spatial_merge_size)
    return tower, (edge, processor.patch_size, processor.spatial_merge_size)


MISTRAL3 = Family(
    ("mistral3",),
    vision_tower="vision_tower",
    checkpoints=("mistralai/Mistral-Small-3.1-24B-Instruct-2503",),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
