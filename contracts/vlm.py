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


_Fields = tuple[TaskKind, str, About, str]
_ONE_PER_VALUE: dict[_Fields, VlmTask] = {}


# No __init__: `__new__` sets the fields, once for every task of the same value.
@dataclass(frozen=True, init=False, eq=False)
class VlmTask:
    """One thing asked of a model about a post; hashable, the key of its value.

    `model` is the pipeline's name of the model asked (`models:` in its config), so the same
    prompt put to two models is two tasks with two values.

    There is one instance per value in a process: building a task (or unpickling one, or
    copying it) returns the instance already made for those fields. Tasks key every computed
    value and are looked up many times a post, so equality and hashing are the object's own,
    in C, rather than a comparison of four fields.
    """

    kind: TaskKind
    prompt: str = ""
    about: About = About.IMAGE
    model: str = DEFAULT_MODEL

    def __new__(
        cls,
        kind: TaskKind | str,
        prompt: str = "",
        about: About | str = About.IMAGE,
        model: str = DEFAULT_MODEL,
    ) -> VlmTask:
        fields = (TaskKind(kind), str(prompt), About(about), str(model))
        task = _ONE_PER_VALUE.get(fields)
        if task is None:
            made = object.__new__(cls)
            for name, value in zip(("kind", "prompt", "about", "model"), fields, strict=True):
                object.__setattr__(made, name, value)
            task = _ONE_PER_VALUE.setdefault(fields, made)  # a racing thread's may win
        return task

    def __reduce__(self) -> tuple[type[VlmTask], tuple[str, str, str, str]]:
        return (VlmTask, (self.kind.value, self.prompt, self.about.value, self.model))


def empty_value(task: VlmTask) -> float | str | list[float]:
    """What a task gives for a post with nothing to look at: 0.0, "", or []."""
    if task.kind is TaskKind.DESCRIBE:
        return ""
    if task.kind is TaskKind.EMBED:
        return []
    return 0.0
