"""The records a batch of VLM work goes in and comes out as. Plain dataclasses, no model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from operators.images import LoadedImage


@dataclass(frozen=True)
class ImageJob:
    """Everything asked of one image: labels and questions (name -> text), describe, embed."""

    image: LoadedImage
    labels: Mapping[str, str] = field(default_factory=dict)
    questions: Mapping[str, str] = field(default_factory=dict)
    describe: bool = False
    embed: bool = False


@dataclass
class ImageSignals:
    """What the model said about one image; probabilities lie in [0, 1]."""

    sha256: str
    labels: dict[str, float] = field(default_factory=dict)
    answers: dict[str, float] = field(default_factory=dict)
    description: str | None = None
    embedding: list[float] | None = None
    cache_hits: int = 0
    cache_misses: int = 0
