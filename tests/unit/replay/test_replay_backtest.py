"""Acceptance: a known ground truth, one threshold changed, and `vlmod replay --json` reports
exactly the transitions the scores imply and a precision whose interval holds the truth.

Each post has a weapon score s drawn uniformly; it truly shows a weapon when s plus noise is
over 0.75. The recorded policy reviews s > 0.8 and blocks s > 0.95; the candidate reviews
s > 0.7. Reviewers decide every third post, flagged or not, by the truth: a sample that does
not depend on the score, so the labelled posts a rule flags are a fair sample of all it flags.
Every expected number below is counted from the scores and the truth, not from the engine.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from contracts.records import Action
from replay.metrics import wilson
from tests.unit.replay.builders import (
    START,
    compile_text,
    decided,
    record_of,
    replay_json,
    review,
    write_jsonl,
)

POLICY = """\
id: weapons
version: {version}
mode: active
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
rules:
  - id: weapon-display
    when: labels.weapon > {review}
    action: review
    queue: weapons
  - id: weapon-block
    when: labels.weapon > {block}
    action: block
    queue: weapons
default: allow
"""
POSTS = 3000


def policy_text(version: int, review: float, block: float = 0.95) -> str:
    return POLICY.format(version=version, review=review, block=block)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Scores, truth, reviewed posts, and the history and decision files made from them."""
    folder = tmp_path_factory.mktemp("backtest")
    recorded = compile_text(folder / "recorded", "weapons.yaml", policy_text(1, 0.8))
    rng = random.Random(21)
    scores = [rng.random() for _ in range(POSTS)]
    truth = [s + rng.gauss(0, 0.1) > 0.75 for s in scores]
    verdicts, decisions, reviewed = [], [], set()
    for n, score in enumerate(scores):
        record = record_of(recorded, {"id": f"p{n}", "text": ""}, {"labels.weapon": score})
        verdict = decided(recorded, record, at=START + timedelta(seconds=n))
        verdicts.append(verdict)
        if n % 3 == 0:
            final = verdict.action if truth[n] else Action.ALLOW
            if verdict.action is Action.ALLOW and truth[n]:
                final = Action.REVIEW
            decisions.append(review(verdict, final))
            reviewed.add(n)
    history = write_jsonl(folder / "history.jsonl", verdicts)
    decided_file = write_jsonl(folder / "decisions.jsonl", decisions)
    return scores, truth, reviewed, history, decided_file, folder


def test_one_threshold_changed_gives_the_exact_transitions_and_precision(world):
    scores, truth, reviewed, history, decisions, folder = world
    candidates = folder / "candidate"
    compile_text(candidates, "weapons.yaml", policy_text(2, 0.7))
    report = replay_json("--policy", candidates, "--history", history, "--decisions", decisions)

    band = sum(0.7 < s <= 0.8 for s in scores)
    reviewed_only = sum(0.8 < s <= 0.95 for s in scores)
    blocked = sum(s > 0.95 for s in scores)
    assert report["posts"] == POSTS
    assert report["not_replayable"] == {"count": 0, "reasons": {}}
    weapons = report["policies"]["weapons"]
    assert weapons["replayed"] == POSTS
    assert weapons["changed"] == band
    assert weapons["transitions"] == {
        "allow->allow": POSTS - band - reviewed_only - blocked,
        "allow->review": band,
        "review->review": reviewed_only,
        "block->block": blocked,
    }
    assert weapons["overrides"] == 0
    assert weapons["unlabelled_exposure"] == 0  # it newly reviews; it blocks nothing new

    display = weapons["rules"]["weapon-display"]
    assert display["before"] == sum(s > 0.8 for s in scores)
    assert display["after"] == sum(s > 0.7 for s in scores)
    assert (display["added"], display["removed"]) == (band, 0)
    flagged_after = [n for n, s in enumerate(scores) if s > 0.7]
    labelled = [n for n in flagged_after if n in reviewed]
    assert display["labelled_after"] == len(labelled)
    sample_precision = sum(truth[n] for n in labelled) / len(labelled)
    assert display["precision_after"] == pytest.approx(sample_precision, abs=1e-4)
    before = [n for n, s in enumerate(scores) if s > 0.8 and n in reviewed]
    assert display["precision_before"] == pytest.approx(
        sum(truth[n] for n in before) / len(before), abs=1e-4
    )
    true_precision = sum(truth[n] for n in flagged_after) / len(flagged_after)
    low, high = display["precision_after_ci"]
    assert low <= true_precision <= high
    assert low < sample_precision < high
    block = weapons["rules"]["weapon-block"]
    assert (block["before"], block["after"], block["added"], block["removed"]) == (
        blocked,
        blocked,
        0,
        0,
    )


def test_raising_the_block_threshold_counts_overrides_and_new_blocks_count_exposure(world):
    scores, _, reviewed, history, decisions, folder = world
    candidates = folder / "raised"
    # Review past 0.97, block past 0.9: 0.9 < s <= 0.95 are newly blocked, 0.8 < s <= 0.9 allowed.
    compile_text(candidates, "weapons.yaml", policy_text(3, 0.97, block=0.9))
    weapons = replay_json("--policy", candidates, "--history", history, "--decisions", decisions)[
        "policies"
    ]["weapons"]
    newly_blocked = [n for n, s in enumerate(scores) if 0.9 < s <= 0.95]
    assert weapons["transitions"]["review->block"] == len(newly_blocked)
    assert weapons["transitions"]["review->allow"] == sum(0.8 < s <= 0.9 for s in scores)
    assert weapons["unlabelled_exposure"] == sum(n not in reviewed for n in newly_blocked) > 0
    assert weapons["overrides"] == 0


def test_lowering_the_block_threshold_exposes_posts_no_reviewer_saw(world):
    scores, _, reviewed, history, decisions, folder = world
    candidates = folder / "lowered"
    compile_text(candidates, "weapons.yaml", policy_text(4, 0.8, block=0.5))
    weapons = replay_json("--policy", candidates, "--history", history, "--decisions", decisions)[
        "policies"
    ]["weapons"]
    newly_blocked = [n for n, s in enumerate(scores) if 0.5 < s <= 0.95]
    unseen = sum(n not in reviewed for n in newly_blocked)
    assert unseen > 0
    assert weapons["unlabelled_exposure"] == unseen


def test_removing_the_block_rule_counts_overrides(world):
    scores, _, _, history, decisions, folder = world
    candidates = folder / "no-block"
    compile_text(candidates, "weapons.yaml", policy_text(5, 0.99, block=1.5))
    weapons = replay_json("--policy", candidates, "--history", history, "--decisions", decisions)[
        "policies"
    ]["weapons"]
    assert weapons["overrides"] == sum(0.95 < s <= 0.99 for s in scores)
    assert weapons["transitions"]["block->allow"] == weapons["overrides"]


def test_wilson_interval_matches_published_values():
    # Wilson (1927) as tabulated by Newcombe (1998), Statistics in Medicine 17: 81/263 and 15/148.
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    low, high = wilson(15, 148)
    assert (round(low, 4), round(high, 4)) == (0.0624, 0.1605)
    assert wilson(0, 0) is None
