"""How reviewers did, for `vlmod report`: which decision counts, agreement, golden accuracy.

Pure: records in, numbers out.

- The decision on a key is its latest *final* record: a blind `first` review, or a `second`
  that disagreed, never counts as one. A lead's `adjudication` outranks the reviews it settled,
  and an `appeal`'s decision outranks what it judged, whatever their clocks say; among equals
  the later `decided_at` wins (a tie goes to the record read later).
- An appeal's uphold or overturn judges the appealed decision; against the verdict it counts
  as upheld when its action is the verdict's, else overturned.
- Agreement per queue: Cohen's kappa over the pairs of `first` and `second` reviews of one
  task, on their labels (the action, or `escalated`): kappa = (p_o - p_e) / (1 - p_e), where
  p_o is the share of pairs that agree and p_e = sum over labels of the product of the two
  reviews' shares of that label. None when p_e is 1 (both gave one label throughout).
- Golden accuracy per reviewer: right answers / golden tasks answered (escalations included,
  and never right), each answer counted once by its `decision_id`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.records import Verdict
from contracts.review import DecisionKind, GoldenResult, ReviewDecision, ReviewStage

DIGITS = 4
RANK = {ReviewStage.ADJUDICATION: 1, ReviewStage.APPEAL: 2}  # others: 0


def review_label(decision: ReviewDecision) -> str:
    """What two reviews are compared on: the action, or `escalated`."""
    return "escalated" if decision.decision is DecisionKind.ESCALATE else decision.action.value


def final_decisions(decisions: Sequence[ReviewDecision]) -> dict[str, ReviewDecision]:
    """The decision that counts per key, among its final records (see the module's rules)."""
    final: dict[str, ReviewDecision] = {}
    for decision in decisions:
        if not decision.final:
            continue
        seen = final.get(decision.key)
        if seen is None or _precedence(decision) >= _precedence(seen):
            final[decision.key] = decision
    return final


def _precedence(decision: ReviewDecision) -> tuple[int, datetime]:
    return RANK.get(decision.stage, 0), moment(decision)


def moment(decision: ReviewDecision) -> datetime:
    """`decided_at`, a naive time read as UTC so that it compares with aware ones."""
    at = decision.decided_at
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def judged_against(decision: ReviewDecision, verdict: Verdict) -> ReviewDecision:
    """`decision` as a judgement of `verdict`: an appeal's becomes an uphold or an overturn."""
    if decision.stage is not ReviewStage.APPEAL:
        return decision
    kind = DecisionKind.UPHOLD if decision.action == verdict.action else DecisionKind.OVERTURN
    return decision.model_copy(update={"decision": kind})


@dataclass(frozen=True)
class Agreement:
    """Two blind reviews of the same tasks: how often they agree, and Cohen's kappa."""

    pairs: int
    agreed: int
    expected: float | None  # p_e, the agreement two reviews with these label shares reach by chance
    kappa: float | None

    @property
    def observed(self) -> float | None:
        """p_o: the share of pairs that agree."""
        return self.agreed / self.pairs if self.pairs else None

    def as_dict(self) -> dict[str, Any]:
        """Counts and rates, rounded."""
        return {
            "pairs": self.pairs,
            "agreed": self.agreed,
            "observed_agreement": _rounded(self.observed),
            "chance_agreement": _rounded(self.expected),
            "kappa": _rounded(self.kappa),
        }


def cohens_kappa(pairs: Sequence[tuple[str, str]]) -> Agreement:
    """Agreement and Cohen's kappa over (first label, second label) pairs."""
    n = len(pairs)
    if not n:
        return Agreement(0, 0, None, None)
    agreed = sum(first == second for first, second in pairs)
    firsts, seconds = Counter(f for f, _ in pairs), Counter(s for _, s in pairs)
    expected = sum(firsts[label] * seconds[label] for label in firsts) / (n * n)
    kappa = None if expected >= 1 else (agreed / n - expected) / (1 - expected)
    return Agreement(n, agreed, expected, kappa)


def review_agreement(decisions: Iterable[ReviewDecision]) -> dict[str, Agreement]:
    """Per queue: kappa over the tasks that have both a first and a second review."""
    reviews: dict[tuple[str, str, ReviewStage], ReviewDecision] = {}
    for decision in decisions:
        if decision.stage in (ReviewStage.FIRST, ReviewStage.SECOND):
            reviews[(decision.queue, decision.key, decision.stage)] = decision
    pairs: dict[str, list[tuple[str, str]]] = {}
    for (queue, key, stage), first in sorted(reviews.items()):
        second = reviews.get((queue, key, ReviewStage.SECOND))
        if stage is ReviewStage.FIRST and second is not None:
            pairs.setdefault(queue, []).append((review_label(first), review_label(second)))
    return {queue: cohens_kappa(labels) for queue, labels in pairs.items()}


@dataclass(frozen=True)
class GoldenAccuracy:
    """One reviewer's answers to golden tasks."""

    answered: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        """correct / answered; None when nothing was answered."""
        return self.correct / self.answered if self.answered else None

    def as_dict(self) -> dict[str, Any]:
        """Counts and the rounded accuracy."""
        accuracy = _rounded(self.accuracy)
        return {"answered": self.answered, "correct": self.correct, "accuracy": accuracy}


def golden_accuracy(results: Iterable[GoldenResult]) -> dict[str, GoldenAccuracy]:
    """Per reviewer: golden answers and right ones, each answer once (by decision_id)."""
    unique = {r.decision_id or f"{r.reviewer}|{r.golden_id}|{r.decided_at}": r for r in results}
    answered: Counter[str] = Counter(r.reviewer for r in unique.values())
    correct: Counter[str] = Counter(r.reviewer for r in unique.values() if r.correct)
    return {name: GoldenAccuracy(answered[name], correct[name]) for name in sorted(answered)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)
