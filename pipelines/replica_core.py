"""The model replica's pure core: decode a batch's images, run the VLM operator on every post.

Ray Serve's `SignalReplica` only wraps `SignalComputer`; the in-process source is the same
class, so the CLI, the tests and the replica run one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.records import ModelRef
from operators.exceptions import OperatorError
from operators.images import decode_image
from operators.jobs import PostJob, PostSignals
from operators.limits import ImageLimits
from operators.tasks import VlmOperator
from pipelines.signal_records import Failure, InferenceRequest, InferenceResult


@dataclass
class SignalComputer:
    """Decodes images and runs the VLM operator for a batch of posts (the replica's core)."""

    operator: VlmOperator
    limits: ImageLimits
    engine_note: str | None = None  # why the plain engine runs, when another was asked for
    model: ModelRef = field(init=False)

    def __post_init__(self) -> None:
        vlm = self.operator.vlm
        self.model = ModelRef(
            name=vlm.name,
            revision=vlm.revision,
            engine=vlm.spec.engine,
            engine_note=self.engine_note,
        )

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """One operator batch over every post's tasks; a post's failure stays its own."""
        jobs = [self._job(request) for request in requests]
        outputs = self.operator.run_posts(jobs) if jobs else []
        return [result_of(r, out) for r, out in zip(requests, outputs, strict=True)]

    def _job(self, request: InferenceRequest) -> PostJob | OperatorError:
        try:
            images = tuple(decode_image(data, self.limits) for data in request.images)
        except OperatorError as error:
            return error
        return PostJob(images, request.text, tuple(sorted(request.tasks, key=repr)))


def result_of(request: InferenceRequest, output: PostSignals | OperatorError) -> InferenceResult:
    """The wire result of one post's operator output."""
    if isinstance(output, OperatorError):
        return InferenceResult(request.post_id, failure=Failure.of(output))
    return InferenceResult(
        request.post_id,
        dict(output.values),
        text_tokens_cut=output.text_tokens_cut,
        cache_hits=output.cache_hits,
        cache_misses=output.cache_misses,
    )
