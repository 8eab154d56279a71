"""embed: a pooled float32 vector from the projected image tokens, from the shared encoding."""

from __future__ import annotations

import math

import pytest

from operators.exceptions import ImagePreprocessError
from operators.tasks import ImageJob, VlmOperator
from tests.unit.operators.one_image import embed


def test_embedding_is_a_float_vector_of_model_width(vlm, images):
    embeddings = embed(VlmOperator(vlm), images)
    width = vlm.model.config.text_config.hidden_size
    for embedding in embeddings:
        assert len(embedding) == width
        assert all(math.isfinite(value) for value in embedding)
    assert embeddings[0] != embeddings[1]


def test_batch_equals_one_at_a_time(vlm, images):
    operator = VlmOperator(vlm)
    batched = embed(operator, images)
    for image, embedding in zip(images, batched, strict=True):
        assert embedding == pytest.approx(embed(operator, [image])[0], abs=1e-5)


def test_embedding_alone_skips_the_language_model(vlm, images, count_calls):
    inner = vlm.model.model
    text_model = count_calls(getattr(inner, "text_model", None) or inner.language_model)
    embed(VlmOperator(vlm), images)
    assert text_model.calls == 0


def test_all_tasks_share_one_image_encoding(vlm, images, count_calls):
    vision = count_calls(vlm.vision_tower)
    job = ImageJob(
        images[0],
        labels={"v": "violence"},
        questions={"q": "Is it red?"},
        describe=True,
        embed=True,
    )
    [signals] = VlmOperator(vlm).run([job])
    assert vision.calls == 1
    assert signals.embedding is not None and signals.description is not None


def test_broken_image_fails_alone(vlm, images, degenerate_image):
    results = embed(VlmOperator(vlm), [degenerate_image, images[3]])
    assert isinstance(results[0], ImagePreprocessError)
    assert len(results[1]) == vlm.model.config.text_config.hidden_size
