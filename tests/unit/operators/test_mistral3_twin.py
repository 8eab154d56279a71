"""The Mistral 3 twin (mistralai/Mistral-Small-3.1-24B-Instruct-2503's processing: Pixtral images
at their own size up to 1,540 px, one [IMG] per 28-px cell, [IMG_BREAK] per row and [IMG_END],
`image_sizes` beside the padded pixels; small random weights). Its text model is plain causal
Mistral, so the load-time check keeps it on the shared-prefix engine."""

from __future__ import annotations

import pytest
import torch

from operators.batching import collate_images, encode_image
from operators.forward import encode_images
from operators.jobs import PostJob
from operators.selfcheck import (
    PROBE_TASKS,
    PROBE_TEXT,
    TOLERANCE,
    _probe_image,
    processor_difference,
    with_engine,
)
from operators.tasks import VlmOperator

MISTRAL3 = "mistralai/Mistral-Small-3.1-24B-Instruct-2503"
# (width, height) -> (rows, columns) of 28-px cells after the fit into 1,540 px
SHAPES = {(48, 40): (2, 2), (320, 240): (9, 12), (2000, 300): (9, 55)}


@pytest.fixture(scope="module")
def mistral(twins):
    return twins.vlm(MISTRAL3)


def test_the_twin_keeps_the_tekken_control_tokens_and_pixtral_processing(mistral):
    tokenizer = mistral.tokenizer
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in ("[INST]", "[/INST]", "[IMG]")}
    assert ids == {"[INST]": 3, "[/INST]": 4, "[IMG]": 10}
    assert tokenizer.convert_tokens_to_ids(["[IMG_BREAK]", "[IMG_END]"]) == [12, 13]
    assert tokenizer.convert_tokens_to_ids(["[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]) == [17, 18]
    assert mistral.image_token_id == 10
    processor = mistral.processor
    assert type(processor.image_processor).__name__ == "PixtralImageProcessorPil"
    assert (processor.patch_size, processor.spatial_merge_size) == (14, 2)
    assert processor.image_processor.size["longest_edge"] == 1540
    assert mistral.fast_pixels is None, "fast_pixels mirrors only Idefics3 and CLIP"
    assert mistral.layout.prefix.startswith("<s>[SYSTEM_PROMPT]")
    assert mistral.layout.prefix.endswith("[INST][IMG]") and mistral.layout.suffix == "[/INST]"


def test_images_of_different_sizes_give_different_token_counts(mistral):
    images = [_probe_image(width, height, seed=7).image for width, height in SHAPES]
    encodings = [encode_image(mistral, image) for image in images]
    for encoding, (rows, columns) in zip(encodings, SHAPES.values(), strict=True):
        expansion = list(encoding.expansion)
        assert expansion.count(10) == rows * columns
        assert expansion.count(12) == rows - 1 and expansion[-1] == 13
        assert encoding.pixel_inputs["image_sizes"].tolist() == [[rows * 28, columns * 28]]
    # All three in one padded batch: each image gets its own token count of features, the same
    # features it gets alone (attention stays within an image, RoPE over its own grid).
    together = encode_images(mistral, collate_images(encodings))
    for features, encoding in zip(together, encodings, strict=True):
        alone = encode_images(mistral, encoding.pixel_inputs)[0]
        assert features.shape[0] == list(encoding.expansion).count(10)
        torch.testing.assert_close(features, alone, atol=1e-5, rtol=1e-4)


def test_image_sizes_reach_the_vision_tower(mistral):
    seen: list[list[list[int]]] = []

    def record(module, args, kwargs):
        seen.append(kwargs["image_sizes"].tolist())

    post = PostJob(
        tuple(_probe_image(w, h, seed=9) for w, h in SHAPES), PROBE_TEXT, PROBE_TASKS[:1]
    )
    handle = mistral.vision_tower.register_forward_pre_hook(record, with_kwargs=True)
    try:
        VlmOperator(mistral).run_posts([post])
    finally:
        handle.remove()
    want = [[rows * 28, columns * 28] for rows, columns in SHAPES.values()]
    assert seen and sorted(seen[-1]) == sorted(want)


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(mistral):
    assert processor_difference(mistral) == pytest.approx(0.0, abs=1e-6)


def test_the_load_time_check_keeps_mistral_3_on_the_shared_prefix_engine(twins):
    check = twins.engine_check(MISTRAL3)
    assert not check.fell_back and check.engine == "eager"
    assert check.max_difference is not None and check.max_difference <= TOLERANCE
    assert check.probes == 2, "no sliding window: no probe past it"


def test_a_post_of_images_of_three_sizes_equals_the_plain_engine(mistral):
    images = tuple(_probe_image(w, h, seed=11) for w, h in SHAPES)
    post = PostJob(images, PROBE_TEXT, PROBE_TASKS)
    shared = VlmOperator(mistral).run_posts([post])[0]
    plain = VlmOperator(with_engine(mistral, "plain")).run_posts([post])[0]
    for task in PROBE_TASKS:
        assert shared.values[task] == pytest.approx(plain.values[task], abs=1e-5), task.text
