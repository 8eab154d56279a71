"""Which recent posts a head's new version decides otherwise: retroactive matching for heads.

When `vlmod heads promote` (or `rollback`) changes a head's active version, the posts the head
scored lately (`heads.recent`) are scored by the version that was active and by the new one.
A post whose flag (score at or above the version's own threshold) changes is one a policy
reading the head may now decide otherwise; those are published again to be decided again
(`pipelines.recheck.republish`). Rules may read a head at another cut than its threshold: the
flag is the head's own statement, the one its metrics measure, so it is the one followed.

Entries embedded by a model of other dims than the head reads are skipped: the producer makes
such a head unavailable on those posts too. So it does for a head trained on another model
than the pipeline's (`vlmod heads promote` then says so and re-checks nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

from heads.model import Head
from heads.recent import RecentEmbedding


def flagged(head: Head | None, vector: Sequence[float]) -> bool:
    """Whether `head` flags the post (no head flags nothing)."""
    return head is not None and head.score(vector) >= head.threshold


def posts_flipped(
    window: Sequence[RecentEmbedding], before: Head | None, after: Head
) -> list[RecentEmbedding]:
    """The window's posts `after` flags otherwise than `before` did, once each (its latest
    entry), in the order they were first seen."""
    latest = {entry.post_id: entry for entry in window}
    order = dict.fromkeys(entry.post_id for entry in window)
    flipped = []
    for post_id in order:
        entry = latest[post_id]
        if len(entry.vector) != after.embedding.dim:
            continue
        if flagged(before, entry.vector) != flagged(after, entry.vector):
            flipped.append(entry)
    return flipped
