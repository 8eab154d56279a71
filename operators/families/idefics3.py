"""Idefics3 / SmolVLM / SmolVLM2: images split into tiles plus a global image, pixel-shuffled
tokens."""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Twin, tiles_along_dim_1
from operators.families.shrink import chat_template, image_settings, small_text, small_vision


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Idefics3 or SmolVLM processing (PIL image processor) around `tokenizer`."""
    if files["processor_config.json"].get("processor_class") == "SmolVLMProcessor":
        return smolvlm_processor(files, tokenizer)
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil,
    )

    return Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(**image_settings(files)),
        tokenizer=tokenizer,
        image_seq_len=files["processor_config.json"]["image_seq_len"],
        chat_template=chat_template(files),
    )


def smolvlm_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """SmolVLM2's processing: Idefics3's tiling, and a video processor it cannot do without
    (which needs torchvision; the processor itself needs `num2words`)."""
    from transformers import SmolVLMProcessor
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    settings = image_settings(files)
    # The video settings are the video processor's, not the image processor's.
    video = {key: settings.pop(key) for key in ("video_sampling",) if key in settings}
    return SmolVLMProcessor(
        image_processor=SmolVLMImageProcessorPil(**settings),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(**video),
        image_seq_len=files["processor_config.json"]["image_seq_len"],
        chat_template=chat_template(files),
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Idefics3 or SmolVLM config, shrunk."""
    from transformers import Idefics3Config, SmolVLMConfig

    real = files["config.json"]
    build = SmolVLMConfig if real["model_type"] == "smolvlm" else Idefics3Config
    return build(
        vision_config=small_vision(real),
        text_config=small_text(real, tokenizer),
        scale_factor=real["scale_factor"],
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=True,
    )


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's tile size and tokens per tile against the processor's."""
    vision = config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2
    tile = processor.image_processor.max_image_size["longest_edge"]
    return (vision.image_size, tokens), (tile, processor.image_seq_len)


IDEFICS3 = Family(
    ("idefics3", "smolvlm", "idefics2"),
    vision_tower="vision_model",
    tiles=tiles_along_dim_1,
    checkpoints=("HuggingFaceTB/SmolVLM-256M-Instruct", "HuggingFaceTB/SmolVLM2-2.2B-Instruct"),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
