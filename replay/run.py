"""A replay from start to end: candidate policies over a history's posts, counted as they go."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from policies.policy_set import PolicySet
from replay.engine import Replayer
from replay.history import RecordedPost
from replay.metrics import Label, ReplayReport, ReplayTally

Progress = Callable[[int], None]  # called with the count of posts replayed so far


def replay_posts(
    posts: Iterable[RecordedPost],
    policies: PolicySet,
    labels: Mapping[str, Label] | None = None,
    *,
    progress: Progress | None = None,
    every: int = 1000,
    decide_unchanged: bool = False,
    exact: bool = False,
) -> ReplayReport:
    """Decide every post again with `policies` and count what changed; `progress` every N posts.

    `decide_unchanged` and `exact` are `Replayer`'s.
    """
    replayer = Replayer(policies, decide_unchanged=decide_unchanged, exact=exact)
    tally = ReplayTally((c.name for c in replayer.candidates), labels or {})
    done = 0
    for post in posts:
        tally.add(replayer.replay(post))
        done += 1
        if progress is not None and done % every == 0:
            progress(done)
    if progress is not None:
        progress(done)
    return tally.report
