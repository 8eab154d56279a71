"""Which tasks of a post still need the model, after the cache has answered what it could.

Image-level answers are kept per (image sha256, task) so that an image shared by posts, or
asked twice in one post, is computed once; post-level answers per (post key, task), the post key
hashing the text and the image hashes in order. `finish` folds them into the post's values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from operators.batching import encoding_key
from operators.cache import (
    SignalCache,
    decode_embedding,
    decode_probability,
    encode_embedding,
    encode_probability,
)
from operators.families import family_of
from operators.images import LoadedImage
from operators.jobs import About, PostJob, PostSignals, TaskKind, TaskValue, VlmTask
from operators.loading import Vlm
from operators.prefixes import PostText, encode_post_text
from operators.prompts import POST_TEXT_CLOSE, POST_TEXT_OPEN

CAPTION_SEPARATOR = " | "

Item = tuple[str, VlmTask]  # (image sha256 or post key, task): one answer


@dataclass(frozen=True)
class ImageNeed:
    """One image encoding a post needs: the image, and whether grouped with others."""

    image: LoadedImage
    grouped: bool

    @property
    def key(self) -> str:
        """What the encoding is kept under (`operators.batching.encoding_key`)."""
        return encoding_key(self.image.sha256, self.grouped)


@dataclass
class PostWork:
    """One post's work: the answers the cache gave and the items still needing the model."""

    index: int
    job: PostJob
    post_key: str
    signals: PostSignals
    text: PostText | None = None
    answers: dict[Item, TaskValue] = field(default_factory=dict)
    todo: list[Item] = field(default_factory=list)

    @property
    def image_todo(self) -> list[Item]:
        """Pending image-level items, the embedding included."""
        return [item for item in self.todo if item[0] != self.post_key]

    @property
    def post_todo(self) -> list[VlmTask]:
        """Pending post-level tasks."""
        return [task for key, task in self.todo if key == self.post_key]

    @property
    def rows(self) -> int:
        """Task rows this post adds to a forward at most (at least 1, for the chunk limit)."""
        return max(1, sum(task.kind != TaskKind.EMBED for _, task in self.todo))

    def needed_images(self) -> list[LoadedImage]:
        """The post's images the pending items need, each sha256 once, in post order."""
        wanted = {sha for sha, _ in self.image_todo} | (
            {image.sha256 for image in self.job.images} if self.post_todo else set()
        )
        unique = {image.sha256: image for image in self.job.images if image.sha256 in wanted}
        return list(unique.values())

    def needed_encodings(self, groups_images: bool) -> list[ImageNeed]:
        """The image encodings the pending items need, each once, in post order: lone ones for
        image-level items, grouped ones for a post-level prompt of several images where the
        family groups them (`Family.groups_images`)."""
        lone = {sha for sha, _ in self.image_todo}
        grouped = groups_images and len(self.job.images) > 1 and bool(self.post_todo)
        needs = [ImageNeed(image, False) for image in self.job.images if image.sha256 in lone]
        if self.post_todo:
            needs += [ImageNeed(image, grouped) for image in self.job.images]
        return list({need.key: need for need in needs}.values())


def post_text(job: PostJob) -> str | None:
    """The job's text, or None when it has none worth framing (empty or blank)."""
    return job.text if job.text and job.text.strip() else None


def post_key(job: PostJob) -> str:
    """A hash of the text and the image hashes in order: what a post-level answer depends on."""
    text = post_text(job)
    text_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() if text else ""
    parts = json.dumps([text_hash, [image.sha256 for image in job.images]])
    return "post-" + hashlib.sha256(parts.encode()).hexdigest()


def is_post_level(task: VlmTask) -> bool:
    """Whether the task reads the whole post in one prompt: a yes/no question about it, or its
    embedding (the prompt's mean hidden state)."""
    return task.about == About.POST and task.kind in (
        TaskKind.LABEL,
        TaskKind.QUESTION,
        TaskKind.EMBED,
    )


def image_task_text(vlm: Vlm, task: VlmTask) -> str:
    """What an image-level task asks after the image: worded question or describe prompt."""
    if task.kind == TaskKind.DESCRIBE:
        return vlm.spec.describe_prompt
    if task.kind == TaskKind.LABEL:
        return _yes_no(vlm.spec.label_question.format(label=task.prompt), vlm)
    return _yes_no(task.prompt, vlm)


def post_task_text(vlm: Vlm, task: VlmTask) -> str:
    """What a post-level task asks after the framed text."""
    if task.kind == TaskKind.LABEL:
        return _yes_no(vlm.spec.post_label_question.format(label=task.prompt), vlm)
    return _yes_no(task.prompt, vlm)


def _yes_no(question: str, vlm: Vlm) -> str:
    return f"{question.strip()} {vlm.spec.answer_instruction}".strip()


def model_key(vlm: Vlm) -> str:
    """A short fingerprint of everything that changes an answer: checkpoint and prompt layout."""
    spec = vlm.spec
    parts = [
        vlm.name,
        vlm.revision,
        str(vlm.model.dtype),
        vlm.layout.prefix,
        vlm.layout.suffix,
        spec.max_new_tokens,
        getattr(vlm.processor, "chat_template", None),
        POST_TEXT_OPEN,
        POST_TEXT_CLOSE,
        spec.post_label_question,
        spec.answer_instruction,
        spec.max_text_tokens,
        *_tiling(vlm),
        *(["grouped images"] if family_of(vlm.family).groups_images else []),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _tiling(vlm: Vlm) -> list[object]:
    # Tiles change what the model sees; keep the key unchanged for processors that do not tile.
    image_processor: Any = getattr(vlm.processor, "image_processor", None)
    if not hasattr(image_processor, "do_image_splitting"):
        return []
    size = getattr(image_processor, "size", None)
    return [image_processor.do_image_splitting, dict(size) if size else None]


def plan_work(
    vlm: Vlm, cache: SignalCache | None, jobs: Sequence[tuple[int, PostJob]]
) -> list[PostWork]:
    """Build each post's work; a cache fills in its hits and leaves the misses (one round trip)."""
    works = [_work(vlm, index, job) for index, job in jobs]
    if cache is None:
        return works
    fingerprint = model_key(vlm)
    keys = [_item_key(vlm, cache, fingerprint, item) for work in works for item in work.todo]
    values = iter(cache.get_many(keys))
    for work in works:
        _apply_hits(work, values)
    return works


def _work(vlm: Vlm, index: int, job: PostJob) -> PostWork:
    key = post_key(job)
    text = post_text(job)
    work = PostWork(index, job, key, PostSignals(values={}))
    if text is not None and any(is_post_level(task) for task in job.tasks):
        work.text = encode_post_text(vlm, text)
        work.signals.text_tokens_cut = work.text.cut
    for task in dict.fromkeys(job.tasks):
        if is_post_level(task):
            work.todo += [(key, task)] if (text is not None or job.images) else []
        else:
            work.todo += [(sha, task) for sha in dict.fromkeys(i.sha256 for i in job.images)]
    return work


def _item_key(vlm: Vlm, cache: SignalCache, fingerprint: str, item: Item) -> str:
    owner, task = item
    if is_post_level(task):
        return cache.key(fingerprint, owner, "q", json.dumps([task.kind, task.prompt, task.about]))
    if task.kind == TaskKind.EMBED:
        return cache.key(fingerprint, owner, "e")
    kind = "d" if task.kind == TaskKind.DESCRIBE else "p"
    return cache.key(fingerprint, owner, kind, image_task_text(vlm, task))


def _apply_hits(work: PostWork, values: Iterator[bytes | None]) -> None:
    missing: list[Item] = []
    for item in work.todo:
        value = next(values)
        if value is None:
            missing.append(item)
        else:
            work.answers[item] = _decode(item[1], value)
    work.signals.cache_hits = len(work.todo) - len(missing)
    work.signals.cache_misses = len(missing)
    work.todo = missing


def _decode(task: VlmTask, value: bytes) -> TaskValue:
    if task.kind == TaskKind.EMBED:
        return decode_embedding(value)
    if task.kind == TaskKind.DESCRIBE:
        return value.decode("utf-8")
    return decode_probability(value)


def _encode(value: TaskValue) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return encode_embedding(value)
    return encode_probability(value)


def store_results(vlm: Vlm, cache: SignalCache | None, works: Sequence[PostWork]) -> None:
    """Write what the model just computed for these posts; the cache never fails the batch."""
    if cache is None:
        return
    fingerprint = model_key(vlm)
    items = {
        _item_key(vlm, cache, fingerprint, item): _encode(work.answers[item])
        for work in works
        for item in work.todo
        if item in work.answers
    }
    cache.set_many(items)


def finish(work: PostWork) -> PostSignals:
    """Fold the answers into one value per task of the job; no image or no content gives 0/""/[]."""
    values = work.signals.values
    for task in work.job.tasks:
        if is_post_level(task) and task.kind == TaskKind.EMBED:
            vector = work.answers.get((work.post_key, task))
            values[task] = vector if isinstance(vector, list) else []
        elif is_post_level(task):
            values[task] = _probability(work.answers.get((work.post_key, task), 0.0))
        else:
            values[task] = _fold(task, [work.answers[(i.sha256, task)] for i in work.job.images])
    return work.signals


def _fold(task: VlmTask, per_image: list[TaskValue]) -> TaskValue:
    if task.kind == TaskKind.DESCRIBE:
        return CAPTION_SEPARATOR.join(str(caption) for caption in per_image if caption)
    if task.kind == TaskKind.EMBED:
        vectors = [vector for vector in per_image if isinstance(vector, list)]
        if not vectors:
            return []
        return [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]
    return max((_probability(value) for value in per_image), default=0.0)


def _probability(value: TaskValue) -> float:
    if isinstance(value, str | list):
        raise TypeError(f"expected a probability, got {type(value).__name__}")
    return float(value)
