"""describe: batched greedy generation with left padding, continuing from the shared prefix."""

from __future__ import annotations

import torch

from operators.exceptions import ImagePreprocessError
from operators.tasks import ImageJob, VlmOperator
from tests.unit.operators.one_image import describe


def test_describes_every_image(vlm, images):
    captions = describe(VlmOperator(vlm), images)
    assert len(captions) == len(images)
    assert all(isinstance(caption, str) for caption in captions)
    assert len(set(captions)) > 1  # random weights, but different images give different text


def test_batch_equals_one_at_a_time(vlm, images):
    operator = VlmOperator(vlm)
    batched = describe(operator, images)
    assert batched == [describe(operator, [image])[0] for image in images]


def test_matches_plain_generate_on_the_full_prompt(vlm, images):
    """Our decoding loop over the reused cache equals transformers' greedy `generate`."""
    [caption] = describe(VlmOperator(vlm), images[:1])
    prefix = vlm.processor(text=[vlm.layout.prefix], images=[images[0].image], return_tensors="pt")
    suffix = vlm.tokenizer(
        vlm.layout.task_text(vlm.spec.describe_prompt),
        add_special_tokens=False,
        return_tensors="pt",
    )
    ids = torch.cat([prefix["input_ids"], suffix["input_ids"]], dim=1)
    pixels = {k: v for k, v in prefix.items() if k not in ("input_ids", "attention_mask")}
    output = vlm.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        **pixels,
        max_new_tokens=vlm.spec.max_new_tokens,
        do_sample=False,
    )
    expected = vlm.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert caption == expected


def test_description_alongside_questions_is_unchanged(vlm, images):
    operator = VlmOperator(vlm)
    [alone] = describe(operator, images[:1])
    [mixed] = operator.run([ImageJob(images[0], questions={"q": "Is it red?"}, describe=True)])
    assert mixed.description == alone


def test_broken_image_fails_alone(vlm, images, degenerate_image):
    operator = VlmOperator(vlm)
    results = describe(operator, [images[0], degenerate_image])
    assert isinstance(results[1], ImagePreprocessError)
    assert results[0] == describe(operator, [images[0]])[0]
