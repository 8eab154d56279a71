"""The VLM tasks (labels, questions, captions, embeddings) over a batch of posts.

`VlmOperator.run_posts` splits into preprocess (cache lookup, the processor once per unique
image, the post text as untrusted tokens), forward (the only model call, in `operators.forward`,
on prefix and task rows from `operators.assembly`) and postprocess (probabilities, decoding,
folding per post, cache writes). `run` and the four one-task helpers wrap it for image jobs.
Posts are forwarded in chunks; with `preprocess_threads` the processor runs on the next chunk's
images on a thread pool while the current chunk's forward runs.

>>> from operators.tiny import ensure_tiny
>>> from operators.loading import load_vlm
>>> from operators.spec import ModelSpec
>>> from operators.images import ImageLoader
>>> from operators.limits import ImageLimits
>>> vlm = load_vlm(ModelSpec(name_or_path=str(ensure_tiny("smolvlm"))))  # doctest: +SKIP
>>> image = ImageLoader(ImageLimits()).load(png_bytes)  # doctest: +SKIP
>>> offsite = VlmTask(TaskKind.QUESTION, "Does it ask to pay off-platform?", About.POST)
>>> [signals] = VlmOperator(vlm).run_posts([PostJob((image,), "DM me", (offsite,))])
... # doctest: +SKIP
>>> 0.0 <= signals.values[offsite] <= 1.0  # doctest: +SKIP
True
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import torch

from operators.assembly import ForwardPlan, build_plan
from operators.batching import (
    ImageEncoding,
    encode_image,
    pin_encoding,
    processor_path,
    wants_pinned,
)
from operators.cache import SignalCache
from operators.exceptions import InferenceError, OperatorError, UnsupportedTask
from operators.families import family_of
from operators.forward import ForwardResult, run_forward
from operators.jobs import (
    About,
    ImageJob,
    ImageSignals,
    PostJob,
    PostSignals,
    TaskKind,
    TaskValue,
    VlmTask,
)
from operators.loading import Vlm
from operators.plain import run_plain
from operators.static_decode import static_decoder
from operators.work import ImageNeed, Item, PostWork, finish, plan_work, store_results

__all__ = [
    "About",
    "ImageJob",
    "ImageSignals",
    "PostJob",
    "PostSignals",
    "TaskKind",
    "VlmOperator",
    "VlmTask",
]

log = logging.getLogger(__name__)


class VlmOperator:
    """Runs batches of posts (or single images) through one loaded model, behind a cache."""

    def __init__(self, vlm: Vlm, cache: SignalCache | None = None) -> None:
        # The reference engine takes its pixels from the processor itself, not the fast path.
        self.vlm = processor_path(vlm) if vlm.spec.engine == "plain" else vlm
        self.cache = cache
        # Fixed-shape steps keep their KV caches (and compiled graphs) from batch to batch.
        self.static = static_decoder(vlm.spec)
        self._threaded_vlm: Vlm | None = None

    def run_posts(
        self, jobs: Sequence[PostJob | OperatorError]
    ) -> list[PostSignals | OperatorError]:
        """One result per job, in order; a failed job yields its typed error, not an exception.

        Items that are already an `OperatorError` (a post whose images failed to load) pass
        through.
        """
        results: list[PostSignals | OperatorError | None] = [
            job if isinstance(job, OperatorError) else _refusal(job) for job in jobs
        ]
        live = [
            (index, job)
            for index, job in enumerate(jobs)
            if isinstance(job, PostJob) and results[index] is None
        ]
        pending: list[PostWork] = []
        for work in plan_work(self.vlm, self.cache, live):
            if work.todo:
                pending.append(work)
            else:
                results[work.index] = finish(work)
        chunks = list(self._chunks(pending))
        threads = self.vlm.spec.preprocess_threads
        vlm = self._encoding_vlm() if threads else self.vlm
        with _Encoder(vlm, threads, wants_pinned(self.vlm)) as encoder:
            for works, encodings in encoder.ahead(chunks, results):
                for work, outcome in self._forward_isolating(works, encodings):
                    results[work.index] = outcome
        return [result for result in results if result is not None]

    def run(self, jobs: Sequence[ImageJob | OperatorError]) -> list[ImageSignals | OperatorError]:
        """`run_posts` for one-image jobs, read back under the jobs' names."""
        posts = [job.as_post() if isinstance(job, ImageJob) else job for job in jobs]
        results = self.run_posts(posts)
        return [_image_result(job, result) for job, result in zip(jobs, results, strict=True)]

    def _encoding_vlm(self) -> Vlm:
        """The loaded model with a processor of its own, for the preprocessing threads."""
        # A fast tokenizer sets padding and truncation as state on one shared Rust object, so
        # calls from two threads with different settings fail with "Already borrowed". The
        # threads only ever tokenize the image placeholder, all with the same settings.
        if self._threaded_vlm is None:
            processor = copy.deepcopy(self.vlm.processor)
            backend = getattr(processor.tokenizer, "backend_tokenizer", None)
            if backend is not None:
                backend.no_padding()
                backend.no_truncation()
            self._threaded_vlm = dataclasses.replace(self.vlm, processor=processor)
        return self._threaded_vlm

    def _chunks(self, pending: Sequence[PostWork]) -> Iterator[list[PostWork]]:
        """Posts by prompt length, whole, at most `max_rows_per_forward` task rows per chunk.

        Prefix rows are left-padded to the longest in their forward, so a 13-tile photo beside
        text-only posts would make every row pay for its length; sorting first keeps posts of
        similar length together (results are placed by post index, so order is kept).
        """
        limit = self.vlm.spec.max_rows_per_forward
        chunk: list[PostWork] = []
        rows = 0
        for work in sorted(pending, key=lambda work: prompt_size(self.vlm, work)):
            if chunk and rows + work.rows > limit:
                yield chunk
                chunk, rows = [], 0
            chunk.append(work)
            rows += work.rows
        if chunk:
            yield chunk

    def _forward_isolating(
        self, works: list[PostWork], encodings: Mapping[str, ImageEncoding]
    ) -> Iterator[tuple[PostWork, PostSignals | OperatorError]]:
        """Forward the chunk; if it fails, retry post by post so only the culprit fails."""
        try:
            plan = build_plan(self.vlm, works, encodings)
            if self.vlm.spec.engine == "plain":
                ordered = [encodings[sha] for sha in plan.image_shas]
                result = run_plain(self.vlm, plan.prefix, plan.rows, plan.embed, ordered)
            else:
                result = run_forward(self.vlm, plan.prefix, plan.rows, plan.embed, self.static)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            if len(works) == 1:
                log.warning("inference failed for post %d: %s", works[0].index, exc)
                yield works[0], InferenceError(f"the model failed on this post: {exc}")
                return
            for work in works:
                yield from self._forward_isolating([work], encodings)
            return
        yield from self._postprocess(works, plan, result)

    def _postprocess(
        self, works: Sequence[PostWork], plan: ForwardPlan, result: ForwardResult
    ) -> Iterator[tuple[PostWork, PostSignals]]:
        answers = self._answers(plan, result)
        embeddings = _embeddings(plan, result)
        for work in works:
            for sha_or_post, task in work.todo:
                embedded = task.kind == TaskKind.EMBED
                value = embeddings[sha_or_post] if embedded else answers[(sha_or_post, task)]
                work.answers[(sha_or_post, task)] = value
        store_results(self.vlm, self.cache, works)
        for work in works:
            yield work, finish(work)

    def _answers(self, plan: ForwardPlan, result: ForwardResult) -> dict[Item, TaskValue]:
        probabilities = result.yes_probability.tolist()
        captions = iter(self._decode(result.generated))
        answers: dict[Item, TaskValue] = {}
        for row, item in enumerate(plan.row_items):
            is_caption = item[1].kind == TaskKind.DESCRIBE
            answers[item] = next(captions) if is_caption else float(probabilities[row])
        return answers

    def _decode(self, generated: torch.Tensor | None) -> list[str]:
        if generated is None:
            return []
        texts = self.vlm.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [text.strip() for text in texts]


def _refusal(job: PostJob) -> OperatorError | None:
    for task in job.tasks:
        if task.about == About.POST and task.kind == TaskKind.DESCRIBE:
            return UnsupportedTask(f"{task.kind} is asked of each image, not about the post")
    return None


def _embeddings(plan: ForwardPlan, result: ForwardResult) -> dict[str, TaskValue]:
    """Each image's embedding by its encoding key, and each post's by its post key."""
    found: dict[str, TaskValue] = {}
    if result.embeddings is not None:
        found.update(zip(plan.image_shas, result.embeddings.tolist(), strict=True))
    if result.post_embeddings is not None:
        found.update(zip(plan.embedded_posts, result.post_embeddings.tolist(), strict=True))
    return found


def prompt_size(vlm: Vlm, work: PostWork) -> int:
    """About how many tokens a post's prompts hold: its images' and its text's; 0 if unknown."""
    fast = vlm.fast_pixels
    if fast is None:  # a processor whose image sizes are unknown until it runs: keep the order
        return 0
    images = sum(fast.image_tokens(i.image, vlm.processor) for i in work.needed_images())
    return images + (len(work.text.ids) if work.text is not None else 0)


class _Encoder:
    """The processor once per unique image, inline or a chunk ahead on a thread pool."""

    def __init__(self, vlm: Vlm, threads: int, pin: bool) -> None:
        self._vlm = vlm
        self._pin = pin
        self._pool = ThreadPoolExecutor(threads, "vlm-preprocess") if threads else None
        # Encodings by `encoding_key`: an image's hash and form (alone, or grouped).
        self._done: dict[str, ImageEncoding | OperatorError | Future[Any]] = {}
        self._groups = family_of(vlm.family).groups_images

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def ahead(
        self, chunks: Sequence[list[PostWork]], results: list[PostSignals | OperatorError | None]
    ) -> Iterator[tuple[list[PostWork], dict[str, ImageEncoding]]]:
        """Each chunk's posts whose images encoded, with those encodings; the rest get errors."""
        last_use = {
            need.key: index
            for index, works in enumerate(chunks)
            for work in works
            for need in work.needed_encodings(self._groups)
        }
        for index, works in enumerate(chunks):
            # The pool's queue is first-in first-out: this chunk's images finish before the next's.
            for upcoming in chunks[index : index + 2]:
                self._start(upcoming)
            ready, encodings = self._collect(works, results)
            if ready:
                yield ready, encodings
            # Drop what no later chunk needs: at most two chunks' pixels are held at once.
            for sha in [sha for sha, last in last_use.items() if last == index]:
                self._done.pop(sha, None)

    def _start(self, works: Sequence[PostWork]) -> None:
        if self._pool is None:
            return
        for work in works:
            for need in work.needed_encodings(self._groups):
                if need.key not in self._done:
                    self._done[need.key] = self._pool.submit(self._encode, need)

    def _collect(
        self, works: Sequence[PostWork], results: list[PostSignals | OperatorError | None]
    ) -> tuple[list[PostWork], dict[str, ImageEncoding]]:
        """A post with a rejected image gets that image's error and leaves the chunk."""
        ready = []
        encodings: dict[str, ImageEncoding] = {}
        for work in works:
            failure = None
            for need in work.needed_encodings(self._groups):
                encoding = self._get(need)
                if isinstance(encoding, OperatorError):
                    failure = failure or encoding
                else:
                    encodings[need.key] = encoding
            if failure is None:
                ready.append(work)
            else:
                results[work.index] = failure
        return ready, encodings

    def _get(self, need: ImageNeed) -> ImageEncoding | OperatorError:
        entry = self._done.get(need.key)
        if entry is None:
            entry = self._encode(need)
        elif isinstance(entry, Future):
            entry = entry.result()
        self._done[need.key] = entry
        return entry

    def _encode(self, need: ImageNeed) -> ImageEncoding | OperatorError:
        try:
            encoding = encode_image(self._vlm, need.image.image, need.grouped)
        except OperatorError as error:
            return error
        return pin_encoding(encoding) if self._pin else encoding


def _image_result(
    job: ImageJob | OperatorError, result: PostSignals | OperatorError
) -> ImageSignals | OperatorError:
    if isinstance(job, ImageJob) and isinstance(result, PostSignals):
        return ImageSignals.of_post(job, result)
    if isinstance(result, OperatorError):
        return result
    raise TypeError("an image job came back without signals")
