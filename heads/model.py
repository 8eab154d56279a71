"""A head: a logistic model on a post embedding, with what it was trained on and how well it
did. Frozen; a new training makes a new version, never a change to an old one.

    >>> head = Head(name="spam-wave", weights=[2.0, -1.0], bias=0.5, threshold=0.7,
    ...             embedding=EmbeddingRef(model="tiny", dim=2), training_sha256="0" * 64,
    ...             examples=40, positives=20, metrics=HeadMetrics(auroc=0.9, ece=0.05))
    >>> round(head.score([1.0, 1.0]), 4)
    0.8176
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class EmbeddingRef(BaseModel):
    """The embedding a head reads: the model that made it, its version, its size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(..., description="The model (checkpoint) whose post embedding it reads.")
    version: str | None = Field(None, description="The model's revision, when known.")
    dim: int = Field(..., ge=1, description="Length of the embedding vector.")


class HeadMetrics(BaseModel):
    """Cross-validated figures of the training, on held-out folds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auroc: float | None = Field(None, description="Area under the ROC curve.")
    threshold: float | None = Field(
        None, description="Score at which the target precision is reached; null if never."
    )
    precision: float | None = Field(None, description="Precision at `threshold`.")
    target_precision: float | None = Field(None, description="The precision asked for.")
    ece: float | None = Field(None, description="Expected calibration error, 10 bins.")
    folds: int = Field(0, ge=0, description="Cross-validation folds.")


class Head(BaseModel):
    """One version of a head."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="Lower-case letters, digits and dashes.")
    version: int = Field(0, ge=0, description="Given by the store on save; 0 before.")
    weights: list[float] = Field(..., description="One weight per embedding dimension.")
    bias: float = Field(..., description="The logistic model's intercept.")
    threshold: float = Field(..., ge=0.0, le=1.0, description="Score that flags a post.")
    embedding: EmbeddingRef
    training_sha256: str = Field(..., description="sha256 of the training vectors and labels.")
    examples: int = Field(..., ge=0, description="Training examples.")
    positives: int = Field(..., ge=0, description="Positive training examples.")
    metrics: HeadMetrics = Field(default_factory=HeadMetrics)
    trained_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(
                f"head name {name!r}: use lower-case letters, digits and dashes (up to 63)"
            )
        return name

    @model_validator(mode="after")
    def _sizes(self) -> Head:
        if len(self.weights) != self.embedding.dim:
            raise ValueError(
                f"{len(self.weights)} weights for an embedding of {self.embedding.dim}"
            )
        return self

    def score(self, vector: Sequence[float]) -> float:
        """The head's probability for one embedding."""
        if len(vector) != len(self.weights):
            raise ValueError(
                f"head {self.name} v{self.version} reads embeddings of {len(self.weights)}, "
                f"got {len(vector)}"
            )
        logit = self.bias + math.fsum(w * x for w, x in zip(self.weights, vector, strict=True))
        return _sigmoid(logit)


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    tail = math.exp(logit)
    return tail / (1.0 + tail)
