"""What a replay changed, per candidate policy and rule, measured against reviewers' decisions.

- A post's *label* under a policy comes from the decision that counts on its recorded active
  verdict of that policy id (joined on the verdict key, `review.report_qa.final_decisions`: an
  appeal over an adjudication over a review; a blind first review alone labels nothing). Where
  that verdict has none, a decision on a replay-QA task of the same post and policy id labels it
  (joined on (post id, policy id): a candidate's verdict has a key of its own; where tasks of
  several candidates were decided, the latest decision that gives a label counts). It is
  *violating* when the final action is not allow: a reviewer upheld a non-allow verdict or
  overturned a verdict to a non-allow action (an overturn of block to review is still
  violating). An upheld allow, or an overturn to allow, is not violating. An escalation alone
  gives no label, but the post was seen by a reviewer.
- `changed` counts posts whose action changed; `transitions` counts every `before->after` pair
  that occurred, unchanged ones (`allow->allow`) included, so they sum to `replayed`.
- `unlabelled_exposure`: posts the candidate newly blocks or escalates (before neither block
  nor escalate) that no reviewer ever saw under that policy. `overrides`: posts blocked or
  escalated before and allowed now.
- Per rule: `before` and `after` count the posts it matched in the recorded verdict and in the
  replay; precision is violating / labelled over the posts it matched, with Wilson's 95 %
  interval for `precision_after` (null where no matched post has a label).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts.records import Action
from contracts.review import DecisionKind, ReviewDecision
from replay.engine import PostReplay, Replayed
from replay.fast import Decided
from replay.lean import VerdictView
from replay.sample import Drawn, StratifiedSample, replay_key
from review.report_qa import final_decisions, moment

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
DIGITS = 4
SAMPLE = 50  # changed posts kept per candidate, the first in the history's order
SAMPLE_TEXT_CHARS = 200
HARSH = frozenset({Action.BLOCK, Action.ESCALATE})
TRANSITIONS = {(a, b): f"{a.value}->{b.value}" for a in Action for b in Action}


@dataclass(frozen=True)
class Label:
    """What reviewers made of a post under one policy: seen at all, and violating if known."""

    seen: bool
    violating: bool | None


UNSEEN = Label(False, None)


@dataclass
class Labels:
    """Reviewers' labels: by recorded verdict key, and by (post id, policy id) from replay QA."""

    by_key: dict[str, Label] = field(default_factory=dict)
    by_post: dict[tuple[str, str], Label] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_key or self.by_post)

    def of(self, verdict: VerdictView) -> Label:
        """The label of a recorded verdict's post: its own decision's, else replay QA's."""
        label = self.by_key.get(verdict.key)
        if label is not None and label.violating is not None:
            return label
        qa = self.by_post.get((verdict.post_id, verdict.policy.id))
        if qa is not None and (qa.violating is not None or label is None):
            return qa
        return label or UNSEEN


def labels_from(decisions: Iterable[ReviewDecision]) -> Labels:
    """The label of each reviewed verdict key, from the decision that counts on it; decisions
    on replay-QA tasks label their (post id, policy id) instead, the latest one counting.

    A key with only a blind first review was seen, but is not labelled yet.
    """
    decisions = list(decisions)
    labels = Labels()
    finals = final_decisions(decisions)
    for decision in decisions:
        if decision.origin is None:
            labels.by_key.setdefault(decision.key, Label(True, None))
        else:
            labels.by_post.setdefault((decision.post_id, decision.policy.id), Label(True, None))
    latest: dict[tuple[str, str], ReviewDecision] = {}
    for key, decision in finals.items():
        if decision.origin is None:
            labels.by_key[key] = label_of(decision)
            continue
        slot = (decision.post_id, decision.policy.id)
        held = latest.get(slot)
        if held is None or _qa_rank(decision) >= _qa_rank(held):
            latest[slot] = decision
    for slot, decision in latest.items():
        labels.by_post[slot] = label_of(decision)
    return labels


def _qa_rank(decision: ReviewDecision) -> tuple[bool, datetime, str]:
    """Which replay-QA decision labels a post: one that gives a label, then the latest."""
    return decision.decision is not DecisionKind.ESCALATE, moment(decision), decision.key


def label_of(decision: ReviewDecision) -> Label:
    """What a final decision says of its post: unknown for an escalation."""
    if decision.decision is DecisionKind.ESCALATE:
        return Label(True, None)
    return Label(True, decision.action is not Action.ALLOW)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval for a proportion; None without trials."""
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return ((centre - spread) / denominator, (centre + spread) / denominator)


@dataclass
class RuleChange:
    """One rule's matches before and after, and their labels."""

    before: int = 0
    after: int = 0
    added: int = 0
    removed: int = 0
    labelled_before: int = 0
    violating_before: int = 0
    labelled_after: int = 0
    violating_after: int = 0

    def count(self, was: bool, now: bool, label: Label) -> None:
        """Add one replayed post on which the rule matched before (`was`) and/or now."""
        self.before += was
        self.after += now
        self.added += now and not was
        self.removed += was and not now
        known = label.violating is not None
        self.labelled_before += was and known
        self.violating_before += was and bool(label.violating)
        self.labelled_after += now and known
        self.violating_after += now and bool(label.violating)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form; precisions rounded, null without labels."""
        interval = wilson(self.violating_after, self.labelled_after)
        return {
            "before": self.before,
            "after": self.after,
            "added": self.added,
            "removed": self.removed,
            "labelled_after": self.labelled_after,
            "precision_before": _ratio(self.violating_before, self.labelled_before),
            "precision_after": _ratio(self.violating_after, self.labelled_after),
            "precision_after_ci": None if interval is None else [_round(x) for x in interval],
        }


@dataclass(frozen=True)
class ChangedPost:
    """One post whose action a candidate changed, as the HTML report shows it."""

    post_id: str
    before: Action
    after: Action
    added: tuple[str, ...]
    removed: tuple[str, ...]
    text: str
    label: Label


@dataclass
class PolicyChange:
    """One candidate's replay over the history."""

    replayed: int = 0
    changed: int = 0
    unrecorded: int = 0  # posts with no recorded verdict of this policy id to compare with
    not_replayable: Counter[str] = field(default_factory=Counter)
    not_replayable_posts: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    unlabelled_exposure: int = 0
    overrides: int = 0
    rules: dict[str, RuleChange] = field(default_factory=dict)
    sample: list[ChangedPost] = field(default_factory=list)  # the first changed posts

    def count(self, outcome: Replayed, label: Label, text: str = "") -> None:
        """Add one post's outcome (`text`: the post's, for the sample of changed posts)."""
        before, after = outcome.before, outcome.after
        if before is None:
            self.unrecorded += 1
            return
        if after is None:
            self.not_replayable_posts += 1
            self.not_replayable.update(outcome.missing)
            return
        self.replayed += 1
        was_action, now_action = before.action, after.action
        self.transitions[TRANSITIONS[was_action, now_action]] += 1
        if was_action is not now_action:  # exposure and overrides are changes too
            self.changed += 1
            if len(self.sample) < SAMPLE:
                self.keep(outcome, label, text)
            newly_harsh = now_action in HARSH and was_action not in HARSH
            self.unlabelled_exposure += newly_harsh and not label.seen
            self.overrides += was_action in HARSH and now_action is Action.ALLOW
        if before.matched_rules or after.rules:
            self.count_rules(before, after, label)

    def count_rules(self, before: VerdictView, after: Decided, label: Label) -> None:
        """Count each rule that matched before or now."""
        was = {rule.id for rule in before.matched_rules}
        now = set(after.rules)
        for rule in was | now:
            self.rule(rule).count(rule in was, rule in now, label)

    def keep(self, outcome: Replayed, label: Label, text: str) -> None:
        """Keep a changed post in the sample."""
        assert outcome.before is not None and outcome.after is not None
        was = [rule.id for rule in outcome.before.matched_rules]
        now = outcome.after.rules
        changed = ChangedPost(
            post_id=outcome.before.post_id,
            before=outcome.before.action,
            after=outcome.after.action,
            added=tuple(rule for rule in now if rule not in was),
            removed=tuple(rule for rule in was if rule not in now),
            text=text[:SAMPLE_TEXT_CHARS],
            label=label,
        )
        self.sample.append(changed)

    def rule(self, rule_id: str) -> RuleChange:
        """The counts of `rule_id`, started at zero."""
        return self.rules.setdefault(rule_id, RuleChange())

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "replayed": self.replayed,
            "changed": self.changed,
            "unrecorded": self.unrecorded,
            "not_replayable": {
                "count": self.not_replayable_posts,
                "reasons": dict(sorted(self.not_replayable.items())),
            },
            "transitions": dict(sorted(self.transitions.items())),
            "unlabelled_exposure": self.unlabelled_exposure,
            "overrides": self.overrides,
            "rules": {rule: self.rules[rule].as_dict() for rule in sorted(self.rules)},
        }


@dataclass
class ReplayReport:
    """The whole replay: posts read, those not replayable and why, and each candidate's change."""

    posts: int = 0
    not_replayable: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    policies: dict[str, PolicyChange] = field(default_factory=dict)
    skipped_records: dict[str, int] = field(default_factory=dict)
    sample: StratifiedSample | None = None  # changed posts drawn for review, when asked
    to_queue: dict[str, Any] | None = None  # with --to-queue: the replay-QA tasks written

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, keys sorted at every level; `to_queue` only when tasks were asked."""
        body = {
            "posts": self.posts,
            "not_replayable": {
                "count": self.not_replayable,
                "reasons": dict(sorted(self.reasons.items())),
            },
            "policies": {name: self.policies[name].as_dict() for name in sorted(self.policies)},
            "skipped_records": dict(sorted(self.skipped_records.items())),
        }
        if self.to_queue is not None:
            body["to_queue"] = self.to_queue
        return body


class ReplayTally:
    """Counts post replays into a ReplayReport as they come."""

    def __init__(
        self, names: Iterable[str], labels: Labels, sample: StratifiedSample | None = None
    ) -> None:
        self.report = ReplayReport(policies={name: PolicyChange() for name in names})
        self.report.sample = sample
        self.labels = labels
        self.labelled = bool(labels)  # reviewers' labels do not change while a replay counts
        self.sample = sample

    def add(self, replay: PostReplay) -> None:
        """Count one post."""
        report = self.report
        report.posts += 1
        reasons = replay.reasons
        if reasons:
            report.not_replayable += 1
            report.reasons.update(reasons)
        record = replay.post.record
        text = str(record.post.get("text") or "") if record is not None else ""
        for outcome in replay.outcomes:
            label = self._label(outcome.candidate.policy.ref.id, replay)
            report.policies[outcome.candidate.name].count(outcome, label, text)
            if self.sample is not None and label.violating is None:
                self._offer(outcome, replay)

    def _offer(self, outcome: Replayed, replay: PostReplay) -> None:
        """Offer a changed post to the sample for review."""
        before, after = outcome.before, outcome.after
        if before is None or after is None or before.action is after.action:
            return
        candidate = outcome.candidate
        key = replay_key(before.post_id, candidate.policy.ref.id, candidate.sha256)
        assert self.sample is not None
        self.sample.offer(Drawn(key, replay.post, candidate, before, after))

    def _label(self, policy_id: str, replay: PostReplay) -> Label:
        """The label of the post's recorded active verdict of `policy_id`."""
        if not self.labelled:
            return UNSEEN
        verdict = replay.post.verdicts.get((policy_id, False))
        return UNSEEN if verdict is None else self.labels.of(verdict)


def _ratio(part: int, whole: int) -> float | None:
    return _round(part / whole) if whole else None


def _round(value: float) -> float:
    return round(value, DIGITS)
