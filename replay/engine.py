"""Decide a recorded post again with candidate policies, from its record alone.

A record keys producer values by (producer, `request_key(request)`); each candidate's `asks`
give the request of every value it reads, so a value is found exactly when the candidate asks
what was computed, whatever it calls it. A value the record lacks is never read as 0: where it
could still change the candidate's decision (`CompiledPolicy.needed_for`) the post is not
replayable for that candidate, and the reason names the signal (`labels.weapon not recorded`).
Where it could not (a more severe rule already matched), the rule is skipped, as the live
planner would have skipped the signal. Values recorded as unavailable stay unavailable: rules
reading them are rule errors, as they were live. Candidates decide through `replay.fast`,
which gives the policy engine's outcome without building a CEL environment per post.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from contracts.producers import request_key
from contracts.records import Action
from policies.compiled import CompiledPolicy
from policies.expressions import SignalRef
from policies.policy_set import PolicySet
from policies.schema import Mode
from policies.scope import PostScope
from replay.fast import Decided, FastPolicy, Row
from replay.history import NO_RECORD, PolicySlot, RecordedPost
from replay.lean import RecordView, VerdictView

SignalKey = tuple[str, Hashable]  # (producer, request)


def candidate_name(policy: CompiledPolicy) -> str:
    """The report's name of a candidate: its id, and `<id>@shadow` for a shadow policy."""
    return policy.ref.id if policy.mode is Mode.ACTIVE else f"{policy.ref.id}@shadow"


@dataclass(frozen=True)
class Candidate:
    """A candidate policy and the recorded keys of the values it reads."""

    policy: CompiledPolicy
    name: str
    direct: frozenset[SignalKey]  # (producer, request) of every value it reads
    sha256: str  # of the candidate's policy file
    slot: PolicySlot  # its recorded verdict's (policy id, shadow)
    fallback: PolicySlot | None  # a shadow candidate's: the active verdict of its id

    @classmethod
    def of(cls, policy: CompiledPolicy) -> Candidate:
        """The candidate for `policy`."""
        direct = frozenset((r.producer, r.request) for r in policy.asks.values())
        shadow = policy.mode is Mode.SHADOW
        slot, active = (policy.ref.id, shadow), (policy.ref.id, False)
        name = candidate_name(policy)
        return cls(policy, name, direct, policy.ref.sha256, slot, active if shadow else None)

    def before(self, post: RecordedPost) -> VerdictView | None:
        """The recorded verdict to compare with: the same id and mode, else the same id active."""
        found = post.verdicts.get(self.slot)
        if found is None and self.fallback is not None:
            found = post.verdicts.get(self.fallback)
        return found


@dataclass(frozen=True)
class Replayed:
    """One candidate's outcome for one post: what was recorded and what it decides now.

    `after` is None when the post is not replayable for it (`missing` says why) or when it has
    no recorded verdict to compare with (`before` None).
    """

    candidate: Candidate
    before: VerdictView | None
    after: Decided | None
    lacking: tuple[SignalRef, ...] = ()  # the signals it lacks, by the candidate's names
    failed: str | None = None  # why computing them failed, with --compute-missing

    @property
    def missing(self) -> tuple[str, ...]:
        """Why the post is not replayable for the candidate: one reason per lacking signal."""
        if self.failed is not None:
            return tuple(f"{dotted(ref)} not computed: {self.failed}" for ref in self.lacking)
        return tuple(f"{dotted(ref)} not recorded" for ref in self.lacking)

    def requests(self) -> set[SignalKey]:
        """(producer, request) of each lacking value, and of the values it is computed from."""
        asks = self.candidate.policy.asks
        wanted = {(asks[ref].producer, asks[ref].request) for ref in self.lacking}
        return wanted | {need for ref in self.lacking for need in asks[ref].needs}


@dataclass(frozen=True)
class PostReplay:
    """Every candidate's outcome for one post; `no_record` when the history kept none."""

    post: RecordedPost
    outcomes: tuple[Replayed, ...]
    no_record: bool = False

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the post is not replayable for some candidate, each reason once, sorted."""
        if self.no_record:
            return (NO_RECORD,)
        if not any(o.lacking for o in self.outcomes):  # a reason is a lacking value's
            return ()
        return tuple(sorted({reason for o in self.outcomes for reason in o.missing}))

    def failed(self, why: str) -> PostReplay:
        """This replay, its lacking values marked as not computed for `why`."""
        marked = tuple(replace(o, failed=why) if o.lacking else o for o in self.outcomes)
        return replace(self, outcomes=marked)


class Replayer:
    """Replays recorded posts through a set of candidate policies (active and shadow).

    A candidate whose file is the recorded verdict's policy (the same sha256) decided the post
    then, on the same record: its recorded verdict stands, unless `decide_unchanged`. `exact`
    decides through `CompiledPolicy.evaluate` and `needed_for` instead of `replay.fast` (the
    reference the fast path is tested against).
    """

    def __init__(
        self, policies: PolicySet, *, decide_unchanged: bool = False, exact: bool = False
    ) -> None:
        self.candidates = tuple(Candidate.of(policy) for policy in policies.policies)
        self.decide_unchanged = decide_unchanged
        self.exact = exact
        self.fast = {c.name: FastPolicy(c.policy) for c in self.candidates}
        self.deciders = tuple((c, self.fast[c.name]) for c in self.candidates)
        # The record's text key of every request a candidate reads, to the request itself.
        self.requests: dict[tuple[str, str], SignalKey] = {
            (producer, request_key(request)): (producer, request)
            for candidate in self.candidates
            for producer, request in candidate.direct
        }

    def replay(self, post: RecordedPost) -> PostReplay:
        """Decide `post` again with every candidate that has a recorded verdict to compare."""
        record = post.record
        if record is None:
            return PostReplay(post, (), no_record=True)
        verdicts = post.verdicts
        row: Row | None = None
        outcomes = []
        for candidate, fast in self.deciders:
            before = verdicts.get(candidate.slot)
            if before is None and candidate.fallback is not None:
                before = verdicts.get(candidate.fallback)
            if before is None:
                outcomes.append(Replayed(candidate, None, None))
            elif not self.decide_unchanged and before.policy.sha256 == candidate.sha256:
                outcomes.append(Replayed(candidate, before, recorded(before)))
            elif self.exact:
                outcomes.append(self._exactly(candidate, before, record))
            else:
                row = row or row_of(record)
                after, lacking = fast.decide(row)
                outcomes.append(Replayed(candidate, before, after, lacking))
        return PostReplay(post, tuple(outcomes))

    def values(self, record: RecordView) -> tuple[dict[SignalKey, Any], dict[SignalKey, str]]:
        """The recorded values some candidate reads, and why unavailable ones were not had."""
        computed: dict[SignalKey, Any] = {}
        unavailable: dict[SignalKey, str] = {}
        requests = self.requests
        for value in record.values:
            key = requests.get((value.producer, value.request))
            if key is None:
                continue
            if value.unavailable is None:
                computed[key] = value.value
            else:
                unavailable[key] = value.unavailable
        return computed, unavailable

    def _exactly(self, candidate: Candidate, before: VerdictView, record: RecordView) -> Replayed:
        """The candidate's decision through the policy engine itself."""
        computed, unavailable = self.values(record)
        scope = PostScope(record.post, truncated=record.truncated)
        policy = candidate.policy
        view = policy.view(computed, unavailable)
        if not all(key in computed or key in unavailable for key in candidate.direct):
            lacking = _lacking(policy, scope, view, computed, unavailable)
            if lacking:
                return Replayed(candidate, before, None, lacking)
        decision = policy.evaluate(scope, view, cel_only=True)
        return Replayed(candidate, before, Decided(decision.action, tuple(decision.rule_ids)))


# A recorded verdict that matched no rule (most do) stands as one of these, made once.
UNMATCHED = {action: Decided(action, ()) for action in Action}


def recorded(verdict: VerdictView) -> Decided:
    """A recorded verdict's action and matched rules."""
    rules = verdict.matched_rules
    if not rules:
        return UNMATCHED[verdict.action]
    return Decided(verdict.action, tuple([rule.id for rule in rules]))


def row_of(record: RecordView) -> Row:
    """The record's values by (producer, request key), for `FastPolicy`."""
    values = record.values
    computed = {(v.producer, v.request): v.value for v in values if v.unavailable is None}
    unavailable: dict[tuple[str, str], str] = {}
    if len(computed) < len(values):
        unavailable = {(v.producer, v.request): v.unavailable for v in values if v.unavailable}
    return Row(record.post, record.truncated, computed, unavailable)


def _lacking(
    policy: CompiledPolicy,
    scope: PostScope,
    view: Any,
    computed: Mapping[SignalKey, Any],
    unavailable: Mapping[SignalKey, str],
) -> tuple[SignalRef, ...]:
    """Each unrecorded value that could change the decision, sorted."""
    needed = policy.needed_for(scope, view, cel_only=True)
    lacking = []
    for ref in needed.refs:
        asked = policy.asks[ref]
        key = (asked.producer, asked.request)
        if key not in computed and key not in unavailable:
            lacking.append(ref)
    return tuple(sorted(lacking, key=str))


def dotted(ref: SignalRef) -> str:
    """`labels.weapon`, or `nsfw` for a variable without items."""
    variable, item = ref
    return variable if item is None else f"{variable}.{item}"
