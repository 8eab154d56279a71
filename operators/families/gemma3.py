"""Gemma 3: 896-pixel images as 256 soft tokens between <start_of_image> and <end_of_image>,
attended both ways within an image (image token types), and a sliding window on most layers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from operators.families.base import Family, Twin
from operators.families.shrink import TEXT, chat_template, image_settings, small_text, small_vision

if TYPE_CHECKING:
    import torch


def image_token_types(vlm: Any, input_ids: torch.Tensor) -> dict[str, Any]:
    """`token_type_ids` 1 on image tokens, as Gemma 3's processor gives them: the model attends
    both ways within an image's tokens."""
    return {"token_type_ids": (input_ids == vlm.image_token_id).long()}


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Gemma 3 processing (PIL image processor) around `tokenizer`."""
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    present = {key: value for key, value in image_settings(files).items() if value is not None}
    return Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(**present),
        tokenizer=tokenizer,
        chat_template=chat_template(files),
        image_seq_length=files["processor_config.json"]["image_seq_length"],
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Gemma 3 config, shrunk: its window and layer pattern, local and global rope."""
    from transformers import Gemma3Config

    real = files["config.json"]
    text = small_text(real, tokenizer)
    text.update(query_pre_attn_scalar=TEXT["head_dim"])  # the published value is the real head dim
    return Gemma3Config(
        vision_config={**small_vision(real), "vision_use_head": False},
        text_config=text,
        mm_tokens_per_image=real["mm_tokens_per_image"],
        image_token_index=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        boi_token_index=tokenizer.convert_tokens_to_ids(tokenizer.boi_token),
        eoi_token_index=tokenizer.convert_tokens_to_ids(tokenizer.eoi_token),
        tie_word_embeddings=True,
    )


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's image size and pooled tokens against the processor's."""
    vision = config.vision_config
    side = vision.image_size // vision.patch_size
    pooled = side // math.isqrt(config.mm_tokens_per_image)
    tile = processor.image_processor.size["height"]
    return (vision.image_size, (side // pooled) ** 2), (tile, processor.image_seq_length)


GEMMA3 = Family(
    ("gemma3",),
    vision_tower="vision_tower",
    extra_inputs=image_token_types,
    checkpoints=("google/gemma-3-4b-it",),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
