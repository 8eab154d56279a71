"""The SmolVLM2 twin (HuggingFaceTB/SmolVLM2-2.2B-Instruct's processing: SmolVLMProcessor, 384 px
tiles of 81 pixel-shuffled tokens plus a global image, and the video processor the processor
cannot be built without; small random weights). It is Idefics3 underneath, so the shared-prefix
engine stays: the load-time check finds it equal to the plain engine."""

from __future__ import annotations

import pytest

from operators.batching import encode_image
from operators.selfcheck import TOLERANCE, _probe_image

SMOLVLM2 = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


@pytest.fixture(scope="module")
def smolvlm2(twins):
    pytest.importorskip("torchvision", reason="SmolVLMProcessor's video processor needs it")
    return twins.vlm(SMOLVLM2)


def test_the_twin_has_smolvlm2s_processor_and_tiles(smolvlm2):
    assert type(smolvlm2.processor).__name__ == "SmolVLMProcessor"
    assert smolvlm2.family == "smolvlm"
    assert smolvlm2.processor.image_processor.max_image_size == {"longest_edge": 384}
    # 800x400 is resized to 1536x768: 4x2 tiles of 384 px, plus the global image.
    image_tokens = encode_image(smolvlm2, _probe_image(800, 400, seed=4).image).expansion
    assert image_tokens.count(smolvlm2.image_token_id) == 81 * (4 * 2 + 1)


def test_the_load_time_check_keeps_the_shared_prefix_engine(smolvlm2, twins):
    check = twins.engine_check(SMOLVLM2)
    assert not check.fell_back, check.reason
    assert check.max_difference is not None and check.max_difference <= TOLERANCE
