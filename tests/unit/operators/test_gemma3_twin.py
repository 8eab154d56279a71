"""The Gemma 3 twin (google/gemma-3-4b-it's processing: 896 px images as 256 soft tokens between
<start_of_image> and <end_of_image>, image token types, a 1,024-token sliding window on most
layers; small random weights). The shared-prefix engine gets it wrong, so the load-time check
runs it on the plain engine, whose numbers equal a forward of the processor's own inputs."""

from __future__ import annotations

import pytest

from operators.selfcheck import TOLERANCE, _probe_image, processor_difference

GEMMA3 = "google/gemma-3-4b-it"


@pytest.fixture(scope="module")
def gemma(twins):
    return twins.vlm(GEMMA3)


def test_the_twin_has_gemma_3s_window_and_image_tokens(gemma):
    text = gemma.model.config.get_text_config(decoder=True)
    assert text.sliding_window == 1024
    assert "sliding_attention" in text.layer_types
    assert gemma.prompts.image_token == "<start_of_image>"
    image = _probe_image(300, 200, seed=3).image
    encoded = gemma.processor(text=["<start_of_image>"], images=[image], return_tensors="pt")
    assert int((encoded["input_ids"] == gemma.image_token_id).sum()) == 256
    assert int(encoded["token_type_ids"].sum()) == 256


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(gemma):
    assert processor_difference(gemma) == pytest.approx(0.0, abs=1e-6)


def test_the_plain_engine_without_image_token_types_would_be_caught(gemma, monkeypatch):
    from operators import families

    bare = families.Family(("gemma3",), vision_tower="vision_tower")
    monkeypatch.setattr(families, "FAMILIES", families.FamilyRegistry({"gemma3": bare}))
    assert processor_difference(gemma) > TOLERANCE


def test_the_load_time_check_runs_gemma_3_on_the_plain_engine(twins):
    check = twins.engine_check(GEMMA3)
    assert check.fell_back and check.engine == "plain"
    assert check.max_difference is not None and check.max_difference > TOLERANCE
    assert check.probes == 3, "one probe outgrows the 1,024-token window"
