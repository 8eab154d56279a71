"""The plain engine (each task its own full prompt, one plain forward) against an independent
plain forward written here, and the shared-prefix engine against it, on both tiny families."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from operators.batching import encode_image, processor_path
from operators.forward import yes_probability
from operators.jobs import About, PostJob, TaskKind, VlmTask
from operators.prefixes import encode_post_text, image_prefix_ids, post_prefix_ids
from operators.tasks import VlmOperator
from operators.work import image_task_text, post_task_text

SPAM = VlmTask(TaskKind.QUESTION, "Does this post ask to pay off the platform?", About.POST)
THREAT = VlmTask(TaskKind.LABEL, "a threat of violence", About.POST)
WEAPON = VlmTask(TaskKind.QUESTION, "Is there a weapon?")
VIOLENCE = VlmTask(TaskKind.LABEL, "violence")
DESCRIBE = VlmTask(TaskKind.DESCRIBE)
TEXT = "Selling my old bike, DM me on the other app and pay there."
LONG = "the quick brown fox jumps over the lazy dog " * 200


def plain(vlm):
    return dataclasses.replace(vlm, spec=dataclasses.replace(vlm.spec, engine="plain"))


def reference(vlm, images, text, task) -> float:
    """This test's own plain forward: prefix + suffix ids and the processor's pixels, one row."""
    vlm = processor_path(vlm)
    encodings = [encode_image(vlm, image.image) for image in images]
    if task.about is About.POST:
        post = encode_post_text(vlm, text) if text else None
        prefix = post_prefix_ids(vlm, [e.expansion for e in encodings], post)
        suffix = post_task_text(vlm, task) + vlm.prompts.layout(len(images)).tail
    else:
        prefix = image_prefix_ids(vlm, encodings[0].expansion)
        suffix = vlm.layout.task_text(image_task_text(vlm, task))
    ids = torch.tensor([prefix + vlm.tokenizer(suffix, add_special_tokens=False)["input_ids"]])
    pixels = {}
    if encodings:
        dim = 1 if vlm.family == "idefics3" else 0  # Idefics3: one row holding n images
        for key in encodings[0].pixel_inputs:
            pixels[key] = torch.cat([e.pixel_inputs[key] for e in encodings], dim=dim)
    with torch.no_grad():
        logits = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids), **pixels).logits
    return yes_probability(logits[:, -1].float(), vlm.yes_ids, vlm.no_ids).item()


@pytest.mark.parametrize("count", [0, 1, 3])
@pytest.mark.parametrize("text", [TEXT, LONG], ids=["short", "long"])
def test_the_plain_engine_is_a_plain_forward_of_each_prompt(vlm, images, count, text):
    job = PostJob(tuple(images[:count]), text, (SPAM, THREAT))
    [signals] = VlmOperator(plain(vlm)).run_posts([job])
    for task in job.tasks:
        expected = reference(vlm, images[:count], text, task)
        assert signals.values[task] == pytest.approx(expected, abs=1e-5)


def test_plain_image_tasks_take_the_max_over_images_of_plain_forwards(vlm, images):
    job = PostJob(tuple(images[:2]), TEXT, (WEAPON, VIOLENCE))
    [signals] = VlmOperator(plain(vlm)).run_posts([job])
    for task in job.tasks:
        expected = max(reference(vlm, [image], None, task) for image in images[:2])
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
