"""The PaliGemma twin (google/paligemma2-3b-mix-224's processing: a 224 px SigLIP image as 256
<image> tokens, then <bos>, the prompt and a newline, all attended both ways; Gemma 2 text; small
random weights). The published checkpoint has no chat template, so the family's layout stands
in; the shared-prefix engine cannot attend both ways over a cached prefix, so the load-time
check runs PaliGemma on the plain engine, whose numbers equal a forward of the processor's own
inputs, token types included."""

from __future__ import annotations

import dataclasses

import pytest

from operators.batching import encode_image
from operators.prompts import render_template
from operators.selfcheck import TOLERANCE, _probe_image, processor_difference

PALIGEMMA = "google/paligemma2-3b-mix-224"


@pytest.fixture(scope="module")
def paligemma_dir(twins):
    return twins.directory(PALIGEMMA)


@pytest.fixture(scope="module")
def paligemma(twins):
    return twins.vlm(PALIGEMMA)


def test_the_twin_publishes_no_chat_template_and_the_family_lays_the_prompt_out(paligemma_dir):
    assert not (paligemma_dir / "chat_template.jinja").exists()
    assert not (paligemma_dir / "chat_template.json").exists()


def test_the_prompt_is_the_processors_layout(paligemma):
    assert paligemma.layout.prefix == "<image><bos>"
    assert paligemma.layout.suffix == "\n"
    assert paligemma.prompts.layout(2).pieces == ("", "", "<bos>")
    # A system prompt (the mix checkpoints' task prefix, say) opens the text.
    assert render_template(paligemma.processor, "answer en", 1) == ("<image><bos>answer en ", "\n")
    image = _probe_image(300, 200, seed=3).image
    theirs = paligemma.processor(text=["<image>Is it red?"], images=[image], return_tensors="pt")
    assert paligemma.tokenizer.decode(theirs["input_ids"][0, 256:]) == "<bos>Is it red?\n"
    assert theirs["token_type_ids"].eq(0).all(), "a prompt without a suffix is all prefix"


def test_an_images_expansion_is_its_256_tokens_only(paligemma):
    encoding = encode_image(paligemma, _probe_image(300, 200, seed=3).image)
    assert encoding.expansion == (paligemma.image_token_id,) * 256
    assert set(encoding.pixel_inputs) == {"pixel_values"}, "no token types or labels as pixels"


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(paligemma):
    assert processor_difference(paligemma) == pytest.approx(0.0, abs=1e-6)


def test_the_plain_engine_without_prefix_token_types_would_be_caught(paligemma, monkeypatch):
    from operators import families
    from operators.families.base import no_extra_inputs

    family = families.family_of("paligemma")
    causal = dataclasses.replace(family, extra_inputs=no_extra_inputs)
    monkeypatch.setattr(families, "FAMILIES", families.FamilyRegistry({"paligemma": causal}))
    assert processor_difference(paligemma) > TOLERANCE


def test_the_load_time_check_runs_paligemma_on_the_plain_engine(twins):
    check = twins.engine_check(PALIGEMMA)
    assert check.fell_back and check.engine == "plain"
    assert check.max_difference is not None and check.max_difference > TOLERANCE
