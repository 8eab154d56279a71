"""What differs between model families, one object per family, looked up by `model_type`.

The engines, loading, fast pixels and twins ask a family what they need to know about it
instead of testing model types themselves. A family not listed gets `Family()`, the defaults:
no extra model inputs.

>>> family_of("llava").extra_inputs  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Given the loaded model (`operators.loading.Vlm`, which reads this module) and a prompt's ids.
ExtraInputs = Callable[[Any, "torch.Tensor"], dict[str, Any]]


def no_extra_inputs(vlm: Any, input_ids: torch.Tensor) -> dict[str, Any]:
    """Most families need nothing beyond ids, mask and the processor's pixel inputs."""
    return {}


def image_token_types(vlm: Any, input_ids: torch.Tensor) -> dict[str, Any]:
    """`token_type_ids` 1 on image tokens, as Gemma 3's processor gives them: the model attends
    both ways within an image's tokens."""
    return {"token_type_ids": (input_ids == vlm.image_token_id).long()}


@dataclass(frozen=True)
class Family:
    """One family's facts; every field has the default most families share."""

    model_types: tuple[str, ...] = ()
    # The vision encoder's attribute under `model.model`, for hooks and counting encodings.
    vision_tower: str | None = None
    # What a plain forward of a whole prompt needs beyond ids, mask and pixels, as the family's
    # processor would give it (e.g. token_type_ids marking image tokens).
    extra_inputs: ExtraInputs = field(default=no_extra_inputs)
    # Why loading refuses the family outright (None: it loads, and its engine is checked).
    refused: str | None = None


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


DEFAULT = Family()
MROPE_REFUSAL = (
    "uses multimodal rotary positions, which the shared-prefix engine does not build, and its "
    "plain forward is not yet checked against the published processing; use an Idefics3/SmolVLM "
    "or LLaVA-family checkpoint"
)
FAMILIES = FamilyRegistry()
for _family in (
    Family(("idefics3", "smolvlm", "idefics2"), vision_tower="vision_model"),
    Family(("llava", "llava_next", "paligemma"), vision_tower="vision_tower"),
    Family(("gemma3",), vision_tower="vision_tower", extra_inputs=image_token_types),
    Family(("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"), refused=MROPE_REFUSAL),
):
    FAMILIES.register(_family)


def family_of(model_type: str) -> Family:
    """The registered family of `model_type`, or the defaults."""
    return FAMILIES.get(model_type)
