"""What a replay changed, per candidate policy and rule, measured against reviewers' decisions.

- A post's *label* under a policy comes from the decision that counts on its recorded active
  verdict of that policy id (joined on the verdict key, `review.report_qa.final_decisions`: an
  appeal over an adjudication over a review; a blind first review alone labels nothing). It is
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.records import Action, Verdict
from contracts.review import DecisionKind, ReviewDecision
from replay.engine import PostReplay, Replayed
from review.report_qa import final_decisions

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


def labels_from(decisions: Iterable[ReviewDecision]) -> dict[str, Label]:
    """The label of each reviewed verdict key, from the decision that counts on it.

    A key with only a blind first review was seen, but is not labelled yet.
    """
    decisions = list(decisions)
    labels = {decision.key: Label(True, None) for decision in decisions}
    for key, decision in final_decisions(decisions).items():
        if decision.decision is DecisionKind.ESCALATE:
            labels[key] = Label(True, None)
        else:
            labels[key] = Label(True, decision.action is not Action.ALLOW)
    return labels


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
        self.transitions[TRANSITIONS[before.action, after.action]] += 1
        if before.action is not after.action:
            self.changed += 1
            if len(self.sample) < SAMPLE:
                self.keep(outcome, label, text)
        newly_harsh = after.action in HARSH and before.action not in HARSH
        self.unlabelled_exposure += newly_harsh and not label.seen
        self.overrides += before.action in HARSH and after.action is Action.ALLOW
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

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, keys sorted at every level."""
        return {
            "posts": self.posts,
            "not_replayable": {
                "count": self.not_replayable,
                "reasons": dict(sorted(self.reasons.items())),
            },
            "policies": {name: self.policies[name].as_dict() for name in sorted(self.policies)},
            "skipped_records": dict(sorted(self.skipped_records.items())),
        }


class ReplayTally:
    """Counts post replays into a ReplayReport as they come."""

    def __init__(self, names: Iterable[str], labels: Mapping[str, Label]) -> None:
        self.report = ReplayReport(policies={name: PolicyChange() for name in names})
        self.labels = labels

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

    def _label(self, policy_id: str, replay: PostReplay) -> Label:
        """The label of the post's recorded active verdict of `policy_id`."""
        if not self.labels:
            return UNSEEN
        verdict: Verdict | None = replay.post.verdicts.get((policy_id, False))
        return UNSEEN if verdict is None else self.labels.get(verdict.key, UNSEEN)


def _ratio(part: int, whole: int) -> float | None:
    return _round(part / whole) if whole else None


def _round(value: float) -> float:
    return round(value, DIGITS)
