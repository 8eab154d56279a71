"""The processor runs on the next chunk's images while a forward runs, with unchanged results."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

import operators.tasks as tasks
from operators.batching import (
    ImageEncoding,
    collate_images,
    encode_image,
    encoding_key,
    group_sizes,
    pin_encoding,
)
from operators.exceptions import ImagePreprocessError
from operators.jobs import About, PostJob, PostSignals, TaskKind, VlmTask
from operators.spec import ModelSpec
from operators.tasks import VlmOperator
from operators.work import PostWork, post_key

WEAPON = VlmTask(TaskKind.QUESTION, "Is there a weapon?")
SPAM = VlmTask(TaskKind.QUESTION, "Does this post ask to pay off the platform?", About.POST)
CAPTION = VlmTask(TaskKind.DESCRIBE)
WAIT_S = 60.0  # generous: a wait that runs out fails the test, it never passes it


def operator(vlm, threads: int, rows: int = 256) -> VlmOperator:
    spec = vlm.spec.replaced(preprocess_threads=threads, max_rows_per_forward=rows)
    return VlmOperator(dataclasses.replace(vlm, spec=spec))


def values(results) -> list[object]:
    return [r.values if isinstance(r, PostSignals) else type(r).__name__ for r in results]


@pytest.fixture
def forwards(monkeypatch):
    """Counts forward calls."""
    calls = []
    real = tasks.run_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "run_forward", counted)
    return calls


def test_threaded_preprocessing_gives_the_inline_results_over_several_chunks(vlm, images, forwards):
    jobs = [
        PostJob((images[0],), "first post", (WEAPON, SPAM)),
        PostJob((images[1], images[2]), None, (WEAPON, CAPTION)),
        PostJob((images[3],), "third post", (SPAM,)),
        PostJob((images[0], images[3]), "shares images", (WEAPON, SPAM)),
        PostJob((images[2],), None, (WEAPON,)),
    ]
    inline = operator(vlm, threads=0, rows=2).run_posts(jobs)
    inline_forwards = len(forwards)
    threaded = operator(vlm, threads=2, rows=2).run_posts(jobs)
    assert inline_forwards >= 3
    assert len(forwards) == 2 * inline_forwards
    assert all(isinstance(result, PostSignals) for result in threaded)
    assert values(threaded) == values(inline)


def test_the_next_chunks_images_are_encoded_while_a_forward_runs(vlm, images, monkeypatch):
    # One post per chunk; images[1] is needed by the second chunk only.
    jobs = [PostJob((images[0],), None, (WEAPON,)), PostJob((images[1],), None, (WEAPON,))]
    second_started = threading.Event()
    waited: list[bool] = []
    real_encode, real_forward = tasks.encode_image, tasks.run_forward

    def encode(vlm, image, grouped=False):
        if image is images[1].image:
            second_started.set()
        return real_encode(vlm, image, grouped)

    def forward(*args, **kwargs):
        if not waited:
            # Only possible if the second chunk's preprocessing runs beside this forward.
            waited.append(second_started.wait(timeout=WAIT_S))
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(tasks, "encode_image", encode)
    monkeypatch.setattr(tasks, "run_forward", forward)
    results = operator(vlm, threads=2, rows=1).run_posts(jobs)
    assert waited == [True]
    assert all(isinstance(result, PostSignals) for result in results)


def test_a_rejected_image_fails_only_its_posts(vlm, images, degenerate_image):
    jobs = [
        PostJob((images[0],), "fine", (WEAPON, SPAM)),
        PostJob((degenerate_image,), None, (WEAPON,)),
        PostJob((images[1],), None, (WEAPON,)),
        PostJob((images[2], degenerate_image), "mixed", (SPAM,)),
        PostJob((images[3],), "fine too", (SPAM,)),
    ]
    threaded = operator(vlm, threads=2, rows=2).run_posts(jobs)
    assert [type(result) for result in threaded] == [
        PostSignals,
        ImagePreprocessError,
        PostSignals,
        ImagePreprocessError,
        PostSignals,
    ]
    assert values(threaded) == values(operator(vlm, threads=0, rows=2).run_posts(jobs))


def test_the_threads_use_a_processor_of_their_own(vlm):
    threaded = operator(vlm, threads=2)._encoding_vlm()
    assert threaded.processor is not vlm.processor
    assert threaded.tokenizer.backend_tokenizer is not vlm.tokenizer.backend_tokenizer
    assert threaded.model is vlm.model


def test_preprocess_threads_are_validated_and_reach_the_spec(tmp_path):
    from pipelines.config import ModelSettings, PipelineConfig
    from pipelines.wiring import model_spec

    with pytest.raises(ValueError, match="preprocess_threads"):
        ModelSpec(name_or_path="m", preprocess_threads=-1)
    model = ModelSettings(name_or_path=str(tmp_path), preprocess_threads=0)
    assert model_spec(PipelineConfig(model=model)).preprocess_threads == 0


def test_pixels_are_not_pinned_on_the_cpu(vlm, images):
    assert not tasks.wants_pinned(vlm)
    encoding = encode_image(vlm, images[0].image)
    assert not encoding.pinned
    pixels = collate_images([encoding, encoding])["pixel_values"]
    assert torch.equal(pixels[1], encoding.pixel_inputs["pixel_values"][0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_pinned_encodings_collate_into_pinned_memory():
    small = ImageEncoding((1,), {"pixel_values": torch.ones(1, 2, 3, 4, 4)})
    large = ImageEncoding((1,), {"pixel_values": torch.ones(1, 5, 3, 4, 4)})
    pixels = collate_images([pin_encoding(small), pin_encoding(large)])["pixel_values"]
    assert pixels.is_pinned() and pixels.shape == (2, 5, 3, 4, 4)
    assert pixels[0, 2:].abs().sum() == 0


@pytest.mark.parametrize(
    "grouped",
    [
        [False, False],
        [True, True],
        [False, True, True, False, True, True, True],
        [True, True, False],
    ],
)
def test_group_sizes_patch_exactly_the_lone_images_by_the_models_rule(grouped):
    sizes = group_sizes(grouped)
    # LlavaOnevisionModel.get_image_features: an image gets its grid iff its group has size 1.
    assert [n == 1 for n in sizes for _ in range(n)] == [not flag for flag in grouped]


def test_a_grouped_image_alone_cannot_be_told_apart_from_a_lone_one():
    with pytest.raises(ValueError, match="beside another grouped image"):
        group_sizes([True, False, True, True])


def test_an_images_lone_and_grouped_encodings_are_kept_apart(images):
    job = PostJob((images[0], images[1]), "text", (WEAPON, SPAM))
    key = post_key(job)
    todo = [(images[0].sha256, WEAPON), (images[1].sha256, WEAPON), (key, SPAM)]
    work = PostWork(0, job, key, PostSignals(values={}), todo=todo)
    lone = [image.sha256 for image in job.images]
    grouped = [encoding_key(sha, True) for sha in lone]
    assert not set(lone) & set(grouped)
    assert [need.key for need in work.needed_encodings(True)] == lone + grouped
    assert [need.key for need in work.needed_encodings(False)] == lone
    alone = PostWork(0, PostJob((images[0],), "text", (SPAM,)), key, PostSignals(values={}))
    alone.todo = [(key, SPAM)]
    assert [need.key for need in alone.needed_encodings(True)] == lone[:1]
