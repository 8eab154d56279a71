"""A post's time budget for one image specialist: the images past it are skipped, and said so.

Each specialist that reads images (`nsfw`, `ocr`, `banks`) may spend
`specialists.post.time_budget_ms` on one post. The budget is checked before each image after
the first, so every post has at least its first image looked at, and a post of eight
6,000 x 6,000 photos costs a specialist about its budget plus one image, not eight images.
A value computed from some of the images is still the post's value (the max, the text, a
match found): the note names the images left out, so no reader takes it for all of them.

>>> budget = PostBudget(1000.0, clock=iter([0.0, 0.4, 1.2]).__next__)
>>> run = each_image(["a", "b", "c", "d"], budget, str.upper)
>>> run.done, run.skipped
(['A', 'B'], (2, 3))
>>> [note] = run.notes("not read")
>>> note.split(": ")[0]
'images 2, 3 of 4 not read'
>>> note.endswith("the 1000 ms per-post budget ran out (specialists.post.time_budget_ms)")
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
SETTING = "specialists.post.time_budget_ms"


class PostBudget:
    """Milliseconds one specialist may spend on one post, on a clock started when it is made."""

    def __init__(self, budget_ms: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_ms = budget_ms
        self.clock = clock
        self.started = clock()

    def remaining_ms(self) -> float:
        """Milliseconds left (negative once spent)."""
        return self.budget_ms - (self.clock() - self.started) * 1000

    def spent(self) -> bool:
        """Whether the budget is used up."""
        return self.remaining_ms() <= 0


@dataclass(frozen=True)
class BudgetedRun(Generic[R]):
    """What `each_image` did: results of the images it got to, in order, and those it skipped."""

    done: list[R]
    skipped: tuple[int, ...]
    budget_ms: float

    def notes(self, verb: str) -> tuple[str, ...]:
        """The note naming the images left out (`verb`: "not read"), or none if none were."""
        if not self.skipped:
            return ()
        which = "image" if len(self.skipped) == 1 else "images"
        listed = ", ".join(str(index) for index in self.skipped)
        total = len(self.done) + len(self.skipped)
        why = f"the {self.budget_ms:g} ms per-post budget ran out ({SETTING})"
        return (f"{which} {listed} of {total} {verb}: {why}",)


def each_image(images: Sequence[T], budget: PostBudget, work: Callable[[T], R]) -> BudgetedRun[R]:
    """`work` on each image in order while the budget lasts; the first image always."""
    done: list[R] = []
    for index, image in enumerate(images):
        if index and budget.spent():
            return BudgetedRun(done, tuple(range(index, len(images))), budget.budget_ms)
        done.append(work(image))
    return BudgetedRun(done, (), budget.budget_ms)
