"""Rule and signal quality measured by reviewers: join decisions to verdicts and count.

Pure: records in, a `QualityReport` out; reading sources and rendering live in `report_io`.
What the numbers mean:

- A decision joins the *active* verdict with the same key (same post, policy id and version).
  A key decided more than once counts once, by its latest final decision (`decided_at`; a tie
  goes to the record read later), so an escalation followed by the escalated-to queue's
  decision counts as that decision; a lead's adjudication and an appeal's decision outrank
  what they settled (`report_qa`). Keys with only non-final reviews (a second review pending)
  are `awaiting_final`. Decisions whose key has no active verdict are `unmatched`. Decisions
  on replay-QA tasks (`origin` set) judge a candidate policy's verdict, not a recorded one:
  they join nothing here and are counted apart (`replay_qa_decisions`); `vlmod replay` reads
  them as labels.
- Reviewers: Cohen's kappa per queue over blind first and second reviews, and golden accuracy
  per reviewer from the golden topic's results (`report_qa`).
- Per policy and per matched rule: `decided` counts every joined decision (escalations too),
  `precision = upheld / decided`, `overturn_rate = overturned / decided`.
- Per signal (`labels.*`, `answers.*` of the verdict's signals), per policy: the model's
  probability against the reviewer's outcome, positive = upheld, negative = overturned;
  escalations carry no outcome and are left out. Reliability in 10 equal-width bins, the
  expected calibration error, and the lowest threshold t whose `p >= t` reaches the target
  precision (ties at t are included, so the support is what a rule `p >= t` would flag).
- Shadow policies are scored on the posts that were decided under the active policy with the
  same id: each shadow rule's matches on upheld, overturned and escalated posts, and how often
  the shadow verdict's action equals the reviewer's final action. Shadow verdicts on undecided
  posts are `unscored`: nobody judged them, so they say nothing about precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.records import Verdict
from contracts.review import DecisionKind, GoldenResult, ReviewDecision
from review.report_qa import (
    Agreement,
    GoldenAccuracy,
    final_decisions,
    golden_accuracy,
    judged_against,
    moment,
    review_agreement,
)

BINS = 10
NOTES_KEPT = 3  # reviewer notes kept per rule: enough to see why it is overturned
DIGITS = 4  # rounding of rates in the JSON form; reviewers' counts never need more

Joined = tuple[ReviewDecision, Verdict]


@dataclass
class Tally:
    """Reviewer outcomes over some decided verdicts."""

    decided: int = 0
    upheld: int = 0
    overturned: int = 0
    escalated: int = 0

    def count(self, kind: DecisionKind) -> None:
        """Add one decision of `kind`."""
        self.decided += 1
        if kind is DecisionKind.UPHOLD:
            self.upheld += 1
        elif kind is DecisionKind.OVERTURN:
            self.overturned += 1
        else:
            self.escalated += 1

    @property
    def precision(self) -> float | None:
        """upheld / decided; None when nothing was decided."""
        return self.upheld / self.decided if self.decided else None

    @property
    def overturn_rate(self) -> float | None:
        """overturned / decided; None when nothing was decided."""
        return self.overturned / self.decided if self.decided else None

    def as_dict(self) -> dict[str, Any]:
        """Counts and rates, rates rounded."""
        return {
            "decided": self.decided,
            "upheld": self.upheld,
            "overturned": self.overturned,
            "escalated": self.escalated,
            "precision": _rounded(self.precision),
            "overturn_rate": _rounded(self.overturn_rate),
        }


@dataclass
class RuleQuality(Tally):
    """A rule's outcomes, its reason as the verdicts gave it, and notes on its overturns."""

    reason: str | None = None
    overturn_notes: list[str] = field(default_factory=list)

    def keep_note(self, note: str) -> None:
        """Remember a reviewer's note on an overturn; the last few distinct ones are kept."""
        kept = [seen for seen in self.overturn_notes if seen != note]
        self.overturn_notes = [*kept, note][-NOTES_KEPT:]

    def as_dict(self) -> dict[str, Any]:
        """Counts, rates, reason and overturn notes."""
        return {**super().as_dict(), "reason": self.reason, "overturn_notes": self.overturn_notes}


@dataclass
class PolicyQuality:
    """One policy's totals and its rules' outcomes."""

    versions: set[str] = field(default_factory=set)
    totals: Tally = field(default_factory=Tally)
    rules: dict[str, RuleQuality] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Totals at the top level, rules by id."""
        rules = {rule: self.rules[rule].as_dict() for rule in sorted(self.rules)}
        return {"versions": sorted(self.versions), **self.totals.as_dict(), "rules": rules}


@dataclass(frozen=True)
class ReliabilityBin:
    """Samples whose probability fell in [lower, upper)."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_rate: float | None


@dataclass(frozen=True)
class ThresholdPick:
    """The lowest threshold reaching the target precision; threshold None when none does."""

    threshold: float | None
    precision: float | None
    support: int


@dataclass(frozen=True)
class SignalQuality:
    """How well one probability signal predicts that reviewers uphold."""

    samples: int
    positives: int
    bins: tuple[ReliabilityBin, ...]
    ece: float | None
    threshold: ThresholdPick

    def as_dict(self) -> dict[str, Any]:
        """Counts, ECE, threshold pick and the reliability table, rates rounded."""
        bins = [
            {
                "lower": b.lower,
                "upper": b.upper,
                "count": b.count,
                "mean_predicted": _rounded(b.mean_predicted),
                "observed_rate": _rounded(b.observed_rate),
            }
            for b in self.bins
        ]
        pick = self.threshold
        return {
            "samples": self.samples,
            "positives": self.positives,
            "ece": _rounded(self.ece),
            "threshold": _rounded(pick.threshold),
            "threshold_precision": _rounded(pick.precision),
            "threshold_support": pick.support,
            "bins": bins,
        }


@dataclass
class ShadowQuality:
    """A shadow policy scored on the posts reviewers decided under the active one."""

    versions: set[str] = field(default_factory=set)
    scored: int = 0
    unscored: int = 0
    agreed: int = 0
    rules: dict[str, Tally] = field(default_factory=dict)

    @property
    def action_agreement(self) -> float | None:
        """Share of scored posts where the shadow action equals the reviewer's final action."""
        return self.agreed / self.scored if self.scored else None

    def as_dict(self) -> dict[str, Any]:
        """Counts, agreement and per-rule outcomes."""
        rules = {rule: self.rules[rule].as_dict() for rule in sorted(self.rules)}
        return {
            "versions": sorted(self.versions),
            "scored": self.scored,
            "unscored": self.unscored,
            "action_agreement": _rounded(self.action_agreement),
            "rules": rules,
        }


@dataclass(frozen=True)
class QualityReport:
    """Everything `vlmod report` shows, keyed by policy id."""

    target_precision: float
    decisions: int
    verdicts: int
    policies: dict[str, PolicyQuality]
    signals: dict[str, dict[str, SignalQuality]]
    shadow: dict[str, ShadowQuality]
    unmatched_keys: tuple[str, ...]
    superseded_decisions: int
    # Bad records the sources skipped, per source ("decisions", "verdicts"): numbers from
    # partial input must say so wherever they are kept, not only on the terminal that read them.
    skipped_records: dict[str, int] = field(default_factory=dict)
    awaiting_final: int = 0
    agreement: dict[str, Agreement] = field(default_factory=dict)
    golden: dict[str, GoldenAccuracy] = field(default_factory=dict)
    replay_qa_decisions: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: policies, signals, shadow, unmatched_decisions, and counts read."""
        return {
            "target_precision": self.target_precision,
            "decisions": self.decisions,
            "verdicts": self.verdicts,
            "skipped_records": dict(sorted(self.skipped_records.items())),
            "unmatched_decisions": len(self.unmatched_keys),
            "unmatched_keys": list(self.unmatched_keys[:10]),
            "superseded_decisions": self.superseded_decisions,
            "awaiting_final": self.awaiting_final,
            "replay_qa_decisions": self.replay_qa_decisions,
            "policies": {p: self.policies[p].as_dict() for p in sorted(self.policies)},
            "signals": {
                p: {name: quality.as_dict() for name, quality in sorted(signals.items())}
                for p, signals in sorted(self.signals.items())
            },
            "shadow": {p: self.shadow[p].as_dict() for p in sorted(self.shadow)},
            "agreement": {q: self.agreement[q].as_dict() for q in sorted(self.agreement)},
            "golden": {r: self.golden[r].as_dict() for r in sorted(self.golden)},
        }


def build_report(
    decisions: Iterable[ReviewDecision],
    verdicts: Iterable[Verdict],
    *,
    target_precision: float = 0.9,
    skipped_records: Mapping[str, int] | None = None,
    golden: Iterable[GoldenResult] = (),
) -> QualityReport:
    """Join decisions to verdicts on the verdict key and measure rules, signals and shadows;
    measure reviewers on their paired reviews and golden answers."""
    every, verdicts = list(decisions), list(verdicts)
    decisions = [decision for decision in every if decision.origin is None]
    active = {v.key: v for v in verdicts if not v.shadow}
    shadow = {v.key: v for v in verdicts if v.shadow}  # by key: redelivered copies count once
    final = final_decisions(decisions)
    finals = sum(decision.final for decision in decisions)
    # Oldest first, so the notes kept are the latest; the key breaks ties, so that nothing
    # depends on the order in which records came in.
    keys = sorted((key for key in final if key in active), key=lambda k: (moment(final[k]), k))
    joined = [(judged_against(final[key], active[key]), active[key]) for key in keys]
    return QualityReport(
        target_precision=target_precision,
        decisions=len(every),
        verdicts=len(verdicts),
        policies=policy_quality(joined),
        signals=signal_quality(joined, target_precision),
        shadow=shadow_quality(joined, shadow.values()),
        unmatched_keys=tuple(sorted(key for key in final if key not in active)),
        superseded_decisions=finals - len(final),
        skipped_records=dict(skipped_records or {}),
        awaiting_final=len({d.key for d in decisions if not d.final} - set(final)),
        agreement=review_agreement(every),
        golden=golden_accuracy(golden),
        replay_qa_decisions=len(every) - len(decisions),
    )


def policy_quality(joined: Sequence[Joined]) -> dict[str, PolicyQuality]:
    """Per policy id: totals over its decided verdicts and each matched rule's outcomes."""
    policies: dict[str, PolicyQuality] = {}
    for decision, verdict in joined:
        policy = policies.setdefault(verdict.policy.id, PolicyQuality())
        policy.versions.add(str(verdict.policy.version))
        policy.totals.count(decision.decision)
        for matched in verdict.matched_rules:
            rule = policy.rules.setdefault(matched.id, RuleQuality())
            rule.count(decision.decision)
            rule.reason = matched.reason or rule.reason
            if decision.decision is DecisionKind.OVERTURN and decision.note:
                rule.keep_note(decision.note)
    return policies


def signal_quality(
    joined: Sequence[Joined], target_precision: float
) -> dict[str, dict[str, SignalQuality]]:
    """Per policy id and signal: calibration of its probability against upheld/overturned."""
    samples: dict[str, dict[str, list[tuple[float, bool]]]] = {}
    for decision, verdict in joined:
        if decision.decision is DecisionKind.ESCALATE:
            continue  # no verdict on whether the flag was right
        upheld = decision.decision is DecisionKind.UPHOLD
        per_signal = samples.setdefault(verdict.policy.id, {})
        for name, p in signal_values(verdict):
            per_signal.setdefault(name, []).append((p, upheld))
    return {
        policy: {name: calibrate(values, target_precision) for name, values in signals.items()}
        for policy, signals in samples.items()
    }


def signal_values(verdict: Verdict) -> list[tuple[str, float]]:
    """(`labels.x` / `answers.y`, probability) for each finite probability the verdict holds."""
    groups = {"labels": verdict.signals.labels, "answers": verdict.signals.answers}
    return [
        (f"{group}.{name}", p)
        for group, values in groups.items()
        for name, p in values.items()
        if math.isfinite(p)  # NaN has no bin and no rank; it cannot be calibrated
    ]


def calibrate(samples: Sequence[tuple[float, bool]], target_precision: float) -> SignalQuality:
    """Reliability bins, ECE and threshold pick for (probability, positive) samples."""
    ordered = sorted(samples)
    bins = reliability_bins(ordered)
    return SignalQuality(
        samples=len(ordered),
        positives=sum(positive for _, positive in ordered),
        bins=bins,
        ece=expected_calibration_error(bins),
        threshold=threshold_for_precision(ordered, target_precision),
    )


def reliability_bins(samples: Sequence[tuple[float, bool]]) -> tuple[ReliabilityBin, ...]:
    """`BINS` equal-width bins over [0, 1]; p = 1 goes in the last one, outliers are clamped."""
    members: list[list[tuple[float, bool]]] = [[] for _ in range(BINS)]
    for p, positive in samples:
        members[min(max(int(p * BINS), 0), BINS - 1)].append((p, positive))
    return tuple(_bin(i, inside) for i, inside in enumerate(members))


def _bin(index: int, inside: list[tuple[float, bool]]) -> ReliabilityBin:
    """One reliability bin from its samples."""
    count = len(inside)
    return ReliabilityBin(
        lower=index / BINS,
        upper=(index + 1) / BINS,
        count=count,
        mean_predicted=sum(p for p, _ in inside) / count if count else None,
        observed_rate=sum(positive for _, positive in inside) / count if count else None,
    )


def expected_calibration_error(bins: Sequence[ReliabilityBin]) -> float | None:
    """Count-weighted mean of |mean predicted - observed rate|; None without samples."""
    total = sum(b.count for b in bins)
    if not total:
        return None
    gaps = (
        b.count * abs(b.mean_predicted - b.observed_rate)
        for b in bins
        if b.mean_predicted is not None and b.observed_rate is not None
    )
    return sum(gaps) / total


def threshold_for_precision(
    samples: Sequence[tuple[float, bool]], target_precision: float
) -> ThresholdPick:
    """The lowest observed t with precision(p >= t) >= target, its precision and support."""
    pick = ThresholdPick(None, None, 0)
    flagged = positives = 0
    ordered = sorted(samples, reverse=True)
    for index, (p, positive) in enumerate(ordered):
        flagged += 1
        positives += positive
        if index + 1 < len(ordered) and ordered[index + 1][0] == p:
            continue  # `p >= t` flags every tie at once
        if positives / flagged >= target_precision:
            pick = ThresholdPick(p, positives / flagged, flagged)
    return pick


def shadow_quality(
    joined: Sequence[Joined], shadow_verdicts: Iterable[Verdict]
) -> dict[str, ShadowQuality]:
    """Per shadow policy id: its rules and actions against decisions on the same posts."""
    decided = {(verdict.policy.id, verdict.post_id): decision for decision, verdict in joined}
    report: dict[str, ShadowQuality] = {}
    for verdict in sorted(shadow_verdicts, key=lambda v: v.key):
        quality = report.setdefault(verdict.policy.id, ShadowQuality())
        quality.versions.add(str(verdict.policy.version))
        decision = decided.get((verdict.policy.id, verdict.post_id))
        if decision is None:
            quality.unscored += 1
            continue
        quality.scored += 1
        quality.agreed += verdict.action == decision.action
        for matched in verdict.matched_rules:
            quality.rules.setdefault(matched.id, Tally()).count(decision.decision)
    return report


def _rounded(value: float | None) -> float | None:
    """`value` rounded for the JSON form; None stays None."""
    return None if value is None else round(value, DIGITS)
