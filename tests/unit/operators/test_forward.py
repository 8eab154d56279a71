"""The forward step: padding in the prefix and between prefix and suffix changes nothing."""

from __future__ import annotations

import pytest
import torch

from operators.batching import (
    collate_images,
    collate_prefixes,
    encode_image,
    encode_task_rows,
    stack_padded,
)
from operators.forward import PrefixBatch, join_entries, run_forward
from operators.prefixes import encode_post_text, image_prefix_ids, post_prefix_ids


def test_left_padded_prefix_gives_the_same_answers(vlm, images):
    """Prefix rows differ in length (tiles, post text); padding must not leak into answers."""
    encoding = encode_image(vlm, images[0].image)
    ids = image_prefix_ids(vlm, encoding.expansion)
    long_row = post_prefix_ids(vlm, [], encode_post_text(vlm, "some words here " * 20))
    assert len(long_row) > len(ids) + 5
    pad_id = vlm.tokenizer.pad_token_id
    pixels = collate_images([encoding])
    texts = ["Is it red? Answer yes or no.", "Is there a very large dog? Answer yes or no.", "Hi"]
    suffixes = [vlm.layout.task_text(text) for text in texts]
    generate = [False, False, True]

    alone = run_forward(
        vlm,
        PrefixBatch(*collate_prefixes([ids], pad_id), pixels, image_order=(0,)),
        encode_task_rows(vlm, [0, 0, 0], suffixes, generate),
        embed=True,
    )
    padded = run_forward(
        vlm,
        PrefixBatch(*collate_prefixes([long_row, ids], pad_id), pixels, image_order=(0,)),
        encode_task_rows(vlm, [1, 1, 1, 0], [*suffixes, suffixes[0]], [*generate, False]),
        embed=True,
    )
    assert torch.isfinite(padded.yes_probability).all()
    assert torch.allclose(alone.yes_probability[:2], padded.yes_probability[:2], atol=1e-5)
    assert torch.equal(alone.generated[0], padded.generated[0])
    assert torch.allclose(alone.embeddings, padded.embeddings)
    assert padded.embeddings.shape[0] == 1  # one unique image, encoded once


def test_collate_prefixes_pads_on_the_left():
    ids, mask = collate_prefixes([[7, 8, 9], [5]], pad_id=0)
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_stack_padded_pads_tile_counts_with_zeros():
    one = torch.ones((1, 1, 3, 2, 2))
    three = torch.ones((1, 3, 3, 2, 2))
    stacked = stack_padded([one, three])
    assert stacked.shape == (2, 3, 3, 2, 2)
    assert stacked[0, 1:].abs().sum() == 0 and stacked[1].abs().sum() == 36


def test_join_entries_takes_one_entry_per_image_or_per_tile():
    """Transformers versions group a tiled tower's output per image or per tile; both join into
    the same per-image features, and any other count is refused."""
    tiles = [torch.randn(4, 8) for _ in range(5)]  # image 0: 3 tiles, image 1: 2 tiles
    per_image = [torch.cat(tiles[:3]), torch.cat(tiles[3:])]
    grouped = join_entries(per_image, (1, 1), (3, 2))
    per_tile = join_entries(tiles, (1, 1), (3, 2))
    assert [t.shape for t in per_tile] == [(12, 8), (8, 8)]
    for a, b in zip(grouped, per_tile, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="4 feature entries for 2 images of 5 tiles"):
        join_entries(tiles[:4], (1, 1), (3, 2))
    with pytest.raises(ValueError, match="5 feature entries for 2 images of 2 tiles"):
        join_entries(tiles, (1, 1))
