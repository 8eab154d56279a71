"""The post embedding: the mean last hidden state over the post's whole prompt (its text and
every image), read off the prefill that the post's questions share, checked against a plain
forward of the prompt alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from operators.cache import SignalCache
from operators.jobs import About, PostJob, TaskKind, VlmTask
from operators.tasks import VlmOperator
from tests.unit.operators.reference import plain_post_embedding, plain_probability

POST_EMBED = VlmTask(TaskKind.EMBED, "", About.POST)
SPAM = VlmTask(TaskKind.QUESTION, "Is this post spam?", About.POST)
IMAGE_EMBED = VlmTask(TaskKind.EMBED)
TEXT = "Selling my old bike, DM me on the other app and pay there."


def check_close(vector, reference) -> None:
    got = torch.tensor(vector)
    assert got.shape == reference.shape
    assert torch.linalg.vector_norm(got - reference) <= 1e-4 * torch.linalg.vector_norm(reference)


@pytest.mark.parametrize("count", [0, 1, 2])
def test_the_post_embedding_matches_a_plain_forward(vlm, images, count):
    job = PostJob(tuple(images[:count]), TEXT, (POST_EMBED, SPAM))
    [signals] = VlmOperator(vlm).run_posts([job])
    check_close(signals.values[POST_EMBED], plain_post_embedding(vlm, images[:count], TEXT))
    expected = plain_probability(vlm, images[:count], TEXT, SPAM)
    assert signals.values[SPAM] == pytest.approx(expected, abs=1e-4)


def test_posts_of_other_lengths_in_the_batch_change_nothing(vlm, images):
    """Left padding (a long post beside a short one) stays out of the mean."""
    jobs = [
        PostJob((images[0],), "short", (POST_EMBED,)),
        PostJob(tuple(images[:3]), TEXT * 4, (POST_EMBED, SPAM)),
        PostJob((), "only words here", (POST_EMBED,)),
    ]
    results = VlmOperator(vlm).run_posts(jobs)
    for job, signals in zip(jobs, results, strict=True):
        check_close(signals.values[POST_EMBED], plain_post_embedding(vlm, job.images, job.text))


def test_the_plain_engine_gives_the_same_embedding(vlm, images):
    plain = dataclasses.replace(vlm, spec=vlm.spec.model_copy(update={"engine": "plain"}))
    job = PostJob(tuple(images[:2]), TEXT, (POST_EMBED, IMAGE_EMBED))
    [signals] = VlmOperator(plain).run_posts([job])
    check_close(signals.values[POST_EMBED], plain_post_embedding(vlm, images[:2], TEXT))
    assert len(signals.values[IMAGE_EMBED]) == len(signals.values[POST_EMBED])


def test_a_post_with_nothing_to_read_embeds_as_empty(vlm):
    [signals] = VlmOperator(vlm).run_posts([PostJob((), None, (POST_EMBED,))])
    assert signals.values[POST_EMBED] == []


def test_the_embedding_is_cached_by_post(vlm, images):
    operator = VlmOperator(vlm, SignalCache.in_memory())
    job = PostJob((images[0],), TEXT, (POST_EMBED,))
    [first] = operator.run_posts([job])
    [again] = operator.run_posts([job])
    assert (again.cache_hits, again.cache_misses) == (1, 0)
    assert again.values[POST_EMBED] == pytest.approx(first.values[POST_EMBED], rel=1e-6)
