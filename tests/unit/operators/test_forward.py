"""The forward step: padding in the prefix and between prefix and suffix changes nothing."""

from __future__ import annotations

import torch

from operators.batching import collate_prefixes, encode_prefix, encode_task_rows, stack_padded
from operators.forward import run_forward


def _left_pad(encoding, pad_id, extra):
    padded = dict(encoding)
    ids, mask = encoding["input_ids"], encoding["attention_mask"]
    padded["input_ids"] = torch.cat([torch.full((1, extra), pad_id), ids], dim=1)
    padded["attention_mask"] = torch.cat([torch.zeros((1, extra), dtype=mask.dtype), mask], dim=1)
    return padded


def test_left_padded_prefix_gives_the_same_answers(vlm, images):
    """Real checkpoints tile images, so prefixes differ in length; padding must not leak."""
    encoding = encode_prefix(vlm, images[0].image)
    pad_id = vlm.tokenizer.pad_token_id
    prefix = collate_prefixes([encoding, _left_pad(encoding, pad_id, 5)], pad_id)
    texts = ["Is it red? Answer yes or no.", "Is there a very large dog? Answer yes or no.", "Hi"]
    rows = encode_task_rows(vlm, [0, 0, 0, 1, 1, 1], texts * 2, [False, False, True] * 2)
    result = run_forward(vlm, prefix, rows, embed=True)
    assert torch.isfinite(result.yes_probability).all()
    assert torch.allclose(result.yes_probability[:3], result.yes_probability[3:], atol=1e-5)
    assert torch.equal(result.generated[0], result.generated[1])
    assert torch.allclose(result.embeddings[0], result.embeddings[1])


def test_stack_padded_pads_tile_counts_with_zeros():
    one = torch.ones((1, 1, 3, 2, 2))
    three = torch.ones((1, 3, 3, 2, 2))
    stacked = stack_padded([one, three])
    assert stacked.shape == (2, 3, 3, 2, 2)
    assert stacked[0, 1:].abs().sum() == 0 and stacked[1].abs().sum() == 36
