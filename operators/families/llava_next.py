"""LLaVA-NeXT and LLaVA-OneVision: "anyres" images, split into a grid of tiles plus a base image.

The processor picks the grid from `image_grid_pinpoints` and the image's size, and expands the
image's placeholder to the base image's tokens plus the grid's features with the padding cut
away and one `image_newline` per row (OneVision also shrinks a grid past 9 tiles' worth); it
returns `image_sizes`, from which the model finds the grid again. The model's
`get_image_features` does that unpadding and packing itself and returns one feature tensor per
image, in the processor's token order, so the shared-prefix engine places them as it places
LLaVA's (the load-time check compares it with a plain forward all the same).

OneVision's processor, given a prompt's several images grouped (`images=[[a, b]]`, as
`apply_chat_template` gives them, and as the checkpoint was trained on several images), shows
each as its base tile only: padded square, one tile, 729 + 1 tokens; `batch_num_images` tells
the model's `get_image_features` to skip the grid for them. `groups_images` makes both engines
do the same for a post-level prompt with two or more images; an image-level prompt (one image)
keeps the grid. Each image tiled as if alone is 0.08-0.12 apart on the twin's posts
(`test_llava_next_twin.py`).
"""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Twin
from operators.families.shrink import chat_template, image_settings, small_text, small_vision


def next_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published LLaVA-NeXT processing (PIL anyres image processor) around `tokenizer`."""
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    published = files["processor_config.json"]
    return LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(**image_settings(files)),
        tokenizer=tokenizer,
        patch_size=published["patch_size"],
        vision_feature_select_strategy=published["vision_feature_select_strategy"],
        num_additional_image_tokens=published["num_additional_image_tokens"],
        chat_template=chat_template(files),
    )


def next_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published LLaVA-NeXT config, shrunk; its grid pinpoints kept."""
    from transformers import LlavaNextConfig

    real = files["config.json"]
    return LlavaNextConfig(
        vision_config={**small_vision(real), "projection_dim": 32},
        text_config=small_text(real, tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=real["image_grid_pinpoints"],
        projector_hidden_act=real["projector_hidden_act"],
        vision_feature_select_strategy=real["vision_feature_select_strategy"],
        vision_feature_layer=real["vision_feature_layer"],
        tie_word_embeddings=True,
    )


def next_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's image size and patch size against the processor's tile and patch size."""
    vision = config.vision_config
    tile = processor.image_processor.crop_size["height"]
    return (vision.image_size, vision.patch_size), (tile, processor.patch_size)


def onevision_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published LLaVA-OneVision processing around `tokenizer`; its video processor needs
    torchvision, as the published one does."""
    from transformers import LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    published = files["processor_config.json"]
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(**image_settings(files)),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(),
        num_image_tokens=published["num_image_tokens"],
        vision_feature_select_strategy=published["vision_feature_select_strategy"],
        chat_template=chat_template(files),
        image_token=published["image_token"],
        video_token=published["video_token"],
    )


def onevision_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published LLaVA-OneVision config, shrunk: SigLIP tiles, the anyres_max_9 grid."""
    from transformers import LlavaOnevisionConfig

    real = files["config.json"]
    return LlavaOnevisionConfig(
        vision_config={**small_vision(real), "vision_use_head": False},
        text_config=small_text(real, tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=real["image_grid_pinpoints"],
        vision_aspect_ratio=real["vision_aspect_ratio"],
        projector_hidden_act=real["projector_hidden_act"],
        vision_feature_select_strategy=real["vision_feature_select_strategy"],
        vision_feature_layer=real["vision_feature_layer"],
        tie_word_embeddings=True,
    )


def onevision_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's image size and patches per tile against the processor's."""
    vision = config.vision_config
    tile = processor.image_processor.size["height"]
    patches = (vision.image_size // vision.patch_size) ** 2
    return (vision.image_size, patches), (tile, processor.num_image_tokens)


LLAVA_NEXT = Family(
    ("llava_next",),
    vision_tower="vision_tower",
    checkpoints=("llava-hf/llava-v1.6-mistral-7b-hf",),
    twin=Twin(next_processor, next_config, next_geometry),
)
LLAVA_ONEVISION = Family(
    ("llava_onevision",),
    vision_tower="vision_tower",
    checkpoints=("llava-hf/llava-onevision-qwen2-0.5b-ov-hf",),
    twin=Twin(onevision_processor, onevision_config, onevision_geometry),
    groups_images=True,
)
