"""Exact uint8 pixels for the image processors we know; rescale and normalize on the device.

The transformers 5.x PIL-backend processors of SmolVLM (Idefics3) and LLaVA (CLIP) resize with
PIL in uint8, crop, and only then rescale and normalize in float32 numpy: most of their CPU time,
and four times the bytes to pin and copy. Here the same PIL resizes (same sizes, filter and
order) and crops run in uint8, the placeholder expansion is the processor's own for the image's
tile grid, and `normalize_pixels` repeats the processor's float arithmetic where the model runs,
bit for bit. Any other processor, or settings outside what is mirrored here, gets None and keeps
the processor path.

>>> fast = fast_pixels_for(vlm.processor)  # doctest: +SKIP
>>> expansion, pixel_inputs = fast.encode(image, vlm.processor)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

# Idefics3's absolute cap on a resized edge (`MAX_IMAGE_SIZE` in its image processor).
IDEFICS3_MAX_IMAGE_SIZE = 4096
_BILINEAR = int(Image.Resampling.BILINEAR)
# What an image's placeholder expansion depends on: Idefics3's (rows, cols) of tiles, LLaVA's
# (height, width) of the processed image.
Grid = tuple[int, int]


@dataclass(frozen=True)
class PixelNorm:
    """The processor's rescale factor and per-channel mean and std."""

    rescale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]


def normalize_pixels(
    pixels: torch.Tensor, norm: PixelNorm, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """float32 pixels from uint8 ones (channels at dim -3), as the processor computes them."""
    # numpy rescales in float64 and casts to float32, then subtracts and divides in float32;
    # the same IEEE operations in the same order give the same bits on any device.
    shape = (len(norm.mean), 1, 1)
    mean = torch.tensor(norm.mean, dtype=torch.float32, device=pixels.device).view(shape)
    std = torch.tensor(norm.std, dtype=torch.float32, device=pixels.device).view(shape)
    values = (pixels.double() * norm.rescale).float().sub_(mean).div_(std)
    if mask is not None:
        # The processor pads after normalizing, so padding is exactly 0.0 wherever the mask is
        # 0; Idefics3 also drops an all-0.0 tile as padding, so this must hold bit for bit.
        values.masked_fill_(~mask.bool().unsqueeze(-3), 0.0)
    return values


class _Layout(Protocol):
    """One family's geometry: uint8 tiles of an RGB image, and its processor's expansion input."""

    uses_mask: bool

    def tiles(self, image: Image.Image) -> tuple[np.ndarray, Grid]:
        """uint8 pixels shaped as the processor's pixel_values less batch, and the expansion key."""
        ...

    def replacement_inputs(self, key: Grid) -> dict[str, Any]:
        """What the processor's `replace_image_token` reads of processed images, for `key`."""
        ...

    def grid(self, width: int, height: int) -> Grid:
        """The expansion key of an image of this size, from its size alone."""
        ...


@dataclass
class FastPixels:
    """A known processor's pixels in uint8, and its placeholder expansion cached per tile grid."""

    norm: PixelNorm
    layout: _Layout
    _expansions: dict[Grid, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def image_tokens(self, image: Image.Image, processor: Any) -> int:
        """How many prompt tokens the image's placeholder becomes, without touching its pixels."""
        return len(self.expansion(self.layout.grid(image.width, image.height), processor))

    def encode(
        self, image: Image.Image, processor: Any
    ) -> tuple[tuple[int, ...], dict[str, torch.Tensor]]:
        """The image's placeholder token ids and its uint8 (and bool mask) pixel tensors."""
        tiles, key = self.layout.tiles(to_rgb(image))
        inputs = {"pixel_values": torch.from_numpy(tiles).unsqueeze(0)}
        if self.layout.uses_mask:
            # Every tile of one image fills its whole frame; only collation pads with tiles.
            count, _, height, width = tiles.shape
            inputs["pixel_attention_mask"] = torch.ones((1, count, height, width), dtype=torch.bool)
        return self.expansion(key, processor), inputs

    def expansion(self, key: Grid, processor: Any) -> tuple[int, ...]:
        """The token ids of the processor's own replacement text for an image with this key."""
        # The caller's processor, not one kept here: preprocessing threads tokenize with their
        # own copy, as one fast tokenizer cannot be used from two threads at once.
        cached = self._expansions.get(key)
        if cached is None:
            replacement = processor.replace_image_token(self.layout.replacement_inputs(key), 0)
            # The processor tokenizes the expanded text with the call's text kwargs; it refuses
            # a text-only call that holds image tokens, so its tokenizer is called directly.
            encoded = processor.tokenizer([replacement], add_special_tokens=False)
            cached = self._expansions[key] = tuple(int(i) for i in encoded["input_ids"][0])
        return cached


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as the processor's `convert_to_rgb` leaves it; plain RGB is used as it is."""
    if image.mode == "RGB" and image.info.get("transparency") is None:
        return image
    from transformers.image_transforms import convert_to_rgb

    return Image.fromarray(np.asarray(convert_to_rgb(image, return_numpy=True)))


def chw(array: np.ndarray) -> np.ndarray:
    """A contiguous (3, H, W) copy of an (H, W, 3) array: the layout the model reads."""
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def resize(image: Image.Image, height: int, width: int, resample: int) -> Image.Image:
    """PIL's resize to (height, width), as the processor's `resize` calls it."""
    return image.resize((width, height), resample=resample)


class Idefics3Layout:
    """Idefics3/SmolVLM: resize to a longest edge, then tiles of the vision size plus a global."""

    uses_mask = True

    def __init__(self, edge: int, tile: int, splitting: bool, resample: int) -> None:
        self.edge, self.tile, self.splitting, self.resample = edge, tile, splitting, resample

    def tiles(self, image: Image.Image) -> tuple[np.ndarray, Grid]:
        """The processor's tiles, row by row, then the global image; (rows, cols) of the grid."""
        image = resize(
            image, *idefics3_resized(image.height, image.width, self.edge), self.resample
        )
        if not self.splitting:
            return chw(np.asarray(self._square(image)))[None], (0, 0)
        image = resize(
            image, *vision_encoder_size(image.height, image.width, self.tile), self.resample
        )
        rows, cols = self._grid(image.height, image.width)
        if not rows:
            return chw(np.asarray(image))[None], (0, 0)
        pixels, size = np.asarray(image), self.tile
        out = np.empty((rows * cols + 1, 3, size, size), dtype=np.uint8)
        for index in range(rows * cols):
            top, left = (index // cols) * size, (index % cols) * size
            out[index] = pixels[top : top + size, left : left + size].transpose(2, 0, 1)
        out[-1] = np.asarray(self._square(image)).transpose(2, 0, 1)
        return out, (rows, cols)

    def _square(self, image: Image.Image) -> Image.Image:
        return resize(image, self.tile, self.tile, self.resample)

    def _grid(self, height: int, width: int) -> Grid:
        """(rows, cols) of tiles of an image already at its vision-encoder size; (0, 0): none."""
        if height <= self.tile and width <= self.tile:
            return 0, 0
        return (height - self.tile) // self.tile + 1, (width - self.tile) // self.tile + 1

    def grid(self, width: int, height: int) -> Grid:
        """`tiles`' key without the pixels: the same sizes, computed, not resized."""
        if not self.splitting:
            return 0, 0
        resized = idefics3_resized(height, width, self.edge)
        return self._grid(*vision_encoder_size(*resized, self.tile))

    def replacement_inputs(self, key: Grid) -> dict[str, Any]:
        """Idefics3's replacement reads only the grid's rows and cols."""
        rows, cols = key
        return {"rows": [[rows]], "cols": [[cols]]}


def idefics3_resized(height: int, width: int, edge: int) -> tuple[int, int]:
    """Idefics3's size for a longest edge: even short side, at least 1, under its 4096 cap."""
    aspect = width / height
    if width >= height:
        width = edge
        height = int(width / aspect)
        height += height % 2
    else:
        height = edge
        width = int(height * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    aspect = width / height
    cap = IDEFICS3_MAX_IMAGE_SIZE
    if width >= height and width > cap:
        width, height = cap, int(cap / aspect)
    elif height > width and height > cap:
        height, width = cap, int(cap * aspect)
    return max(height, 1), max(width, 1)


def vision_encoder_size(height: int, width: int, tile: int) -> tuple[int, int]:
    """Idefics3's `resize_for_vision_encoder` size: both edges up to multiples of the tile."""
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / aspect) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * aspect) / tile) * tile
    return height, width


class ClipLayout:
    """CLIP (LLaVA-1.5): shortest edge to a size, then a centre crop; one tile, no mask."""

    uses_mask = False

    def __init__(self, shortest: int, crop: tuple[int, int], resample: int) -> None:
        self.shortest, self.crop, self.resample = shortest, crop, resample

    def tiles(self, image: Image.Image) -> tuple[np.ndarray, Grid]:
        """The one centre-cropped image, (3, H, W) as LLaVA has no tile dimension; key (H, W)."""
        from transformers.image_transforms import center_crop
        from transformers.image_utils import ChannelDimension

        image = resize(
            image, *clip_resized(image.height, image.width, self.shortest), self.resample
        )
        last = ChannelDimension.LAST
        # The processor's own crop, dtype-agnostic: it pads with zeros when the image is smaller.
        cropped = center_crop(np.asarray(image), self.crop, last, input_data_format=last)
        return chw(cropped), self.crop

    def grid(self, width: int, height: int) -> Grid:
        """Always the crop size."""
        return self.crop

    def replacement_inputs(self, key: Grid) -> dict[str, Any]:
        """LLaVA's replacement reads only the processed image's height and width."""
        height, width = key
        return {"pixel_values": [np.zeros((3, height, width), dtype=np.uint8)]}


def clip_resized(height: int, width: int, shortest: int) -> tuple[int, int]:
    """transformers' shortest-edge size (not square): the long side scaled and truncated."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest * long / short)
    return (new_long, shortest) if width <= height else (shortest, new_long)


def _edge(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
    return int(value) if value else None


def _resample(image_processor: Any) -> int:
    resample = getattr(image_processor, "resample", None)
    return _BILINEAR if resample is None else int(resample)


def _idefics3(image_processor: Any) -> _Layout | None:
    flags = ("do_convert_rgb", "do_resize", "do_rescale", "do_normalize", "do_pad")
    if not all(getattr(image_processor, flag, False) for flag in flags):
        return None
    edge = _edge(image_processor.size, "longest_edge")
    tile = _edge(image_processor.max_image_size, "longest_edge")
    if edge is None or tile is None:
        return None
    splitting = bool(image_processor.do_image_splitting)
    return Idefics3Layout(edge, tile, splitting, _resample(image_processor))


def _clip(image_processor: Any) -> _Layout | None:
    flags = ("do_convert_rgb", "do_resize", "do_center_crop", "do_rescale", "do_normalize")
    if not all(getattr(image_processor, flag, False) for flag in flags):
        return None
    if getattr(image_processor, "do_pad", False):
        return None
    size, crop = image_processor.size, image_processor.crop_size
    shortest = _edge(size, "shortest_edge")
    height, width = _edge(crop, "height"), _edge(crop, "width")
    if shortest is None or _edge(size, "longest_edge") or height is None or width is None:
        return None
    return ClipLayout(shortest, (height, width), _resample(image_processor))


def _qualified(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


_MODELS = "transformers.models"
# (processor class, image processor class) -> layout builder. Exact classes only: a subclass or
# the torchvision backend may resize differently, and then only its own processor is exact.
KNOWN: dict[tuple[str, str], Callable[[Any], _Layout | None]] = {
    (
        f"{_MODELS}.idefics3.processing_idefics3.Idefics3Processor",
        f"{_MODELS}.idefics3.image_processing_pil_idefics3.Idefics3ImageProcessorPil",
    ): _idefics3,
    (
        f"{_MODELS}.llava.processing_llava.LlavaProcessor",
        f"{_MODELS}.clip.image_processing_pil_clip.CLIPImageProcessorPil",
    ): _clip,
}


def fast_pixels_for(processor: Any) -> FastPixels | None:
    """The exact uint8 path for this processor as it is configured now, or None if unknown."""
    image_processor: Any = getattr(processor, "image_processor", None)
    build = KNOWN.get((_qualified(processor), _qualified(image_processor)))
    layout = build(image_processor) if build is not None else None
    if layout is None:
        return None
    norm = PixelNorm(
        rescale=float(image_processor.rescale_factor),
        mean=_per_channel(image_processor.image_mean),
        std=_per_channel(image_processor.image_std),
    )
    return FastPixels(norm, layout)


def _per_channel(value: Any) -> tuple[float, ...]:
    # The processor repeats a single mean or std over the three channels.
    if isinstance(value, int | float):
        return (float(value),) * 3
    return tuple(float(v) for v in value)
