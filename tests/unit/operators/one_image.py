"""One task over each of some images, through `VlmOperator.run`: a value per image, or its error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from operators.exceptions import OperatorError
from operators.images import LoadedImage
from operators.tasks import ImageJob, ImageSignals, VlmOperator


def _pick(results: list[ImageSignals | OperatorError], attribute: str) -> list[object]:
    return [r if isinstance(r, OperatorError) else getattr(r, attribute) for r in results]


def ask(
    operator: VlmOperator, images: Sequence[LoadedImage], questions: Mapping[str, str]
) -> list[object]:
    """P(yes) per question per image: a dict of floats, or the image's typed error."""
    return _pick(operator.run([ImageJob(i, questions=questions) for i in images]), "answers")


def classify(
    operator: VlmOperator, images: Sequence[LoadedImage], labels: Mapping[str, str]
) -> list[object]:
    """An independent probability per label per image (multi-label), or a typed error."""
    return _pick(operator.run([ImageJob(i, labels=labels) for i in images]), "labels")


def describe(operator: VlmOperator, images: Sequence[LoadedImage]) -> list[object]:
    """A caption per image by batched greedy generation, or a typed error."""
    return _pick(operator.run([ImageJob(i, describe=True) for i in images]), "description")


def embed(operator: VlmOperator, images: Sequence[LoadedImage]) -> list[object]:
    """A pooled float32 image embedding per image, or a typed error."""
    return _pick(operator.run([ImageJob(i, embed=True) for i in images]), "embedding")
