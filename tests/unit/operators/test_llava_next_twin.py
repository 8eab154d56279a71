"""The LLaVA-NeXT and LLaVA-OneVision twins (llava-v1.6-mistral-7b-hf, llava-onevision-qwen2-
0.5b-ov-hf: anyres tiles plus a base image, unpadded grid features with a newline per row,
`image_sizes` telling the model the grid; small random weights). The model returns one packed
feature tensor per image, so the shared-prefix engine places them right and the load-time check
keeps it. OneVision's several images in one prompt are each a base tile, as its processor shows
a prompt's grouped images; checked against the processor's own inputs and the model's forward."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from operators import families
from operators.batching import encode_image
from operators.exceptions import UnsupportedModel
from operators.families.base import FamilyRegistry
from operators.families.llava_next import LLAVA_ONEVISION
from operators.forward import encode_images, yes_probability
from operators.jobs import About, PostJob, TaskKind, VlmTask
from operators.plain import plain_inputs
from operators.prompts import POST_TEXT_CLOSE, POST_TEXT_OPEN
from operators.selfcheck import (
    TOLERANCE,
    _probe_image,
    check_engine,
    post_difference,
    processor_difference,
    with_engine,
)
from operators.tasks import VlmOperator
from operators.work import post_task_text

NEXT = "llava-hf/llava-v1.6-mistral-7b-hf"
ONEVISION = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
SPAM = VlmTask(TaskKind.QUESTION, "Does this post ask to pay off the platform?", About.POST)
WEAPON = VlmTask(TaskKind.QUESTION, "Is there a weapon in this image?")
TEXT = "Selling my old bike, DM me on the other app and pay there."


@pytest.fixture(scope="module", params=[NEXT, ONEVISION])
def twin(request, twins):
    return request.param, twins.vlm(request.param)


@pytest.fixture(scope="module")
def onevision(twins):
    return twins.vlm(ONEVISION)


def test_a_large_image_is_a_grid_of_tiles_and_a_base_image(twin):
    name, vlm = twin
    encoding = encode_image(vlm, _probe_image(1400, 1000, seed=40).image)
    tiles = 4 if name == NEXT else 12  # 672x672 from 336 tiles; 1152x1536 from 384 tiles
    tile = vlm.model.config.vision_config.image_size
    assert tuple(encoding.pixel_inputs["pixel_values"].shape) == (1, tiles + 1, 3, tile, tile)
    assert encoding.pixel_inputs["image_sizes"].tolist() == [[1000, 1400]]
    # Every placeholder token has one packed feature: base, unpadded grid, newline per row.
    features = encode_images(vlm, encoding.pixel_inputs)
    assert len(features) == 1
    per_tile = (tile // vlm.model.config.vision_config.patch_size) ** 2
    assert features[0].shape[0] == len(encoding.expansion) > 2 * per_tile


def test_onevision_shrinks_a_grid_past_nine_tiles(onevision):
    encoding = encode_image(onevision, _probe_image(1400, 1000, seed=40).image)
    side = 384 // 14
    assert len(encoding.expansion) < side * side * 10  # 13 tiles' worth of features, cut to ~9


def test_image_sizes_reach_the_model_and_decide_its_features(twin):
    _, vlm = twin
    encoding = encode_image(vlm, _probe_image(640, 300, seed=7).image)
    inputs = plain_inputs(vlm, torch.tensor(list(encoding.expansion)), [encoding])
    assert torch.equal(inputs["image_sizes"].cpu(), encoding.pixel_inputs["image_sizes"])
    turned = {**encoding.pixel_inputs, "image_sizes": encoding.pixel_inputs["image_sizes"].flip(-1)}
    assert encode_images(vlm, turned)[0].shape[0] != len(encoding.expansion)


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(twin):
    _, vlm = twin
    assert processor_difference(vlm) == pytest.approx(0.0, abs=1e-6)


def test_the_load_time_check_keeps_the_shared_prefix_engine(twin, twins):
    name, _ = twin
    check = twins.engine_check(name)
    assert not check.fell_back, f"{name}: {check.reason}"
    assert check.max_difference is not None and check.max_difference <= TOLERANCE


def grouped_reference(vlm, images, text, task, grouped=True) -> float:
    """P(yes) from the model's own forward of what the processor makes of the rendered prompt,
    `images` given as one prompt's (grouped, as `apply_chat_template` gives them) or as a flat
    list (each image alone: the form both engines ran before)."""
    framed = POST_TEXT_OPEN + text + POST_TEXT_CLOSE + post_task_text(vlm, task)
    content = [{"type": "image"}] * len(images) + [{"type": "text", "text": framed}]
    messages = [{"role": "user", "content": content}]
    prompt = vlm.processor.apply_chat_template(messages, add_generation_prompt=True)
    pictures = [image.image for image in images]
    inputs = vlm.processor(
        text=[prompt], images=[pictures] if grouped else pictures, return_tensors="pt"
    )
    with torch.no_grad():
        logits = vlm.model(**inputs).logits[:, -1].float()
    return float(yes_probability(logits, vlm.yes_ids, vlm.no_ids))


def several(shape: str) -> tuple:
    images = [_probe_image(200 + 40 * n, 160, seed=30 + n) for n in range(3)]
    return {"two": images[:2], "three": images, "one twice": [images[0], images[0]]}[shape]


@pytest.mark.parametrize("shape", ["two", "three", "one twice"])
def test_onevision_plain_engine_shows_several_images_as_the_grouped_processor_does(
    onevision, shape
):
    """A prompt's several images each as its base tile (729 + 1 tokens, `batch_num_images`), as
    the processor shows them grouped per prompt; tiling each as if alone is measurably apart."""
    vlm, images = onevision, several(shape)
    job = PostJob(tuple(images), TEXT, (SPAM,))
    [signals] = VlmOperator(with_engine(vlm, "plain")).run_posts([job])
    reference = grouped_reference(vlm, images, TEXT, SPAM)
    assert signals.values[SPAM] == pytest.approx(reference, abs=1e-6)
    each_alone = grouped_reference(vlm, images, TEXT, SPAM, grouped=False)
    assert abs(each_alone - reference) > 10 * TOLERANCE  # the old form: the test can fail


def test_onevision_shared_engine_agrees_with_plain_on_grouped_and_lone_images(onevision):
    """One chunk holding an image alone (its grid) and grouped (its base tile), and a post
    showing one image twice (a lone grouped encoding): shared-prefix within 1e-3 of plain."""
    two, three, twice = several("two"), several("three"), several("one twice")
    tasks = (SPAM, WEAPON)
    jobs = [
        PostJob(tuple(two), TEXT, tasks),
        PostJob(tuple(twice), TEXT, tasks),
        PostJob((three[2],), TEXT, tasks),
        PostJob(tuple(three), TEXT, (SPAM,)),
    ]
    shared = VlmOperator(onevision).run_posts(jobs)
    plain = VlmOperator(with_engine(onevision, "plain")).run_posts(jobs)
    for job, ours, theirs in zip(jobs, shared, plain, strict=True):
        for task in job.tasks:
            assert ours.values[task] == pytest.approx(theirs.values[task], abs=TOLERANCE)
    # Chunk by chunk, images encoded a chunk ahead on a thread: the same encodings, kept apart.
    spec = onevision.spec.replaced(preprocess_threads=1, max_rows_per_forward=2)
    chunked = VlmOperator(dataclasses.replace(onevision, spec=spec)).run_posts(jobs)
    for job, ours, theirs in zip(jobs, chunked, shared, strict=True):
        for task in job.tasks:
            assert ours.values[task] == pytest.approx(theirs.values[task], abs=1e-5)
    [alone] = VlmOperator(with_engine(onevision, "plain")).run_posts(
        [PostJob((twice[0],), "", (WEAPON,))]
    )
    assert plain[1].values[WEAPON] == pytest.approx(alone.values[WEAPON], abs=1e-6)


def test_the_load_time_check_refuses_onevision_with_each_image_tiled_alone(onevision, monkeypatch):
    ungrouped = dataclasses.replace(LLAVA_ONEVISION, groups_images=False)
    monkeypatch.setattr(families, "FAMILIES", FamilyRegistry({"llava_onevision": ungrouped}))
    assert post_difference(onevision) == math.inf
    with pytest.raises(UnsupportedModel, match="other tokens than the processor"):
        check_engine(onevision)
