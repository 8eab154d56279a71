"""The tests' own plain forward, written apart from the engines it checks: one unpadded row of
prefix and suffix ids with the processor's pixels for that prompt's images, no KV cache reuse,
the model's forward doing the rest. Engines are tested against this, never against themselves."""

from __future__ import annotations

import torch

from operators.batching import encode_image, processor_path
from operators.forward import yes_probability
from operators.jobs import About
from operators.prefixes import encode_post_text, image_prefix_ids, post_prefix_ids
from operators.work import image_task_text, post_task_text


def plain_probability(vlm, images, text, task) -> float:
    """P(yes) of `task` about `images` (and `text`, for a post-level task) in one forward."""
    vlm = processor_path(vlm)
    encodings = [encode_image(vlm, image.image) for image in images]
    if task.about is About.POST:
        post = encode_post_text(vlm, text) if text else None
        prefix = post_prefix_ids(vlm, [e.expansion for e in encodings], post)
        suffix = post_task_text(vlm, task) + vlm.prompts.layout(len(images)).tail
    else:
        prefix = image_prefix_ids(vlm, encodings[0].expansion)
        suffix = vlm.layout.task_text(image_task_text(vlm, task))
    ids = torch.tensor([prefix + vlm.tokenizer(suffix, add_special_tokens=False)["input_ids"]])
    pixels = {}
    if encodings:
        dim = 1 if vlm.family == "idefics3" else 0  # Idefics3: one row holding n images
        for key in encodings[0].pixel_inputs:
            pixels[key] = torch.cat([e.pixel_inputs[key] for e in encodings], dim=dim)
    with torch.no_grad():
        logits = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids), **pixels).logits
    return yes_probability(logits[:, -1].float(), vlm.yes_ids, vlm.no_ids).item()


def plain_post_embedding(vlm, images, text) -> torch.Tensor:
    """The mean last hidden state of the post's prompt (text and images), in one forward."""
    vlm = processor_path(vlm)
    encodings = [encode_image(vlm, image.image) for image in images]
    post = encode_post_text(vlm, text) if text else None
    ids = torch.tensor([post_prefix_ids(vlm, [e.expansion for e in encodings], post)])
    pixels = {}
    if encodings:
        dim = 1 if vlm.family == "idefics3" else 0
        for key in encodings[0].pixel_inputs:
            pixels[key] = torch.cat([e.pixel_inputs[key] for e in encodings], dim=dim)
    with torch.no_grad():
        out = vlm.model(
            input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True, **pixels
        )
    return out.hidden_states[-1][0].float().mean(dim=0)
