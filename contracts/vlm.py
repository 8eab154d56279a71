"""What a policy can ask the vision-language model, as plain hashable records.

A `VlmTask` is both what the consumer ships to the model replica and the key of the value that
comes back, so policies, the replica and the cache agree on it without sharing code.
Standard library only: `operators` imports it on a GPU box.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_MODEL = "default"  # the pipeline's `model:`; tasks that name no model go to it


class About(StrEnum):
    """What a label or question is about."""

    IMAGE = "image"  # asked of each image on its own; the post's value is the max over images
    POST = "post"  # the post's text and all its images, in order, in one prompt


class TaskKind(StrEnum):
    """What one model task computes."""

    LABEL = "label"  # P(the label applies), from a yes/no question built from the label text
    QUESTION = "question"  # P(yes) to a yes/no question
    DESCRIBE = "describe"  # a caption of each image, joined
    # About an image: its mean projected image embedding. About the post: the mean of the
    # language model's last hidden state over the post's prompt (text and images together).
    EMBED = "embed"


@dataclass(frozen=True)
class VlmTask:
    """One thing asked of a model about a post; hashable, the key of its value.

    `model` is the pipeline's name of the model asked (`models:` in its config), so the same
    prompt put to two models is two tasks with two values.
    """

    kind: TaskKind
    prompt: str = ""
    about: About = About.IMAGE
    model: str = DEFAULT_MODEL

    # Tasks key every computed value, so they are hashed in every lookup: hash once. The
    # cached hash stays out of pickles, since another process hashes strings differently.
    def __hash__(self) -> int:
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = hash((self.kind, self.prompt, self.about, self.model))
            object.__setattr__(self, "_hash", value)
            return value

    def __getstate__(self) -> dict[str, object]:
        return {name: value for name, value in self.__dict__.items() if name != "_hash"}


def empty_value(task: VlmTask) -> float | str | list[float]:
    """What a task gives for a post with nothing to look at: 0.0, "", or []."""
    if task.kind is TaskKind.DESCRIBE:
        return ""
    if task.kind is TaskKind.EMBED:
        return []
    return 0.0
