"""Labelled posts from reviewers' decisions and the verdict history: what `vlmod heads train
--decisions --history` learns from.

Labels come as `vlmod report` and `vlmod replay` read them (`replay.metrics.labels_from`): the
decision that counts on a verdict key labels its post violating unless its action is allow; an
escalation, or a post with only a blind first review, labels nothing. A post's label is that of
its first active verdict that has one, else of its first shadow verdict with one.

The post is rebuilt from its record (`contracts.history.PostRecord.post`): text and fields as
the policies read them, images by URL. The history keeps no inline image bytes, so a post with
an inline image cannot be embedded again: it is left out and counted, never guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from contracts.records import Post
from replay.history import RecordedPost
from replay.metrics import Labels


@dataclass
class LabelledPosts:
    """The posts a head can learn from, their labels, and the posts left out with why."""

    posts: list[Post] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    unlabelled: int = 0  # decided by no reviewer (or only escalated, or blind first review)
    left_out: dict[str, list[str]] = field(default_factory=dict)  # why -> post ids

    def leave_out(self, post_id: str, why: str) -> None:
        """Count a labelled post that cannot be learnt from."""
        self.left_out.setdefault(why, []).append(post_id)


NO_RECORD = "no record of the post was kept (only its first verdict carries it)"
INLINE = "an image was inline: the history keeps image URLs, not bytes"


def labelled_posts(posts: Iterable[RecordedPost], labels: Labels) -> LabelledPosts:
    """Each reviewed post of the history rebuilt with its label, or counted as left out."""
    found = LabelledPosts()
    for recorded in posts:
        label = post_label(recorded, labels)
        if label is None:
            found.unlabelled += 1
            continue
        post = rebuilt_post(recorded, found)
        if post is not None:
            found.posts.append(post)
            found.labels.append(int(label))
    return found


def post_label(recorded: RecordedPost, labels: Labels) -> bool | None:
    """Violating or not, from the post's first active verdict a reviewer labelled (then
    shadow ones); None when no decision labels it."""
    ordered = sorted(recorded.verdicts.items(), key=lambda item: item[0][1])  # active first
    for _, verdict in ordered:
        violating = labels.of(verdict).violating
        if violating is not None:
            return violating
    return None


def rebuilt_post(recorded: RecordedPost, found: LabelledPosts) -> Post | None:
    """The post as its record keeps it, or None (counted in `found`) when it cannot be had."""
    if recorded.record is None:
        found.leave_out(recorded.post_id, NO_RECORD)
        return None
    fields = dict(recorded.record.post)
    images = fields.get("images") or []
    if any(not isinstance(image, dict) or not image.get("url") for image in images):
        found.leave_out(recorded.post_id, INLINE)
        return None
    fields["images"] = [{"url": image["url"]} for image in images]
    try:
        return Post.model_validate(fields)
    except ValidationError as error:
        found.leave_out(recorded.post_id, f"its record is not a post: {error.errors()[0]['msg']}")
        return None
