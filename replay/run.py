"""A replay from start to end: candidate policies over a history's posts, counted as they go."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from policies.policy_set import PolicySet
from replay.engine import PostReplay, Replayer
from replay.history import RecordedPost
from replay.lean import post_record
from replay.metrics import Labels, ReplayReport, ReplayTally
from replay.sample import StratifiedSample

if TYPE_CHECKING:
    from replay.compute import MissingValues

Progress = Callable[[int], None]  # called with the count of posts replayed so far
COMPUTE_BATCH = 32  # posts whose missing values go to the producers together


def replay_posts(
    posts: Iterable[RecordedPost],
    policies: PolicySet,
    labels: Labels | None = None,
    *,
    progress: Progress | None = None,
    every: int = 1000,
    decide_unchanged: bool = False,
    exact: bool = False,
    compute: MissingValues | None = None,
    sample: StratifiedSample | None = None,
) -> ReplayReport:
    """Decide every post again with `policies` and count what changed; `progress` every N posts.

    `decide_unchanged` and `exact` are `Replayer`'s. With `compute`, a post that lacks values
    is decided again once they are computed (a batch of posts at a time). With `sample`, the
    changed posts no reviewer labelled are offered to it.
    """
    replayer = Replayer(policies, decide_unchanged=decide_unchanged, exact=exact)
    tally = ReplayTally((c.name for c in replayer.candidates), labels or Labels(), sample)
    pending: list[PostReplay] = []
    done = 0
    for post in posts:
        replayed = replayer.replay(post)
        if compute is not None and _lacks(replayed):
            pending.append(replayed)
            if len(pending) >= COMPUTE_BATCH:
                _computed(replayer, compute, pending, tally)
        else:
            tally.add(replayed)
        done += 1
        if progress is not None and done % every == 0:
            progress(done)
    if pending:
        _computed(replayer, compute, pending, tally)  # type: ignore[arg-type]
    if progress is not None:
        progress(done)
    return tally.report


def _lacks(replayed: PostReplay) -> bool:
    """True when some candidate could not decide the post for want of values."""
    return any(outcome.lacking for outcome in replayed.outcomes)


def _computed(
    replayer: Replayer, compute: MissingValues, pending: list[PostReplay], tally: ReplayTally
) -> None:
    """Compute what the pending posts lack, decide them again and count them; empties it."""
    wanted = []
    for replayed in pending:
        assert replayed.post.record is not None
        keys = set().union(*(outcome.requests() for outcome in replayed.outcomes))
        wanted.append((post_record(replayed.post.record), keys))
    for replayed, filled in zip(pending, compute.fill(wanted), strict=True):
        if filled.record is None:
            tally.add(replayed.failed(filled.failed or "not computed"))
            continue
        post = replayed.post
        again = RecordedPost(post.post_id, filled.record, post.verdicts, post.at)
        tally.add(replayer.replay(again))
    pending.clear()
