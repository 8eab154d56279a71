"""Training a head: a logistic regression on post embeddings, with cross-validated metrics.

The metrics are measured on held-out folds (each example scored by a model that never saw it),
and the threshold is chosen on those held-out scores; the head itself is then fitted on every
example.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = np.array([0, 1] * 40)
    >>> vectors = rng.normal(size=(80, 8)) + labels[:, None]
    >>> head = train_head("demo", Examples(vectors, labels), EmbeddingRef(model="m", dim=8))
    >>> head.metrics.auroc > 0.9, head.examples, head.positives
    (True, 80, 40)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from heads.exceptions import TrainingRefused
from heads.metrics import summary
from heads.model import EmbeddingRef, Head, HeadMetrics

FOLDS = 5
MIN_PER_CLASS = 5  # fewer and a held-out fold cannot hold both classes
DEFAULT_PRECISION = 0.9
REGULARIZATION = 1.0  # scikit-learn's C: the inverse strength of the L2 penalty


@dataclass(frozen=True)
class Examples:
    """Training vectors (one row per post) and their 0/1 labels."""

    vectors: np.ndarray
    labels: np.ndarray

    def __init__(self, vectors: ArrayLike, labels: ArrayLike) -> None:
        matrix = np.asarray(vectors, dtype=np.float64)
        flags = np.asarray(labels).ravel()
        if matrix.ndim != 2 or matrix.shape[0] != flags.size:
            raise TrainingRefused(
                f"{flags.size} labels for vectors of shape {tuple(matrix.shape)}: "
                "one vector per label is needed"
            )
        if not np.isin(flags, (0, 1)).all():
            raise TrainingRefused("labels must be 0 or 1")
        if not np.isfinite(matrix).all():
            bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
            raise TrainingRefused(f"example {bad + 1}: its vector holds NaN or infinity")
        object.__setattr__(self, "vectors", matrix)
        object.__setattr__(self, "labels", flags.astype(np.int64))

    @property
    def sha256(self) -> str:
        """A hash of the vectors and labels, as trained on (float64, row order)."""
        digest = hashlib.sha256(self.vectors.tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def train_head(
    name: str,
    examples: Examples,
    embedding: EmbeddingRef,
    *,
    precision: float = DEFAULT_PRECISION,
    folds: int = FOLDS,
    seed: int = 0,
) -> Head:
    """A head on `examples`, its metrics from `folds`-fold cross-validation (version 0)."""
    if examples.vectors.shape[1] != embedding.dim:
        raise TrainingRefused(
            f"vectors of {examples.vectors.shape[1]} for an embedding of {embedding.dim}"
        )
    positives = int(examples.labels.sum())
    smaller = min(positives, examples.labels.size - positives)
    if smaller < MIN_PER_CLASS:
        raise TrainingRefused(
            f"{positives} positive and {examples.labels.size - positives} negative examples: "
            f"at least {MIN_PER_CLASS} of each are needed"
        )
    folds = min(folds, smaller)
    _need_scikit_learn()
    held_out = held_out_scores(examples, folds, seed)
    figures = summary(held_out.tolist(), examples.labels.tolist(), precision)
    model = _fit(examples.vectors, examples.labels, seed)
    threshold = figures["threshold"]
    return Head(
        name=name,
        weights=[float(w) for w in model.coef_[0]],
        bias=float(model.intercept_[0]),
        threshold=1.0 if threshold is None else threshold,
        embedding=embedding,
        training_sha256=examples.sha256,
        examples=examples.labels.size,
        positives=positives,
        metrics=HeadMetrics(target_precision=precision, folds=folds, **figures),
    )


def _need_scikit_learn() -> None:
    """Training is an optional part: without scikit-learn, say what to install."""
    try:
        import sklearn  # noqa: F401 - only whether it imports
    except ImportError as error:
        raise TrainingRefused(
            "training heads needs scikit-learn: pip install 'vlm-moderation[heads]'"
        ) from error


def held_out_scores(examples: Examples, folds: int, seed: int) -> np.ndarray:
    """Each example's score from a model fitted on the other folds (stratified, shuffled)."""
    from sklearn.model_selection import StratifiedKFold

    scores = np.empty(examples.labels.size, dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(examples.vectors, examples.labels):
        model = _fit(examples.vectors[train], examples.labels[train], seed)
        scores[test] = model.predict_proba(examples.vectors[test])[:, 1]
    return scores


def _fit(vectors: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    """scikit-learn's logistic regression fitted on the rows given."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=REGULARIZATION, max_iter=2000, random_state=seed)
    return model.fit(vectors, labels)
