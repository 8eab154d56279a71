"""The Qwen2.5-VL and Qwen3-VL twins (Qwen/Qwen2.5-VL-3B-Instruct's and Qwen/Qwen3-VL-2B-
Instruct's processing: images at their own resolution as flattened patches with an
`image_grid_thw` row each, 3-D multimodal rotary positions, window attention in Qwen2.5-VL's
tower, deepstack in Qwen3-VL; small random weights). The shared-prefix engine builds 1-D
positions, so the load-time check runs them on the plain engine, whose numbers equal a forward
of the processor's own inputs, for several images too."""

from __future__ import annotations

import pytest
import torch

from operators.batching import collate_images, encode_image
from operators.families.qwen_vl import scaled_mrope_section
from operators.jobs import PostJob, TaskKind, VlmTask
from operators.plain import plain_inputs
from operators.prefixes import post_prefix_ids
from operators.selfcheck import (
    TOLERANCE,
    _probe_image,
    check_engine,
    processor_difference,
    with_engine,
)
from operators.tasks import VlmOperator
from operators.work import image_task_text

# Qwen's processors do not build without a video processor, which needs torchvision.
pytest.importorskip("torchvision", reason="Qwen's processors need torchvision")
QWEN25, QWEN3 = "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen3-VL-2B-Instruct"
QUESTION = "Is there a weapon in these images?"


@pytest.fixture(scope="module", params=[QWEN25, QWEN3], ids=["qwen2.5-vl", "qwen3-vl"])
def qwen(request, twins):
    return request.param, twins.vlm(request.param)


def images(count: int) -> list:
    return [_probe_image(150 + 70 * n, 120 + 30 * n, seed=50 + n).image for n in range(count)]


def test_the_twin_keeps_the_published_geometry(qwen):
    name, vlm = qwen
    config = vlm.model.config
    vision, text = config.vision_config, config.get_text_config(decoder=True)
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (
        (14, 2, 2) if name == QWEN25 else (16, 2, 2)
    )
    head = text.head_dim if name == QWEN3 else text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head // 2
    if name == QWEN25:
        assert vision.window_size == 112 and vision.fullatt_block_indexes == [1]
    else:
        assert vision.deepstack_visual_indexes == [0, 1]
        assert text.rope_parameters["mrope_interleaved"] is True
    assert vlm.vision_tower is vlm.model.model.visual


def test_mrope_sections_scale_exactly_or_not_at_all():
    assert scaled_mrope_section([16, 24, 24], 16) == [4, 6, 6]
    assert scaled_mrope_section([24, 20, 20], 16) == [6, 5, 5]
    with pytest.raises(ValueError, match="does not scale"):
        scaled_mrope_section([24, 20, 20], 8)


def test_collated_patches_and_grids_are_the_processors_own_for_three_images(qwen):
    _, vlm = qwen
    shown = images(3)
    ours = collate_images([encode_image(vlm, image) for image in shown])
    theirs = vlm.processor(text=[vlm.prompts.image_token * 3], images=shown, return_tensors="pt")
    assert set(ours) == {"pixel_values", "image_grid_thw"}
    assert torch.equal(ours["image_grid_thw"], theirs["image_grid_thw"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(qwen):
    _, vlm = qwen
    assert processor_difference(vlm) == pytest.approx(0.0, abs=1e-6)


def test_three_images_positions_and_grids_reach_the_model_as_the_processors_do(qwen):
    _, vlm = qwen
    shown = images(3)
    encodings = [encode_image(vlm, image) for image in shown]
    layout = vlm.prompts.layout(3)
    tail = vlm.tokenizer(QUESTION + layout.tail, add_special_tokens=False)["input_ids"]
    ours = post_prefix_ids(vlm, [e.expansion for e in encodings], None) + list(tail)
    text = vlm.prompts.image_token.join(layout.pieces) + QUESTION + layout.tail
    theirs = vlm.processor(text=[text], images=shown, return_tensors="pt")
    assert theirs["input_ids"][0].tolist() == ours
    grids = []
    hook = vlm.vision_tower.register_forward_hook(
        lambda module, args, kwargs, out: grids.append(kwargs["grid_thw"]), with_kwargs=True
    )
    try:
        mine = vlm.model(**plain_inputs(vlm, torch.tensor(ours), encodings)).logits[:, -1]
        reference = vlm.model(**theirs).logits[:, -1]
    finally:
        hook.remove()
    assert torch.equal(grids[0], theirs["image_grid_thw"]) and len(grids[0]) == 3
    assert torch.allclose(mine, reference, atol=1e-5)


def test_missing_token_types_would_be_caught(qwen, monkeypatch):
    """Without `mm_token_type_ids` Qwen2.5-VL silently takes 1-D positions and Qwen3-VL raises."""
    from operators import families

    name, vlm = qwen
    bare = families.Family((vlm.family,), vision_tower="visual")
    monkeypatch.setattr(families, "FAMILIES", families.FamilyRegistry({vlm.family: bare}))
    if name == QWEN3:
        with pytest.raises(ValueError, match="mm_token_type_ids"):
            processor_difference(vlm)
    else:
        assert processor_difference(vlm) > TOLERANCE


def test_the_load_time_check_runs_qwen_on_the_plain_engine(qwen, twins):
    name, vlm = qwen
    # The spec asks for "eager": that check is the session's; "static" is checked here.
    for check in (twins.engine_check(name), check_engine(with_engine(vlm, "static"))):
        assert check.fell_back and check.engine == "plain", check.reason
        assert check.max_difference is not None and check.max_difference > TOLERANCE
        assert check.probes == 2, "no sliding window: no crowd probe"


def test_plain_descriptions_are_the_models_own_greedy_generate(qwen):
    _, vlm = qwen
    describe = VlmTask(TaskKind.DESCRIBE)
    shown = _probe_image(150, 120, seed=50)
    [signals] = VlmOperator(with_engine(vlm, "plain")).run_posts(
        [PostJob((shown,), "", (describe,))]
    )
    suffix = vlm.layout.task_text(image_task_text(vlm, describe))
    inputs = vlm.processor(
        text=[vlm.layout.prefix + suffix], images=[shown.image], return_tensors="pt"
    )
    out = vlm.model.generate(
        **inputs, max_new_tokens=3, do_sample=False, eos_token_id=list(vlm.eos_ids)
    )
    new = out[0, inputs["input_ids"].shape[1] :]
    assert signals.values[describe] == vlm.tokenizer.decode(new, skip_special_tokens=True).strip()
