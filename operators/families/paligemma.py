"""PaliGemma: a prefix LM. The prompt is `<image>`x256 per image, `<bos>`, the text and a newline,
and the model attends both ways over that whole prefix; only generated tokens are causal.

The processor marks the prefix with `token_type_ids` 0 (1 only on a training suffix), and the
model builds the bidirectional mask from them: without them it runs causally and is silently
wrong, so they are the family's extra input (all 0: our prompt is all prefix). The shared-prefix
engine caches a prefix causally and appends each question after it, which a prefix LM cannot
do (the question is part of the bidirectional prefix, and positions start at 1), so the
load-time check runs PaliGemma on the plain engine.

The published checkpoints ship no chat template: `PaliGemmaProcessor` lays the prompt out
itself. `CHAT_TEMPLATE` is that layout for the prompt book, and the two hooks below undo the
processor's own framing where we call it on parts of a prompt (an image alone, or the whole
prompt for the load-time comparison).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from operators.families.base import Family, Twin
from operators.families.shrink import TEXT, image_settings, small_text, small_vision

if TYPE_CHECKING:
    import torch

# What `PaliGemmaProcessor` builds for a text with images: every image placeholder first, then
# <bos>, the text and "\n". A system prompt (say the mix checkpoints' task prefix "answer en")
# goes before the user's text, as the prompt's first words.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% endif %}{% endfor %}{% endfor %}<bos>"
    "{% for message in messages %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% if message['role'] == 'system' %} {% endif %}{% endif %}{% endfor %}{% endfor %}"
    "{{ '\\n' }}"  # Jinja drops a template's own final newline
)


def prefix_token_types(vlm: Any, input_ids: torch.Tensor) -> dict[str, Any]:
    """`token_type_ids` 0 over the whole prompt, as the processor gives them for a prompt with no
    suffix: the model attends both ways over all of it."""
    import torch

    return {"token_type_ids": torch.zeros_like(input_ids)}


def image_tokens_only(vlm: Any, ids: tuple[int, ...]) -> tuple[int, ...]:
    """The image's own tokens out of the processor's ids for a lone placeholder, which it frames
    as a whole prompt (a <bos> after the image and a newline at the end)."""
    return tuple(i for i in ids if i == vlm.image_token_id)


def unframed_prompt(vlm: Any, text: str) -> str:
    """Our rendered prompt as the processor wants it: without the <bos> after the images and the
    final newline, which it adds itself."""
    bos = vlm.tokenizer.bos_token
    head, _, tail = text.rpartition(vlm.prompts.image_token)
    if not tail.startswith(bos) or not tail.endswith("\n"):
        return text  # not our layout: the comparison finds the ids differ and says so
    return head + vlm.prompts.image_token + tail[len(bos) : -1]


def twin_processor(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published PaliGemma processing (SigLIP PIL image processor) around `tokenizer`."""
    from transformers import PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    settings = {k: v for k, v in image_settings(files).items() if v is not None}
    image_processor: Any = SiglipImageProcessorPil(**settings)
    # The processor reads it off the image processor, as the published preprocessor_config has it.
    image_processor.image_seq_length = files["preprocessor_config.json"]["image_seq_length"]
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)


def twin_config(files: dict[str, Any], tokenizer: Any) -> Any:
    """The published PaliGemma 2 config, shrunk: Gemma 2 text (its window), SigLIP vision."""
    from transformers import PaliGemmaConfig

    real = files["config.json"]
    text = small_text(real, tokenizer)
    text.update(query_pre_attn_scalar=TEXT["head_dim"])  # the published value is the real head dim
    return PaliGemmaConfig(
        vision_config={**small_vision(real), "vision_use_head": False},
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=TEXT["hidden_size"],
        hidden_size=TEXT["hidden_size"],
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
    )


def twin_geometry(config: Any, processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tower's image size and patch tokens against the processor's."""
    vision = config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2
    tile = processor.image_processor.size["height"]
    return (vision.image_size, tokens), (tile, processor.image_seq_length)


PALIGEMMA = Family(
    ("paligemma",),
    vision_tower="vision_tower",
    extra_inputs=prefix_token_types,
    chat_template=CHAT_TEMPLATE,
    image_expansion=image_tokens_only,
    processor_prompt=unframed_prompt,
    checkpoints=("google/paligemma2-3b-mix-224",),
    twin=Twin(twin_processor, twin_config, twin_geometry),
)
