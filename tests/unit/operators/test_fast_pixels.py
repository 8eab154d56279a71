"""The uint8 pixel path equals the processor bit for bit: ids, pixels, masks and answers.

Pixels are compared with torch.equal after `normalize_pixels` (bit-exact, not a tolerance), for
both twins (SmolVLM tiling, LLaVA centre crop), their tiling knobs and the tiny checkpoints.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import operators.fast_pixels as fast_pixels
from operators.batching import collate_images, encode_image, processor_path
from operators.fast_pixels import fast_pixels_for, normalize_pixels
from operators.images import LoadedImage
from operators.jobs import About, PostJob, TaskKind, VlmTask
from operators.loading import load_vlm
from operators.spec import ModelSpec
from operators.tasks import VlmOperator

SMOLVLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
LLAVA = "llava-hf/llava-1.5-7b-hf"
# (width, height): wide, tall, small, tiled photo, odd, and extremes the processors accept.
SIZES = [(1536, 512), (512, 1536), (32, 32), (1536, 1024), (1001, 667), (1, 1), (2, 1)]
EXTREMES = [(50, 1), (1, 50), (500, 11), (4000, 3000)]
MODES = ["RGBA", "L", "P", "LA", "CMYK", "I;16"]
# name -> (checkpoint, tiling overrides of ModelSpec)
VARIANTS = {
    "smol": (SMOLVLM, {}),
    "smol-one-tile": (SMOLVLM, {"image_splitting": False}),
    "smol-edge-1024": (SMOLVLM, {"max_image_edge": 1024}),
    "smol-one-tile-512": (SMOLVLM, {"image_splitting": False, "max_image_edge": 512}),
    "smol-edge-300": (SMOLVLM, {"max_image_edge": 300}),
    "llava": (LLAVA, {}),
}
QUESTION = VlmTask(TaskKind.QUESTION, "Is there a weapon?", About.POST)
LABEL = VlmTask(TaskKind.LABEL, "a threat of violence", About.POST)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def differences(vlm, image: Image.Image) -> list[str]:
    """What differs from the processor: expansion ids, normalized pixels (bit for bit), mask."""
    want = encode_image(processor_path(vlm), image)
    got = encode_image(vlm, image)
    found = []
    if got.expansion != want.expansion:
        found.append("expansion")
    if got.pixel_inputs["pixel_values"].dtype != torch.uint8:
        found.append("pixel dtype")
    mask = got.pixel_inputs.get("pixel_attention_mask")
    pixels = normalize_pixels(got.pixel_inputs["pixel_values"], vlm.fast_pixels.norm, mask)
    if not torch.equal(pixels, want.pixel_inputs["pixel_values"]):
        found.append("pixels")
    if set(got.pixel_inputs) != set(want.pixel_inputs):
        found.append("keys")
    if mask is not None and (
        mask.dtype != torch.bool
        or not torch.equal(mask, want.pixel_inputs["pixel_attention_mask"].bool())
    ):
        found.append("mask")
    return found


@pytest.fixture(scope="module")
def twin_dirs(twins) -> dict[str, Path]:
    return {name: twins.directory(name) for name in (SMOLVLM, LLAVA)}


@pytest.fixture(scope="module")
def variants(twins):
    return {
        name: twins.vlm(checkpoint, max_new_tokens=2, **o)
        for name, (checkpoint, o) in VARIANTS.items()
    }


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_twin_pixels_and_ids_equal_the_processor(variants, variant, size):
    vlm = variants[variant]
    assert vlm.fast_pixels is not None
    assert differences(vlm, noise(*size)) == []


@pytest.mark.parametrize("variant", ["smol", "smol-one-tile-512", "llava"])
@pytest.mark.parametrize("size", EXTREMES, ids=[f"{w}x{h}" for w, h in EXTREMES])
def test_extreme_sizes_equal_the_processor(variants, variant, size):
    assert differences(variants[variant], noise(*size, seed=1)) == []


@pytest.mark.parametrize("variant", ["smol", "llava"])
@pytest.mark.parametrize("mode", MODES)
def test_other_modes_are_converted_as_the_processor_does(variants, variant, mode):
    image = noise(640, 431, seed=2).convert(mode)
    assert differences(variants[variant], image) == []


@pytest.mark.parametrize("variant", ["smol", "llava"])
def test_an_rgb_image_with_a_transparent_colour_is_flattened_as_the_processor_does(
    variants, variant
):
    image = noise(300, 200, seed=3)
    image.info["transparency"] = (0, 0, 0)
    image.paste((0, 0, 0), (0, 0, 100, 100))
    assert differences(variants[variant], image) == []


def test_tiny_checkpoints_equal_the_processor(vlms, images):
    for vlm in vlms.values():
        assert vlm.fast_pixels is not None
        for image in images:
            assert differences(vlm, image.image) == []


def test_collated_tile_counts_normalize_to_the_processors_zero_padding(variants):
    vlm = variants["smol"]
    pictures = [noise(1536, 1024), noise(32, 32), noise(1536, 512)]
    want = collate_images([encode_image(processor_path(vlm), p) for p in pictures])
    got = collate_images([encode_image(vlm, p) for p in pictures])
    assert got["pixel_values"].dtype == torch.uint8
    assert got["pixel_attention_mask"].dtype == torch.bool
    mask = got["pixel_attention_mask"]
    assert torch.equal(
        normalize_pixels(got["pixel_values"], vlm.fast_pixels.norm, mask), want["pixel_values"]
    )
    assert torch.equal(mask, want["pixel_attention_mask"].bool())


def photo(width: int, height: int, seed: int) -> LoadedImage:
    sha = f"{seed:02d}{width:05d}{height:05d}".ljust(64, "f")
    return LoadedImage(sha256=sha, image=noise(width, height, seed), nbytes=width * height * 3)


def answers(vlm, jobs) -> list[dict]:
    return [signals.values for signals in VlmOperator(vlm).run_posts(jobs)]


def answer_gaps(fast, slow) -> list[tuple]:
    """Tasks whose answers differ by more than 1e-5 (or are missing) between the two paths."""
    gaps = []
    for want, got in zip(slow, fast, strict=True):
        for task, value in want.items():
            if task not in got or got[task] != pytest.approx(value, abs=1e-5):
                gaps.append((task, value, got.get(task)))
        gaps.extend((task, None, got[task]) for task in got.keys() - want.keys())
    return gaps


@pytest.mark.parametrize("variant", ["smol", "smol-one-tile-512", "llava"])
def test_run_posts_answers_equal_with_and_without_fast_pixels(variants, variant):
    vlm = variants[variant]
    embed = VlmTask(TaskKind.EMBED)
    jobs = [
        PostJob((photo(1100, 700, 1),), "a bike for sale", (QUESTION, LABEL)),
        PostJob((photo(40, 30, 2), photo(600, 900, 3)), None, (QUESTION, embed)),
    ]
    assert answer_gaps(answers(vlm, jobs), answers(processor_path(vlm), jobs)) == []


def test_tiny_run_posts_answers_equal_with_and_without_fast_pixels(vlms, images):
    jobs = [PostJob(tuple(images[:3]), "hello", (QUESTION, LABEL))]
    for vlm in vlms.values():
        assert answer_gaps(answers(vlm, jobs), answers(processor_path(vlm), jobs)) == []


def test_the_knob_turns_it_off(twin_dirs):
    spec = ModelSpec(name_or_path=str(twin_dirs[SMOLVLM]), device="cpu", fast_pixels=False)
    vlm = load_vlm(spec)
    assert vlm.fast_pixels is None
    encoding = encode_image(vlm, noise(64, 48))
    assert encoding.pixel_inputs["pixel_values"].dtype == torch.float32


def test_an_unknown_processor_falls_back_to_the_processor(twin_dirs, monkeypatch):
    monkeypatch.setattr(fast_pixels, "KNOWN", {})
    vlm = load_vlm(ModelSpec(name_or_path=str(twin_dirs[LLAVA]), device="cpu"))
    assert vlm.fast_pixels is None
    encoding = encode_image(vlm, noise(64, 48))
    assert encoding.pixel_inputs["pixel_values"].dtype == torch.float32


def test_settings_outside_the_mirrored_ones_fall_back(variants):
    processor = copy.deepcopy(variants["llava"].processor)  # changed below: not the shared one
    image_processor = processor.image_processor
    original = image_processor.do_center_crop
    try:
        image_processor.do_center_crop = False
        assert fast_pixels_for(processor) is None
    finally:
        image_processor.do_center_crop = original
    assert fast_pixels_for(processor) is not None


def test_expansions_are_computed_once_per_tile_grid(variants):
    vlm = variants["smol"]
    first = encode_image(vlm, noise(1536, 1024, seed=5)).expansion
    again = encode_image(vlm, noise(1536, 1024, seed=6)).expansion
    assert first is again  # the cached tuple, not a second tokenization


def test_the_pipeline_setting_reaches_the_spec(tmp_path):
    from pipelines.config import ModelSettings, PipelineConfig
    from pipelines.wiring import model_spec

    model = ModelSettings(name_or_path=str(tmp_path), fast_pixels=False)
    assert model_spec(PipelineConfig(model=model)).fast_pixels is False
    assert ModelSettings().fast_pixels is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_uint8_pixels_and_bool_masks_pin_and_collate_as_they_are(variants):
    from operators.batching import pin_encoding

    vlm = variants["smol"]
    encodings = [pin_encoding(encode_image(vlm, noise(w, h))) for w, h in ((1536, 1024), (32, 32))]
    collated = collate_images(encodings)
    assert collated["pixel_values"].is_pinned() and collated["pixel_values"].dtype == torch.uint8
    assert collated["pixel_attention_mask"].dtype == torch.bool
