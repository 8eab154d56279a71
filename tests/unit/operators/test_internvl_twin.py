"""The InternVL twin (OpenGVLab/InternVL3-1B-hf's processing: images cut into 448 px tiles plus a
thumbnail, 256 pixel-shuffled tokens per tile in one <img>...</img> span, Qwen2 text; small
random weights). The vision tower gives one feature entry per tile; the family says so, and the
shared-prefix engine joins each image's tiles into that image's tokens and its embedding."""

from __future__ import annotations

import pytest
import torch

from operators import families
from operators.jobs import PostJob
from operators.selfcheck import (
    TOLERANCE,
    _probe_image,
    check_engine,
    processor_difference,
    with_engine,
)
from operators.tasks import VlmOperator
from tests.unit.operators.tiled_twins import (
    EMBED,
    QUESTION,
    placed_by_shared_engine,
    tile_features,
    tiles_and_tokens,
)

INTERNVL = "OpenGVLab/InternVL3-1B-hf"


@pytest.fixture(scope="module")
def internvl(twins):
    return twins.vlm(INTERNVL)


def test_a_large_image_is_several_448_pixel_tiles_of_256_tokens(internvl):
    vision = internvl.model.config.vision_config
    assert list(vision.image_size) == [448, 448] and list(vision.patch_size) == [14, 14]
    assert internvl.model.config.downsample_ratio == 0.5
    assert internvl.prompts.image_token == "<IMG_CONTEXT>"
    tiles, tokens = tiles_and_tokens(internvl, _probe_image(1400, 1000, seed=40).image)
    assert tiles > 1, "a large image tiles (plus a thumbnail)"
    assert tokens == 256 * tiles
    assert tiles_and_tokens(internvl, _probe_image(448, 448, seed=41).image) == (1, 256)


def test_every_tile_of_an_image_fills_that_images_tokens(internvl, monkeypatch):
    large, square = _probe_image(1400, 1000, seed=40), _probe_image(448, 448, seed=41)
    placed = placed_by_shared_engine(
        internvl, monkeypatch, PostJob((large, square), "", (QUESTION,))
    )
    for image, features in zip((large, square), placed[:2], strict=True):
        tiles = tile_features(internvl, image.image)
        assert features.shape == (tiles.shape[0] * 256, tiles.shape[-1])
        assert torch.allclose(features, tiles.reshape(features.shape), atol=1e-5)


@pytest.mark.parametrize("engine", ["eager", "plain"])
def test_the_embedding_pools_all_tiles_of_each_image(internvl, engine):
    large, square = _probe_image(1400, 1000, seed=40), _probe_image(448, 448, seed=41)
    jobs = [PostJob((large,), "", (EMBED,)), PostJob((square,), "", (EMBED,))]
    jobs.append(PostJob((large, square), "", (EMBED,)))
    results = VlmOperator(with_engine(internvl, engine)).run_posts(jobs)  # one vision pass
    want = [tile_features(internvl, i.image).flatten(0, 1).mean(dim=0) for i in (large, square)]
    for result, expected in zip(results, [*want, (want[0] + want[1]) / 2], strict=True):
        assert result.values[EMBED] == pytest.approx(expected.tolist(), abs=1e-5)


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(internvl):
    assert processor_difference(internvl) == pytest.approx(0.0, abs=1e-6)


def test_the_load_time_check_keeps_internvl_on_the_shared_prefix_engine(twins):
    check = twins.engine_check(INTERNVL)
    assert not check.fell_back and check.engine == "eager"
    assert check.max_difference is not None and check.max_difference <= TOLERANCE


def test_without_the_tile_count_the_shared_engine_fails_and_is_caught(internvl, monkeypatch):
    bare = families.Family(("internvl",), vision_tower="vision_tower")
    monkeypatch.setattr(families, "FAMILIES", families.FamilyRegistry({"internvl": bare}))
    check = check_engine(internvl)
    assert check.fell_back and check.engine == "plain"
