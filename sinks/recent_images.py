"""The recent-images sink: each decided post's image hashes into the Redis window.

The `banks` producer leaves the PDQ hashes of a post's images in its evidence; this sink keeps
them with where the post was read (`operators.specialists.recent_images`), so images banked
later find the posts already seen with them (`pipelines.recheck`).

The window helps a later re-check; it is not the post's outcome. A Redis failure here is logged
with the posts it leaves out and does not hold the batch back: the verdicts are already made,
and the banks themselves need the same Redis, so their rules already say it is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.outcomes import Outcome
from operators.specialists.bank_names import IMAGE_HASHES
from operators.specialists.recent_images import RecentImage, RecentImages
from sinks.window import WindowSink

BANKS = "banks"  # the producer whose evidence holds the hashes


class RecentImagesSink(WindowSink):
    """Adds every outcome whose images were hashed to the window; never fails the batch."""

    name = "recent-images"
    left_out_misses = "an image banked later will not find them"

    def __init__(self, store: RecentImages) -> None:
        super().__init__(store)

    @staticmethod
    def entry(outcome: Outcome) -> RecentImage | None:
        return recent_image(outcome)


def recent_image(outcome: Outcome) -> RecentImage | None:
    """The window entry of a decided post whose images were hashed; None otherwise."""
    first = (outcome.verdicts or outcome.shadows or (None,))[0]
    if outcome.post_id is None or first is None:
        return None
    hashes = _hashes(first.verdict.producers)
    if not hashes:
        return None
    source = outcome.source
    return RecentImage(outcome.post_id, source.topic, source.partition, source.offset, hashes)


def _hashes(runs: Sequence[Any]) -> tuple[str, ...]:
    for run in runs:
        if run.name == BANKS:
            found = run.evidence.get(IMAGE_HASHES) or {}
            return tuple(dict.fromkeys(str(value) for value in found.values()))
    return ()
