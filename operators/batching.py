"""Preprocessing: turn images and token ids into padded tensors. Pure; no model calls.

Every image is run through the processor on its own, with only its placeholder as text, so that
one image the processor rejects fails only its own post, and so that its token expansion can be
placed into any prompt. Prefix rows and task rows are collated with left padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image

from operators.exceptions import ImagePreprocessError
from operators.families import family_of
from operators.forward import TaskRows
from operators.loading import Vlm

MAX_ASPECT_RATIO = 50.0

# Per-token outputs of the placeholder's own text, not pixels; the engines build their own for
# the whole prompt (token types from the family's extra inputs). PaliGemma's processor also adds
# training labels to every call.
_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "labels")
# Group sizes of the processor's call, not of the prompt an image is placed in:
# `collate_images` sets them for the images it collates.
_GROUP_KEYS = ("batch_num_images",)


@dataclass
class ImageEncoding:
    """One image through the processor alone: its placeholder's token expansion and pixels."""

    expansion: tuple[int, ...]
    # Dim 0 is the image (Qwen: its flattened patches, the grid in `image_grid_thw`).
    pixel_inputs: dict[str, torch.Tensor]
    pinned: bool = False  # pixels in page-locked memory; their collation is pinned too
    # As one of a prompt's several images, where the family groups them (`Family.groups_images`).
    grouped: bool = False


def encoding_key(sha256: str, grouped: bool) -> str:
    """What an image's encoding is kept under: its content hash and its form, never one for the
    other (alone, and grouped with a prompt's other images, differ)."""
    return f"{sha256}:grouped" if grouped else sha256


def encode_image(vlm: Vlm, image: Image.Image, grouped: bool = False) -> ImageEncoding:
    """The processor's expansion of one image placeholder, and that image's pixel tensors;
    `grouped`: as one of a prompt's several images (see `encode_grouped`).

    With `vlm.fast_pixels` the pixels are the processor's in uint8, normalized on the device by
    `encode_images`; the PIL calls are the processor's, so an image fails on either path alike.
    """
    width, height = image.size
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImagePreprocessError(
            f"image of {width}x{height} pixels has a degenerate size or an aspect ratio "
            f"over {MAX_ASPECT_RATIO:g}:1"
        )
    if grouped:
        return encode_grouped(vlm, image)
    try:
        if vlm.fast_pixels is not None:
            return ImageEncoding(*vlm.fast_pixels.encode(image, vlm.processor))
        encoded = vlm.processor(
            text=[vlm.prompts.image_token],
            images=[image],
            add_special_tokens=False,
            return_tensors="pt",
        )
    except (ValueError, TypeError, RuntimeError, OSError, IndexError) as exc:
        raise ImagePreprocessError(f"the model's processor rejected the image: {exc}") from exc
    pixels = {key: value for key, value in encoded.items() if key not in _TEXT_KEYS + _GROUP_KEYS}
    expansion = family_of(vlm.family).image_expansion(vlm, tuple(encoded["input_ids"][0].tolist()))
    return ImageEncoding(expansion, pixels)


def encode_grouped(vlm: Vlm, image: Image.Image) -> ImageEncoding:
    """`image` as the processor shows it among a prompt's several images: called on a prompt of
    two placeholders with the image grouped twice (`images=[[image, image]]`), the first half."""
    token = vlm.prompts.image_token
    try:
        encoded = vlm.processor(
            text=[token + token],
            images=[[image, image]],
            add_special_tokens=False,
            return_tensors="pt",
        )
    except (ValueError, TypeError, RuntimeError, OSError, IndexError) as exc:
        raise ImagePreprocessError(f"the model's processor rejected the image: {exc}") from exc
    ids = family_of(vlm.family).image_expansion(vlm, tuple(encoded["input_ids"][0].tolist()))
    half = len(ids) // 2
    if ids[:half] != ids[half:]:
        raise ImagePreprocessError("the processor expands the same image twice differently")
    skip = _TEXT_KEYS + _GROUP_KEYS
    pixels = {key: value[:1] for key, value in encoded.items() if key not in skip}
    return ImageEncoding(ids[:half], pixels, grouped=True)


def processor_path(vlm: Vlm) -> Vlm:
    """The same model with the processor's float pixels, for code that calls the model itself."""
    return replace(vlm, fast_pixels=None)


def wants_pinned(vlm: Vlm) -> bool:
    """Whether pixels should be page-locked: the model is on a CUDA device."""
    return torch.cuda.is_available() and vlm.device.type == "cuda"


def pin_encoding(encoding: ImageEncoding) -> ImageEncoding:
    """The same encoding with its pixels copied to page-locked memory."""
    pixels = {key: value.pin_memory() for key, value in encoding.pixel_inputs.items()}
    return ImageEncoding(encoding.expansion, pixels, pinned=True, grouped=encoding.grouped)


def collate_images(encodings: Sequence[ImageEncoding]) -> dict[str, torch.Tensor]:
    """One entry per image along dim 0, other dims zero-padded; {} for no image.

    When every encoding is pinned the result is pinned too, so that the forward's copy to the
    GPU can be asynchronous (`non_blocking=True`).
    """
    if not encodings:
        return {}
    keys = list(encodings[0].pixel_inputs)
    pin = all(e.pinned for e in encodings)
    pixels = {key: stack_padded([e.pixel_inputs[key] for e in encodings], pin) for key in keys}
    if any(e.grouped for e in encodings):
        pixels["batch_num_images"] = torch.tensor(group_sizes([e.grouped for e in encodings]))
    return pixels


def group_sizes(grouped: Sequence[bool]) -> list[int]:
    """The model's `batch_num_images` for images in this order: 1 for each image alone, and the
    length of each run of grouped images (the model groups only two or more)."""
    sizes: list[int] = []
    run = 0
    for flag in [*grouped, False]:
        if flag:
            run += 1
            continue
        if run == 1:
            raise ValueError("a grouped image must be encoded beside another grouped image")
        sizes += [run] if run else []
        run = 0
        sizes.append(1)
    return sizes[:-1]


def collate_prefixes(
    rows: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded token ids and their attention mask, one row per prefix."""
    width = max((len(row) for row in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            input_ids[index, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[index, width - len(row) :] = 1
    return input_ids, mask


def stack_padded(tensors: Sequence[torch.Tensor], pin: bool = False) -> torch.Tensor:
    """Concatenate on dim 0, zero-padding the other dims (e.g. Idefics3's tile count); Qwen's
    patches of every image, (patches, patch dim), concatenate in image order as its model takes
    them with one `image_grid_thw` row per image."""
    shapes = {tuple(tensor.shape[1:]) for tensor in tensors}
    if len(shapes) == 1 and not pin:
        return torch.cat(list(tensors), dim=0)
    target = [max(sizes) for sizes in zip(*shapes, strict=True)]
    rows = sum(int(tensor.shape[0]) for tensor in tensors)
    # One allocation written in place: a single copy of the pixels, into pinned memory if asked.
    allocate = torch.empty if len(shapes) == 1 else torch.zeros
    out = allocate((rows, *target), dtype=tensors[0].dtype, pin_memory=pin)
    start = 0
    for tensor in tensors:
        end = start + int(tensor.shape[0])
        out[(slice(start, end), *(slice(0, size) for size in tensor.shape[1:]))] = tensor
        start = end
    return out


def encode_task_rows(
    vlm: Vlm, prefix_index: Sequence[int], suffixes: Sequence[str], generate: Sequence[bool]
) -> TaskRows:
    """Tokenize each row's whole suffix (question through assistant cue) with left padding."""
    if not suffixes:
        empty = torch.zeros((0, 0), dtype=torch.long)
        none = torch.zeros(0, dtype=torch.long)
        return TaskRows(none, empty, empty, none)
    tokenizer: Any = vlm.tokenizer
    encoded = tokenizer(list(suffixes), add_special_tokens=False, padding=True, return_tensors="pt")
    generate_rows = [row for row, flag in enumerate(generate) if flag]
    return TaskRows(
        prefix_index=torch.tensor(list(prefix_index), dtype=torch.long),
        input_ids=encoded["input_ids"],
        attention_mask=encoded["attention_mask"],
        generate_rows=torch.tensor(generate_rows, dtype=torch.long),
    )
