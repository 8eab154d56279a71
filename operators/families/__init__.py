"""What differs between model families, one module per family, looked up by `model_type`.

Each family module (`idefics3`, `llava`, `gemma3`, `paligemma`, `qwen_vl`, ...) defines one
`Family`: its model types, vision tower, extra model inputs, prompt quirks, refusal and twin
builder. They are registered here, explicitly, in one list; the engines, loading and twins ask
`family_of(model_type)`.

>>> family_of("llava").vision_tower
'vision_tower'
"""

from __future__ import annotations

from operators.families.aya_vision import AYA_VISION
from operators.families.base import DEFAULT, Family, FamilyRegistry, Kind, Twin
from operators.families.gemma3 import GEMMA3
from operators.families.idefics3 import IDEFICS3
from operators.families.internvl import INTERNVL
from operators.families.llama4 import LLAMA4
from operators.families.llava import LLAVA
from operators.families.llava_next import LLAVA_NEXT, LLAVA_ONEVISION
from operators.families.mistral3 import MISTRAL3
from operators.families.paligemma import PALIGEMMA
from operators.families.qwen_vl import QWEN_VL
from operators.families.shieldgemma2 import SHIELDGEMMA2

__all__ = ["DEFAULT", "FAMILIES", "Family", "FamilyRegistry", "Kind", "Twin", "family_of"]

MROPE_REFUSAL = (
    "uses multimodal rotary positions, and its plain forward is not yet checked against the "
    "published processing (only Qwen2.5-VL and Qwen3-VL are); use a Qwen2.5-VL, Qwen3-VL, "
    "Idefics3/SmolVLM, LLaVA-family, Gemma 3 or Mistral 3 checkpoint"
)
FAMILIES = FamilyRegistry()
for _family in (
    IDEFICS3,
    LLAVA,
    LLAVA_NEXT,
    LLAVA_ONEVISION,
    GEMMA3,
    MISTRAL3,
    INTERNVL,
    AYA_VISION,
    SHIELDGEMMA2,
    PALIGEMMA,
    QWEN_VL,
    Family(("qwen2_vl", "glm4v"), refused=MROPE_REFUSAL),
    LLAMA4,
):
    FAMILIES.register(_family)


def family_of(model_type: str) -> Family:
    """The registered family of `model_type`, or the defaults."""
    return FAMILIES.get(model_type)
