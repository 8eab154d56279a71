"""Preprocessing: turn images and task texts into padded tensors. Pure; no model calls.

Every image is run through the processor on its own so that one image the processor rejects
fails only its own job; the per-image tensors are then collated with left padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from operators.exceptions import ImagePreprocessError
from operators.forward import PrefixBatch, TaskRows
from operators.loading import Vlm

MAX_ASPECT_RATIO = 50.0

_TEXT_KEYS = ("input_ids", "attention_mask")


def encode_prefix(vlm: Vlm, image: Image.Image) -> dict[str, torch.Tensor]:
    """The processor's tensors for one image under the shared prompt prefix."""
    width, height = image.size
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImagePreprocessError(
            f"image of {width}x{height} pixels has a degenerate size or an aspect ratio "
            f"over {MAX_ASPECT_RATIO:g}:1"
        )
    try:
        encoded = vlm.processor(text=[vlm.layout.prefix], images=[image], return_tensors="pt")
    except (ValueError, TypeError, RuntimeError, OSError, IndexError) as exc:
        raise ImagePreprocessError(f"the model's processor rejected the image: {exc}") from exc
    return dict(encoded)


def collate_prefixes(encodings: Sequence[dict[str, torch.Tensor]], pad_id: int) -> PrefixBatch:
    """Stack per-image encodings: token ids left-padded, pixel tensors zero-padded."""
    lengths = [int(encoding["input_ids"].shape[1]) for encoding in encodings]
    width = max(lengths)
    input_ids = torch.full((len(encodings), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    for row, (encoding, length) in enumerate(zip(encodings, lengths, strict=True)):
        input_ids[row, width - length :] = encoding["input_ids"][0]
        mask[row, width - length :] = encoding["attention_mask"][0]
    pixel_keys = [key for key in encodings[0] if key not in _TEXT_KEYS]
    pixels = {key: stack_padded([encoding[key] for encoding in encodings]) for key in pixel_keys}
    return PrefixBatch(input_ids=input_ids, attention_mask=mask, pixel_inputs=pixels)


def stack_padded(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate on dim 0, zero-padding the other dims (e.g. Idefics3's tile count)."""
    shapes = {tuple(tensor.shape[1:]) for tensor in tensors}
    if len(shapes) == 1:
        return torch.cat(list(tensors), dim=0)
    target = [max(sizes) for sizes in zip(*shapes, strict=True)]
    padded = []
    for tensor in tensors:
        out = tensor.new_zeros((tensor.shape[0], *target))
        out[(slice(None), *(slice(0, size) for size in tensor.shape[1:]))] = tensor
        padded.append(out)
    return torch.cat(padded, dim=0)


def encode_task_rows(
    vlm: Vlm, image_index: Sequence[int], texts: Sequence[str], generate: Sequence[bool]
) -> TaskRows:
    """Tokenize each row's suffix (no special tokens) with left padding."""
    if not texts:
        empty = torch.zeros((0, 0), dtype=torch.long)
        none = torch.zeros(0, dtype=torch.long)
        return TaskRows(none, empty, empty, none)
    tokenizer: Any = vlm.tokenizer
    encoded = tokenizer(
        [vlm.layout.task_text(text) for text in texts],
        add_special_tokens=False,
        padding=True,
        return_tensors="pt",
    )
    generate_rows = [row for row, flag in enumerate(generate) if flag]
    return TaskRows(
        image_index=torch.tensor(list(image_index), dtype=torch.long),
        input_ids=encoded["input_ids"],
        attention_mask=encoded["attention_mask"],
        generate_rows=torch.tensor(generate_rows, dtype=torch.long),
    )
