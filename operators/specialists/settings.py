"""The settings of the CPU specialists: `post`, then each producer's section under `specialists:`.

Each producer declares its model (`settings_model`); the pipeline config checks its section
against it, and the producer reads it back from its context (`section`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEVICE_DESCRIPTION = (
    "Where onnxruntime runs the model: cpu, or cuda (onnxruntime-gpu installed and a GPU in "
    "the process, e.g. `specialists.pool.num_gpus`); refused in one line where CUDA is missing."
)


class PostBudgetSettings(BaseModel):
    """What one post may cost each image specialist (`nsfw`, `ocr`, `banks`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_budget_ms: float = Field(
        4000.0,
        gt=0,
        description="Time each image specialist may spend on one post; it always looks at the "
        "first image, and past the budget skips the rest, which the verdict names.",
    )


class OcrSettings(BaseModel):
    """How the `ocr` producer reads an image: size limits, a time budget, a confidence floor.

    Large images are downscaled before they are read.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_side: int = Field(1600, gt=0, description="Longest side read; larger images shrink.")
    max_pixels: int = Field(4_000_000, gt=0, description="Pixels read per image, after shrinking.")
    time_budget_ms: float = Field(
        2000.0,
        gt=0,
        description="Time per image, decoding included; text past it is left unread and noted.",
    )
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="Boxes read with less confidence are left out."
    )
    threads: int = Field(1, gt=0, description="onnxruntime threads per consumer.")
    device: Literal["cpu", "cuda"] = Field("cpu", description=DEVICE_DESCRIPTION)
    lines_per_batch: int = Field(
        6, gt=0, description="Lines recognised per model call; the time budget is checked between."
    )


class NsfwSettings(BaseModel):
    """The `nsfw` producer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threads: int = Field(1, gt=0, description="onnxruntime threads per consumer.")
    device: Literal["cpu", "cuda"] = Field("cpu", description=DEVICE_DESCRIPTION)


class BankSettings(BaseModel):
    """The `banks` producer: hash banks kept in Redis (`redis_url`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh_s: float = Field(
        1.0, gt=0, description="How often a consumer checks Redis for bank changes."
    )
    recent_window: int = Field(
        100_000,
        ge=0,
        description="How many recent posts' image hashes are kept in Redis, so that an image "
        "banked later finds the posts already seen with it (`vlmod bank add` decides them "
        "again); 0 keeps none.",
    )
