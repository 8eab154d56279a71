"""Whether the shared-prefix engine gives this checkpoint's right numbers, checked at load.

The shared-prefix engine computes each prompt prefix once and places image features, positions
and caches itself; a family whose forward does more (multimodal RoPE, sliding-window layers,
bidirectional attention over images or the whole prefix, images split into tiles) can make it
silently wrong. So before a model serves, a few probe posts run through it and through the plain
engine (`operators.plain`: one plain forward of each whole prompt, as transformers runs the
checkpoint), and every probability is compared:

- text only;
- text with one small and one large image (the large one tiles where the processor tiles);
- text at `max_text_tokens` with enough images that the prompt outgrows the checkpoint's
  sliding window, where it has one (at most `MAX_PROBE_IMAGES`).

The plain engine is itself checked first: a plain forward of a one-image question, and of a
post-level question about two images, over our token ids must give what a forward of the
processor's own inputs for the same prompt gives (the two images given it grouped, as
`apply_chat_template` does; where the processor tokenizes the prompt alike), so a family input
the engines leave out (Gemma 3's image token types, say) or a family that shows a prompt's
several images otherwise than one alone (LLaVA-OneVision) is found rather than served.

Each probe asks image-level and post-level questions and labels, and the post embedding. If any
probability differs by more than `TOLERANCE`, the post embedding by more than
`EMBEDDING_TOLERANCE` relative, or the shared engine fails where the plain one answers, the model
runs on the plain engine (`fallback`), or loading is refused (`refuse`). If the plain engine itself
fails, the checkpoint cannot be served: loading is refused with its error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from operators.batching import ImageEncoding, encode_image, processor_path
from operators.exceptions import OperatorError, UnsupportedModel
from operators.families import family_of
from operators.images import LoadedImage
from operators.jobs import About, PostJob, PostSignals, TaskKind, VlmTask
from operators.loading import Vlm

TOLERANCE = 1e-3
# The post embedding's largest relative difference (‖shared - plain‖ / ‖plain‖) allowed.
EMBEDDING_TOLERANCE = 1e-2
MAX_PROBE_IMAGES = 8
FALLBACK = "fallback"
REFUSE = "refuse"
PROBE_TASKS = (
    VlmTask(TaskKind.QUESTION, "Does this post offer something for sale?", About.POST),
    VlmTask(TaskKind.LABEL, "a threat of violence", About.POST),
    VlmTask(TaskKind.QUESTION, "Is there a weapon in this image?"),
    VlmTask(TaskKind.LABEL, "a person"),
)
PROBE_EMBED = VlmTask(TaskKind.EMBED, "", About.POST)
PROBE_TEXT = "Selling my old bike, barely used. Message me for the price and pick-up. "


@dataclass(frozen=True)
class EngineCheck:
    """What the load-time check found, and the engine the model will run."""

    family: str
    asked: str  # the engine the spec asked for
    engine: str  # the engine it runs: `asked`, or "plain"
    max_difference: float | None  # largest |shared - plain| over the probes; None if not compared
    probes: int
    reason: str  # one line

    @property
    def fell_back(self) -> bool:
        """The shared-prefix engine was found wrong, or failing, and the plain one runs."""
        return self.engine != self.asked


def check_engine(vlm: Vlm) -> EngineCheck:
    """Run the probe posts through both engines and compare every probability."""
    from operators.tasks import VlmOperator

    asked = vlm.spec.engine
    jobs = probe_jobs(vlm)
    plain = VlmOperator(with_engine(vlm, "plain")).run_posts(jobs)
    failed = next((r for r in plain if isinstance(r, OperatorError)), None)
    if failed is not None:
        raise UnsupportedModel(
            f"{vlm.name} ({vlm.family}) cannot be served: a plain forward of the model fails "
            f"on the probe posts: {failed.reason}"
        )
    refuse_unlike_processor(vlm)
    if asked == "plain":
        return EngineCheck(vlm.family, asked, asked, None, len(jobs), "the plain engine asked for")
    shared = VlmOperator(vlm).run_posts(jobs)
    return _verdict(vlm, jobs, shared, plain)


def refuse_unlike_processor(vlm: Vlm) -> None:
    """Refuse a model whose plain forward over our prompt differs from one over the processor's
    own inputs for the same prompt (say, a family input such as token types left out)."""
    difference = processor_difference(vlm)
    if difference == math.inf:
        raise UnsupportedModel(
            f"{vlm.name} ({vlm.family}) cannot be served right: our prompt gives its images "
            "other tokens than the processor's own inputs for it give; how the family shows a "
            "prompt's images is missing from operators/families"
        )
    if difference is not None and difference > TOLERANCE:
        raise UnsupportedModel(
            f"{vlm.name} ({vlm.family}) cannot be served right: a plain forward of our prompt "
            f"differs by {difference:.2g} from one of the processor's own inputs for it; the "
            "family's extra model inputs are missing from operators/families"
        )


def processor_difference(vlm: Vlm) -> float | None:
    """|P(yes)| apart between the plain engine's inputs and the processor's own, the larger over
    a one-image question and a post-level question about two images (the processor given them
    grouped, as `apply_chat_template` gives a prompt's images); inf where the processor gives
    the images other tokens; None when it tokenizes both prompts' text otherwise."""
    found = [d for d in (image_difference(vlm), post_difference(vlm)) if d is not None]
    return max(found, default=None)


def image_difference(vlm: Vlm) -> float | None:
    """`processor_difference` for a one-image question; None where tokenized otherwise."""
    from operators.prefixes import image_prefix_ids
    from operators.work import image_task_text

    vlm = processor_path(vlm)
    image = _probe_image(300, 200, seed=3).image
    encoding = encode_image(vlm, image)
    suffix = vlm.layout.task_text(image_task_text(vlm, PROBE_TASKS[2]))
    ours = image_prefix_ids(vlm, encoding.expansion) + _ids(vlm, suffix)
    return _difference(vlm, ours, vlm.layout.prefix + suffix, [image], [encoding])


def post_difference(vlm: Vlm) -> float | None:
    """`processor_difference` for a post-level question about two images and the post text."""
    from operators.prefixes import encode_post_text, post_prefix_ids
    from operators.prompts import POST_TEXT_CLOSE, POST_TEXT_OPEN
    from operators.work import post_task_text

    vlm = processor_path(vlm)
    images = [_probe_image(300, 200, seed=3).image, _probe_image(420, 260, seed=4).image]
    grouped = family_of(vlm.family).groups_images
    encodings = [encode_image(vlm, image, grouped) for image in images]
    layout = vlm.prompts.layout(len(images))
    suffix = post_task_text(vlm, PROBE_TASKS[0]) + layout.tail
    text = encode_post_text(vlm, PROBE_TEXT)
    ours = post_prefix_ids(vlm, [e.expansion for e in encodings], text) + _ids(vlm, suffix)
    head = vlm.prompts.image_token.join(layout.pieces)
    prompt = head + POST_TEXT_OPEN + PROBE_TEXT + POST_TEXT_CLOSE + suffix
    return _difference(vlm, ours, prompt, [images], encodings)


def _ids(vlm: Vlm, text: str) -> list[int]:
    return list(vlm.tokenizer(text, add_special_tokens=False)["input_ids"])


def _difference(
    vlm: Vlm,
    ours: list[int],
    prompt: str,
    images: list[Any],
    encodings: Sequence[ImageEncoding],
) -> float | None:
    """|P(yes)| apart between a plain forward of `ours` with `encodings` and one of what the
    processor makes of `prompt` and `images` (as it takes them); None where its ids differ."""
    import torch

    from operators.forward import yes_probability
    from operators.plain import plain_inputs
    from operators.prompts import adds_special_tokens

    prompt = family_of(vlm.family).processor_prompt(vlm, prompt)
    theirs = vlm.processor(
        text=[prompt],
        images=images,
        return_tensors="pt",
        add_special_tokens=adds_special_tokens(vlm.processor, prompt),
    )
    if theirs["input_ids"][0].tolist() != ours:
        return _unlike_images(vlm, theirs["input_ids"][0].tolist(), ours)
    inputs = {key: value.to(vlm.device) for key, value in theirs.items()}
    pixels = inputs.get("pixel_values")
    if pixels is not None:
        inputs["pixel_values"] = pixels.to(vlm.model.dtype)
    with torch.inference_mode():
        mine = vlm.model(**plain_inputs(vlm, torch.tensor(ours), encodings)).logits[:, -1]
        reference = vlm.model(**inputs).logits[:, -1]
    probabilities = [
        float(yes_probability(logits.float(), vlm.yes_ids, vlm.no_ids))
        for logits in (mine, reference)
    ]
    return abs(probabilities[0] - probabilities[1])


def _unlike_images(vlm: Vlm, theirs: list[int], ours: list[int]) -> float | None:
    """inf where the two prompts differ only in how many tokens their images take (the images
    shown otherwise); None where the text is tokenized otherwise (nothing to compare)."""

    def text_only(ids: list[int]) -> list[int]:
        image = vlm.image_token_id
        return [i for n, i in enumerate(ids) if i != image or not n or ids[n - 1] != image]

    return math.inf if text_only(theirs) == text_only(ours) else None


def checked(vlm: Vlm, on_mismatch: str = FALLBACK) -> tuple[Vlm, EngineCheck]:
    """The model on the engine the check allows, and the check; `refuse` raises instead."""
    check = check_engine(vlm)
    if not check.fell_back:
        return vlm, check
    if on_mismatch == REFUSE:
        raise UnsupportedModel(f"{vlm.name}: {check.reason}; model.self_check is refuse")
    return with_engine(vlm, "plain"), check


def with_engine(vlm: Vlm, engine: str) -> Vlm:
    """The same loaded model with another engine in its spec."""
    return dataclasses.replace(vlm, spec=vlm.spec.replaced(engine=engine))


def probe_jobs(vlm: Vlm) -> list[PostJob]:
    """The probe posts: text only, a small and a large image, and one past the sliding window."""
    small, large = _probe_image(48, 40, seed=1), _probe_image(1300, 900, seed=2)
    long_text = PROBE_TEXT * (vlm.spec.max_text_tokens // 8 + 1)
    crowd = tuple(_probe_image(64, 48, seed=10 + n) for n in range(_images_past_window(vlm)))
    jobs = [
        PostJob((), PROBE_TEXT, (*PROBE_TASKS[:2], PROBE_EMBED)),
        PostJob((small, large), PROBE_TEXT, (*PROBE_TASKS, PROBE_EMBED)),
    ]
    if crowd:
        jobs.append(PostJob(crowd, long_text, (*PROBE_TASKS, PROBE_EMBED)))
    return jobs


def sliding_window(vlm: Vlm) -> int | None:
    """The text model's sliding attention window in tokens, where it has one."""
    config = vlm.model.config.get_text_config(decoder=True)
    window = getattr(config, "sliding_window", None)
    uses = getattr(config, "use_sliding_window", True)
    return int(window) if isinstance(window, int) and window > 0 and uses is not False else None


def _images_past_window(vlm: Vlm) -> int:
    """How many small images push a prompt with a full text past the window (0: no window)."""
    window = sliding_window(vlm)
    if window is None:
        return 0
    tokens = len(encode_image(processor_path(vlm), _probe_image(64, 48, seed=10).image).expansion)
    room = window + 1 - vlm.spec.max_text_tokens
    return min(MAX_PROBE_IMAGES, max(1, math.ceil(room / max(tokens, 1))))


def _verdict(
    vlm: Vlm,
    jobs: Sequence[PostJob],
    shared: Sequence[PostSignals | OperatorError],
    plain: Sequence[PostSignals | OperatorError],
) -> EngineCheck:
    family, asked = vlm.family, vlm.spec.engine
    worst = embedding = 0.0
    for job, ours, theirs in zip(jobs, shared, plain, strict=True):
        if isinstance(ours, OperatorError):
            reason = f"the shared-prefix engine fails on {family}: {ours.reason}"
            return EngineCheck(family, asked, "plain", None, len(jobs), reason)
        assert isinstance(theirs, PostSignals)
        for task in job.tasks:
            if task.kind == TaskKind.EMBED:
                embedding = max(embedding, _relative(ours.values[task], theirs.values[task]))
                continue
            worst = max(worst, abs(_number(ours.values[task]) - _number(theirs.values[task])))
    if embedding > EMBEDDING_TOLERANCE:
        reason = (
            f"the shared-prefix engine's post embedding differs from a plain forward's by "
            f"{embedding:.2g} relative on {family} (over {EMBEDDING_TOLERANCE:g}); running the "
            "plain engine"
        )
        return EngineCheck(family, asked, "plain", worst, len(jobs), reason)
    if worst > TOLERANCE:
        reason = (
            f"the shared-prefix engine differs from a plain forward by {worst:.2g} on {family} "
            f"(over {TOLERANCE:g}); running the plain engine"
        )
        return EngineCheck(family, asked, "plain", worst, len(jobs), reason)
    reason = f"the shared-prefix engine agrees with a plain forward on {family} ({worst:.1g})"
    return EngineCheck(family, asked, asked, worst, len(jobs), reason)


def _relative(ours: object, theirs: object) -> float:
    """‖ours - theirs‖ / ‖theirs‖ of two embeddings; inf where they are not alike vectors."""
    if not isinstance(ours, list) or not isinstance(theirs, list) or len(ours) != len(theirs):
        return math.inf
    gap = math.sqrt(math.fsum((a - b) ** 2 for a, b in zip(ours, theirs, strict=True)))
    size = math.sqrt(math.fsum(b * b for b in theirs))
    return gap / size if size else (0.0 if gap == 0 else math.inf)


def _number(value: object) -> float:
    if not isinstance(value, float):
        raise TypeError(f"a probe task gave {type(value).__name__}, not a probability")
    return value


def _probe_image(width: int, height: int, seed: int) -> LoadedImage:
    """A photo-like image: smooth gradients and noise, the same every time."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
    pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    digest = hashlib.sha256(pixels.tobytes()).hexdigest()
    return LoadedImage(sha256=digest, image=image, nbytes=pixels.nbytes)
