"""The plain engine (each task its own full prompt, one plain forward) against an independent
plain forward written here, and the shared-prefix engine against it, on both tiny families."""

from __future__ import annotations

import dataclasses

import pytest

from operators.jobs import About, PostJob, TaskKind, VlmTask
from operators.tasks import VlmOperator
from tests.unit.operators.reference import plain_probability

SPAM = VlmTask(TaskKind.QUESTION, "Does this post ask to pay off the platform?", About.POST)
THREAT = VlmTask(TaskKind.LABEL, "a threat of violence", About.POST)
WEAPON = VlmTask(TaskKind.QUESTION, "Is there a weapon?")
VIOLENCE = VlmTask(TaskKind.LABEL, "violence")
DESCRIBE = VlmTask(TaskKind.DESCRIBE)
TEXT = "Selling my old bike, DM me on the other app and pay there."
LONG = "the quick brown fox jumps over the lazy dog " * 200


def plain(vlm):
    return dataclasses.replace(vlm, spec=vlm.spec.replaced(engine="plain"))


@pytest.mark.parametrize("count", [0, 1, 3])
@pytest.mark.parametrize("text", [TEXT, LONG], ids=["short", "long"])
def test_the_plain_engine_is_a_plain_forward_of_each_prompt(vlm, images, count, text):
    job = PostJob(tuple(images[:count]), text, (SPAM, THREAT))
    [signals] = VlmOperator(plain(vlm)).run_posts([job])
    for task in job.tasks:
        expected = plain_probability(vlm, images[:count], text, task)
        assert signals.values[task] == pytest.approx(expected, abs=1e-5)


def test_plain_image_tasks_take_the_max_over_images_of_plain_forwards(vlm, images):
    job = PostJob(tuple(images[:2]), TEXT, (WEAPON, VIOLENCE))
    [signals] = VlmOperator(plain(vlm)).run_posts([job])
    for task in job.tasks:
        expected = max(plain_probability(vlm, [image], None, task) for image in images[:2])
        assert signals.values[task] == pytest.approx(expected, abs=1e-5)


def test_the_shared_prefix_engine_agrees_with_the_plain_one_on_these_families(vlm, images):
    jobs = [
        PostJob(tuple(images[:2]), TEXT, (SPAM, THREAT, WEAPON, VIOLENCE, DESCRIBE)),
        PostJob((), "text only", (SPAM, THREAT)),
        PostJob(tuple(images[1:4]), LONG, (SPAM, WEAPON, DESCRIBE)),
    ]
    shared = VlmOperator(vlm).run_posts(jobs)
    reference_run = VlmOperator(plain(vlm)).run_posts(jobs)
    for job, ours, theirs in zip(jobs, shared, reference_run, strict=True):
        for task in job.tasks:
            if task.kind is TaskKind.DESCRIBE:
                assert ours.values[task] == theirs.values[task]
            else:
                assert ours.values[task] == pytest.approx(theirs.values[task], abs=1e-4)
