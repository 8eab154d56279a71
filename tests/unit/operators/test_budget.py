"""The per-post budget of an image specialist, on an injected clock: no wall-clock waits."""

from __future__ import annotations

import doctest

from operators.specialists import budget
from operators.specialists.budget import PostBudget, each_image


class ImageClock:
    """A clock that moves only when an image is worked on: each takes `seconds_per_image`."""

    def __init__(self, seconds_per_image: float) -> None:
        self.now = 0.0
        self.step = seconds_per_image

    def __call__(self) -> float:
        return self.now

    def work(self, image: str) -> str:
        self.now += self.step
        return image.upper()


def test_images_past_the_budget_are_skipped_and_named():
    clock = ImageClock(1.0)
    run = each_image(list("abcdefgh"), PostBudget(2500.0, clock), clock.work)
    assert run.done == ["A", "B", "C"], "0 s, 1 s, 2 s in: within 2.5 s"
    assert run.skipped == (3, 4, 5, 6, 7)
    assert run.notes("not read") == (
        "images 3, 4, 5, 6, 7 of 8 not read: the 2500 ms per-post budget ran out "
        "(specialists.post.time_budget_ms)",
    )


def test_the_first_image_is_always_looked_at():
    clock = ImageClock(10.0)
    spent = PostBudget(0.001, clock)
    clock.now = 5.0  # spent before any image
    run = each_image(["a", "b"], spent, clock.work)
    assert run.done == ["A"] and run.skipped == (1,)
    assert run.notes("not scored")[0].startswith("image 1 of 2 not scored: the 0.001 ms")


def test_within_the_budget_nothing_is_skipped_and_nothing_noted():
    clock = ImageClock(0.1)
    run = each_image(["a", "b", "c"], PostBudget(4000.0, clock), clock.work)
    assert run.done == ["A", "B", "C"] and run.skipped == () and run.notes("not read") == ()


def test_no_images_cost_nothing():
    run = each_image([], PostBudget(1.0, ImageClock(1.0)), str.upper)
    assert run.done == [] and run.notes("not read") == ()


def test_remaining_time_counts_down_on_the_clock_it_was_given():
    clock = ImageClock(0.25)
    post = PostBudget(1000.0, clock)
    clock.work("a")
    assert post.remaining_ms() == 750.0 and not post.spent()
    clock.now = 1.0
    assert post.spent()


def test_module_example_runs():
    assert doctest.testmod(budget).failed == 0
