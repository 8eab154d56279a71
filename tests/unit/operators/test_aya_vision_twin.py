"""The Aya Vision twin (CohereLabs/aya-vision-8b's processing: images cut into 364 px tiles plus
a global view, 169 pixel-shuffled <|IMG_PATCH|> tokens per tile, Cohere2 text with 4,096-token
sliding-window layers and global layers; small random weights). The vision tower gives one
feature entry per tile; the family says so, and the shared-prefix engine joins each image's
tiles into that image's tokens and its embedding."""

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
    sliding_window,
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

AYA = "CohereLabs/aya-vision-8b"


@pytest.fixture(scope="module")
def aya(twins):
    return twins.vlm(AYA)


def test_the_twin_keeps_the_tiles_and_cohere2s_window(aya):
    config = aya.model.config
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (364, 14)
    assert config.downsample_factor == 2
    assert sliding_window(aya) == 4096
    assert set(config.text_config.layer_types) == {"sliding_attention", "full_attention"}
    assert aya.prompts.image_token == "<image>"
    assert aya.tokenizer.convert_ids_to_tokens(aya.image_token_id) == "<|IMG_PATCH|>"


def test_a_large_image_is_several_tiles_of_169_tokens(aya):
    tiles, tokens = tiles_and_tokens(aya, _probe_image(1400, 1000, seed=40).image)
    assert tiles > 1, "a large image tiles (plus a global view)"
    assert tokens == 169 * tiles
    assert tiles_and_tokens(aya, _probe_image(364, 364, seed=41).image) == (1, 169)


def test_every_tile_of_an_image_fills_that_images_tokens(aya, monkeypatch):
    large, square = _probe_image(1400, 1000, seed=40), _probe_image(364, 364, seed=41)
    placed = placed_by_shared_engine(aya, monkeypatch, PostJob((large, square), "", (QUESTION,)))
    for image, features in zip((large, square), placed[:2], strict=True):
        tiles = tile_features(aya, image.image)
        assert features.shape == (tiles.shape[0] * 169, tiles.shape[-1])
        assert torch.allclose(features, tiles.reshape(features.shape), atol=1e-5)


@pytest.mark.parametrize("engine", ["eager", "plain"])
def test_the_embedding_pools_all_tiles_of_each_image(aya, engine):
    large, square = _probe_image(1400, 1000, seed=40), _probe_image(364, 364, seed=41)
    jobs = [PostJob((large,), "", (EMBED,)), PostJob((square,), "", (EMBED,))]
    jobs.append(PostJob((large, square), "", (EMBED,)))
    results = VlmOperator(with_engine(aya, engine)).run_posts(jobs)  # one vision pass
    want = [tile_features(aya, i.image).flatten(0, 1).mean(dim=0) for i in (large, square)]
    for result, expected in zip(results, [*want, (want[0] + want[1]) / 2], strict=True):
        assert result.values[EMBED] == pytest.approx(expected.tolist(), abs=1e-5)


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(aya):
    assert processor_difference(aya) == pytest.approx(0.0, abs=1e-6)


def test_the_load_time_check_keeps_aya_on_the_shared_prefix_engine_past_the_window(twins):
    check = twins.engine_check(AYA)
    assert check.probes == 3, "one probe outgrows the 4,096-token window"
    assert not check.fell_back and check.engine == "eager"
    assert check.max_difference is not None and check.max_difference <= TOLERANCE


def test_without_the_tile_count_the_shared_engine_fails_and_is_caught(aya, monkeypatch):
    bare = families.Family(("aya_vision",), vision_tower="vision_tower")
    monkeypatch.setattr(families, "FAMILIES", families.FamilyRegistry({"aya_vision": bare}))
    check = check_engine(aya)
    assert check.fell_back and check.engine == "plain"
