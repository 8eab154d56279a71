"""`vlmod report`: rule precision, signal calibration and shadow scoring against known truth.

Decisions are drawn from a seeded RNG with a known true rate, so each estimate has a known
spread; tolerances are about three binomial standard deviations and say so where they are used.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from contracts.records import Action, Verdict
from contracts.review import DecisionKind, ReviewDecision
from review.report import build_report, calibrate, threshold_for_precision
from tests.report_helpers import (
    SHADOW,
    T0,
    decide,
    make_verdict,
    shadow_record,
    vlmod_report,
    write_jsonl,
)

SCRIPT = "<script>alert(1)</script>"


def drawn_kind(rng: random.Random, p_uphold: float, p_escalate: float = 0.0) -> DecisionKind:
    draw = rng.random()
    if draw < p_uphold:
        return DecisionKind.UPHOLD
    if draw < p_uphold + p_escalate:
        return DecisionKind.ESCALATE
    return DecisionKind.OVERTURN


# --- rules --------------------------------------------------------------------------------------


def test_rule_precision_recovers_the_true_uphold_rate():
    # 2,000 decided posts, each upheld with probability 0.7 and escalated with 0.05. The
    # binomial sd of the estimate is sqrt(0.7 * 0.3 / 2000) ~ 0.010, so +-0.03 is three sd.
    # Every third post also matches a worse rule (true precision 0.4, n ~ 667, sd ~ 0.019).
    rng = random.Random(20250101)
    verdicts, decisions = [], []
    for n in range(2000):
        worse = n % 3 == 0
        verdict = make_verdict(f"p{n}", rules=("scam-link", "crypto") if worse else ("scam-link",))
        verdicts.append(verdict)
        decisions.append(decide(verdict, drawn_kind(rng, 0.4 if worse else 0.85, 0.05)))
    quality = build_report(decisions, verdicts)
    policy = quality.policies["scams"]
    crypto, link = policy.rules["crypto"], policy.rules["scam-link"]
    assert link.decided == policy.totals.decided == 2000
    assert crypto.decided == 667
    true_link = (667 * 0.4 + 1333 * 0.85) / 2000  # the mix of both kinds of post: 0.70
    assert link.precision == pytest.approx(true_link, abs=0.03)
    assert crypto.precision == pytest.approx(0.4, abs=0.06)  # three sd at n = 667
    assert link.overturn_rate == pytest.approx(1 - true_link - 0.05, abs=0.03)
    assert link.upheld + link.overturned + link.escalated == link.decided


def test_the_latest_decision_on_a_key_counts_and_unmatched_keys_are_reported():
    verdict = make_verdict("p1")
    escalated = decide(verdict, DecisionKind.ESCALATE, at=T0)
    upheld = decide(verdict, DecisionKind.UPHOLD, at=T0 + timedelta(minutes=5))
    other = make_verdict("p2")
    aware_early = decide(other, DecisionKind.OVERTURN, at=T0)
    naive_late = decide(other, DecisionKind.UPHOLD, at=datetime(2030, 1, 1))  # read as UTC
    orphan = decide(make_verdict("gone"), DecisionKind.UPHOLD)
    decisions = [upheld, escalated, naive_late, aware_early, orphan]
    quality = build_report(decisions, [verdict, other])
    rule = quality.policies["scams"].rules["scam-link"]
    assert (rule.decided, rule.upheld, rule.escalated, rule.overturned) == (2, 2, 0, 0)
    assert quality.superseded_decisions == 2
    assert quality.unmatched_keys == (orphan.key,)
    assert quality.as_dict()["unmatched_decisions"] == 1


def test_overturn_notes_keep_the_last_distinct_ones():
    verdicts = [make_verdict(f"p{n}") for n in range(6)]
    notes = ["satire", "satire", "news report", "a parody", "fan art", None]
    decisions = [
        decide(v, DecisionKind.OVERTURN, note=note, at=T0 + timedelta(hours=n))
        for n, (v, note) in enumerate(zip(verdicts, notes, strict=True))
    ][::-1]  # the newest comes first in the input, but last in time
    rule = build_report(decisions, verdicts).policies["scams"].rules["scam-link"]
    assert rule.overturn_notes == ["news report", "a parody", "fan art"]


# --- signals ------------------------------------------------------------------------------------


def signal_posts(
    count: int, outcome_rate, *, seed: int
) -> tuple[list[Verdict], list[ReviewDecision]]:
    """Posts whose `answers.scam` is p ~ U(0,1), upheld with probability outcome_rate(p)."""
    rng = random.Random(seed)
    verdicts, decisions = [], []
    for n in range(count):
        p = rng.random()
        verdict = make_verdict(f"p{n}", answers={"scam": p}, labels={"weapon": 0.5})
        kind = DecisionKind.UPHOLD if rng.random() < outcome_rate(p) else DecisionKind.OVERTURN
        verdicts.append(verdict)
        decisions.append(decide(verdict, kind))
    return verdicts, decisions


def test_a_calibrated_question_has_a_small_ece():
    # Outcome ~ Bernoulli(p): each of the 10 bins holds ~200 posts, so its observed rate is off
    # by ~0.035 at most; the count-weighted mean of those gaps stays well under 0.05.
    verdicts, decisions = signal_posts(2000, lambda p: p, seed=11)
    signal = build_report(decisions, verdicts).signals["scams"]["answers.scam"]
    assert signal.samples == 2000
    assert sum(b.count for b in signal.bins) == 2000
    assert signal.ece is not None and signal.ece < 0.05
    for b in signal.bins:
        assert b.lower <= b.mean_predicted < b.upper
        assert b.observed_rate == pytest.approx(b.mean_predicted, abs=0.12)


def test_a_miscalibrated_question_has_a_large_ece():
    # Outcome ~ Bernoulli(p^2): the true gap is E|p - p^2| = 1/2 - 1/3 ~ 0.167 for p ~ U(0,1).
    verdicts, decisions = signal_posts(2000, lambda p: p * p, seed=12)
    signal = build_report(decisions, verdicts).signals["scams"]["answers.scam"]
    assert signal.ece == pytest.approx(1 / 6, abs=0.03)


def test_escalations_carry_no_outcome_for_signals():
    verdicts = [make_verdict(f"p{n}", labels={"weapon": 0.9}) for n in range(3)]
    kinds = [DecisionKind.UPHOLD, DecisionKind.OVERTURN, DecisionKind.ESCALATE]
    decisions = [decide(v, k) for v, k in zip(verdicts, kinds, strict=True)]
    signal = build_report(decisions, verdicts).signals["scams"]["labels.weapon"]
    assert (signal.samples, signal.positives) == (2, 1)


def test_the_threshold_for_target_precision_is_recovered_on_a_known_curve():
    # Calibrated p ~ U(0,1): precision(p >= t) = (1 + t) / 2, which reaches 0.9 at t = 0.8
    # with ~20% of the posts flagged. At n = 20,000 the precision above 0.8 has sd ~0.005 and
    # the curve rises 0.5 per unit of t, so t moves by ~0.01 per sd: +-0.03 is three sd.
    rng = random.Random(3)
    samples = [(p, rng.random() < p) for p in (rng.random() for _ in range(20_000))]
    pick = calibrate(samples, 0.9).threshold
    assert pick.threshold == pytest.approx(0.8, abs=0.03)
    assert pick.precision is not None and pick.precision >= 0.9
    assert pick.support == pytest.approx(4000, rel=0.15)


def test_an_unreachable_target_gives_no_threshold_and_ties_are_flagged_together():
    assert threshold_for_precision([(0.9, False), (0.5, True)], 0.9).threshold is None
    assert threshold_for_precision([], 0.9).support == 0
    tied = [(0.8, True), (0.8, False), (0.7, True)]
    pick = threshold_for_precision(tied, 0.5)
    assert (pick.threshold, pick.support) == (0.7, 3)  # 0.8 alone flags both of its posts
    assert calibrate([(1.0, True)], 0.9).bins[-1].count == 1
    assert calibrate([], 0.9).ece is None


# --- shadow -------------------------------------------------------------------------------------


def test_shadow_rules_are_scored_on_posts_decided_under_the_active_policy():
    active = [make_verdict(f"p{n}") for n in range(4)]
    kinds = [DecisionKind.UPHOLD, DecisionKind.UPHOLD, DecisionKind.OVERTURN, DecisionKind.UPHOLD]
    decisions = [
        decide(v, k, action=Action.BLOCK if k is DecisionKind.UPHOLD else Action.ALLOW)
        for v, k in zip(active[:4], kinds, strict=True)
    ]
    shadow = [
        make_verdict("p0", rules=("scam-v2",), policy=SHADOW, action=Action.BLOCK),
        make_verdict("p1", rules=(), policy=SHADOW, action=Action.ALLOW),
        make_verdict("p2", rules=("scam-v2",), policy=SHADOW, action=Action.BLOCK),
        make_verdict("p9", rules=("scam-v2",), policy=SHADOW, action=Action.BLOCK),
    ]
    quality = build_report(decisions, [*active, *shadow]).shadow["scams"]
    assert (quality.scored, quality.unscored, quality.agreed) == (3, 1, 1)
    rule = quality.rules["scam-v2"]
    assert (rule.decided, rule.upheld, rule.overturned, rule.precision) == (2, 1, 1, 0.5)
    assert quality.versions == {"4"}


# --- the command, on JSONL files ----------------------------------------------------------------


@pytest.fixture
def sources(tmp_path):
    """200 decided posts (precision 0.75), their shadow verdicts, and one orphan decision."""
    rng = random.Random(5)
    verdicts, records, decisions = [], [], []
    for n in range(200):
        p = rng.random()
        verdict = make_verdict(f"p{n}", labels={"weapon": p}, reason=f"matched {SCRIPT}")
        shadow = make_verdict(f"p{n}", rules=("scam-v2",), policy=SHADOW, action=Action.BLOCK)
        verdicts.append(verdict)
        records += [verdict.model_dump(mode="json"), shadow_record(shadow)]
        kind = DecisionKind.UPHOLD if n % 4 else DecisionKind.OVERTURN
        decisions.append(decide(verdict, kind, note=SCRIPT).model_dump(mode="json"))
    decisions.append(decide(make_verdict("gone"), DecisionKind.UPHOLD).model_dump(mode="json"))
    return write_jsonl(tmp_path / "d.jsonl", decisions), write_jsonl(tmp_path / "v.jsonl", records)


def test_text_output_lists_each_rules_precision(sources):
    decisions, verdicts = sources
    result = vlmod_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    rules = lines[lines.index(["rules"]) + 1 : lines.index(["reasons"])]
    assert rules == [
        ["rule", "decided", "upheld", "overturned", "escalated", "precision", "overturn"],
        ["scam-link", "200", "150", "50", "0", "0.750", "0.250"],
    ]
    assert any(line[:1] == ["labels.weapon"] for line in lines)
    assert "unmatched decisions: 1" in result.stdout


def test_json_output_has_rule_counts_and_precision(sources):
    decisions, verdicts = sources
    result = vlmod_report("--decisions", decisions, "--verdicts", verdicts, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    rule = body["policies"]["scams"]["rules"]["scam-link"]
    assert (rule["decided"], rule["upheld"], rule["precision"]) == (200, 150, 0.75)
    assert body["unmatched_decisions"] == 1
    assert len(body["signals"]["scams"]["labels.weapon"]["bins"]) == 10
    assert body["shadow"]["scams"]["rules"]["scam-v2"]["precision"] == 0.75
    assert body["shadow"]["scams"]["scored"] == 200


def test_html_has_inline_svg_and_escapes_reasons_and_notes(sources, tmp_path):
    decisions, verdicts = sources
    page_path = tmp_path / "report.html"
    args = ("--decisions", decisions, "--verdicts", verdicts, "--html", page_path)
    result = vlmod_report(*args)
    assert result.exit_code == 0, result.output
    page = page_path.read_text()
    assert page.count("<svg") == 2  # precision per rule, reliability of labels.weapon
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()


def test_a_script_in_a_rule_id_stays_text_inside_the_plots(tmp_path):
    verdict = make_verdict("p1", rules=(SCRIPT, "$x$"), labels={SCRIPT: 0.4})
    decisions = write_jsonl(
        tmp_path / "d.jsonl", [decide(verdict, DecisionKind.UPHOLD).model_dump(mode="json")]
    )
    verdicts = write_jsonl(tmp_path / "v.jsonl", [verdict.model_dump(mode="json")])
    result = vlmod_report(
        "--decisions", decisions, "--verdicts", verdicts, "--html", tmp_path / "r.html"
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 2
    assert "<script" not in page.lower()


def test_a_malformed_line_names_file_and_line_and_the_report_covers_the_rest(sources, tmp_path):
    decisions, verdicts = sources
    bad = tmp_path / "bad.jsonl"
    lines = Path(decisions).read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "decision": "maybe", "reviewer": ""})
    lines.insert(4, "{not json")
    bad.write_text("\n".join(lines) + "\n")
    result = vlmod_report("--decisions", bad, "--verdicts", verdicts, "--json")
    assert result.exit_code == 0, result.output
    problems = result.stderr.splitlines()
    assert problems[0].startswith(f"{bad}:3: ")
    assert "reviewer:" in problems[0] and "decision:" in problems[0]
    assert problems[1].startswith(f"{bad}:5: not JSON")
    assert problems[2:] == [f"{bad}: skipped 2 bad records of 202"]
    body = json.loads(result.stdout)
    assert body["decisions"] == 200
    assert body["skipped_records"] == {"decisions": 2, "verdicts": 0}


def test_a_source_of_bad_records_only_names_them_and_fails(sources, tmp_path):
    decisions, _ = sources
    verdicts = write_jsonl(tmp_path / "v.jsonl", [[1, 2], {"verdict": {"post_id": "x"}}])
    result = vlmod_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 1
    first, second, *rest = result.stderr.splitlines()
    assert first == f"{verdicts}:1: expected a JSON object, got list"
    assert second.startswith(f"{verdicts}:2: verdict.key: Field required")
    assert rest == [f"{verdicts}: skipped 2 bad records of 2", f"{verdicts}: no verdicts in it"]
    assert result.stdout == ""


def test_line_separators_inside_strings_and_bad_bytes_are_handled_per_line(tmp_path):
    verdict = make_verdict("p1", reason="one\u2028two")
    decision = decide(verdict, DecisionKind.UPHOLD).model_dump(mode="json")
    decisions = tmp_path / "d.jsonl"
    decisions.write_bytes(json.dumps(decision, ensure_ascii=False).encode() + b"\r\n\xff\n")
    verdicts = tmp_path / "v.jsonl"
    verdicts.write_text(json.dumps(verdict.model_dump(mode="json"), ensure_ascii=False) + "\n")
    result = vlmod_report("--decisions", decisions, "--verdicts", verdicts)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"{decisions}:2: not JSON")
    assert "one\\u2028two" in result.stdout  # the reason, its separator shown, not acted on


def test_empty_and_missing_sources_are_one_line_each(sources, tmp_path):
    decisions, verdicts = sources
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    result = vlmod_report("--decisions", empty, "--verdicts", verdicts)
    assert (result.exit_code, result.stderr) == (1, f"{empty}: no decisions in it\n")
    result = vlmod_report("--decisions", decisions, "--verdicts", tmp_path / "nope.jsonl")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{tmp_path / 'nope.jsonl'}: cannot read it")


def test_a_topic_source_needs_bootstrap(sources):
    _, verdicts = sources
    result = vlmod_report("--decisions", "topic:decisions", "--verdicts", verdicts)
    assert result.exit_code == 1
    assert result.stderr == "topic decisions: reading a topic needs --bootstrap HOST:PORT\n"
