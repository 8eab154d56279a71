"""The heads' metrics against independent references: scikit-learn's AUROC, a brute-force
threshold search, and calibration error counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from heads.metrics import auroc, expected_calibration_error, precision_at, threshold_for

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(20))
def test_auroc_matches_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 80))
    scores = np.round(rng.random(n), 1)  # coarse: many ties
    labels = np.r_[0, 1, rng.integers(0, 2, n - 2)]
    assert auroc(scores, labels) == pytest.approx(
        sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12
    )


def test_auroc_is_none_without_both_classes():
    assert auroc([0.2, 0.9], [1, 1]) is None
    assert auroc([0.2, 0.9], [0, 0]) is None


@pytest.mark.parametrize("seed", range(20))
def test_threshold_for_is_the_lowest_that_reaches_the_precision(seed):
    rng = np.random.default_rng(100 + seed)
    scores = np.round(rng.random(60), 2)
    labels = (rng.random(60) < scores).astype(int)
    target = 0.8
    found = threshold_for(scores, labels, target)
    reaching = [t for t in np.unique(scores) if labels[scores >= t].mean() >= target]
    assert found == (min(reaching) if reaching else None)
    if found is not None:
        assert precision_at(scores, labels, found) >= target


def test_threshold_for_never_cuts_inside_a_run_of_equal_scores():
    # Above 0.9 one positive; at 0.5 three scores of which one positive. Precision 1.0 is only
    # reached at 0.9: a cut inside the run at 0.5 would count part of it.
    assert threshold_for([0.9, 0.5, 0.5, 0.5], [1, 1, 0, 0], 1.0) == 0.9


def test_calibration_error_by_hand():
    # Bin [0.1, 0.2): scores 0.1, 0.1, labels 0, 1 -> |0.1 - 0.5| = 0.4 over 2 scores.
    # Bin [0.9, 1.0]: scores 0.9, 1.0, labels 1, 1 -> |0.95 - 1| = 0.05 over 2 scores.
    error = expected_calibration_error([0.1, 0.1, 0.9, 1.0], [0, 1, 1, 1])
    assert error == pytest.approx((2 * 0.4 + 2 * 0.05) / 4)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        auroc([0.1, 0.2, 0.3], [0, 1])
