"""What crosses from a consumer to a model replica and back, and the replica's pure core.

Requests carry fetched image bytes and the prompts a post's policies still need; results carry
signals keyed by prompt text, or a `Failure`. Failures are plain records, not exceptions, so
they cross Ray's process boundary unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from operators.exceptions import OperatorError
from operators.images import decode_image
from operators.jobs import ImageJob
from pipelines.retry import is_retryable
from policies.contracts import ModelRef, Signals
from policies.exceptions import ModerationError, Stage

if TYPE_CHECKING:
    from operators.images import ImageLimits
    from operators.jobs import ImageSignals
    from operators.spec import ModelSpec
    from operators.tasks import VlmOperator
    from pipelines.config import PipelineConfig

log = logging.getLogger(__name__)

DESCRIPTION_SEPARATOR = " | "
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Failure:
    """Why a post could not be moderated, as it goes into a dead letter."""

    stage: Stage
    error_type: str
    reason: str
    retryable: bool = False

    @classmethod
    def of(cls, error: BaseException, stage: Stage = Stage.INFER) -> Failure:
        """The record of `error`; `stage` is where an error not raised on purpose happened."""
        if isinstance(error, ModerationError):
            stage, reason = error.stage, error.reason
        else:
            reason = str(error) or type(error).__name__
        return cls(stage, type(error).__name__, one_line(reason), is_retryable(error))


def one_line(text: str, limit: int = 500) -> str:
    """`text` as one printable line of at most `limit` characters, for a dead letter's reason."""
    flat = " ".join(_SURROGATES.sub("\ufffd", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class InferenceRequest:
    """One post's images and the prompts its policies still need."""

    post_id: str
    images: tuple[bytes, ...]
    labels: frozenset[str] = frozenset()
    questions: frozenset[str] = frozenset()
    describe: bool = False
    trace_headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class InferenceResult:
    """Signals keyed by prompt text (probabilities: the maximum over the post's images)."""

    post_id: str
    signals: Signals | None = None
    failure: Failure | None = None
    cache_hits: int = 0
    cache_misses: int = 0


class SignalSource(Protocol):
    """Anything that turns inference requests into results, one per request, in order."""

    @property
    def model(self) -> ModelRef:
        """The model whose signals these are."""
        ...

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """Results for `requests`; never raises for one bad post."""
        ...


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


@dataclass
class NoopSignals:
    """Answers every prompt with 0.0 without a model: measures the plumbing alone."""

    model: ModelRef = field(default_factory=lambda: ModelRef(name="noop", revision=None))

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """Zero for every label and question, an empty caption when one is asked for."""
        return [
            InferenceResult(
                r.post_id,
                Signals(
                    labels=dict.fromkeys(r.labels, 0.0),
                    answers=dict.fromkeys(r.questions, 0.0),
                    description="" if r.describe else None,
                ),
            )
            for r in requests
        ]


def build_signal_source(config: PipelineConfig) -> SignalSource:
    """The in-process source: `noop`, else the configured VLM (cached when Redis is set)."""
    if config.model.name_or_path == "noop":
        return NoopSignals()
    from operators.cache import SignalCache
    from operators.loading import load_vlm
    from operators.tasks import VlmOperator

    if config.model.torch_threads:
        import torch

        torch.set_num_threads(config.model.torch_threads)
    vlm = load_vlm(model_spec(config))
    cache = SignalCache(config.redis_url, ttl_s=config.cache_ttl_s) if config.redis_url else None
    return SignalComputer(VlmOperator(vlm, cache), image_limits(config))


def model_spec(config: PipelineConfig) -> ModelSpec:
    """The operators' ModelSpec for the configured model; `tiny:<arch>` is built offline once."""
    from operators.spec import ModelSpec
    from operators.tiny import ensure_tiny

    settings = config.model
    name = settings.name_or_path
    if name.startswith("tiny:"):
        name = str(ensure_tiny(name.removeprefix("tiny:")))
    return ModelSpec(
        name,
        revision=settings.revision,
        dtype=settings.dtype,
        device=settings.device,
        attn_implementation=settings.attn_implementation,
        max_images_per_post=config.images.max_images,
        max_new_tokens=settings.max_new_tokens,
        compile=settings.compile,
        local_files_only=settings.local_files_only,
    )


def image_limits(config: PipelineConfig) -> ImageLimits:
    """The operators' ImageLimits for the configured image settings."""
    from pathlib import Path

    from operators.images import ImageLimits

    images = config.images
    return ImageLimits(
        max_bytes=images.max_bytes,
        max_pixels=images.max_pixels,
        fetch_timeout_s=images.fetch_timeout_s,
        file_root=Path(images.file_root) if images.file_root else None,
        allow_private_addresses=images.allow_private_addresses,
    )
