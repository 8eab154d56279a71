"""ShieldGemma 2: Gemma 3 under an image classifier. `ShieldGemma2ForImageClassification` wraps
a Gemma 3 model and reads the last position's `Yes`/`No` logits; its processor writes its own
policy prompt around each image. A guard, not a VLM: loaded through
AutoModelForImageTextToText it loses the classifier's weights (the text tower is re-initialised
at random) and the processor replaces our prompt with its policy prompt, so the VLM path refuses
it and the `shieldgemma:` signal (`operators.guards`) serves it."""

from __future__ import annotations

from typing import Any

from operators.families.base import Family, Kind, Twin
from operators.families.gemma3 import twin_config as gemma3_config
from operators.families.gemma3 import twin_geometry
from operators.families.shrink import chat_template, image_settings

REFUSAL = (
    "is a ShieldGemma 2 image classifier, not an image-text-to-text model (loaded as one, its "
    "text tower is re-initialised at random and its processor writes its own policy prompt); "
    "use it through the `shieldgemma:` signal instead"
)


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published ShieldGemma 2 processing (Gemma 3's PIL images, its policy definitions)."""
    from transformers import ShieldGemma2Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    present = {key: value for key, value in image_settings(files).items() if value is not None}
    settings = files["processor_config.json"]
    return ShieldGemma2Processor(
        image_processor=Gemma3ImageProcessorPil(**present),
        tokenizer=tokenizer,
        chat_template=chat_template(files),
        image_seq_length=settings["image_seq_length"],
        policy_definitions=settings["policy_definitions"],
    )


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """Gemma 3's shrunk config as a ShieldGemma 2 config, answering on the twin's Yes/No ids."""
    from transformers import ShieldGemma2Config

    gemma = gemma3_config(files, tokenizer).to_dict()
    kept = ("text_config", "vision_config", "mm_tokens_per_image", "image_token_index")
    config = ShieldGemma2Config(
        **{key: gemma[key] for key in kept},
        boi_token_index=gemma["boi_token_index"],
        eoi_token_index=gemma["eoi_token_index"],
        tie_word_embeddings=True,
    )
    # Not declared fields of the config; the classifier reads them with getattr.
    config.yes_token_index = tokenizer.convert_tokens_to_ids("Yes")
    config.no_token_index = tokenizer.convert_tokens_to_ids("No")
    return config


SHIELDGEMMA2 = Family(
    ("shieldgemma2",),
    kind=Kind.GUARD,
    refused=REFUSAL,
    checkpoints=("google/shieldgemma-2-4b-it",),
    twin=Twin(
        twin_processor,
        twin_config,
        twin_geometry,
        model_class="ShieldGemma2ForImageClassification",
    ),
)
