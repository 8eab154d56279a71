"""ask: P(yes) per question from yes/no next-token logits, batched over one shared prefix."""

from __future__ import annotations

import pytest
import torch

from operators.exceptions import ImagePreprocessError, InferenceError
from operators.forward import yes_probability
from operators.tasks import ImageJob, ImageSignals, VlmOperator
from tests.unit.operators.one_image import ask

QUESTIONS = {
    "gun": "Is there a gun?",
    "cat": "Is this a photo of a cat sitting on a chair?",
    "text": "Does the image contain text?",
    "person": "Is this a photo of a person?",
}


def test_probabilities_lie_in_unit_interval(vlm, images):
    results = ask(VlmOperator(vlm), images, QUESTIONS)
    for answers in results:
        assert set(answers) == set(QUESTIONS)
        assert all(0.0 <= p <= 1.0 for p in answers.values())


def test_batch_equals_one_at_a_time(vlm, images):
    operator = VlmOperator(vlm)
    batched = ask(operator, images, QUESTIONS)
    for image, answers in zip(images, batched, strict=True):
        [alone] = ask(operator, [image], QUESTIONS)
        for name in QUESTIONS:
            assert answers[name] == pytest.approx(alone[name], abs=1e-4)


def test_answers_differ_between_questions_and_images(vlm, images):
    results = ask(VlmOperator(vlm), images, QUESTIONS)
    values = {round(p, 6) for answers in results for p in answers.values()}
    assert len(values) > len(QUESTIONS)


def test_shared_prefix_matches_full_prompt_forward(vlm, images):
    """KV-cache reuse must give what one plain forward of the whole prompt gives."""
    question = "Is there a gun?"
    [answers] = ask(VlmOperator(vlm), images[:1], {"q": question})
    text = f"{question} {vlm.spec.answer_instruction}"
    prefix = vlm.processor(text=[vlm.layout.prefix], images=[images[0].image], return_tensors="pt")
    suffix = vlm.tokenizer(
        vlm.layout.task_text(text), add_special_tokens=False, return_tensors="pt"
    )
    ids = torch.cat([prefix["input_ids"], suffix["input_ids"]], dim=1)
    pixels = {k: v for k, v in prefix.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids), **pixels).logits
    expected = yes_probability(logits[:, -1].float(), vlm.yes_ids, vlm.no_ids).item()
    assert answers["q"] == pytest.approx(expected, abs=1e-5)


def test_image_encoded_once_for_n_questions(vlm, images, count_calls):
    vision = count_calls(vlm.vision_tower)
    text_model = count_calls(_text_model(vlm))
    ask(VlmOperator(vlm), images[:1], QUESTIONS)
    assert vision.calls == 1
    # One prefill of the prefix, one batched pass over all four question suffixes.
    assert text_model.calls == 2


def test_whole_batch_encodes_images_in_one_vision_call(vlm, images, count_calls):
    vision = count_calls(vlm.vision_tower)
    jobs = [ImageJob(image, questions=QUESTIONS, embed=True) for image in images]
    VlmOperator(vlm).run(jobs)
    assert vision.calls == 1
    assert vision.images == len(images)


def test_broken_image_fails_alone(vlm, images, degenerate_image):
    operator = VlmOperator(vlm)
    mixed = [images[0], degenerate_image, images[1]]
    results = ask(operator, mixed, QUESTIONS)
    assert isinstance(results[1], ImagePreprocessError)
    assert results[1].stage == "fetch-image"
    for index in (0, 2):
        [alone] = ask(operator, [mixed[index]], QUESTIONS)
        assert results[index] == pytest.approx(alone, abs=1e-4)


def test_forward_failure_is_isolated_to_its_item(vlm, images, monkeypatch):
    """The batch fails, the retry one by one finds the culprit: only it gets InferenceError."""
    from operators import tasks

    real = tasks.run_forward
    calls = []

    def batch_and_second_item_fail(vlm_, prefix, rows, embed, steps=None):
        calls.append(prefix.size)
        if len(calls) in (1, 3):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(vlm_, prefix, rows, embed, steps)

    monkeypatch.setattr(tasks, "run_forward", batch_and_second_item_fail)
    jobs = [ImageJob(images[0], questions=QUESTIONS), ImageJob(images[1], questions=QUESTIONS)]
    results = VlmOperator(vlm).run(jobs)
    assert calls == [2, 1, 1]
    assert isinstance(results[0], ImageSignals)
    assert isinstance(results[1], InferenceError)
    assert results[1].stage == "infer"


def test_load_errors_pass_through_in_place(vlm, images):
    from operators.exceptions import ImageDecodeError

    error = ImageDecodeError("truncated")
    results = VlmOperator(vlm).run([ImageJob(images[0], questions=QUESTIONS), error])
    assert isinstance(results[0], ImageSignals)
    assert results[1] is error


def _text_model(vlm):
    inner = vlm.model.model
    return getattr(inner, "text_model", None) or inner.language_model
