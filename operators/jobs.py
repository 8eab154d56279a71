"""The records a batch of VLM work goes in and comes out as. Plain dataclasses, no model.

`About`, `TaskKind` and `VlmTask` live in `contracts.vlm` (standard library only): the policy
side ships them to the replica and gets its values back under the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts.vlm import About, TaskKind, VlmTask
from operators.images import LoadedImage

__all__ = [
    "About",
    "ImageJob",
    "ImageSignals",
    "PostJob",
    "PostSignals",
    "TaskKind",
    "TaskValue",
    "VlmTask",
]

TaskValue = float | str | list[float]


@dataclass(frozen=True)
class PostJob:
    """Everything asked of one post."""

    images: tuple[LoadedImage, ...]
    text: str | None
    tasks: tuple[VlmTask, ...]


@dataclass
class PostSignals:
    """What the model said about one post."""

    values: dict[VlmTask, TaskValue]  # every task of the job has a value
    text_tokens_cut: int = 0  # tokens of the post text left out of the prompt (0: none)
    cache_hits: int = 0
    cache_misses: int = 0


@dataclass(frozen=True)
class ImageJob:
    """Everything asked of one image: labels and questions (name -> text), describe, embed."""

    image: LoadedImage
    labels: Mapping[str, str] = field(default_factory=dict)
    questions: Mapping[str, str] = field(default_factory=dict)
    describe: bool = False
    embed: bool = False

    def as_post(self) -> PostJob:
        """The same work as a one-image post with image-level tasks only."""
        tasks = [VlmTask(TaskKind.LABEL, text) for text in self.labels.values()]
        tasks += [VlmTask(TaskKind.QUESTION, text) for text in self.questions.values()]
        tasks += [VlmTask(TaskKind.DESCRIBE)] if self.describe else []
        tasks += [VlmTask(TaskKind.EMBED)] if self.embed else []
        return PostJob(images=(self.image,), text=None, tasks=tuple(dict.fromkeys(tasks)))


@dataclass
class ImageSignals:
    """What the model said about one image; probabilities lie in [0, 1]."""

    sha256: str
    labels: dict[str, float] = field(default_factory=dict)
    answers: dict[str, float] = field(default_factory=dict)
    description: str | None = None
    embedding: list[float] | None = None
    cache_hits: int = 0
    cache_misses: int = 0

    @classmethod
    def of_post(cls, job: ImageJob, signals: PostSignals) -> ImageSignals:
        """Read a one-image post's values back under the job's names."""
        values = signals.values
        result = cls(job.image.sha256, cache_hits=signals.cache_hits)
        result.cache_misses = signals.cache_misses
        for name, text in job.labels.items():
            result.labels[name] = _probability(values[VlmTask(TaskKind.LABEL, text)])
        for name, text in job.questions.items():
            result.answers[name] = _probability(values[VlmTask(TaskKind.QUESTION, text)])
        if job.describe:
            result.description = str(values[VlmTask(TaskKind.DESCRIBE)])
        if job.embed:
            embedding = values[VlmTask(TaskKind.EMBED)]
            result.embedding = embedding if isinstance(embedding, list) else None
        return result


def _probability(value: TaskValue) -> float:
    if not isinstance(value, float):
        raise TypeError(f"expected a probability, got {type(value).__name__}")
    return value
