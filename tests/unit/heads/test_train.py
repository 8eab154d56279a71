"""Training a head: held-out metrics that mean what they say, weights that score as a plain
logistic model does, and clear refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heads import EmbeddingRef, Examples, Head, TrainingRefused, train_head

pytest.importorskip("sklearn")


def examples(n: int, dim: int, signal: float, seed: int = 0) -> Examples:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)
    vectors = rng.normal(size=(n, dim))
    vectors[:, 0] += signal * (2 * labels - 1)
    return Examples(vectors, labels)


def ref(dim: int) -> EmbeddingRef:
    return EmbeddingRef(model="tiny", version="r1", dim=dim)


def test_a_separable_set_gives_a_high_held_out_auroc_and_a_threshold_at_precision():
    head = train_head("sep", examples(200, 8, signal=2.0), ref(8), precision=0.9)
    assert head.metrics.auroc > 0.95
    assert head.metrics.precision >= 0.9
    assert 0.0 < head.threshold < 1.0 and head.threshold == head.metrics.threshold
    assert (head.examples, head.metrics.folds) == (200, 5)


def test_random_labels_give_a_chance_auroc_held_out():
    """Held out means held out: with no signal the folds cannot score above chance, though a
    model fitted and scored on the same rows would."""
    aurocs = [
        train_head("noise", examples(120, 30, 0.0, s), ref(30)).metrics.auroc for s in range(5)
    ]
    assert abs(float(np.mean(aurocs)) - 0.5) < 0.08


def test_the_head_scores_as_the_fitted_logistic_model():
    from sklearn.linear_model import LogisticRegression

    data = examples(150, 6, signal=1.0, seed=3)
    head = train_head("ref", data, ref(6))
    model = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(data.vectors, data.labels)
    for row in data.vectors[:20]:
        expected = model.predict_proba(row[None, :])[0, 1]
        assert head.score(row.tolist()) == pytest.approx(expected, rel=1e-9)
        logit = model.intercept_[0] + float(np.dot(model.coef_[0], row))
        assert head.score(row.tolist()) == pytest.approx(1 / (1 + math.exp(-logit)), rel=1e-9)


def test_the_training_hash_follows_the_data():
    a, b = examples(50, 4, 1.0, 1), examples(50, 4, 1.0, 2)
    assert a.sha256 == examples(50, 4, 1.0, 1).sha256 != b.sha256


@pytest.mark.parametrize(
    ("vectors", "labels", "reason"),
    [
        ([[0.0]] * 12, [1] * 10 + [0] * 2, "10 positive and 2 negative examples: at least 5"),
        ([[0.0, 1.0]] * 3, [0, 1], "2 labels for vectors of shape (3, 2)"),
        ([[0.0], [float("nan")]], [0, 1], "example 2: its vector holds NaN"),
        ([[0.0], [1.0]], [0, 2], "labels must be 0 or 1"),
    ],
)
def test_bad_examples_are_refused_with_the_reason(vectors, labels, reason):
    with pytest.raises(TrainingRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        train_head("bad", Examples(vectors, labels), ref(len(vectors[0])))


def test_a_head_refuses_an_embedding_of_another_size():
    head = train_head("dims", examples(40, 3, 2.0), ref(3))
    with pytest.raises(ValueError, match="reads embeddings of 3, got 2"):
        head.score([0.0, 1.0])
    with pytest.raises(ValueError, match="3 weights for an embedding of 4"):
        Head.model_validate({**head.model_dump(), "embedding": ref(4).model_dump()})
