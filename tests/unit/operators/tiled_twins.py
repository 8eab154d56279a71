"""What the tests of tiling families (InternVL, Aya Vision) share: an image's tiles as the
processor makes them, the features the shared-prefix engine places, a reference embedding taken
straight from the model, and `vlmod moderate` on both engines. Written apart from the engines."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

import operators.forward
from operators.batching import encode_image, processor_path
from operators.jobs import PostJob, TaskKind, VlmTask
from operators.selfcheck import _probe_image
from operators.tasks import VlmOperator
from pipelines.cli import app

QUESTION = VlmTask(TaskKind.QUESTION, "Is there a weapon in this image?")
EMBED = VlmTask(TaskKind.EMBED)


def tiles_and_tokens(vlm, image) -> tuple[int, int]:
    """The processor's tiles for `image` alone and the image tokens of its expansion."""
    encoded = vlm.processor(
        text=[vlm.prompts.image_token],
        images=[image],
        add_special_tokens=False,
        return_tensors="pt",
    )
    return int(encoded["pixel_values"].shape[0]), int(
        (encoded["input_ids"] == vlm.image_token_id).sum()
    )


def tile_features(vlm, image) -> torch.Tensor:
    """(tiles, tokens per tile, hidden): the model's own projected features of every tile."""
    pixels = encode_image(processor_path(vlm), image).pixel_inputs["pixel_values"]
    with torch.inference_mode():
        return vlm.model.get_image_features(pixel_values=pixels).pooler_output.float()


def placed_by_shared_engine(vlm, monkeypatch, job: PostJob) -> list[torch.Tensor]:
    """The per-image features the shared-prefix engine placed at the image tokens for `job`."""
    placed: list[torch.Tensor] = []
    embed = operators.forward.embed_with_images

    def spying(model, input_ids, features):
        placed.extend(feature.float() for feature in features)
        return embed(model, input_ids, features)

    monkeypatch.setattr(operators.forward, "embed_with_images", spying)
    [result] = VlmOperator(vlm).run_posts([job])
    assert not isinstance(result, Exception), result
    return placed


def moderate_on_both_engines(model_dir, tmp_path) -> dict[str, dict]:
    """`vlmod moderate` of one post with a tiling photo, on the default and the plain engine."""
    image = tmp_path / "photo.png"
    _probe_image(900, 600, seed=5).image.save(image)
    policy = tmp_path / "policies"
    policy.mkdir()
    (policy / "p.yaml").write_text(
        "id: p\nversion: 1\nsignals:\n  questions:\n    weapon: Is there a weapon?\n"
        "    sale: {ask: Does this post sell something?, about: post}\n"
        "rules:\n  - {id: w, when: answers.weapon > 0.99, action: review}\n"
    )
    args = ["moderate", "--policy", str(policy), "--model", str(model_dir), "--text", "A bike."]
    runs = {}
    for engine in ("eager", "plain"):
        result = CliRunner().invoke(app, [*args, "--image", str(image), "--engine", engine])
        assert result.exit_code == 0, result.output
        runs[engine] = json.loads(result.stdout)
    return runs
