"""A stratified sample of the posts a replay changed, for reviewers (`vlmod replay --to-queue`).

A stratum is one candidate's transition (`allow->block` of policy `p`); only changed posts that
no reviewer has labelled under the policy are drawn (a labelled one counts already). The sample
of N is allocated as follows: with fewer strata than N, each stratum gets one and the rest are
shared in proportion to the strata's sizes beyond that one, by largest remainder (ties to the
stratum first in sorted order); with N or more strata, the N largest get one each (ties by
name). Within a stratum the posts drawn are those whose replay key (`replay_key`, a hash of the
post, the policy id and the candidate's sha256) sorts first: the same history and candidates
always give the same sample, and no post is drawn for a reason of its own.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts.records import verdict_key
from replay.engine import Candidate
from replay.fast import Decided
from replay.history import RecordedPost
from replay.lean import VerdictView

Stratum = tuple[str, str]  # (candidate name, "before->after")


def replay_key(post_id: str, policy_id: str, sha256: str) -> str:
    """The key of a candidate's verdict on a post in a replay-QA task: the post, the policy id
    and the candidate file's sha256, so it never equals a recorded verdict's key."""
    return verdict_key(post_id, policy_id, f"sha256:{sha256}")


def allocate(sizes: Mapping[Stratum, int], n: int) -> dict[Stratum, int]:
    """How many of `n` to draw from each stratum of `sizes` (see the module's rule)."""
    strata = sorted(s for s, size in sizes.items() if size > 0)
    if n >= sum(sizes[s] for s in strata):
        return {s: sizes[s] for s in strata}
    if n <= len(strata):
        largest = sorted(strata, key=lambda s: (-sizes[s], s))[:n]
        return {s: int(s in largest) for s in strata}
    rest, beyond = n - len(strata), {s: sizes[s] - 1 for s in strata}
    whole = sum(beyond.values())
    # Integer quotas: rest * beyond / whole as quotient and remainder, so no rounding decides.
    shares = {s: divmod(rest * beyond[s], whole) for s in strata}
    given = {s: 1 + shares[s][0] for s in strata}
    left = n - sum(given.values())
    for s in sorted(strata, key=lambda s: (-shares[s][1], s))[:left]:
        given[s] += 1
    return given


@dataclass(frozen=True)
class Drawn:
    """A changed post drawn for review: the candidate, its decision, the recorded verdict."""

    key: str  # replay_key of the post under the candidate
    post: RecordedPost
    candidate: Candidate
    before: VerdictView
    after: Decided

    @property
    def transition(self) -> str:
        """`before->after` of the actions."""
        return f"{self.before.action.value}->{self.after.action.value}"


@dataclass
class StratifiedSample:
    """Collects changed posts per stratum, keeping only the `size` that sort first in each."""

    size: int
    sizes: Counter[Stratum] = field(default_factory=Counter)
    kept: dict[Stratum, list[tuple[int, int, Drawn]]] = field(default_factory=dict)
    # A tie-break the heap never reaches (keys differ), so that Drawn is never compared.
    _seen: int = field(default=0, init=False)

    def offer(self, drawn: Drawn) -> None:
        """Count a changed, unlabelled post in its stratum; keep it if it sorts among the first."""
        stratum = (drawn.candidate.name, drawn.transition)
        self.sizes[stratum] += 1
        heap = self.kept.setdefault(stratum, [])
        self._seen += 1
        entry = (-int(drawn.key, 16), self._seen, drawn)  # a max-heap of keys, by negation
        if len(heap) < self.size:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)

    def allocation(self) -> dict[Stratum, int]:
        """How many posts each stratum gives."""
        return allocate(self.sizes, self.size)

    def drawn(self) -> list[Drawn]:
        """The sample: each stratum's allotted posts with the first keys, strata in order."""
        chosen: list[Drawn] = []
        for stratum, count in sorted(self.allocation().items()):
            first = sorted(self.kept[stratum], key=lambda entry: entry[2].key)[:count]
            chosen.extend(entry[2] for entry in first)
        return chosen
