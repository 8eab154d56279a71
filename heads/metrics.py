"""How good a head's scores are against labels: AUROC, precision at a threshold, the threshold
that reaches a precision, and expected calibration error. Pure numpy, no scikit-learn.

    >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

CALIBRATION_BINS = 10


def _arrays(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    return s, y


def auroc(scores: ArrayLike, labels: ArrayLike) -> float | None:
    """The probability that a positive scores above a negative (ties count a half); None when
    either class is absent."""
    s, y = _arrays(scores, labels)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return None
    ranks = _average_ranks(s)
    above = ranks[y].sum() - positives * (positives + 1) / 2
    return float(above / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ranked = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ranked)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks


def precision_at(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float | None:
    """The share of positives among scores at or above `threshold`; None when none is."""
    s, y = _arrays(scores, labels)
    flagged = s >= threshold
    return float(y[flagged].mean()) if flagged.any() else None


def threshold_for(scores: ArrayLike, labels: ArrayLike, precision: float) -> float | None:
    """The lowest score threshold whose precision reaches `precision`, flagging the most posts
    that do; None when no threshold does."""
    s, y = _arrays(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    ranked, hits = s[order], y[order]
    reached = np.cumsum(hits) / np.arange(1, len(s) + 1) >= precision
    # A cut may only fall between distinct scores: the last of a run of equal scores.
    last_of_run = np.r_[ranked[1:] != ranked[:-1], True]
    usable = np.flatnonzero(reached & last_of_run)
    return float(ranked[usable[-1]]) if usable.size else None


def expected_calibration_error(
    scores: ArrayLike, labels: ArrayLike, bins: int = CALIBRATION_BINS
) -> float:
    """The mean gap between the score and the observed rate over equal-width score bins,
    weighted by how many scores each bin holds."""
    s, y = _arrays(scores, labels)
    if not s.size:
        raise ValueError("no scores to measure")
    which = np.minimum((np.clip(s, 0.0, 1.0) * bins).astype(int), bins - 1)
    gap = 0.0
    for index in range(bins):
        inside = which == index
        if inside.any():
            gap += inside.sum() * abs(s[inside].mean() - y[inside].mean())
    return float(gap / s.size)


def summary(
    scores: Sequence[float], labels: Sequence[int], precision: float
) -> dict[str, float | None]:
    """AUROC, the threshold reaching `precision`, the precision there, and ECE."""
    threshold = threshold_for(scores, labels, precision)
    return {
        "auroc": auroc(scores, labels),
        "threshold": threshold,
        "precision": None if threshold is None else precision_at(scores, labels, threshold),
        "ece": expected_calibration_error(scores, labels),
    }
