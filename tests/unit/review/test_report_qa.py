"""`vlmod report` on reviewers: the decision that counts, Cohen's kappa and golden accuracy,
each checked against a hand-computed example or an independent implementation."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from contracts.records import Action
from contracts.review import DecisionKind, GoldenResult, ReviewDecision, ReviewStage
from review.report import build_report
from review.report_qa import cohens_kappa, golden_accuracy, review_agreement
from review.report_render import render_json, render_text
from tests.unit.review.test_report import T0, decide, make_verdict, vlmod_report, write_jsonl


def test_kappa_of_the_textbook_example_is_0_4():
    # 50 items: both yes 20, first yes second no 5, first no second yes 10, both no 15.
    # p_o = 35/50 = 0.7; first says yes 25/50, second 30/50: p_e = .5*.6 + .5*.4 = 0.5;
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10
    pairs += [("no", "no")] * 15
    agreement = cohens_kappa(pairs)
    assert (agreement.pairs, agreement.agreed) == (50, 35)
    assert agreement.observed == pytest.approx(0.7)
    assert agreement.expected == pytest.approx(0.5)
    assert agreement.kappa == pytest.approx(0.4)


def test_kappa_matches_scikit_learn_on_three_labels():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference")
    rng = random.Random(7)
    labels = ["allow", "review", "block"]
    firsts = [rng.choice(labels) for _ in range(400)]
    seconds = [f if rng.random() < 0.6 else rng.choice(labels) for f in firsts]
    ours = cohens_kappa(list(zip(firsts, seconds, strict=True))).kappa
    assert ours == pytest.approx(metrics.cohen_kappa_score(firsts, seconds), abs=1e-12)


def test_kappa_is_undefined_when_chance_already_agrees_and_one_when_all_agree():
    assert cohens_kappa([("block", "block")] * 5).kappa is None
    assert cohens_kappa([("block", "block"), ("allow", "allow")]).kappa == pytest.approx(1.0)
    assert cohens_kappa([]).pairs == 0 and cohens_kappa([]).kappa is None


def review(key: str, stage: ReviewStage, action: Action, *, queue: str = "spam", **more):
    kind = more.pop(
        "kind", DecisionKind.UPHOLD if action is Action.BLOCK else DecisionKind.OVERTURN
    )
    return ReviewDecision(
        key=key,
        post_id=f"p-{key}",
        policy={"id": "p", "version": 1, "sha256": "0" * 64},
        queue=queue,
        reviewer=more.pop("reviewer", "ana"),
        decision=kind,
        action=action,
        decided_at=T0,
        stage=stage,
        final=more.pop("final", stage is not ReviewStage.FIRST),
        **more,
    )


def test_agreement_pairs_first_and_second_reviews_of_one_task_per_queue():
    first, second = ReviewStage.FIRST, ReviewStage.SECOND
    decisions = [
        review("a", first, Action.BLOCK),
        review("a", second, Action.BLOCK, reviewer="ben"),
        review("a", second, Action.BLOCK, reviewer="ben"),  # published again: one pair
        review("b", first, Action.BLOCK),
        review("b", second, Action.ALLOW, reviewer="ben", final=False),
        review("c", first, Action.ALLOW),  # its second review is still waiting
        review("d", first, Action.BLOCK, queue="weapons"),
        review("d", second, Action.BLOCK, queue="weapons", kind=DecisionKind.ESCALATE),
        review("e", ReviewStage.REVIEW, Action.BLOCK),
    ]
    agreement = review_agreement(decisions)
    assert set(agreement) == {"spam", "weapons"}
    assert (agreement["spam"].pairs, agreement["spam"].agreed) == (2, 1)
    assert (agreement["weapons"].pairs, agreement["weapons"].agreed) == (1, 0), "escalated"


def answer(reviewer: str, correct: bool, decision_id: str) -> GoldenResult:
    given = Action.ALLOW if correct else Action.BLOCK
    return GoldenResult(
        golden_id="g",
        queue="spam",
        reviewer=reviewer,
        expected=Action.ALLOW,
        decision=DecisionKind.OVERTURN if correct else DecisionKind.UPHOLD,
        given=given,
        correct=correct,
        decided_at=T0,
        decision_id=decision_id,
    )


def test_golden_accuracy_counts_each_answer_once():
    results = [
        answer("ana", True, "1"),
        answer("ana", False, "2"),
        answer("ana", True, "3"),
        answer("ana", True, "3"),  # the same answer published twice
        answer("ben", False, "4"),
    ]
    accuracy = golden_accuracy(results)
    assert (accuracy["ana"].answered, accuracy["ana"].correct) == (3, 2)
    assert accuracy["ana"].accuracy == pytest.approx(2 / 3)
    assert accuracy["ben"].accuracy == 0.0
    assert accuracy["ana"].as_dict() == {"answered": 3, "correct": 2, "accuracy": 0.6667}


def staged(decision: ReviewDecision, stage: ReviewStage, **update) -> ReviewDecision:
    return decision.model_copy(update={"stage": stage, **update})


def test_the_report_counts_adjudications_and_appeals_and_skips_blind_reviews():
    settled, appealed, waiting = (make_verdict(f"post-{n}") for n in range(3))
    later = T0 + timedelta(minutes=1)
    decisions = [
        staged(decide(settled, DecisionKind.UPHOLD), ReviewStage.FIRST, final=False),
        staged(decide(settled, DecisionKind.OVERTURN), ReviewStage.SECOND, final=False),
        # The lead's clock runs behind: the adjudication still settles it.
        staged(
            decide(settled, DecisionKind.OVERTURN, at=T0 - timedelta(hours=1)),
            ReviewStage.ADJUDICATION,
        ),
        decide(appealed, DecisionKind.UPHOLD),
        # The appeal overturns the upheld decision: against the verdict, an overturn.
        staged(decide(appealed, DecisionKind.OVERTURN, at=later), ReviewStage.APPEAL),
        staged(decide(waiting, DecisionKind.UPHOLD), ReviewStage.FIRST, final=False),
    ]
    quality = build_report(
        decisions, [settled, appealed, waiting], golden=[answer("ana", True, "1")]
    )
    totals = quality.policies["scams"].totals
    assert (totals.decided, totals.upheld, totals.overturned) == (2, 0, 2)
    assert quality.awaiting_final == 1 and quality.unmatched_keys == ()
    assert quality.superseded_decisions == 1, "the appealed decision"
    assert quality.agreement["scam"].pairs == 1
    body = json.loads(render_json(quality))
    assert body["agreement"]["scam"] == {
        "pairs": 1,
        "agreed": 0,
        "observed_agreement": 0.0,
        "chance_agreement": 0.0,
        "kappa": 0.0,
    }
    assert body["golden"] == {"ana": {"answered": 1, "correct": 1, "accuracy": 1.0}}
    assert body["awaiting_final"] == 1
    text = render_text(quality)
    assert "reviewers: 1 task(s) reviewed twice, 1 golden answer(s)" in text
    assert "1 key(s) awaiting a final decision" in text


def test_an_appeal_that_upholds_counts_as_the_verdict_upheld_whatever_its_kind_says():
    verdict = make_verdict("post-9", action=Action.BLOCK)
    overturned = decide(verdict, DecisionKind.OVERTURN, action=Action.ALLOW)
    # The appeal overturns the overturn, back to the verdict's block: the verdict was right.
    restored = staged(
        decide(verdict, DecisionKind.OVERTURN, action=Action.BLOCK, at=T0 + timedelta(days=1)),
        ReviewStage.APPEAL,
    )
    totals = build_report([overturned, restored], [verdict]).policies["scams"].totals
    assert (totals.upheld, totals.overturned) == (1, 0)


def test_the_command_reads_golden_results_and_names_a_bad_line(tmp_path):
    verdict = make_verdict("post-1")
    first = staged(decide(verdict, DecisionKind.UPHOLD), ReviewStage.FIRST, final=False)
    second = staged(decide(verdict, DecisionKind.UPHOLD), ReviewStage.SECOND)
    decisions = write_jsonl(
        tmp_path / "d.jsonl", [d.model_dump(mode="json") for d in (first, second)]
    )
    verdicts = write_jsonl(tmp_path / "v.jsonl", [verdict.model_dump(mode="json")])
    golden = tmp_path / "g.jsonl"
    golden.write_text(
        answer("ana", True, "1").model_dump_json()
        + "\n{\n"
        + answer("ana", False, "2").model_dump_json()
        + "\n"
    )
    result = vlmod_report(
        "--decisions", decisions, "--verdicts", verdicts, "--golden", golden, "--json"
    )
    assert result.exit_code == 0, result.output
    assert f"{golden}:2: " in result.stderr
    body = json.loads(result.stdout)
    assert body["golden"] == {"ana": {"answered": 2, "correct": 1, "accuracy": 0.5}}
    assert body["agreement"]["scam"]["pairs"] == 1 and body["agreement"]["scam"]["agreed"] == 1
    assert body["skipped_records"]["golden"] == 1
    assert body["policies"]["scams"]["upheld"] == 1
