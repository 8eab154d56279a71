"""classify: an independent probability per label (multi-label), from yes/no logits."""

from __future__ import annotations

import pytest

from operators.exceptions import ImagePreprocessError
from operators.tasks import VlmOperator
from tests.unit.operators.one_image import ask, classify

LABELS = {
    "violence": "violence or gore",
    "sexual": "nudity or sexual content",
    "weapon": "a weapon",
    "drugs": "drugs",
}


def test_probabilities_lie_in_unit_interval(vlm, images):
    for labels in classify(VlmOperator(vlm), images, LABELS):
        assert set(labels) == set(LABELS)
        assert all(0.0 <= p <= 1.0 for p in labels.values())


def test_labels_are_independent_not_a_softmax(vlm, images):
    """Multi-label: a label's probability does not change when other labels are asked too."""
    operator = VlmOperator(vlm)
    [together] = classify(operator, images[:1], LABELS)
    [alone] = classify(operator, images[:1], {"weapon": LABELS["weapon"]})
    assert together["weapon"] == pytest.approx(alone["weapon"], abs=1e-4)
    assert sum(together.values()) != pytest.approx(1.0, abs=1e-3)


def test_batch_equals_one_at_a_time(vlm, images):
    operator = VlmOperator(vlm)
    batched = classify(operator, images, LABELS)
    for image, labels in zip(images, batched, strict=True):
        [alone] = classify(operator, [image], LABELS)
        assert labels == pytest.approx(alone, abs=1e-4)


def test_broken_image_fails_alone(vlm, images, degenerate_image):
    operator = VlmOperator(vlm)
    results = classify(operator, [degenerate_image, images[2]], LABELS)
    assert isinstance(results[0], ImagePreprocessError)
    assert results[1] == pytest.approx(classify(operator, [images[2]], LABELS)[0], abs=1e-4)


def test_label_and_question_share_the_wording_template(vlm, images):
    operator = VlmOperator(vlm)
    question = vlm.spec.label_question.format(label=LABELS["drugs"])
    [labels] = classify(operator, images[:1], LABELS)
    [answers] = ask(operator, images[:1], {"drugs": question})
    assert labels["drugs"] == pytest.approx(answers["drugs"], abs=1e-5)
