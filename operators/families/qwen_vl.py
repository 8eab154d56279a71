"""Qwen2.5-VL and Qwen3-VL: images at their own resolution as flattened patches, multimodal RoPE.

The image processor resizes each image to a multiple of patch x merge pixels (no tiles) and
returns its patches flattened, `(patches, channels x temporal x patch x patch)`, with the grid
in `image_grid_thw` (one row per image); the text holds one `<|image_pad|>` per merged 2x2
patch. The text model's rotary positions are 3-D (time, height, width): `get_rope_index` gives
an image's tokens positions from its grid and the text after it continues from the largest, so
every row carries a `rope_delta`. Qwen2.5-VL's vision tower attends within windows on most
blocks; Qwen3-VL adds the features of early vision blocks to the first text layers at the image
tokens (deepstack).

Why the shared-prefix engine runs neither: it places image features and counts 1-D positions
itself, and it would have to rebuild both the 3-D positions and, for Qwen3-VL, the deepstack
injection; the load-time check finds it wrong and runs these checkpoints on the plain engine.
The plain engine's forward is the model's own, given `image_grid_thw` (collated over images
along dim 0 with the patches) and the `mm_token_type_ids` the processor would give, without
which the model silently falls back to 1-D positions (Qwen2.5-VL) or raises (Qwen3-VL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from operators.families.base import Family, Twin
from operators.families.shrink import TEXT, VISION, chat_template, small_text

if TYPE_CHECKING:
    import torch

# The token types `get_rope_index` reads: text 0, image 1 (2, video, never occurs here).
IMAGE_TOKEN_TYPE = 1
# A wider head than the other twins: mrope sections scale from the published head exactly.
HEAD_DIM = 32
_VISION_SIZES = ("patch_size", "spatial_merge_size", "temporal_patch_size", "hidden_act")


def multimodal_token_types(vlm: Any, input_ids: torch.Tensor) -> dict[str, Any]:
    """`mm_token_type_ids` 1 on image tokens, as Qwen's processors give them: the model builds
    3-D rotary positions from them and `image_grid_thw`."""
    types = (input_ids == vlm.image_token_id).int() * IMAGE_TOKEN_TYPE
    return {"mm_token_type_ids": types}


def scaled_mrope_section(section: list[int], half_head_dim: int) -> list[int]:
    """The published (time, height, width) rotary split scaled to a smaller head; exact or a
    ValueError, since the sections must fill half the head."""
    total = sum(section)
    scaled = [part * half_head_dim // total for part in section]
    if sum(scaled) != half_head_dim or any(p * half_head_dim % total for p in section):
        raise ValueError(
            f"mrope_section {section} does not scale to half a head of {half_head_dim}"
        )
    return scaled


def _image_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    keys = ("size", "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size")
    picked = {key: settings[key] for key in keys if key in settings}
    return {**picked, "image_mean": settings["image_mean"], "image_std": settings["image_std"]}


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Qwen2.5-VL / Qwen3-VL processing (PIL image processor) around `tokenizer`.

    The processor will not build without a video processor (torchvision); videos never reach it.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    image = _image_kwargs(files["preprocessor_config.json"])
    qwen3 = files["config.json"]["model_type"] == "qwen3_vl"
    # Qwen2.5-VL publishes no video settings: its image ones.
    video = _image_kwargs(files["video_preprocessor_config.json"]) if qwen3 else image
    return (Qwen3VLProcessor if qwen3 else Qwen2_5_VLProcessor)(
        image_processor=Qwen2VLImageProcessorPil(**image),
        tokenizer=tokenizer,
        video_processor=video_processor_class(qwen3)(**video),
        chat_template=chat_template(files),
    )


def video_processor_class(qwen3: bool) -> Any:
    """Qwen3-VL's or Qwen2-VL's video processor; an ImportError saying to install torchvision."""
    try:
        if qwen3:
            from transformers.models.qwen3_vl import video_processing_qwen3_vl

            return video_processing_qwen3_vl.Qwen3VLVideoProcessor
        from transformers.models.qwen2_vl import video_processing_qwen2_vl

        return video_processing_qwen2_vl.Qwen2VLVideoProcessor
    except ImportError as exc:
        raise ImportError(
            "Qwen's processors need torchvision for their video processor, which is not "
            "installed: `pip install 'vlm-moderation[families]'` (docs/torchvision.md), then "
            "build the twin again"
        ) from exc


def _small_vision(real: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    published = real["vision_config"]
    kept = {key: published[key] for key in (*_VISION_SIZES, *extra) if key in published}
    return {
        **kept,
        **extra,
        "depth": VISION["num_hidden_layers"],
        "hidden_size": VISION["hidden_size"],
        "intermediate_size": VISION["intermediate_size"],
        "num_heads": 2,
        "out_hidden_size": TEXT["hidden_size"],
    }


def _small_text(real: dict[str, Any], tokenizer: Any, heads: int) -> dict[str, Any]:
    # Qwen2.5-VL's published config is flat: its text fields sit at the top level.
    published = dict(real.get("text_config") or real)
    published.pop("model_type", None)
    rope = dict(published.get("rope_scaling") or published.get("rope_parameters") or {})
    rope["mrope_section"] = scaled_mrope_section(rope["mrope_section"], HEAD_DIM // 2)
    text = small_text({"text_config": published}, tokenizer)
    text.update(num_attention_heads=heads, num_key_value_heads=heads // 2, head_dim=HEAD_DIM)
    text.update(rope_scaling=rope)
    return text


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published config, shrunk: its patch, merge and temporal sizes, its window blocks
    (Qwen2.5-VL) or deepstack taps (Qwen3-VL) within the small depth, mrope scaled."""
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    real = files["config.json"]
    ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    last = VISION["num_hidden_layers"] - 1
    if real["model_type"] == "qwen3_vl":
        # Each tap feeds one text layer, first to last: both small text layers get one.
        vision = _small_vision(real, {"deepstack_visual_indexes": [0, last]})
        vision["num_position_embeddings"] = real["vision_config"]["num_position_embeddings"]
        text = _small_text(real, tokenizer, heads=TEXT["num_attention_heads"])
        return Qwen3VLConfig(
            vision_config=vision, text_config=text, **ids, tie_word_embeddings=True
        )
    published = real["vision_config"]
    # The last block attends to the whole image, the others within windows, as published.
    window = {key: published[key] for key in ("window_size", "tokens_per_second")}
    vision = _small_vision(real, {**window, "fullatt_block_indexes": [last]})
    # Qwen2.5-VL's head is hidden / heads: two heads of HEAD_DIM over the shrunk width.
    text = _small_text(real, tokenizer, heads=TEXT["hidden_size"] // HEAD_DIM)
    text.pop("head_dim")
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text, **ids, tie_word_embeddings=True)


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's patch, temporal patch and merge sizes against the processor's."""
    vision, images = config.vision_config, processor.image_processor
    tower = (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size)
    return tower, (images.patch_size, images.temporal_patch_size, images.merge_size)


QWEN_VL = Family(
    ("qwen2_5_vl", "qwen3_vl"),
    vision_tower="visual",
    extra_inputs=multimodal_token_types,
    checkpoints=("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen3-VL-2B-Instruct"),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
