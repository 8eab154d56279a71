"""What crosses from a consumer to a model replica and back.

Requests carry a post's text, its fetched image bytes and the model tasks its policies still
need; results carry a value per task, or a `Failure`. Failures are plain records, not exceptions, so
they cross Ray's process boundary unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from contracts.errors import ModerationError, Stage
from contracts.vlm import VlmTask
from pipelines.retry import is_retryable

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


def producer_failure(
    error: BaseException, retryable: tuple[type[BaseException], ...] = ()
) -> Failure:
    """The record of a producer's error for one post: retried when the pipeline deems it
    transient or the producer declares it `retryable`. An image error keeps its stage."""
    failure = Failure.of(error)
    return replace(failure, retryable=failure.retryable or isinstance(error, retryable))


def one_line(text: str, limit: int = 500) -> str:
    """`text` as one printable line of at most `limit` characters, for a dead letter's reason."""
    flat = " ".join(_SURROGATES.sub("\ufffd", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class InferenceRequest:
    """One post's text, images and the model tasks its policies still need."""

    post_id: str
    images: tuple[bytes, ...]
    tasks: frozenset[VlmTask] = frozenset()
    text: str | None = None
    trace_headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class InferenceResult:
    """A value per task (probabilities, a caption, an embedding), or why there is none."""

    post_id: str
    values: dict[VlmTask, Any] | None = None
    failure: Failure | None = None
    text_tokens_cut: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
