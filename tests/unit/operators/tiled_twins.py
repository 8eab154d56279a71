"""What the tests of tiling families (InternVL, Aya Vision) share: an image's tiles as the
processor makes them, the features the shared-prefix engine places, a reference embedding taken
straight from the model, and `vlmod moderate` on both engines. Written apart from the engines."""

from __future__ import annotations

import torch

import operators.forward
from operators.batching import encode_image, processor_path
from operators.jobs import PostJob, TaskKind, VlmTask
from operators.tasks import VlmOperator

QUESTION = VlmTask(TaskKind.QUESTION, "Is there a weapon in this image?")
EMBED = VlmTask(TaskKind.EMBED)


def tiles_and_tokens(vlm, image) -> tuple[int, int]:
    """The processor's tiles for `image` alone and the image tokens of its expansion."""
    encoded = vlm.processor(
        text=[vlm.prompts.image_token],
        images=[image],
        add_special_tokens=False,
        return_tensors="pt",
    )
    return int(encoded["pixel_values"].shape[0]), int(
        (encoded["input_ids"] == vlm.image_token_id).sum()
    )


def tile_features(vlm, image) -> torch.Tensor:
    """(tiles, tokens per tile, hidden): the model's own projected features of every tile."""
    pixels = encode_image(processor_path(vlm), image).pixel_inputs["pixel_values"]
    with torch.inference_mode():
        return vlm.model.get_image_features(pixel_values=pixels).pooler_output.float()


def placed_by_shared_engine(vlm, monkeypatch, job: PostJob) -> list[torch.Tensor]:
    """The per-image features the shared-prefix engine placed at the image tokens for `job`."""
    placed: list[torch.Tensor] = []
    embed = operators.forward.embed_with_images

    def spying(model, input_ids, features):
        placed.extend(feature.float() for feature in features)
        return embed(model, input_ids, features)

    monkeypatch.setattr(operators.forward, "embed_with_images", spying)
    [result] = VlmOperator(vlm).run_posts([job])
    assert not isinstance(result, Exception), result
    return placed
