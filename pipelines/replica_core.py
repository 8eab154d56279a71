"""The model replica's pure core: decode a batch's images, run the VLM operator, fold per post.

Ray Serve's `SignalReplica` only wraps `SignalComputer`; the in-process source is the same
class, so the CLI, the tests and the replica run one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.records import ModelRef, Signals
from operators.exceptions import OperatorError
from operators.images import decode_image
from operators.jobs import ImageJob, ImageSignals
from operators.limits import ImageLimits
from operators.tasks import VlmOperator
from pipelines.signal_records import Failure, InferenceRequest, InferenceResult

DESCRIPTION_SEPARATOR = " | "


@dataclass
class SignalComputer:
    """Decodes images and runs the VLM operator for a batch of posts (the replica's core)."""

    operator: VlmOperator
    limits: ImageLimits
    model: ModelRef = field(init=False)

    def __post_init__(self) -> None:
        self.model = ModelRef(name=self.operator.vlm.name, revision=self.operator.vlm.revision)

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """Flatten every post's images into one operator batch, then fold results per post."""
        jobs: list[ImageJob | OperatorError] = []
        for request in requests:
            labels = {prompt: prompt for prompt in request.labels}
            questions = {question: question for question in request.questions}
            for data in request.images:
                try:
                    image = decode_image(data, self.limits)
                except OperatorError as error:
                    jobs.append(error)
                    continue
                jobs.append(ImageJob(image, labels, questions, describe=request.describe))
        outputs = iter(self.operator.run(jobs) if jobs else [])
        return [fold_images(r, [next(outputs) for _ in r.images]) for r in requests]


def fold_images(
    request: InferenceRequest, outputs: Sequence[ImageSignals | BaseException]
) -> InferenceResult:
    """One post's result from its images': the first failure, else the max of each signal."""
    for output in outputs:
        if isinstance(output, BaseException):
            return InferenceResult(request.post_id, failure=Failure.of(output))
    images = [o for o in outputs if not isinstance(o, BaseException)]
    labels = {p: max((o.labels[p] for o in images), default=0.0) for p in request.labels}
    answers = {q: max((o.answers[q] for o in images), default=0.0) for q in request.questions}
    captions = [o.description for o in images if o.description]
    description = DESCRIPTION_SEPARATOR.join(captions) if request.describe and captions else None
    return InferenceResult(
        request.post_id,
        Signals(labels=labels, answers=answers, description=description),
        cache_hits=sum(o.cache_hits for o in images),
        cache_misses=sum(o.cache_misses for o in images),
    )
