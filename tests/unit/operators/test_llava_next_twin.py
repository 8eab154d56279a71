"""The LLaVA-NeXT and LLaVA-OneVision twins (llava-v1.6-mistral-7b-hf, llava-onevision-qwen2-
0.5b-ov-hf: anyres tiles plus a base image, unpadded grid features with a newline per row,
`image_sizes` telling the model the grid; small random weights). The model returns one packed
feature tensor per image, so the shared-prefix engine places them right and the load-time check
keeps it."""

from __future__ import annotations

import pytest
import torch

from operators.batching import encode_image
from operators.forward import encode_images
from operators.plain import plain_inputs
from operators.selfcheck import TOLERANCE, _probe_image, processor_difference

NEXT = "llava-hf/llava-v1.6-mistral-7b-hf"
ONEVISION = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"


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


def test_onevision_prompts_tile_each_image_as_the_processor_does_for_a_flat_image_list(onevision):
    """Known gap: grouped per prompt (as apply_chat_template groups them), OneVision's processor
    shows each of several images as its base tile only (729 + 1 tokens); our prompts tile each
    image as if alone, as the processor does for a flat list of images."""
    vlm = onevision
    images = [_probe_image(200 + 40 * n, 160, seed=30 + n).image for n in range(2)]
    ours = sum(len(encode_image(vlm, image).expansion) for image in images)

    def image_tokens(grouped: list) -> int:
        encoded = vlm.processor(text=["<image><image>"], images=grouped, return_tensors="pt")
        return int((encoded["input_ids"] == vlm.image_token_id).sum())

    assert image_tokens(images) == ours
    assert image_tokens([images]) == 2 * (vlm.processor.num_image_tokens + 1) < ours
