"""The forward step: the only code that touches the model.

One call runs the vision tower once over the batch's unique images, prefills every prefix row
(an image-level prefix: one image; a post-level prefix: all of a post's images and its text) in
one left-padded batch, taking each image token's features from that one encoding, copies each
prefix's KV cache to one row per task, and runs all task suffixes in one batched pass. Yes/no
probabilities come from that pass's next-token logits; descriptions continue greedily from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Protocol

import torch
from transformers import DynamicCache

from operators.fast_pixels import normalize_pixels
from operators.loading import Vlm


@dataclass
class PrefixBatch:
    """The prefix rows of a batch and the unique images their image tokens stand for.

    `pixel_inputs` hold each unique image once (dim 0); `image_order` names, for every image
    placeholder of the rows in reading order (row by row), which of those images fills it.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_inputs: dict[str, torch.Tensor]
    image_order: tuple[int, ...] = ()
    images_per_row: tuple[int, ...] = ()  # how many of `image_order` each row takes, in turn
    # Prefix rows whose embedding is asked: the mean last hidden state over the row's tokens.
    embed_rows: tuple[int, ...] = ()
    # Per unique image, how many vision-tower feature entries (tiles) it gives; () means one each.
    entries_per_image: tuple[int, ...] = ()
    # Per unique image, its tiles, for a tower that gives one entry per tile instead; () as above.
    tiles_per_image: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        """How many prefix rows the batch holds."""
        return int(self.input_ids.shape[0])


@dataclass
class TaskRows:
    """One row per task: which prefix row it continues and its left-padded suffix tokens."""

    prefix_index: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    generate_rows: torch.Tensor  # indices of the rows that continue into a description

    @property
    def size(self) -> int:
        """How many task rows there are."""
        return int(self.prefix_index.shape[0])


@dataclass
class ForwardResult:
    """Raw tensors out of the model, all on the CPU."""

    embeddings: torch.Tensor | None  # (unique images, hidden) float32
    yes_probability: torch.Tensor  # (rows,) float32; meaningless for generate rows
    generated: torch.Tensor | None  # (generate rows, tokens) token ids
    post_embeddings: torch.Tensor | None = None  # (prefix.embed_rows, hidden) float32


class RowSteps(Protocol):
    """Another way to run the task rows after the prefill (see `operators.static_decode`)."""

    def continue_rows(
        self, vlm: Vlm, prefill_cache: Any, prefix: PrefixBatch, rows: TaskRows
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """P(yes) per task row, and the generated ids of the generate rows (or None)."""
        ...


def run_forward(
    vlm: Vlm, prefix: PrefixBatch, rows: TaskRows, embed: bool, steps: RowSteps | None = None
) -> ForwardResult:
    """Encode each unique image once, then score and generate every task row.

    `steps` runs what follows the prefill; without it the rows go through the eager,
    growing-cache path below.
    """
    with torch.inference_mode():
        features = image_features(vlm, prefix)
        embeddings = pool_image_features(features) if embed and features else None
        if rows.size == 0 and not prefix.embed_rows:
            return ForwardResult(embeddings, torch.empty(0), None)
        placed = [features[index] for index in prefix.image_order]
        cache, hidden = prefill(vlm, prefix, placed, hidden=bool(prefix.embed_rows))
        posts = None if hidden is None else mean_over_tokens(hidden, prefix, prefix.embed_rows)
        if rows.size == 0:
            return ForwardResult(embeddings, torch.empty(0), None, posts)
        if steps is not None:
            probability, generated = steps.continue_rows(vlm, cache, prefix, rows)
            return ForwardResult(embeddings, probability, generated, posts)
        cache.batch_select_indices(rows.prefix_index.to(vlm.device))
        mask = torch.cat([prefix.attention_mask[rows.prefix_index], rows.attention_mask], dim=1)
        logits = decode_step(vlm, rows.input_ids, mask, cache)
        probability = yes_probability(logits, vlm.yes_ids, vlm.no_ids)
        generated = None
        if rows.generate_rows.numel():
            cache.batch_select_indices(rows.generate_rows.to(vlm.device))
            picked = rows.generate_rows
            generated = greedy_continue(vlm, logits[picked], mask[picked], cache)
    return ForwardResult(embeddings, probability.cpu(), generated, posts)


def mean_over_tokens(
    hidden: torch.Tensor, prefix: PrefixBatch, rows: Sequence[int]
) -> torch.Tensor:
    """Per prefix row asked, the mean of `hidden` (rows, tokens, size) over its real tokens (the
    left padding left out), as float32 on the CPU."""
    picked = torch.tensor(list(rows), dtype=torch.long)
    mask = prefix.attention_mask[picked].to(hidden.device, torch.float32)[..., None]
    summed = (hidden[picked.to(hidden.device)].float() * mask).sum(dim=1)
    return (summed / mask.sum(dim=1).clamp(min=1.0)).cpu()


def image_features(vlm: Vlm, prefix: PrefixBatch) -> list[torch.Tensor]:
    """Each unique image's projected features, (tokens, hidden), from one vision pass."""
    if not prefix.pixel_inputs:
        return []
    entries = encode_images(vlm, prefix.pixel_inputs)
    return join_entries(entries, prefix.entries_per_image, prefix.tiles_per_image)


def join_entries(
    entries: list[torch.Tensor], per_image: tuple[int, ...], tiles: tuple[int, ...] = ()
) -> list[torch.Tensor]:
    """The tower's entries joined per image: an image's tiles, in order, as one (tokens, hidden).

    The tower gives `per_image` entries an image, or, where a transformers version groups
    differently, one entry per tile (`tiles`); any other count is an error, never a guess.
    """
    if not per_image:
        return entries
    if sum(per_image) != len(entries):
        if not tiles or sum(tiles) != len(entries):
            raise ValueError(
                f"the vision tower gave {len(entries)} feature entries for "
                f"{len(per_image)} images of {sum(tiles or per_image)} tiles"
            )
        per_image = tiles
    starts = accumulate(per_image, initial=0)
    return [
        torch.cat([entry.reshape(-1, entry.shape[-1]) for entry in entries[start : start + count]])
        for start, count in zip(starts, per_image, strict=False)
    ]


def encode_images(vlm: Vlm, pixel_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """One pass of the vision tower and projector: its projected feature entries, in order (one
    per image, or one per tile where the family's tower works on tiles)."""
    # Pinned host tensors copy while the GPU is still busy; elsewhere this is a plain copy.
    inputs = {key: value.to(vlm.device, non_blocking=True) for key, value in pixel_inputs.items()}
    pixels = inputs.get("pixel_values")
    if pixels is not None:
        if pixels.dtype == torch.uint8 and vlm.fast_pixels is not None:
            # uint8 from the fast path: the processor's rescale and normalize, done here.
            mask = inputs.get("pixel_attention_mask")
            pixels = normalize_pixels(pixels, vlm.fast_pixels.norm, mask)
        inputs["pixel_values"] = pixels.to(vlm.model.dtype)
    return list(vlm.model.get_image_features(**inputs, return_dict=True).pooler_output)


def pool_image_features(features: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the projected image tokens, per image, as float32 on the CPU."""
    return torch.stack([feature.float().mean(dim=0) for feature in features]).cpu()


def prefill(
    vlm: Vlm, prefix: PrefixBatch, placed: list[torch.Tensor], *, hidden: bool = False
) -> tuple[Any, torch.Tensor | None]:
    """Run every prefix row once, image tokens filled from `placed` in reading order; with
    `hidden`, also the language model's last hidden state of every row (rows, tokens, size)."""
    mask = prefix.attention_mask.to(vlm.device)
    input_ids = prefix.input_ids.to(vlm.device)
    cache = DynamicCache(config=vlm.model.config.get_text_config(decoder=True))
    with _last_hidden_state(vlm, hidden) as captured:
        vlm.model(
            inputs_embeds=embed_with_images(vlm, input_ids, placed),
            attention_mask=mask,
            position_ids=_positions(mask, input_ids.shape[1]),
            use_cache=True,
            logits_to_keep=1,
            **{vlm.cache_keyword: cache},
        )
    return cache, captured.get("last")


@contextmanager
def _last_hidden_state(vlm: Vlm, wanted: bool) -> Iterator[dict[str, torch.Tensor]]:
    """While open, the language model's output (its last hidden state, after the final norm)
    lands in the dict yielded: a hook on the decoder, so that no layer's other hidden states
    are kept (`output_hidden_states` would hold every layer's for the whole batch)."""
    captured: dict[str, torch.Tensor] = {}
    if not wanted:
        yield captured
        return

    def keep(module: Any, args: Any, output: Any) -> None:
        captured["last"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    decoder = getattr(vlm.model, "get_decoder", None)
    if decoder is None:  # the post fails with this reason; the load-time check then runs plain
        raise ValueError(f"no language model found in {vlm.family} to read the post embedding")
    handle = decoder().register_forward_hook(keep)
    try:
        yield captured
    finally:
        handle.remove()


def embed_with_images(vlm: Vlm, input_ids: torch.Tensor, placed: list[torch.Tensor]) -> Any:
    """Token embeddings with each image token replaced by its projected image feature, in order.

    This is the merge every family does inside its own forward; doing it here lets one encoding
    of an image fill every prefix row that shows it, on any transformers 5.x.
    """
    embeds = vlm.model.get_input_embeddings()(input_ids)
    if placed:
        slots = input_ids == vlm.image_token_id
        features = torch.cat(placed).to(embeds.dtype)
        tokens = int(slots.sum())
        if tokens != features.shape[0]:
            raise ValueError(
                f"{tokens} image tokens in the prompt for {features.shape[0]} image "
                "features: the processor and the model disagree on tokens per image"
            )
        embeds = embeds.masked_scatter(slots[..., None], features)
    return embeds


def decode_step(vlm: Vlm, input_ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> torch.Tensor:
    """Feed `input_ids` after the cached tokens; return float32 logits of the last position."""
    mask = mask.to(vlm.device)
    output = vlm.model(
        input_ids=input_ids.to(vlm.device),
        attention_mask=mask,
        position_ids=_positions(mask, input_ids.shape[1]),
        use_cache=True,
        logits_to_keep=1,
        **{vlm.cache_keyword: cache},
    )
    return output.logits[:, -1].float()


def yes_probability(
    logits: torch.Tensor, yes_ids: tuple[int, ...], no_ids: tuple[int, ...]
) -> torch.Tensor:
    """P(yes | yes or no), from the next-token logits of the answer tokens."""
    yes = torch.logsumexp(logits[:, list(yes_ids)], dim=-1)
    no = torch.logsumexp(logits[:, list(no_ids)], dim=-1)
    return torch.sigmoid(yes - no)


def greedy_continue(vlm: Vlm, logits: torch.Tensor, mask: torch.Tensor, cache: Any) -> torch.Tensor:
    """Greedy batched decoding from the given next-token logits, up to max_new_tokens."""
    eos = torch.tensor(vlm.eos_ids, device=logits.device)
    pad_id = vlm.tokenizer.pad_token_id
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    tokens: list[torch.Tensor] = []
    for step in range(vlm.spec.max_new_tokens):
        next_ids = logits.argmax(dim=-1).masked_fill(finished, pad_id)
        tokens.append(next_ids)
        finished |= torch.isin(next_ids, eos)
        if bool(finished.all()) or step + 1 == vlm.spec.max_new_tokens:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = decode_step(vlm, next_ids[:, None], mask, cache)
    return torch.stack(tokens, dim=1).cpu()


def _positions(mask: torch.Tensor, new_tokens: int) -> torch.Tensor:
    # Padding sits left of the prefix and between prefix and suffix; positions skip it.
    return (mask.long().cumsum(dim=-1) - 1).clamp(min=0)[:, -new_tokens:]
