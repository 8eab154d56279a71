"""LLaVA: one CLIP image of fixed size, its patch features projected into the text model."""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Twin
from operators.families.shrink import chat_template, image_settings, small_text, small_vision


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published LLaVA processing (CLIP PIL image processor) around `tokenizer`."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    published = files["processor_config.json"]
    return LlavaProcessor(
        image_processor=CLIPImageProcessorPil(**image_settings(files)),
        tokenizer=tokenizer,
        patch_size=published["patch_size"],
        vision_feature_select_strategy=published["vision_feature_select_strategy"],
        num_additional_image_tokens=published["num_additional_image_tokens"],
        chat_template=chat_template(files),
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published LLaVA config, shrunk."""
    from transformers import LlavaConfig

    real = files["config.json"]
    return LlavaConfig(
        vision_config={**small_vision(real), "projection_dim": 32},
        text_config=small_text(real, tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act=real["projector_hidden_act"],
        vision_feature_select_strategy=real["vision_feature_select_strategy"],
        vision_feature_layer=real["vision_feature_layer"],
        tie_word_embeddings=True,
    )


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's image size and patch size against the processor's crop and patch size."""
    vision = config.vision_config
    tile = processor.image_processor.crop_size["height"]
    return (vision.image_size, vision.patch_size), (tile, processor.patch_size)


LLAVA = Family(
    ("llava",),
    vision_tower="vision_tower",
    checkpoints=("llava-hf/llava-1.5-7b-hf",),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
