"""Llama 4, served as Llama Guard 4: a dense Llama 4 text tower (no experts) with Llama 4's
vision encoder. Its processor cuts an image into 336-pixel tiles (plus a global tile when there
are several), each 144 `<|patch|>` tokens after the 2x2 pixel shuffle. A guard, not a VLM: its
chat template writes its own safety prompt around the conversation (categories S1-S14) and its
answer is `safe`, or `unsafe` and the violated categories, so the VLM path refuses it and the
`llamaguard:` signal (`operators.guards`) serves it."""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Kind, Twin
from operators.families.shrink import TEXT, chat_template, image_settings, keep, token_ids

REFUSAL = (
    "(Llama 4, e.g. Llama Guard 4) is served as a guard, not an image-text-to-text model (its "
    "chat template writes its own safety prompt over categories S1-S14 around the conversation, "
    "and it answers safe or unsafe); use it through the `llamaguard:` signal instead"
)
VISION_WIDTH = 32
# The vision MLP's width is also the pixel-shuffled width (2x2 patches: 4x), so it is fixed.
VISION = {"hidden_size": VISION_WIDTH, "num_hidden_layers": 2, "num_attention_heads": 2}
PROJECTION = 64
_PROCESSOR_KEYS = (
    *("patch_size", "pixel_shuffle_ratio", "fake_image_token", "image_token"),
    *("start_of_image_token", "end_of_image_token", "patch_token"),
    *("tile_x_separator_token", "tile_y_separator_token"),
)


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published Llama 4 processing (336-pixel tiles, its tile tokens) around `tokenizer`."""
    from transformers import Llama4ImageProcessor, Llama4Processor

    settings = files["processor_config.json"]
    return Llama4Processor(
        image_processor=Llama4ImageProcessor(**image_settings(files)),
        tokenizer=tokenizer,
        chat_template=chat_template(files),
        **{key: settings[key] for key in _PROCESSOR_KEYS if key in settings},
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published config, shrunk: dense text layers (no experts), the tile geometry kept."""
    from transformers import Llama4Config

    real = files["config.json"]
    ratio = real["vision_config"]["pixel_shuffle_ratio"]
    vision = {
        **keep(real["vision_config"]),
        **VISION,
        "pixel_shuffle_ratio": ratio,
        "intermediate_size": int(VISION_WIDTH / ratio**2),
        **dict.fromkeys(("vision_output_dim", "projector_input_dim"), PROJECTION),
        "projector_output_dim": PROJECTION,
    }
    text = {**keep(real["text_config"]), **TEXT, **token_ids(tokenizer)}
    text.update(
        vocab_size=len(tokenizer),
        intermediate_size_mlp=TEXT["intermediate_size"],
        num_local_experts=0,
        interleave_moe_layer_step=0,
        moe_layers=[],
        attention_chunk_size=real["text_config"].get("attention_chunk_size"),
        initializer_range=0.2,
    )
    patch = tokenizer.convert_tokens_to_ids(files["processor_config.json"]["patch_token"])
    return Llama4Config(vision_config=vision, text_config=text, image_token_index=patch)


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's tile size, patch size and tokens per tile against the processor's."""
    vision = config.vision_config
    side = vision.image_size // vision.patch_size
    tokens = int(side * side * vision.pixel_shuffle_ratio**2)
    tile = processor.image_processor.size["height"]
    said = (tile // processor.patch_size) ** 2 // processor.downsample_ratio
    return (vision.image_size, vision.patch_size, tokens), (tile, processor.patch_size, said)


LLAMA4 = Family(
    ("llama4",),
    kind=Kind.GUARD,
    refused=REFUSAL,
    checkpoints=("meta-llama/Llama-Guard-4-12B",),
    twin=Twin(
        twin_processor,
        twin_config,
        twin_geometry,
        model_class="Llama4ForConditionalGeneration",
    ),
)
