"""The family object and its registry: what differs between model families, in one place.

The engines, loading and twins ask a family what they need to know about it instead of testing
model types themselves. A family not listed gets `Family()`, the defaults: no extra model
inputs, no twin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Given the loaded model (`operators.loading.Vlm`, which reads this package) and a prompt's ids.
ExtraInputs = Callable[[Any, "torch.Tensor"], dict[str, Any]]


def no_extra_inputs(vlm: Any, input_ids: torch.Tensor) -> dict[str, Any]:
    """Most families need nothing beyond ids, mask and the processor's pixel inputs."""
    return {}


class Kind(StrEnum):
    """What a family's checkpoints are, and so which path loads them."""

    # Generates text from images and text: `operators.loading.load_vlm` and its engines.
    IMAGE_TEXT_TO_TEXT = "image-text-to-text"
    # A safety classifier with its own signal (`operators.guards`); the VLM path refuses it.
    GUARD = "guard"


def whole_expansion(vlm: Any, ids: tuple[int, ...]) -> tuple[int, ...]:
    """Most processors expand a lone image placeholder into exactly that image's tokens."""
    return ids


def same_prompt(vlm: Any, text: str) -> str:
    """Most processors take a rendered prompt as it is."""
    return text


# Given one image's pixel inputs as the processor makes them for that image alone: how many
# entries of the model's `get_image_features(...).pooler_output` they become, in order.
FeatureEntries = Callable[[Mapping[str, "torch.Tensor"]], int]


def one_entry_per_image(pixel_inputs: Mapping[str, torch.Tensor]) -> int:
    """The tower gives one entry per image (LLaVA; Idefics3, which groups its tiles itself)."""
    return 1


def tiles_along_dim_1(pixel_inputs: Mapping[str, torch.Tensor]) -> int:
    """An image's tiles (and global image) where the processor stacks them along dim 1 of
    `pixel_values` (Idefics3, SmolVLM: one image is `(1, tiles, channels, height, width)`)."""
    return int(pixel_inputs["pixel_values"].shape[1])


def one_entry_per_tile(pixel_inputs: Mapping[str, torch.Tensor]) -> int:
    """The tower gives one entry per tile, and the processor stacks an image's tiles (and its
    thumbnail) along dim 0 of `pixel_values` (InternVL, Aya Vision: GotOcr2-style tiling)."""
    return int(pixel_inputs["pixel_values"].shape[0])


@dataclass(frozen=True)
class Twin:
    """How to build a small random-weight twin of a published checkpoint of the family.

    `processor(files, tokenizer)` builds the published processor around a small tokenizer,
    `config(files, tokenizer)` the published config with widths and depths shrunk, and
    `geometry(config, processor)` returns what the vision tower takes and what the processor
    says it gives, as two equal tuples when they agree.
    """

    processor: Callable[[dict[str, Any], Any], Any]
    config: Callable[[dict[str, Any], Any], Any]
    geometry: Callable[[Any, Any], tuple[tuple[int, ...], tuple[int, ...]]]
    # The transformers class the random weights are built with (and the twin loads with).
    model_class: str = "AutoModelForImageTextToText"


@dataclass(frozen=True)
class Family:
    """One family's facts; every field has the default most families share."""

    model_types: tuple[str, ...] = ()
    kind: Kind = Kind.IMAGE_TEXT_TO_TEXT
    # The vision encoder's attribute under `model.model`, for hooks and counting encodings.
    vision_tower: str | None = None
    # What a plain forward of a whole prompt needs beyond ids, mask and pixels, as the family's
    # processor would give it (e.g. token_type_ids marking image tokens).
    extra_inputs: ExtraInputs = field(default=no_extra_inputs)
    # The prompt layout, as a chat template, for checkpoints that publish none (PaliGemma).
    chat_template: str | None = None
    # An image's tokens from the processor's ids for a lone placeholder (`vlm`, ids), for a
    # processor that frames every text it is given as a whole prompt.
    image_expansion: Callable[[Any, tuple[int, ...]], tuple[int, ...]] = whole_expansion
    # Our rendered prompt text as the processor takes it (`vlm`, text), for the load-time
    # comparison with the processor's own inputs.
    processor_prompt: Callable[[Any, str], str] = same_prompt
    # How many vision-tower feature entries one image gives; the shared-prefix engine joins
    # them, in order, into that image's features (all its tiles fill its image tokens).
    feature_entries: FeatureEntries = field(default=one_entry_per_image)
    # How many tiles one image has, where transformers' tower may give one entry per tile
    # instead: Idefics3's gave one per tile up to transformers 5.17 and one per image later.
    # The shared-prefix engine accepts either count (`forward.join_entries`).
    tiles: FeatureEntries = field(default=one_entry_per_image)
    # Whether a prompt with two or more images shows each as the processor does when it groups
    # a prompt's images (`images=[[a, b]]`, as `apply_chat_template` calls it), the model told
    # each group's size by `batch_num_images` (LLaVA-OneVision: each image its base tile only).
    # False: every image as the processor makes it alone, whatever the prompt holds.
    groups_images: bool = False
    # Why loading refuses the family outright (None: it loads, and its engine is checked).
    refused: str | None = None
    # Published checkpoints this family can twin (`vlmod model make-tiny --like ID`).
    checkpoints: tuple[str, ...] = ()
    twin: Twin | None = None


class FamilyRegistry:
    """Families by model type; registered explicitly, never on import of a family module."""

    def __init__(self, families: Mapping[str, Family] | None = None) -> None:
        self._families: dict[str, Family] = dict(families or {})

    def register(self, family: Family) -> None:
        """Make `family` the one for each of its model types."""
        for model_type in family.model_types:
            self._families[model_type] = family

    def get(self, model_type: str) -> Family:
        """The family of `model_type`, or the defaults."""
        return self._families.get(model_type, DEFAULT)

    def twins(self, kind: Kind | None = None) -> dict[str, Family]:
        """Each twinnable published checkpoint (of `kind`, or any) and its family, in
        registration order."""
        found: dict[str, Family] = {}
        for family in self._families.values():
            if kind is not None and family.kind is not kind:
                continue
            for checkpoint in family.checkpoints:
                found.setdefault(checkpoint, family)
        return found


DEFAULT = Family()
