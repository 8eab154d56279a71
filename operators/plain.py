"""The reference engine: every task as its own full prompt and one plain forward of the model.

Nothing is shared, copied or placed by hand: each task row is its prefix ids and its suffix ids
in one unpadded row, with the pixels of that prompt's images as the processor made them, and
the model's own forward does the rest as transformers runs the checkpoint (vision tower,
projector, placing image features, positions such as multimodal RoPE, attention masks such as
sliding windows or bidirectional image spans, with the family's extra inputs from
`operators.families`). Captions come from the model's own `generate`, greedy. It reads the very
token ids the shared-prefix engine reads, so the two must agree (`operators.selfcheck`).

Slow: one forward per task and the images encoded again for each. It is what a model runs on
when the shared-prefix engine cannot be trusted with it, and what that engine is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from operators.batching import ImageEncoding, collate_images
from operators.families import family_of
from operators.forward import (
    ForwardResult,
    PrefixBatch,
    TaskRows,
    image_features,
    pool_image_features,
    yes_probability,
)
from operators.loading import Vlm


def run_plain(
    vlm: Vlm,
    prefix: PrefixBatch,
    rows: TaskRows,
    embed: bool,
    encodings: Sequence[ImageEncoding],
) -> ForwardResult:
    """Every task row through one plain forward of the whole prompt; `encodings` in image order.

    `encodings` are the unique images of the batch, as `prefix.image_order` numbers them.
    """
    with torch.inference_mode():
        embeddings = None
        if embed and prefix.pixel_inputs:
            embeddings = pool_image_features(image_features(vlm, prefix))
        images = _images_per_prefix(prefix)
        generate = set(rows.generate_rows.tolist())
        probabilities, captions = [], []
        for row in range(rows.size):
            owner = int(rows.prefix_index[row])
            ids = torch.cat([_unpadded(prefix, owner), _unpadded_suffix(rows, row)])
            inputs = plain_inputs(vlm, ids, [encodings[i] for i in images[owner]])
            if row in generate:
                captions.append(_generate(vlm, inputs))
                probabilities.append(0.0)  # meaningless for a generate row, as in the engine
            else:
                logits = vlm.model(**inputs).logits[:, -1].float()
                probabilities.append(float(yes_probability(logits, vlm.yes_ids, vlm.no_ids)))
        posts = _post_embeddings(vlm, prefix, images, encodings)
    generated = _pad_right(captions, vlm.tokenizer.pad_token_id) if captions else None
    return ForwardResult(embeddings, torch.tensor(probabilities), generated, posts)


def _post_embeddings(
    vlm: Vlm,
    prefix: PrefixBatch,
    images: list[tuple[int, ...]],
    encodings: Sequence[ImageEncoding],
) -> torch.Tensor | None:
    """Each asked prefix row's prompt alone through the model: its last hidden state's mean."""
    if not prefix.embed_rows:
        return None
    means = []
    for row in prefix.embed_rows:
        inputs = plain_inputs(vlm, _unpadded(prefix, row), [encodings[i] for i in images[row]])
        hidden = vlm.model(**inputs, output_hidden_states=True).hidden_states[-1]
        means.append(hidden[0].float().mean(dim=0).cpu())
    return torch.stack(means)


def plain_inputs(vlm: Vlm, ids: torch.Tensor, encodings: Sequence[ImageEncoding]) -> dict[str, Any]:
    """The model's keyword inputs for one unpadded prompt `ids` showing `encodings`' images."""
    inputs: dict[str, Any] = {
        "input_ids": ids[None].to(vlm.device),
        "attention_mask": torch.ones_like(ids)[None].to(vlm.device),
    }
    pixels = collate_images(list(encodings))
    for key, value in pixels.items():
        moved = value.to(vlm.device)
        inputs[key] = moved.to(vlm.model.dtype) if moved.is_floating_point() else moved
    inputs.update(family_of(vlm.family).extra_inputs(vlm, inputs["input_ids"]))
    return inputs


def _generate(vlm: Vlm, inputs: Mapping[str, Any]) -> torch.Tensor:
    """Greedy new tokens after the prompt, up to `max_new_tokens`, stopping at end of turn."""
    out = vlm.model.generate(
        **inputs,
        max_new_tokens=vlm.spec.max_new_tokens,
        do_sample=False,
        eos_token_id=list(vlm.eos_ids),
        pad_token_id=vlm.tokenizer.pad_token_id,
    )
    return out[0, inputs["input_ids"].shape[1] :].cpu()


def _images_per_prefix(prefix: PrefixBatch) -> list[tuple[int, ...]]:
    """Which unique images each prefix row shows, in reading order."""
    order = iter(prefix.image_order)
    return [tuple(next(order) for _ in range(count)) for count in prefix.images_per_row]


def _unpadded(prefix: PrefixBatch, row: int) -> torch.Tensor:
    return prefix.input_ids[row][prefix.attention_mask[row].bool()]


def _unpadded_suffix(rows: TaskRows, row: int) -> torch.Tensor:
    return rows.input_ids[row][rows.attention_mask[row].bool()]


def _pad_right(sequences: Sequence[torch.Tensor], pad_id: int) -> torch.Tensor:
    width = max(len(sequence) for sequence in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for index, sequence in enumerate(sequences):
        out[index, : len(sequence)] = sequence
    return out
