"""Profanity scoring with the real model pickled in the alt-profanity-check wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("profanity_check", reason="needs the 'specialists' extra")

from operators.specialists import profanity
from operators.specialists.profanity import ProfanityScorer, ProfanityUnavailable

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def scorer() -> ProfanityScorer:
    return ProfanityScorer()


def test_a_profane_phrase_is_flagged(scorer):
    assert scorer.probabilities(["shut up you fucking idiot"])[0] > 0.5


def test_a_clean_phrase_passes(scorer):
    assert scorer.probabilities(["DM me on Telegram to claim your prize"])[0] < 0.5


def test_blank_texts_score_zero_without_a_model_call(scorer, monkeypatch):
    monkeypatch.setattr(scorer, "_predict_prob", lambda texts: pytest.fail("model called"))
    assert scorer.probabilities(["", "   ", "\n"]) == [0.0, 0.0, 0.0]


def test_scores_keep_the_order_of_the_texts(scorer):
    texts = ["have a lovely day", "", "this is bullshit, asshole", "see you at the market"]
    scores = scorer.probabilities(texts)
    assert len(scores) == 4 and scores[1] == 0.0
    assert scores[2] > 0.5 > max(scores[0], scores[3])
    assert all(isinstance(score, float) for score in scores)


def test_no_texts_score_nothing(scorer):
    assert scorer.probabilities([]) == []


def test_the_model_loads_without_a_version_warning():
    # the wheel pins the scikit-learn it was pickled with; a warning means a broken install
    code = "from operators.specialists.profanity import ProfanityScorer; ProfanityScorer()"
    subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], check=True, cwd=ROOT)


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "profanity_check", None)
    with pytest.raises(ProfanityUnavailable, match=r"vlm-moderation\[specialists\]"):
        profanity._load_model()


def test_importing_the_module_loads_no_model_library():
    code = (
        "import sys, operators.specialists.profanity\n"
        "print(sorted(m for m in ('profanity_check', 'sklearn', 'joblib') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
