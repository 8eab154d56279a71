"""The four VLM tasks (ask, classify, describe, embed) over a batch of images.

`VlmOperator.run` splits into preprocess (cache lookup, processor, padding), forward (the only
model call, in `operators.forward`) and postprocess (probabilities, decoding, cache writes).

>>> from operators.tiny import ensure_tiny
>>> from operators.loading import load_vlm
>>> from operators.spec import ModelSpec
>>> from operators.images import ImageLoader
>>> from operators.limits import ImageLimits
>>> vlm = load_vlm(ModelSpec(str(ensure_tiny("smolvlm"))))  # doctest: +SKIP
>>> image = ImageLoader(ImageLimits()).load(png_bytes)  # doctest: +SKIP
>>> [signals] = VlmOperator(vlm).run([ImageJob(image, questions={"gun": "Is there a gun?"})])
... # doctest: +SKIP
>>> 0.0 <= signals.answers["gun"] <= 1.0  # doctest: +SKIP
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import torch

from operators.batching import collate_prefixes, encode_prefix, encode_task_rows
from operators.cache import SignalCache
from operators.exceptions import InferenceError, OperatorError
from operators.forward import ForwardResult, run_forward
from operators.images import LoadedImage
from operators.jobs import ImageJob, ImageSignals
from operators.loading import Vlm
from operators.work import Task, TaskKind, Work, plan_work, store_results

__all__ = ["ImageJob", "ImageSignals", "VlmOperator"]

log = logging.getLogger(__name__)


class VlmOperator:
    """Runs batches of image jobs through one loaded model, optionally behind a cache."""

    def __init__(self, vlm: Vlm, cache: SignalCache | None = None) -> None:
        self.vlm = vlm
        self.cache = cache

    def run(self, jobs: Sequence[ImageJob | OperatorError]) -> list[ImageSignals | OperatorError]:
        """One result per job, in order; a failed job yields its typed error, not an exception.

        Items that are already an `OperatorError` (an image that failed to load) pass through.
        """
        results: list[ImageSignals | OperatorError | None] = [None] * len(jobs)
        live = [(index, job) for index, job in enumerate(jobs) if isinstance(job, ImageJob)]
        for index, job in enumerate(jobs):
            if isinstance(job, OperatorError):
                results[index] = job
        pending = []
        for work in plan_work(self.vlm, self.cache, live):
            if work.tasks or work.embed:
                pending.append(work)
            else:
                results[work.index] = work.signals
        for chunk in self._chunks(pending):
            for work, outcome in self._run_chunk(chunk):
                results[work.index] = outcome
        return [result for result in results if result is not None]

    def ask(self, images: Sequence[LoadedImage], questions: Mapping[str, str]) -> list[object]:
        """P(yes) per question per image: a dict of floats, or the image's typed error."""
        results = self.run([ImageJob(image, questions=questions) for image in images])
        return [_pick(result, "answers") for result in results]

    def classify(self, images: Sequence[LoadedImage], labels: Mapping[str, str]) -> list[object]:
        """An independent probability per label per image (multi-label), or a typed error."""
        results = self.run([ImageJob(image, labels=labels) for image in images])
        return [_pick(result, "labels") for result in results]

    def describe(self, images: Sequence[LoadedImage]) -> list[object]:
        """A caption per image by batched greedy generation, or a typed error."""
        results = self.run([ImageJob(image, describe=True) for image in images])
        return [_pick(result, "description") for result in results]

    def embed(self, images: Sequence[LoadedImage]) -> list[object]:
        """A pooled float32 image embedding per image, or a typed error."""
        results = self.run([ImageJob(image, embed=True) for image in images])
        return [_pick(result, "embedding") for result in results]

    def _chunks(self, pending: Sequence[Work]) -> Iterator[list[Work]]:
        limit = self.vlm.spec.max_rows_per_forward
        chunk: list[Work] = []
        rows = 0
        for work in pending:
            if chunk and rows + max(len(work.tasks), 1) > limit:
                yield chunk
                chunk, rows = [], 0
            chunk.append(work)
            rows += max(len(work.tasks), 1)
        if chunk:
            yield chunk

    def _run_chunk(
        self, chunk: Sequence[Work]
    ) -> Iterator[tuple[Work, ImageSignals | OperatorError]]:
        ready: list[tuple[Work, dict[str, torch.Tensor]]] = []
        for work in chunk:
            try:
                ready.append((work, encode_prefix(self.vlm, work.job.image.image)))
            except OperatorError as error:
                yield work, error
        if ready:
            yield from self._forward_isolating([work for work, _ in ready], [e for _, e in ready])

    def _forward_isolating(
        self, works: list[Work], encodings: list[dict[str, torch.Tensor]]
    ) -> Iterator[tuple[Work, ImageSignals | OperatorError]]:
        try:
            result = self._forward(works, encodings)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            if len(works) == 1:
                log.warning("inference failed for image %s: %s", works[0].signals.sha256, exc)
                yield works[0], InferenceError(f"the model failed on this image: {exc}")
                return
            for work, encoding in zip(works, encodings, strict=True):
                yield from self._forward_isolating([work], [encoding])
            return
        yield from self._postprocess(works, result)

    def _forward(
        self, works: Sequence[Work], encodings: list[dict[str, torch.Tensor]]
    ) -> ForwardResult:
        prefix = collate_prefixes(encodings, self.vlm.tokenizer.pad_token_id)
        image_index = [i for i, work in enumerate(works) for _ in work.tasks]
        tasks = [task for work in works for task in work.tasks]
        rows = encode_task_rows(
            self.vlm,
            image_index,
            [task.text for task in tasks],
            [task.kind is TaskKind.DESCRIBE for task in tasks],
        )
        return run_forward(self.vlm, prefix, rows, embed=any(work.embed for work in works))

    def _postprocess(
        self, works: Sequence[Work], result: ForwardResult
    ) -> Iterator[tuple[Work, ImageSignals]]:
        probabilities = result.yes_probability.tolist()
        captions = iter(self._decode(result.generated))
        row = 0
        for image, work in enumerate(works):
            for task in work.tasks:
                _record(work.signals, task, probabilities[row], captions)
                row += 1
            if work.embed and result.embeddings is not None:
                work.signals.embedding = result.embeddings[image].tolist()
        store_results(self.vlm, self.cache, works)
        for work in works:
            yield work, work.signals

    def _decode(self, generated: torch.Tensor | None) -> list[str]:
        if generated is None:
            return []
        texts = self.vlm.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [text.strip() for text in texts]


def _record(signals: ImageSignals, task: Task, probability: float, captions: Iterator[str]) -> None:
    if task.kind is TaskKind.LABEL:
        signals.labels[task.name] = probability
    elif task.kind is TaskKind.QUESTION:
        signals.answers[task.name] = probability
    else:
        signals.description = next(captions)


def _pick(result: ImageSignals | OperatorError, attribute: str) -> object:
    return result if isinstance(result, OperatorError) else getattr(result, attribute)
